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

mod antientropy;
pub mod client;
pub mod listen;
mod misses;
mod sync;

use crate::cluster::{ClusterHandle, Stamp};
use crate::config::Settings;
use crate::jwt::{self, Jwt, JwtError};
use crate::metrics::Metrics;
use crate::store::{Entry, Kind, Policy, Store};
use crate::trust::{Trust, TrustAnchor};
use crate::verify;
use client::PrimaryClient;
use futures_util::FutureExt;
use misses::Misses;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a replica could not do at its primary what a client asked of it (a forwarded write, a
/// read miss). The write path carries it on as its own error.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The primary cannot be asked now: unreachable, no leader's address known, or too many
    /// lookups in flight.
    #[error("the primary account server is unreachable: {0}")]
    Unavailable(String),
    /// A cluster node knows no leader to send a write to.
    #[error("{}", crate::cluster::ClusterError::NoLeader)]
    NoLeader,
    /// The primary refused: its answer, to pass on unchanged.
    #[error("{body}")]
    Refused {
        /// Its status.
        status: u16,
        /// Its `X-Error-Code`, as sent (checked against our codes before it is relayed).
        code: Option<String>,
        /// Its body, without the trailing newline.
        body: String,
    },
}

/// Replica state, as readiness, metrics and the status page see it.
#[derive(Debug, Clone, Default)]
pub struct ReplicaStatus {
    /// The primary in use (without user-info).
    pub primary: String,
    /// The last request to it was answered.
    pub reachable: bool,
    /// The initial sync has completed (now or in an earlier run on this data).
    pub synced: bool,
    /// Last primary sequence applied.
    pub applied_seq: u64,
    /// The primary's head at its last answer.
    pub primary_head: u64,
    /// Seconds since the replica was last known to hold everything the primary had.
    pub lag_seconds: f64,
    /// Replication stopped at a token that does not verify, if it has.
    pub stall: Option<Stall>,
    /// Why the last request to the primary failed, while it is unreachable.
    pub link_error: Option<String>,
    /// The last copy of a Go primary's pack may lack tokens it has: the pack filled
    /// `maxreplicationpack`, or some of its lines could not be used. Read misses are then
    /// asked of the primary instead of answered 404 here.
    pub partial: bool,
}

/// Replication stopped advancing: the primary's change at `seq` does not verify here. The
/// replica keeps serving what it has, retries, and reports this until it passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The primary's sequence of the change that fails.
    pub seq: u64,
    /// Its key.
    pub key: String,
    /// Why it fails.
    pub reason: String,
}

impl ReplicaStatus {
    /// Whether this replica holds everything its primary has: the primary answers, and at its
    /// last answer everything up to its head was applied. A read miss is then a real 404, not
    /// a key still on its way. (A primary that does not answer may have taken writes since.)
    pub fn caught_up(&self) -> bool {
        self.reachable
            && self.synced
            && self.stall.is_none()
            && !self.partial
            && self.applied_seq >= self.primary_head
    }
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
    stall: Option<Stall>,
    link_error: Option<String>,
    partial: bool,
}

/// Handle to the replica machinery. Cheap to clone.
#[derive(Clone)]
pub struct ReplicaHandle {
    client: PrimaryClient,
    store: Store,
    anchor: TrustAnchor,
    status: watch::Receiver<StatusCell>,
    misses: Arc<Misses>,
    metrics: Metrics,
    /// Cluster mode: the membership that says whom to follow.
    cluster: Option<ClusterHandle>,
}

/// What [`ReplicaHandle::verify_many`] found in a part of a feed page.
pub struct PageCheck {
    /// The changes that verified, in order, as entries to store.
    pub entries: Vec<Arc<Entry>>,
    /// The keys of changes skipped because this store already holds the same token.
    pub held: Vec<(Kind, String)>,
    /// The first change that did not verify; nothing after it is in `entries` or `held`.
    pub stall: Option<Stall>,
}

/// Metadata keys of the replica cursor (persisted in the same commit as applied tokens).
pub const META_PRIMARY_LINEAGE: &str = "replica.primary_lineage";
/// See [`META_PRIMARY_LINEAGE`].
pub const META_PRIMARY_CURSOR: &str = "replica.primary_cursor";
pub(crate) const META_SYNCED: &str = "replica.synced";

/// Most keys the negative cache of read misses remembers.
const NOT_FOUND_CAP: usize = 10_000;
/// Most read misses asked of the primary at once; more answer 503 at once.
const MISS_CONCURRENCY: usize = 32;

impl ReplicaHandle {
    /// Starts the sync task (and, with NATS, the listener) and returns the handle. In
    /// cluster mode (`cluster`), it follows whichever node the lease names, and pauses while
    /// this node leads.
    ///
    /// # Errors
    /// [`client::ClientError`] when the link settings (`replication.tls`) are unusable.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        settings: &Settings,
        store: Store,
        anchor: TrustAnchor,
        nats: crate::nats::NatsHandle,
        metrics: Metrics,
        cluster: Option<ClusterHandle>,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<ReplicaHandle, client::ClientError> {
        let client = PrimaryClient::new(
            settings.primary.0.clone(),
            settings.replicationtimeout.0,
            settings.replication.tls.as_ref(),
        )?;
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
            stall: None,
            link_error: None,
            partial: false,
        });
        let handle = ReplicaHandle {
            client,
            store,
            anchor,
            status,
            misses: Arc::new(Misses::new(
                settings.replication.notfoundttl.0,
                NOT_FOUND_CAP,
                MISS_CONCURRENCY,
            )),
            metrics,
            cluster,
        };
        if nats.client().is_none() && handle.cluster.is_none() {
            tracing::warn!(
                "replica without NATS: changes arrive through the change feed's long poll only"
            );
        }
        // The listener follows the connection, including one configured later by a reload.
        tasks.spawn(listen::run(handle.clone(), nats, cancel.clone()));
        tasks.spawn(sync::run(
            handle.clone(),
            sync::Options::from(settings),
            status_tx,
            cancel,
        ));
        Ok(handle)
    }

    /// Whether this node follows now: always for a replica; for a cluster node, unless it
    /// leads (a candidate serves reads as a follower does and refuses writes).
    pub fn following(&self) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|c| c.role() != crate::cluster::Role::Leader)
    }

    /// The cluster membership, in cluster mode.
    pub fn cluster(&self) -> Option<&ClusterHandle> {
        self.cluster.as_ref()
    }

    /// The current trust anchor (the NATS listener validates updates against it).
    pub(crate) fn trust(&self) -> Arc<Trust> {
        self.anchor.current()
    }

    /// The current replica status.
    pub fn status(&self) -> ReplicaStatus {
        let s = self.status.borrow().clone();
        let mut status = ReplicaStatus {
            primary: s.primary,
            reachable: s.reachable,
            synced: s.synced,
            applied_seq: s.applied_seq,
            primary_head: s.primary_head,
            lag_seconds: 0.0,
            stall: s.stall,
            link_error: s.link_error,
            partial: s.partial,
        };
        // Lag is 0 exactly while caught up (one rule, `caught_up`, for lag and for misses).
        if !status.caught_up() {
            status.lag_seconds = s.in_sync_at.elapsed().as_secs_f64();
        }
        status
    }

    /// Looks up a key this replica does not have. A caught-up replica answers from its own
    /// store (`Ok(None)`: a real 404). One that may be missing data asks the primary: one
    /// request per key in flight, a bounded negative cache, a cap on concurrent requests.
    /// What the primary returns is verified and stored.
    ///
    /// The operator's system account (its JWT's `system_account` claim) is asked of the
    /// primary even when caught up: a primary may serve it from its `systemaccountjwtpath`
    /// file, which no feed carries, and nats-server pointed at this replica must resolve it.
    /// That answer is verified like any other but not stored (see [`misses::SystemAccount`]):
    /// it is remembered for `replication.notfoundttl`, and served past that while the primary
    /// cannot be asked.
    ///
    /// # Errors
    /// [`ReplicaError::Unavailable`] when the primary cannot be asked (unreachable, or too
    /// many misses in flight).
    pub async fn fetch_missing(
        &self,
        kind: Kind,
        key: &str,
    ) -> Result<Option<Arc<Entry>>, ReplicaError> {
        let system = kind == Kind::Account && self.is_system_account(key);
        if system {
            if let Some(e) = self.misses.system().fresh(key) {
                return Ok(Some(e));
            }
        } else if self.status().caught_up() {
            return Ok(None);
        }
        let stale = || system.then(|| self.misses.system().last(key)).flatten();
        if self.client.count() == 0 {
            if let Some(e) = stale() {
                return Ok(Some(e));
            }
            // A cluster node while no leader is known: nobody to ask.
            return Err(ReplicaError::Unavailable(
                "no cluster leader is elected at the moment; retry shortly".into(),
            ));
        }
        let id: misses::MissKey = (kind, key.into());
        if self.misses.negative().contains(&id) {
            self.metrics.replica_miss("cached");
            return Ok(None);
        }
        let flight = {
            let mut inflight = self.misses.inflight();
            match inflight.get(&id) {
                Some(f) => {
                    self.metrics.replica_miss("joined");
                    f.clone()
                }
                None => {
                    let this = self.clone();
                    let id2 = id.clone();
                    let f = async move {
                        let out = this.ask_primary(kind, &id2.1, system).await;
                        this.misses.inflight().remove(&id2);
                        out
                    }
                    .boxed()
                    .shared();
                    inflight.insert(id, f.clone());
                    f
                }
            }
        };
        match flight.await {
            // A version the feed stored meanwhile (posted to the primary) wins over its file.
            Ok(found) if system => Ok(self.store.get(kind, key).or(found)),
            // Newer-wins still applies to a stored answer: if the feed stored a newer version
            // meanwhile, that is what the index returns.
            Ok(_) => Ok(self.store.get(kind, key)),
            Err(e) => stale().map(Some).ok_or(ReplicaError::Unavailable(e)),
        }
    }

    /// Whether `key` is the system account the trusted operator names.
    fn is_system_account(&self, key: &str) -> bool {
        self.anchor
            .current()
            .operator
            .as_ref()
            .and_then(|op| op.system_account())
            == Some(key)
    }

    /// One request to the primary for a missing key. What it serves is verified, then stored
    /// (the waiters read it from the store), or, for the `system` account, remembered apart
    /// (see [`misses::SystemAccount`]) and returned.
    async fn ask_primary(
        &self,
        kind: Kind,
        key: &str,
        system: bool,
    ) -> Result<Option<Arc<Entry>>, String> {
        let Ok(_permit) = self.misses.permits.try_acquire() else {
            self.metrics.replica_miss("refused");
            return Err("too many lookups at the primary in flight; retry shortly".into());
        };
        self.metrics.replica_miss("fetched");
        let token = match self.client.get(kind, key).await {
            Ok(Some(token)) => token,
            Ok(None) => {
                self.misses.negative().insert((kind, key.into()));
                if system {
                    self.misses.system().set(None);
                }
                return Ok(None);
            }
            Err(e) => return Err(e.to_string()),
        };
        match self.verify_served(kind, key, &token).await {
            Ok(jwt) if system => {
                let entry = Arc::new(Entry::from_jwt(kind, key, jwt));
                self.misses.system().set(Some(entry.clone()));
                Ok(Some(entry))
            }
            Ok(jwt) => {
                self.store
                    .put_with(kind, key, &jwt, Policy::MirrorPrimary)
                    .await
                    .map_err(|e| e.to_string())?;
                self.metrics.replica_applied("miss", 1);
                // The waiters read the store: it has this or a newer version now.
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(%key, cause = %e, "primary served a token that does not verify; ignored");
                Ok(None)
            }
        }
    }

    /// Forwards a write to the primary (trying each configured primary once) and, when it is
    /// accepted, applies it locally so the client can read its own write from this replica.
    /// Returns the cluster leader's stamp, in cluster mode.
    ///
    /// # Errors
    /// The primary's refusal as [`ReplicaError::Refused`], [`ReplicaError::Unavailable`], or
    /// [`ReplicaError::NoLeader`].
    pub async fn forward(
        &self,
        kind: Kind,
        key: &str,
        body: &[u8],
    ) -> Result<Option<Stamp>, ReplicaError> {
        let stamp = self
            .forward_raw(client::Write::Put(kind), key, body)
            .await?;
        let token = String::from_utf8_lossy(body);
        if let Ok(jwt) = self.verify(kind, key, token.trim()) {
            let stored = self
                .store
                .put_with(kind, key, &jwt, Policy::MirrorPrimary)
                .await;
            if stored.is_ok() {
                self.metrics.replica_applied("forward", 1);
            }
        }
        Ok(stamp)
    }

    /// Forwards a deletion of account `key` (an HTTP `DELETE` with the delete request as the
    /// body) to the primary and, when it is accepted, deletes the account here too.
    ///
    /// # Errors
    /// As [`ReplicaHandle::forward`].
    pub async fn forward_delete(
        &self,
        key: &str,
        body: &[u8],
    ) -> Result<Option<Stamp>, ReplicaError> {
        let stamp = self.forward_raw(client::Write::Delete, key, body).await?;
        let token = String::from_utf8_lossy(body);
        if let Ok(tombstone) = self.verify_delete(key, token.trim()) {
            let stored = self
                .store
                .put_entries(vec![Arc::new(tombstone)], Vec::new(), Policy::MirrorPrimary)
                .await;
            if stored.is_ok() {
                self.metrics.replica_applied("forward", 1);
            }
        }
        Ok(stamp)
    }

    /// Sends a write to the primary, trying each configured primary once; returns the cluster
    /// leader's stamp, in cluster mode.
    async fn forward_raw(
        &self,
        write: client::Write,
        key: &str,
        body: &[u8],
    ) -> Result<Option<Stamp>, ReplicaError> {
        if let Some(cluster) = &self.cluster {
            if cluster.leader_to_follow().is_none() {
                return Err(ReplicaError::NoLeader);
            }
        }
        let mut last_err = None;
        for _ in 0..self.client.count() {
            match self.client.send(write, key, body).await {
                Ok(a) if a.status == 200 => return Ok(a.stamp),
                Ok(a) => {
                    return Err(ReplicaError::Refused {
                        status: a.status,
                        code: a.code,
                        body: a.body.trim_end().to_string(),
                    })
                }
                // Sent, but unanswered: sending it to another primary could store it twice
                // in two lineages, and "not stored" could be a lie. Re-posting the same JWT is
                // safe (the same bytes are accepted as unchanged), so the client can find out.
                Err(e @ client::PrimaryError::NoAnswer { .. }) => {
                    return Err(ReplicaError::Unavailable(format!(
                        "{e}; post the same JWT again to find out (that is safe)"
                    )))
                }
                Err(e) => {
                    last_err = Some(e);
                    self.client.rotate();
                }
            }
        }
        Err(ReplicaError::Unavailable(format!(
            "{}; the write was not stored, retry later",
            last_err.map_or_else(|| "no primary".to_string(), |e| e.to_string())
        )))
    }

    /// Verifies a deletion of account `key` received from the primary (the mirror policy,
    /// [`verify::mirror::delete`]). Returns the tombstone to store.
    ///
    /// # Errors
    /// Why it does not verify.
    pub fn verify_delete(&self, key: &str, request: &str) -> Result<Entry, String> {
        let trust = self.anchor.current();
        let checked = verify::mirror::delete(trust.operator.as_ref(), key, request)?;
        Ok(Entry::tombstone(key, &checked.jwt))
    }

    /// Verifies a token received from the primary before it may be stored (the mirror policy,
    /// [`verify::mirror`]): signature, type, key, and (for accounts) the operator's trust.
    ///
    /// # Errors
    /// The [`JwtError`] that disqualifies it.
    pub fn verify(&self, kind: Kind, key: &str, token: &str) -> Result<Jwt, JwtError> {
        let jwt = jwt::decode(token)?;
        self.check(kind, key, &jwt)?;
        Ok(jwt)
    }

    /// [`ReplicaHandle::verify`] for a token the primary served outside the feed (a read miss,
    /// anti-entropy). An account naming an issuer the trusted operator does not list (a signing
    /// key added since) makes this replica fetch the operator JWT from the primary again, as
    /// DESIGN §6 asks whenever a token names an unknown issuer, and check the token once more
    /// (the feed does the same through its stall). At most one such fetch a second.
    pub(super) async fn verify_served(
        &self,
        kind: Kind,
        key: &str,
        token: &str,
    ) -> Result<Jwt, JwtError> {
        let jwt = jwt::decode(token)?;
        let Err(refused) = self.check(kind, key, &jwt) else {
            return Ok(jwt);
        };
        let unknown_issuer = kind == Kind::Account
            && self
                .anchor
                .current()
                .operator
                .as_ref()
                .is_some_and(|op| op.check_issuer(&jwt.claims.iss).is_err());
        if !unknown_issuer || !self.misses.may_ask_operator() {
            return Err(refused);
        }
        match sync::refresh_operator(self).await {
            Ok(crate::trust::Learned::Updated) => self.check(kind, key, &jwt).map(|()| jwt),
            _ => Err(refused),
        }
    }

    /// [`ReplicaHandle::verify`] for a page of the change feed, with the signatures verified
    /// in batches ([`jwt::decode_many`], about half the cost per token). Returns the entries
    /// that verify, in order, up to the first change that does not, and that change with the
    /// reason: nothing after it is used, so the caller never moves past a change it could not
    /// apply.
    ///
    /// A change whose token this store already holds for its key, byte for byte, is neither
    /// verified nor returned: it was verified when it was stored, and storing it again would
    /// change nothing (same bytes are `Unchanged` under every policy). Its key is listed in
    /// [`PageCheck::held`] instead. This is what makes a full resync after a lineage change (a
    /// failover, a promoted replica) cost a read of the feed rather than a verification and a
    /// write of every token.
    pub fn verify_many(&self, changes: Vec<crate::wire::feed::Change>) -> PageCheck {
        let held: Vec<bool> = changes
            .iter()
            .map(|c| !c.deleted && self.store.holds(c.kind, &c.key, c.jwt.as_bytes()))
            .collect();
        let tokens: Vec<&str> = changes
            .iter()
            .zip(&held)
            .filter(|(_, held)| !**held)
            .map(|(c, _)| c.jwt.as_str())
            .collect();
        let mut decoded = jwt::decode_many(&tokens).into_iter();
        drop(tokens);
        let mut out = PageCheck {
            entries: Vec::with_capacity(changes.len()),
            held: Vec::new(),
            stall: None,
        };
        for (change, held) in changes.into_iter().zip(held) {
            if held {
                out.held.push((change.kind, change.key));
                continue;
            }
            let jwt = decoded
                .next()
                .expect("one decoded token per change not held");
            let checked = if change.deleted {
                // Deletions are rare: checked one by one, as the primary checked them.
                self.verify_delete(&change.key, &change.jwt)
            } else {
                jwt.and_then(|jwt| self.check(change.kind, &change.key, &jwt).map(|()| jwt))
                    .map(|jwt| Entry::from_jwt(change.kind, &change.key, jwt))
                    .map_err(|e| e.to_string())
            };
            match checked {
                Ok(entry) => out.entries.push(Arc::new(entry)),
                Err(reason) => {
                    out.stall = Some(Stall {
                        seq: change.seq,
                        key: change.key,
                        reason,
                    });
                    return out;
                }
            }
        }
        out
    }

    /// The mirror policy's checks after the signature ([`verify::mirror`]).
    fn check(&self, kind: Kind, key: &str, jwt: &Jwt) -> Result<(), JwtError> {
        match kind {
            Kind::Account => {
                verify::mirror::account(self.anchor.current().operator.as_ref(), key, jwt)
            }
            Kind::Activation => verify::mirror::activation(key, jwt),
        }
    }
}

impl crate::cluster::FollowerProgress for ReplicaHandle {
    fn applied(&self) -> (String, u64) {
        let lineage = self
            .store
            .meta(META_PRIMARY_LINEAGE)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let applied = self
            .store
            .meta(META_PRIMARY_CURSOR)
            .map_or(0, |b| decode_u64(&b));
        (lineage, applied)
    }

    fn lag_seconds(&self) -> f64 {
        self.status().lag_seconds
    }
}

/// A big-endian `u64` from store metadata (0 when malformed), as the cursor is persisted.
fn decode_u64(b: &[u8]) -> u64 {
    <[u8; 8]>::try_from(b).map(u64::from_be_bytes).unwrap_or(0)
}
