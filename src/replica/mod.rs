//! Replica mode: keep a full copy of a primary's store and serve reads from it, through
//! primary outages.
//!
//! Three ways changes arrive, from fastest to most reliable:
//! - NATS claims-update messages ([`listen`]), applied at once after verification;
//! - the primary's change feed (`sync`), long-polled, which alone guarantees convergence: its
//!   cursor is persisted with the tokens it applied, and a new primary lineage triggers a full
//!   newer-wins resync;
//! - read misses, fetched from the primary on demand (and remembered briefly when unknown).
//!
//! Writes posted to a replica are forwarded to the primary; the accepted token is applied
//! locally at once so the client reads its own write.
//!
//! Ownership: the sync task owns the replica status (published through a `watch`), and the
//! store owns the data; [`ReplicaHandle`] is the cheap handle the HTTP layer uses.

pub mod client;
pub mod listen;
mod sync;

use crate::config::Settings;
use crate::error::ApiError;
use crate::jwt::{self, ClaimType, Jwt, JwtError};
use crate::metrics::Metrics;
use crate::state::Trust;
use crate::store::{Entry, Kind, Store};
use client::PrimaryClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Replica state, as readiness, metrics and the status page see it.
#[derive(Debug, Clone, Default)]
pub struct ReplicaStatus {
    /// The primary in use.
    pub primary: String,
    /// The last request to it succeeded.
    pub reachable: bool,
    /// The initial sync has completed (now or in an earlier run on this data).
    pub synced: bool,
    /// Last primary sequence applied.
    pub applied_seq: u64,
    /// The primary's head at its last answer.
    pub primary_head: u64,
    /// Seconds since the replica was last known to hold everything the primary had.
    pub lag_seconds: f64,
}

/// What the sync task publishes; [`ReplicaStatus`] is derived from it on read.
#[derive(Debug, Clone)]
struct StatusCell {
    primary: String,
    reachable: bool,
    synced: bool,
    applied_seq: u64,
    primary_head: u64,
    in_sync_at: Instant,
}

/// Handle to the replica machinery. Cheap to clone.
#[derive(Clone)]
pub struct ReplicaHandle {
    client: PrimaryClient,
    store: Store,
    trust: watch::Receiver<Arc<Trust>>,
    status: watch::Receiver<StatusCell>,
    /// Keys the primary recently said it does not have, with when it said so. A std `Mutex`:
    /// held only for a map operation, never across `.await`.
    not_found: Arc<Mutex<HashMap<(Kind, String), Instant>>>,
    not_found_ttl: Duration,
    metrics: Metrics,
}

/// Metadata keys of the replica cursor (persisted in the same commit as applied tokens).
pub(crate) const META_PRIMARY_LINEAGE: &str = "replica.primary_lineage";
pub(crate) const META_PRIMARY_CURSOR: &str = "replica.primary_cursor";
pub(crate) const META_SYNCED: &str = "replica.synced";

impl ReplicaHandle {
    /// Starts the sync task (and, with NATS, the listener) and returns the handle.
    pub fn start(
        settings: &Settings,
        store: Store,
        trust_tx: Arc<watch::Sender<Arc<Trust>>>,
        nats: crate::nats::NatsHandle,
        metrics: Metrics,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) -> ReplicaHandle {
        let client = PrimaryClient::new(settings.primary.0.clone(), settings.replicationtimeout.0);
        let synced = store.meta(META_SYNCED).is_some();
        let (status_tx, status) = watch::channel(StatusCell {
            primary: client.current().to_string(),
            reachable: false,
            synced,
            applied_seq: store
                .meta(META_PRIMARY_CURSOR)
                .map_or(0, |b| decode_u64(&b)),
            primary_head: 0,
            in_sync_at: Instant::now(),
        });
        let handle = ReplicaHandle {
            client,
            store,
            trust: trust_tx.subscribe(),
            status,
            not_found: Arc::default(),
            not_found_ttl: settings.replication.notfoundttl.0,
            metrics,
        };
        if nats.client().is_none() {
            tracing::warn!(
                "replica without NATS: changes arrive through the change feed's long poll only"
            );
        }
        // The listener follows the connection, including one configured later by a reload.
        tasks.spawn(listen::run(handle.clone(), nats, cancel.clone()));
        tasks.spawn(sync::run(
            handle.clone(),
            sync::Options::from(settings),
            trust_tx,
            status_tx,
            cancel,
        ));
        handle
    }

    /// The current replica status.
    pub fn status(&self) -> ReplicaStatus {
        let s = self.status.borrow().clone();
        let in_sync = s.reachable && s.synced && s.applied_seq >= s.primary_head;
        ReplicaStatus {
            primary: s.primary,
            reachable: s.reachable,
            synced: s.synced,
            applied_seq: s.applied_seq,
            primary_head: s.primary_head,
            lag_seconds: if in_sync {
                0.0
            } else {
                s.in_sync_at.elapsed().as_secs_f64()
            },
        }
    }

    /// Fetches a key this replica does not have from the primary, stores and returns it.
    /// `Ok(None)` when the primary does not have it either (remembered for a short while).
    ///
    /// # Errors
    /// [`ApiError::PrimaryUnavailable`] when the primary cannot be asked.
    pub async fn fetch_missing(
        &self,
        kind: Kind,
        key: &str,
    ) -> Result<Option<Arc<Entry>>, ApiError> {
        let id = (kind, key.to_string());
        {
            let mut nf = self.not_found.lock().unwrap_or_else(|p| p.into_inner());
            match nf.get(&id) {
                Some(at) if at.elapsed() < self.not_found_ttl => return Ok(None),
                Some(_) => {
                    nf.remove(&id);
                }
                None => {}
            }
        }
        let token = match self.client.get(kind, key).await {
            Ok(Some(token)) => token,
            Ok(None) => {
                let mut nf = self.not_found.lock().unwrap_or_else(|p| p.into_inner());
                if nf.len() > 10_000 {
                    let ttl = self.not_found_ttl;
                    nf.retain(|_, at| at.elapsed() < ttl);
                }
                nf.insert(id, Instant::now());
                return Ok(None);
            }
            Err(e) => return Err(ApiError::PrimaryUnavailable(e.to_string())),
        };
        match self.verify(kind, key, &token) {
            Ok(jwt) => {
                // Newer-wins still applies: if the feed stored a newer version meanwhile, that
                // is what the index returns.
                self.store.put(kind, key, &jwt).await?;
                self.metrics.replica_applied("miss", 1);
                Ok(self.store.get(kind, key))
            }
            Err(e) => {
                tracing::warn!(%key, cause = %e, "primary served a token that does not verify; ignored");
                Ok(None)
            }
        }
    }

    /// Forwards a write to the primary (trying each configured primary once) and, when it is
    /// accepted, applies it locally so the client can read its own write from this replica.
    ///
    /// # Errors
    /// The primary's refusal as [`ApiError::Upstream`], or [`ApiError::PrimaryUnavailable`].
    pub async fn forward(&self, kind: Kind, key: &str, body: &[u8]) -> Result<(), ApiError> {
        let mut last_err = None;
        for _ in 0..self.client.count() {
            match self.client.post(kind, key, body).await {
                Ok((200, _, _)) => {
                    let token = String::from_utf8_lossy(body);
                    if let Ok(jwt) = self.verify(kind, key, token.trim()) {
                        if self.store.put(kind, key, &jwt).await.is_ok() {
                            self.metrics.replica_applied("forward", 1);
                        }
                    }
                    return Ok(());
                }
                Ok((status, code, body)) => {
                    return Err(ApiError::upstream(
                        actix_web::http::StatusCode::from_u16(status)
                            .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY),
                        code.as_deref(),
                        body.trim_end().to_string(),
                    ))
                }
                Err(e) => {
                    last_err = Some(e);
                    self.client.rotate();
                }
            }
        }
        Err(ApiError::PrimaryUnavailable(format!(
            "{}; the write was not stored, retry later",
            last_err.map_or_else(|| "no primary".to_string(), |e| e.to_string())
        )))
    }

    /// Verifies a token received from the primary or NATS before it may be stored: signature,
    /// type, key, and (for accounts) the operator's trust. Time checks are not applied: a
    /// replica mirrors what the primary holds, and serving honours `check=true` and `exp`.
    ///
    /// # Errors
    /// The [`JwtError`] that disqualifies it.
    pub fn verify(&self, kind: Kind, key: &str, token: &str) -> Result<Jwt, JwtError> {
        let jwt = jwt::decode(token)?;
        self.check(kind, key, &jwt)?;
        Ok(jwt)
    }

    /// [`ReplicaHandle::verify`] for a page of the change feed, with the signatures verified
    /// in batches ([`jwt::decode_many`], about half the cost per token). Returns the tokens
    /// that pass; each one that does not is logged with its sequence and skipped.
    pub fn verify_many(&self, changes: Vec<(u64, Kind, String, String)>) -> Vec<Arc<Entry>> {
        let tokens: Vec<&str> = changes.iter().map(|c| c.3.as_str()).collect();
        let decoded = jwt::decode_many(&tokens);
        drop(tokens);
        changes
            .into_iter()
            .zip(decoded)
            .filter_map(|((seq, kind, key, _), jwt)| {
                match jwt.and_then(|jwt| self.check(kind, &key, &jwt).map(|()| jwt)) {
                    Ok(jwt) => Some(Arc::new(Entry::new(kind, &key, &jwt))),
                    Err(e) => {
                        tracing::warn!(seq, %key, cause = %e, "replicated token does not verify; skipped");
                        None
                    }
                }
            })
            .collect()
    }

    /// The checks after the signature: type, key, and the operator's trust for accounts.
    fn check(&self, kind: Kind, key: &str, jwt: &Jwt) -> Result<(), JwtError> {
        let c = &jwt.claims;
        match kind {
            Kind::Account => {
                c.expect_type(ClaimType::Account)?;
                if c.sub != key {
                    return Err(JwtError::InvalidClaims(format!(
                        "subject {} is not the key {key}",
                        c.sub
                    )));
                }
                let trust = self.trust.borrow().clone();
                match &trust.operator {
                    Some(op) => op.check_issuer(&c.iss)?,
                    // Nothing is stored unverified: the sync task installs the primary's operator
                    // before it applies anything, and until then NATS updates are refused.
                    None => {
                        return Err(JwtError::InvalidClaims(
                            "no operator known to verify against".into(),
                        ))
                    }
                }
            }
            Kind::Activation => {
                c.expect_type(ClaimType::Activation)?;
                let hash = jwt::activation_hash(c)?;
                if hash != key {
                    return Err(JwtError::InvalidClaims(format!(
                        "activation hash {hash} is not the key {key}"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn decode_u64(b: &[u8]) -> u64 {
    <[u8; 8]>::try_from(b).map(u64::from_be_bytes).unwrap_or(0)
}
