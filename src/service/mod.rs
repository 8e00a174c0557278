//! The write path, independent of transport: the HTTP handlers and the NATS resolver adapter
//! call the same functions, so a write, a lookup or a deletion follows the same rules whichever
//! way it came. Failures are [`ServiceError`]s, which each adapter maps in its own module.
//!
//! A posted token is verified by [`crate::verify`] (the POST policy); the write path adds what
//! depends on the stored version: the same bytes are a no-op, an older `iat` or another token
//! of the same second is refused (decided before the expensive content rules, so a re-post
//! costs a decode: same bytes → 200, older → 409), and on a cluster leader the write is fenced
//! and, with `syncreplicas`, waits for followers.

mod error;

pub use error::{ServiceError, CODES};

use crate::cluster::Stamp;
use crate::jwt::delete::DeleteRequest;
use crate::jwt::{self, Jwt};
use crate::state::{AppState, Trust};
use crate::store::{Entry, Kind, PutOutcome};
use crate::verify;
use std::sync::Arc;

/// What a verified account token is next to the stored version, when that decides the answer
/// without the content rules: the same bytes (200, nothing to do), an older `iat` or another
/// token of the same `iat` (409). The store decides the same way; deciding here first keeps a
/// re-post of a large account (1,000 imports, each a signature) as cheap as its decoding.
fn compare_with_stored(stored: &Entry, jwt: &Jwt) -> Option<Result<(), ServiceError>> {
    if stored.jwt == jwt.raw.as_bytes() {
        return Some(Ok(()));
    }
    match jwt.claims.iat.cmp(&stored.iat) {
        std::cmp::Ordering::Less => Some(Err(ServiceError::Stale {
            stored_iat: stored.iat,
            posted_iat: jwt.claims.iat,
        })),
        std::cmp::Ordering::Equal => Some(Err(ServiceError::SameSecond { iat: stored.iat })),
        std::cmp::Ordering::Greater => None,
    }
}

/// Posted tokens larger than this are checked on the heavy-work thread
/// ([`crate::limits::heavy`]). Typical accounts are about 1 KB.
const HEAVY_BYTES: usize = 32 * 1024;

/// The checks of an account POST against the `stored` version: `None` when the posted token
/// is the stored one (200, nothing to do), the token to store otherwise. Refusals decided by
/// the stored version come before the content rules (counted in `nas_post_shortcuts_total`).
fn check_post(
    trust: &Trust,
    key: &str,
    body: &[u8],
    stored: Option<&Entry>,
    metrics: &crate::metrics::Metrics,
) -> Result<Option<Jwt>, ServiceError> {
    let jwt = verify::post::account_claims(trust.operator.as_ref(), key, body)?;
    if let Some(answer) = stored.and_then(|s| compare_with_stored(s, &jwt)) {
        let result = match &answer {
            Ok(()) => "unchanged",
            Err(ServiceError::Stale { .. }) => "stale",
            Err(_) => "same_iat",
        };
        metrics.post_shortcut(result);
        return answer.map(|()| None);
    }
    verify::post::account_rules(&jwt)?;
    Ok(Some(jwt))
}

/// Stores a validated token and notifies on change. The same bytes as stored are a no-op 200;
/// an older token, or another token with the stored one's `iat`, is a conflict (DESIGN §4).
/// On a cluster leader the write is fenced (taken only under a valid lease) and, with
/// `syncreplicas`, answered once enough followers have it; the stamp says in which term.
///
/// # Errors
/// [`ServiceError::Stale`], [`ServiceError::SameSecond`], [`ServiceError::Cluster`], or a
/// storage failure.
pub async fn store_and_notify(
    state: &AppState,
    kind: Kind,
    key: &str,
    jwt: &Jwt,
) -> Result<Option<Stamp>, ServiceError> {
    let stamp = permit(state)?;
    match state.store.put(kind, key, jwt).await? {
        PutOutcome::Stored(entry) => {
            tracing::info!(kind = kind.as_str(), %key, seq = entry.seq, iat = entry.iat, "stored");
            state.notifier.changed(entry.clone());
            committed(state, entry.seq, stamp).await
        }
        // Already stored here, but perhaps not yet on the followers a semi-synchronous write
        // waits for (a client retrying a write whose answer it lost).
        PutOutcome::Unchanged(entry) => committed(state, entry.seq, stamp).await,
        // A tombstone's `iat` is its delete request's: the account is deleted, not newer.
        // Same second as the deletion included: a deletion wins ties (DESIGN §4).
        PutOutcome::Stale { current } | PutOutcome::Conflict { current } if current.deleted => {
            Err(ServiceError::Deleted {
                deleted_at: current.iat,
                posted_iat: jwt.claims.iat,
            })
        }
        PutOutcome::Stale { current } => Err(ServiceError::Stale {
            stored_iat: current.iat,
            posted_iat: jwt.claims.iat,
        }),
        PutOutcome::Conflict { current } => Err(ServiceError::SameSecond { iat: current.iat }),
    }
}

/// On a cluster node: may this node take a write now? (Elsewhere: yes, without a stamp.)
fn permit(state: &AppState) -> Result<Option<Stamp>, ServiceError> {
    match &state.cluster {
        Some(c) => Ok(Some(c.permit()?)),
        None => Ok(None),
    }
}

/// On a cluster node: the semi-synchronous wait and the fence check after a commit at `seq`.
async fn committed(
    state: &AppState,
    seq: u64,
    stamp: Option<Stamp>,
) -> Result<Option<Stamp>, ServiceError> {
    match (&state.cluster, stamp) {
        (Some(c), Some(stamp)) => Ok(Some(c.committed(seq, stamp).await?)),
        (_, stamp) => Ok(stamp),
    }
}

/// The whole POST of an account: forward on a replica or cluster follower, else validate and
/// store. Returns the cluster stamp (term and accepting leader) in cluster mode.
///
/// # Errors
/// Any [`ServiceError`].
pub async fn post_account(
    state: &AppState,
    key: &str,
    body: &[u8],
) -> Result<Option<Stamp>, ServiceError> {
    if let Some(replica) = state.follower() {
        return Ok(replica.forward(Kind::Account, key, body).await?);
    }
    if !state.store.writable() {
        return Err(crate::store::StoreError::ReadOnly.into());
    }
    let stored = state.store.get(Kind::Account, key);
    // Checking a large token takes milliseconds of CPU: off the HTTP worker, so the other
    // requests it serves are not held up (and a flood of them waits its turn).
    let checked = if body.len() > HEAVY_BYTES {
        let (trust, key, body) = (state.trust(), key.to_string(), body.to_vec());
        let metrics = state.metrics.clone();
        state
            .limits
            .heavy
            .run(&state.metrics, move || {
                check_post(&trust, &key, &body, stored.as_deref(), &metrics)
            })
            .await??
    } else {
        check_post(&state.trust(), key, body, stored.as_deref(), &state.metrics)?
    };
    let Some(jwt) = checked else {
        // The stored version: nothing to write, but a cluster leader still answers only
        // under its lease and once the followers have it.
        let stamp = permit(state)?;
        let seq = state.store.get(Kind::Account, key).map_or(0, |e| e.seq);
        return committed(state, seq, stamp).await;
    };
    store_and_notify(state, Kind::Account, key, &jwt).await
}

/// The whole POST of an activation; returns its hash (and the cluster stamp).
///
/// # Errors
/// Any [`ServiceError`].
pub async fn post_activation(
    state: &AppState,
    body: &[u8],
) -> Result<(String, Option<Stamp>), ServiceError> {
    if let Some(replica) = state.follower() {
        // The primary applies every rule. The issuing-account rule must not be checked here:
        // this replica may not have replicated that account yet, and would refuse a token the
        // primary accepts. Decoding is enough to refuse junk early and to find the hash.
        let jwt = jwt::decode_activation(verify::post::token_text(body)?, jwt::now_unix())?;
        let hash = jwt::activation_hash(&jwt.claims)?;
        let stamp = replica.forward(Kind::Activation, &hash, body).await?;
        return Ok((hash, stamp));
    }
    if !state.store.writable() {
        return Err(crate::store::StoreError::ReadOnly.into());
    }
    let (hash, jwt) = verify::post::activation(body, |account| state.store.account_jwt(account))?;
    let stamp = store_and_notify(state, Kind::Activation, &hash, &jwt).await?;
    Ok((hash, stamp))
}

/// Finds a token for a GET: the store; else the configured system-account or election-account
/// JWT (`systemaccountjwtpath`, `cluster.accountjwtpath`); else, on a replica or cluster
/// follower, the primary.
///
/// The configured files come before the primary on purpose. They are what lets nats-server
/// resolve those accounts while the primary is unreachable or no cluster leader exists yet (an
/// operator-mode cluster bootstraps through the election account: asking a leader first would
/// wait for the leader that needs the account to be elected). A newer version posted since
/// still wins, because the store is asked first and the feed brings it there.
///
/// # Errors
/// [`ServiceError::NotFound`], or [`ServiceError::PrimaryUnavailable`] from a replica miss.
pub async fn lookup(state: &AppState, kind: Kind, key: &str) -> Result<Arc<Entry>, ServiceError> {
    if let Some(e) = state.store.get(kind, key) {
        return Ok(e);
    }
    if let Some(account) = configured_account(&state.trust(), kind, key) {
        return Ok(account);
    }
    if let Some(replica) = state.follower() {
        if let Some(e) = replica.fetch_missing(kind, key).await? {
            return Ok(e);
        }
    }
    Err(ServiceError::NotFound(key.to_string()))
}

/// The configured JWT served for `key` when the store lacks it, if any.
pub fn configured_account(trust: &Trust, kind: Kind, key: &str) -> Option<Arc<Entry>> {
    if kind != Kind::Account {
        return None;
    }
    [&trust.system_account, &trust.cluster_account]
        .into_iter()
        .flatten()
        .find(|s| &*s.key == key)
        .cloned()
}

/// What a deletion did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// Accounts deleted now.
    pub deleted: Vec<String>,
    /// Accounts listed but not stored (or already deleted): nothing to do.
    pub absent: Vec<String>,
    /// Accounts not deleted, with why (an account issued after the request stays).
    pub failed: Vec<(String, String)>,
    /// The cluster stamp (term and accepting leader), in cluster mode.
    pub stamp: Option<Stamp>,
}

/// Deletes the accounts an operator-signed delete request lists (nats-server's
/// `$SYS.REQ.CLAIMS.DELETE` rules, see [`crate::jwt::delete`]); `only`: the account an HTTP
/// `DELETE` names, which the request must list and which must be stored (404 otherwise). Each deleted
/// account becomes a tombstone carrying the request, so replicas delete it too. On a replica:
/// forwarded to the primary.
///
/// # Errors
/// [`ServiceError::DeleteRefused`] with nats-server's reason; [`ServiceError::NotFound`] when
/// `only` is not stored; [`ServiceError::WritesDisabled`] on a read-only store; storage
/// failures.
pub async fn delete_accounts(
    state: &AppState,
    body: &[u8],
    only: Option<&str>,
) -> Result<Deleted, ServiceError> {
    if let (Some(replica), Some(key)) = (state.follower(), only) {
        let stamp = replica.forward_delete(key, body).await?;
        return Ok(Deleted {
            deleted: vec![key.to_string()],
            stamp,
            ..Deleted::default()
        });
    }
    if !state.store.writable() {
        return Err(crate::store::StoreError::ReadOnly.into());
    }
    let trust = state.trust();
    let request = checked_delete(
        &trust,
        verify::post::token_text(body)?,
        state.http.allow_delete,
    )?;
    if let Some(key) = only {
        if !request.accounts.iter().any(|a| a == key) {
            return Err(ServiceError::BadRequest(format!(
                "the delete request does not list account {key}"
            )));
        }
        if state.store.get(Kind::Account, key).is_none() {
            return Err(ServiceError::NotFound(key.to_string()));
        }
    }
    // Every listed account, as nats-server deletes them: the request means all of them.
    let (present, absent): (Vec<String>, Vec<String>) = request
        .accounts
        .iter()
        .cloned()
        .partition(|k| state.store.get(Kind::Account, k).is_some());
    let mut done = Deleted {
        absent,
        ..Deleted::default()
    };
    let stamp = permit(state)?;
    let outcomes = state.store.delete(&present, &request.jwt).await?;
    let mut last_seq = 0;
    for (key, outcome) in present.into_iter().zip(outcomes) {
        match outcome {
            PutOutcome::Stored(entry) => {
                last_seq = last_seq.max(entry.seq);
                tracing::info!(%key, seq = entry.seq, iat = entry.iat, "account deleted");
                // A request that came over NATS already reached nats-server's resolvers; one
                // over HTTP is published once (it names all its accounts).
                if only.is_some() && done.deleted.is_empty() {
                    state.notifier.changed(entry);
                }
                done.deleted.push(key);
            }
            PutOutcome::Unchanged(_) => done.absent.push(key),
            PutOutcome::Stale { current } | PutOutcome::Conflict { current } => done.failed.push((
                key,
                format!(
                    "the stored account JWT (iat {}) was issued after the delete request (iat {})",
                    current.iat, request.jwt.claims.iat
                ),
            )),
        }
    }
    if let Some((_, why)) = only.and_then(|key| done.failed.iter().find(|(k, _)| k == key)) {
        return Err(ServiceError::DeleteConflict(why.clone()));
    }
    done.stamp = committed(state, last_seq, stamp).await?;
    Ok(done)
}

/// Checks a delete request against the current trust (nats-server's rules and messages).
///
/// # Errors
/// [`ServiceError::DeleteRefused`].
pub fn checked_delete(
    trust: &Trust,
    token: &str,
    allowed: bool,
) -> Result<DeleteRequest, ServiceError> {
    let operator = trust.operator.as_ref();
    let system = operator
        .and_then(|op| op.system_account())
        .map(str::to_string)
        .or_else(|| trust.system_account.as_ref().map(|s| s.key.to_string()));
    Ok(verify::post::delete(
        token,
        allowed,
        operator,
        system.as_deref(),
    )?)
}
