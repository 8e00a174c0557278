//! The replica's sync task: initial sync, then a long-poll loop on the primary's change feed.
//!
//! The cursor (primary lineage + last applied sequence) is written in the same store commit as
//! the tokens of the page it covers, so a crash at any point resumes exactly where the durable
//! state is: never skipping a change, and re-applying one is a no-op (same `jti`).

use super::client::SyncError;
use super::{ReplicaHandle, StatusCell, META_PRIMARY_CURSOR, META_PRIMARY_LINEAGE, META_SYNCED};
use crate::config::Settings;
use crate::jwt::trust::Operator;
use crate::state::Trust;
use crate::store::{Entry, Kind, Policy};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// Tuning of the loop.
#[derive(Debug, Clone)]
pub struct Options {
    batch: usize,
    /// Most tokens taken from a Go primary's pack (`maxreplicationpack`; 0 disables).
    max_pack: i64,
    poll_wait: Duration,
    max_backoff: Duration,
}

impl From<&Settings> for Options {
    fn from(s: &Settings) -> Options {
        Options {
            batch: s.replication.batch,
            max_pack: s.maxreplicationpack,
            poll_wait: s.replication.pollwait.0,
            max_backoff: s.replication.maxbackoff.0,
        }
    }
}

/// A feed page whose tokens have been verified, ready to commit.
struct VerifiedPage {
    /// `X-Store-Id` of the answer.
    store_id: String,
    /// `X-Head-Seq` of the answer.
    head: u64,
    /// How many changes the page had (verified or not).
    count: usize,
    /// The sequence of its last change.
    last: Option<u64>,
    /// The tokens that verified.
    tokens: Vec<Arc<Entry>>,
}

/// Fetches one page of the feed and verifies its tokens.
async fn fetch_verified(
    replica: ReplicaHandle,
    since: u64,
    limit: usize,
    wait: Duration,
) -> Result<VerifiedPage, SyncError> {
    let page = replica.client.changes(since, limit, wait).await?;
    let count = page.changes.len();
    let last = page.changes.last().map(|c| c.0);
    let tokens = verify_page(&replica, page.changes).await;
    Ok(VerifiedPage {
        store_id: page.store_id,
        head: page.head,
        count,
        last,
        tokens,
    })
}

/// The next page, requested while the current one is committed. During an initial sync or a
/// catch-up, fetching (the primary renders, the network carries), verifying (both cores) and
/// committing (the store's writer thread) then overlap instead of taking turns.
struct Prefetch {
    since: u64,
    task: AbortOnDropHandle<Result<VerifiedPage, SyncError>>,
}

/// Runs until `cancel` fires.
pub(super) async fn run(
    replica: ReplicaHandle,
    opts: Options,
    trust_tx: Arc<watch::Sender<Arc<Trust>>>,
    status: watch::Sender<StatusCell>,
    cancel: CancellationToken,
) {
    let store = replica.store.clone();
    let client = replica.client.clone();
    let mut lineage: Option<String> = store
        .meta(META_PRIMARY_LINEAGE)
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut cursor = store
        .meta(META_PRIMARY_CURSOR)
        .map_or(0, |b| super::decode_u64(&b));
    let mut synced = store.meta(META_SYNCED).is_some();
    let mut backoff = Duration::from_millis(100);
    let mut ahead: Option<Prefetch> = None;

    while !cancel.is_cancelled() {
        if trust_tx.borrow().operator.is_none() && !fetch_operator(&replica, &trust_tx).await {
            status.send_modify(|s| s.reachable = false);
            if sleep_or_cancel(&cancel, backoff).await {
                break;
            }
            backoff = (backoff * 2).min(opts.max_backoff);
            continue;
        }
        // Long-poll only once caught up; during the initial sync, pages come back to back.
        let wait = if synced {
            opts.poll_wait
        } else {
            Duration::ZERO
        };
        let since = cursor;
        let fetch = async {
            match ahead.take() {
                Some(p) if p.since == since => match p.task.await {
                    Ok(page) => page,
                    Err(e) => Err(SyncError::Protocol {
                        url: client.current().to_string(),
                        message: format!("prefetching the next page failed: {e}"),
                    }),
                },
                _ => fetch_verified(replica.clone(), since, opts.batch, wait).await,
            }
        };
        let page = tokio::select! {
            _ = cancel.cancelled() => break,
            page = fetch => page,
        };
        let page = match page {
            Ok(page) => page,
            Err(SyncError::NoFeed { url }) => {
                // A Go primary: no feed, so copy its pack now and again every poll interval
                // (the Go replicas refreshed lazily; this bounds staleness instead).
                let wait = if sync_from_pack(&replica, &opts, &status).await {
                    synced = true;
                    opts.poll_wait
                } else {
                    tracing::warn!(primary = %url, "cannot replicate from this primary (no change feed, pack disabled or failing)");
                    backoff
                };
                if sleep_or_cancel(&cancel, wait).await {
                    break;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(cause = %e, retry_in = ?backoff, "replication request failed");
                status.send_modify(|s| {
                    s.reachable = false;
                    s.primary = client.current().to_string();
                });
                if matches!(e, SyncError::Unreachable { .. }) {
                    client.rotate();
                }
                if sleep_or_cancel(&cancel, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(opts.max_backoff);
                continue;
            }
        };
        backoff = Duration::from_millis(100);

        if lineage.as_deref() != Some(page.store_id.as_str()) {
            if lineage.is_some() {
                tracing::warn!(primary = %client.current(), old = ?lineage, new = %page.store_id,
                    "primary store lineage changed (new or promoted primary): full resync, newer wins");
            }
            lineage = Some(page.store_id.clone());
            if since != 0 {
                // This page is relative to another store's sequence numbers; start over.
                cursor = 0;
                synced = false;
                continue;
            }
        }

        let new_cursor = page.last.unwrap_or(cursor);
        let caught_up = page.count < opts.batch && new_cursor >= page.head;
        if page.count == opts.batch {
            // A full page: more are waiting. Ask for the next one now.
            ahead = Some(Prefetch {
                since: new_cursor,
                task: AbortOnDropHandle::new(tokio::spawn(fetch_verified(
                    replica.clone(),
                    new_cursor,
                    opts.batch,
                    Duration::ZERO,
                ))),
            });
        }
        let mut meta = Vec::new();
        if new_cursor != cursor || since == 0 {
            meta.push((
                META_PRIMARY_LINEAGE.to_string(),
                page.store_id.clone().into_bytes(),
            ));
            meta.push((
                META_PRIMARY_CURSOR.to_string(),
                new_cursor.to_be_bytes().to_vec(),
            ));
        }
        if caught_up && !synced {
            meta.push((META_SYNCED.to_string(), b"1".to_vec()));
        }
        let applied = page.tokens.len() as u64;
        if let Err(e) = commit_in_chunks(&store, page.tokens, meta).await {
            tracing::error!(cause = %e, "could not store replicated tokens; retrying");
            ahead = None;
            if sleep_or_cancel(&cancel, backoff).await {
                break;
            }
            continue;
        }
        replica.metrics.replica_applied("feed", applied);
        cursor = new_cursor;
        if caught_up && !synced {
            tracing::info!(primary = %client.current(), head = page.head, "initial sync complete");
            crate::memory::release_free_memory();
            synced = true;
        }
        status.send_modify(|s| {
            s.primary = client.current().to_string();
            s.reachable = true;
            s.synced = synced;
            s.applied_seq = cursor;
            s.primary_head = page.head.max(cursor);
            if caught_up {
                s.in_sync_at = Instant::now();
            }
        });
    }
}

/// Verifies a page's tokens (in parallel: signature checks dominate a large initial sync) and
/// returns those that pass. A token that fails is logged and skipped, never stored.
async fn verify_page(
    replica: &ReplicaHandle,
    changes: Vec<(u64, Kind, String, String)>,
) -> Vec<Arc<Entry>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let chunk = changes.len().div_ceil(workers).max(1);
    let mut jobs = Vec::new();
    let mut rest = changes;
    while !rest.is_empty() {
        let tail = rest.split_off(chunk.min(rest.len()));
        let part = std::mem::replace(&mut rest, tail);
        let r = replica.clone();
        jobs.push(tokio::task::spawn_blocking(move || r.verify_many(part)));
    }
    let mut out = Vec::new();
    for job in jobs {
        if let Ok(part) = job.await {
            out.extend(part);
        }
    }
    out
}

/// Tokens per store commit while applying a feed page. Pages are fetched large (fewer round
/// trips) but committed in slices: one huge sled batch holds far more memory than the page.
const COMMIT_CHUNK: usize = 1000;

/// Stores a verified page in slices, with the cursor `meta` in the last one: a crash between
/// slices leaves the cursor where it was, and re-applying the stored slices is a no-op.
async fn commit_in_chunks(
    store: &crate::store::Store,
    mut applied: Vec<Arc<Entry>>,
    meta: Vec<(String, Vec<u8>)>,
) -> Result<(), crate::store::StoreError> {
    while applied.len() > COMMIT_CHUNK {
        let rest = applied.split_off(COMMIT_CHUNK);
        store
            .put_entries(
                std::mem::replace(&mut applied, rest),
                Vec::new(),
                Policy::MirrorPrimary,
            )
            .await?;
    }
    store
        .put_entries(applied, meta, Policy::MirrorPrimary)
        .await
        .map(drop)
}

/// Copies a Go primary's pack (accounts and activations, newer-wins). Returns whether it worked.
async fn sync_from_pack(
    replica: &ReplicaHandle,
    opts: &Options,
    status: &watch::Sender<StatusCell>,
) -> bool {
    if opts.max_pack == 0 {
        return false;
    }
    let lines = match replica.client.pack(opts.max_pack).await {
        Ok(lines) => lines,
        Err(e) => {
            tracing::warn!(cause = %e, "pack import from the primary failed");
            return false;
        }
    };
    let changes = lines
        .into_iter()
        .map(|(key, jwt)| {
            let kind = if crate::jwt::is_account_key(&key) {
                Kind::Account
            } else {
                Kind::Activation
            };
            (0, kind, key, jwt)
        })
        .collect();
    let applied = verify_page(replica, changes).await;
    let count = applied.len() as u64;
    let meta = vec![(META_SYNCED.to_string(), b"1".to_vec())];
    if let Err(e) = commit_in_chunks(&replica.store, applied, meta).await {
        tracing::error!(cause = %e, "could not store the primary's pack");
        return false;
    }
    replica.metrics.replica_applied("feed", count);
    status.send_modify(|s| {
        s.primary = replica.client.current().to_string();
        s.reachable = true;
        s.synced = true;
        s.in_sync_at = Instant::now();
    });
    true
}

/// Fetches the primary's operator JWT when none is configured locally. Returns whether an
/// operator is now installed.
async fn fetch_operator(replica: &ReplicaHandle, trust_tx: &watch::Sender<Arc<Trust>>) -> bool {
    match replica.client.operator().await {
        Ok(Some(token)) => match Operator::from_jwt(&token) {
            Ok(op) => {
                tracing::info!(operator = %op.public_key(), "using the primary's operator JWT as trust anchor");
                trust_tx.send_modify(|t| {
                    *t = Arc::new(Trust {
                        operator: Some(op),
                        system_account: t.system_account.clone(),
                    })
                });
                true
            }
            Err(e) => {
                tracing::error!(cause = %e, "the primary's operator JWT is invalid");
                false
            }
        },
        Ok(None) => {
            tracing::error!(
                "neither this replica nor its primary has an operator JWT; cannot verify tokens"
            );
            false
        }
        Err(e) => {
            tracing::warn!(cause = %e, "cannot fetch the operator JWT from the primary");
            false
        }
    }
}

/// Sleeps `d`; returns true when cancelled first.
async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
