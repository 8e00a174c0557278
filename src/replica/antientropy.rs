//! Anti-entropy: a replica compares its store's digest with the primary's and repairs what
//! differs, key by key, without a full resync.
//!
//! The feed alone cannot notice a store changed behind its back (a restored backup, a disk
//! that lost a write, an operator's mistake): it only says what changed after a cursor. The
//! digest (per bucket, the XOR of the sha256 of every token; see [`crate::store::Digest`]) is
//! order-independent, so two stores with the same tokens agree whatever order they got them in.
//!
//! On a mismatch, only the differing buckets are listed (`kind|key|iat|sha256` per entry), and
//! each differing key is settled by the version rules:
//! - the primary's version is newer, or the replica lacks the key: fetch it from the primary;
//! - the replica's version is newer, or the primary lacks the key (a primary restored from an
//!   older backup): send it back to the primary like a forwarded write; but a key the primary
//!   lacks that was issued before a deletion the primary has compacted may be one it deleted,
//!   and is dropped here instead (the primary decides);
//! - same `iat`, different bytes: the primary decides; its version is fetched.
//! - a version sent back that the primary refuses: see [`send_back`] (only a refusal that
//!   decides something makes the replica give its version up).
//!
//! Deletions (tombstones) are versions like any other: a deletion listed by the primary comes
//! with its request and is verified and applied; one held only here goes back as a `DELETE`.
//!
//! The sync task runs a check when it is caught up: after the first caught-up page, after every
//! reconnect, after a resync, and every `replication.antientropy`.

use super::client::{PrimaryError, Write};
use super::ReplicaHandle;
use crate::store::{Entry, Kind, Policy, DIGEST_BUCKETS};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What one check found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcome {
    /// The digests matched.
    pub(super) matched: bool,
    /// Keys taken from the primary.
    pub(super) fetched: u64,
    /// Keys sent back to the primary.
    pub(super) sent_back: u64,
    /// Keys dropped here: the primary no longer has them and may have deleted them.
    pub(super) dropped: u64,
    /// Keys that could not be settled this time (retried at the next check).
    pub(super) failed: u64,
}

/// Compares digests with the primary of lineage `lineage` and repairs the differences.
/// `Ok(None)` when the two cannot be compared now (another lineage, or the primary has
/// changes this replica has not applied yet: the feed brings them first).
///
/// # Errors
/// [`PrimaryError`] when the primary cannot be asked.
pub(super) async fn check(
    replica: &ReplicaHandle,
    lineage: &str,
    cursor: u64,
) -> Result<Option<Outcome>, PrimaryError> {
    let remote = replica.client.digest().await?;
    if remote.store_id != lineage || remote.head > cursor {
        return Ok(None);
    }
    let (_, local) = replica.store.digest();
    let metrics = &replica.metrics;
    if local == remote.digest {
        metrics.replica_antientropy("match", 1);
        return Ok(Some(Outcome {
            matched: true,
            ..Outcome::default()
        }));
    }
    metrics.replica_antientropy("mismatch", 1);
    let mut wanted = [false; DIGEST_BUCKETS];
    let differing: Vec<usize> = (0..DIGEST_BUCKETS)
        .filter(|&b| local.buckets[b] != remote.digest.buckets[b])
        .inspect(|&b| wanted[b] = true)
        .collect();
    let theirs = replica.client.digest_entries(&differing).await?;
    let ours = replica.store.in_buckets(&wanted);
    let by_key: HashMap<(Kind, &str), &Arc<Entry>> =
        ours.iter().map(|e| ((e.kind, &*e.key), e)).collect();

    let mut outcome = Outcome::default();
    let mut listed = HashSet::new();
    for r in &theirs {
        listed.insert((r.kind, r.key.as_str()));
        // A deletion wins a tie with an account of the same second (as in the store).
        let mine_newer = |mine: &Entry| {
            mine.iat > r.iat || (mine.iat == r.iat && mine.deleted && r.request.is_none())
        };
        let settled = match by_key.get(&(r.kind, r.key.as_str())) {
            Some(mine) if mine.digest_hash() == r.hash => continue,
            Some(mine) if mine_newer(mine) => send_back(replica, mine, &mut outcome).await,
            _ => match &r.request {
                Some(request) => {
                    take_deletion(replica, &r.key, request, &mut outcome.fetched).await
                }
                None => fetch(replica, r.kind, &r.key, false, &mut outcome.fetched).await,
            },
        };
        outcome.failed += u64::from(!settled);
    }
    // Held here only. Issued after every deletion the primary has compacted: the primary
    // lost it (an old backup), so it goes back. Otherwise it may be an account whose deletion
    // is gone from the primary: the primary decides, and it has nothing.
    let mut forgotten = Vec::new();
    for mine in ours.iter().filter(|e| !listed.contains(&(e.kind, &*e.key))) {
        if mine.iat <= remote.compacted_iat {
            forgotten.push((mine.kind, mine.key.to_string()));
            continue;
        }
        let settled = send_back(replica, mine, &mut outcome).await;
        outcome.failed += u64::from(!settled);
    }
    if !forgotten.is_empty() {
        match replica.store.drop_keys(forgotten.clone()).await {
            Ok(()) => {
                tracing::info!(keys = forgotten.len(), "anti-entropy: dropped what the primary no longer has (deleted before its tombstones were compacted)");
                outcome.dropped += forgotten.len() as u64;
            }
            Err(e) => {
                tracing::error!(cause = %e, "anti-entropy: could not drop keys");
                outcome.failed += forgotten.len() as u64;
            }
        }
    }
    metrics.replica_antientropy("fetched", outcome.fetched);
    metrics.replica_antientropy("sent_back", outcome.sent_back);
    metrics.replica_antientropy("dropped", outcome.dropped);
    metrics.replica_antientropy("failed", outcome.failed);
    Ok(Some(outcome))
}

/// Takes the primary's version of a key (`force`: even over a newer one held here, which the
/// primary refused). Returns whether the key is settled.
async fn fetch(
    replica: &ReplicaHandle,
    kind: Kind,
    key: &str,
    force: bool,
    fetched: &mut u64,
) -> bool {
    let token = match replica.client.get(kind, key).await {
        Ok(Some(token)) => token,
        // Gone since it was listed: the next check sees the new state.
        Ok(None) => return true,
        Err(e) => {
            tracing::warn!(%key, cause = %e, "anti-entropy: could not fetch the primary's version");
            return false;
        }
    };
    let jwt = match replica.verify_served(kind, key, &token).await {
        Ok(jwt) => jwt,
        Err(e) => {
            tracing::error!(%key, cause = %e, "anti-entropy: the primary's version does not verify here; not stored");
            return false;
        }
    };
    let policy = if force {
        Policy::External
    } else {
        Policy::MirrorPrimary
    };
    let stored = replica.store.put_with(kind, key, &jwt, policy).await;
    match stored {
        Ok(_) => {
            *fetched += 1;
            replica.metrics.replica_applied("antientropy", 1);
            tracing::info!(kind = kind.as_str(), %key, "anti-entropy: took the primary's version");
            true
        }
        Err(e) => {
            tracing::error!(%key, cause = %e, "anti-entropy: could not store the primary's version");
            false
        }
    }
}

/// Takes the primary's deletion of account `key` (its request came with the listing).
async fn take_deletion(
    replica: &ReplicaHandle,
    key: &str,
    request: &str,
    fetched: &mut u64,
) -> bool {
    let tombstone = match replica.verify_delete(key, request) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(%key, cause = %e, "anti-entropy: the primary's deletion does not verify here; not applied");
            return false;
        }
    };
    match replica
        .store
        .put_entries(vec![Arc::new(tombstone)], Vec::new(), Policy::MirrorPrimary)
        .await
    {
        Ok(_) => {
            *fetched += 1;
            tracing::info!(%key, "anti-entropy: took the primary's deletion");
            true
        }
        Err(e) => {
            tracing::error!(%key, cause = %e, "anti-entropy: could not store the primary's deletion");
            false
        }
    }
}

/// Sends a version held here, newer than the primary's or unknown to it, back to the primary.
/// Returns whether the key is settled. What a refusal means:
/// - 409: the primary holds a version it ranks at least as high (it changed since the
///   listing, or a same-second tie): its version is taken under the usual mirror rules.
/// - 400 for an account: the primary finds the token invalid (say, expired since, or signed
///   by a key the operator dropped). The primary decides what is served: its version replaces
///   this one even though it is older.
/// - Anything else (a busy or fenced primary, an error, deletion turned off there, a 400 for a
///   deletion): nothing is decided. This version stays and is offered again at the next
///   check. A newer version may be the only copy of an acknowledged write (a primary restored
///   from an old backup, a failover without `syncreplicas`), and a deletion is undone only by
///   an account issued after it (DESIGN §7), never by an older one the primary still has.
async fn send_back(replica: &ReplicaHandle, mine: &Entry, outcome: &mut Outcome) -> bool {
    let write = if mine.deleted {
        Write::Delete
    } else {
        Write::Put(mine.kind)
    };
    let answer = match replica.client.send(write, &mine.key, &mine.jwt).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(key = %mine.key, cause = %e, "anti-entropy: could not send a version back to the primary");
            return false;
        }
    };
    match answer.status {
        200 => {
            outcome.sent_back += 1;
            tracing::info!(kind = mine.kind.as_str(), key = %mine.key,
                "anti-entropy: sent a newer version held here back to the primary");
            true
        }
        409 => {
            tracing::warn!(kind = mine.kind.as_str(), key = %mine.key, reason = %answer.body.trim(),
                "anti-entropy: the primary holds a version it ranks higher; taking it");
            fetch(replica, mine.kind, &mine.key, false, &mut outcome.fetched).await
        }
        400 if !mine.deleted => {
            tracing::warn!(kind = mine.kind.as_str(), key = %mine.key, reason = %answer.body.trim(),
                "anti-entropy: the primary finds the version held here invalid; taking the primary's");
            fetch(replica, mine.kind, &mine.key, true, &mut outcome.fetched).await
        }
        status => {
            tracing::warn!(kind = mine.kind.as_str(), key = %mine.key, status, reason = %answer.body.trim(),
                "anti-entropy: the primary did not take the version held here; it stays, and is offered again at the next check");
            false
        }
    }
}
