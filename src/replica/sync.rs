//! The replica's sync task: initial sync, then a long-poll loop on the primary's change feed.
//!
//! The cursor (primary lineage + last applied sequence) is written in the same store commit as
//! the tokens of the page it covers, so a crash at any point resumes exactly where the durable
//! state is: never skipping a change, and re-applying one is a no-op (the same bytes).

use super::client::{Ack, PrimaryClient, PrimaryError};
use super::{
    antientropy, PageCheck, ReplicaHandle, Stall, StatusCell, META_PRIMARY_CURSOR,
    META_PRIMARY_LINEAGE, META_SYNCED,
};
use crate::config::Settings;
use crate::link::{LinkState, Note};
use crate::store::{Entry, Kind, Policy, DIGEST_BUCKETS};
use crate::trust::{Learned, META_OPERATOR};
use crate::wire::feed::Change;
use std::collections::HashSet;
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
    /// How often the digests are compared while caught up.
    antientropy: Duration,
}

impl From<&Settings> for Options {
    fn from(s: &Settings) -> Options {
        Options {
            batch: s.replication.batch,
            max_pack: s.maxreplicationpack,
            poll_wait: s.replication.pollwait.0,
            max_backoff: s.replication.maxbackoff.0,
            antientropy: s.replication.antientropy.0,
        }
    }
}

/// A feed page whose tokens have been verified, ready to commit.
struct VerifiedPage {
    /// `X-Store-Id` of the answer.
    store_id: String,
    /// `X-Head-Seq` of the answer.
    head: u64,
    /// `X-Compacted-Seq` of the answer.
    compacted: u64,
    /// `X-Complete-To` of the answer.
    complete_to: Option<u64>,
    /// How many changes the page had (verified or not).
    count: usize,
    /// The sequence of its last change.
    last: Option<u64>,
    /// The tokens that verified, up to `stall`.
    tokens: Vec<Arc<Entry>>,
    /// The keys of changes up to `stall` whose token this store already holds (not verified
    /// again, nothing to store).
    held: Vec<(Kind, String)>,
    /// The first change that did not verify, if one did not.
    stall: Option<Stall>,
    /// `X-Cluster-Term` of the answer (cluster mode).
    term: Option<u64>,
}

/// Fetches one page of the feed and verifies its tokens.
async fn fetch_verified(
    replica: ReplicaHandle,
    since: u64,
    limit: usize,
    wait: Duration,
    ack: Option<Ack>,
) -> Result<VerifiedPage, PrimaryError> {
    let page = replica
        .client
        .changes(since, limit, wait, ack.as_ref())
        .await?;
    let count = page.changes.len();
    let last = page.changes.last().map(|c| c.seq);
    let PageCheck {
        entries: tokens,
        held,
        stall,
    } = verify_page(&replica, page.changes).await;
    Ok(VerifiedPage {
        store_id: page.store_id,
        head: page.head,
        compacted: page.compacted,
        complete_to: page.complete_to,
        count,
        last,
        tokens,
        held,
        stall,
        term: page.term,
    })
}

/// The next page, requested while the current one is committed. During an initial sync or a
/// catch-up, fetching (the primary renders, the network carries), verifying (both cores) and
/// committing (the store's writer thread) then overlap instead of taking turns.
struct Prefetch {
    since: u64,
    task: AbortOnDropHandle<Result<VerifiedPage, PrimaryError>>,
}

/// The state of the link to the primary, for honest reachability and for logs that say when
/// it changes (once, with the cause; a reminder now and then while it stays down), not on
/// every retry. The rate limiting is [`LinkState`]'s, shared with the NATS link.
struct Link {
    state: LinkState,
    /// The last request was answered.
    up: bool,
    /// A "primary unreachable" line was logged since the link was last up.
    said_down: bool,
}

/// How often a primary that stays unreachable is logged again.
const REMINDER_EVERY: Duration = Duration::from_secs(60);

impl Link {
    fn new() -> Link {
        Link {
            state: LinkState::new(REMINDER_EVERY),
            up: false,
            said_down: false,
        }
    }

    /// Marks the link down with `e` and, when the primary could not be asked (no answer, or a
    /// proxy's 5xx), moves `client` on to the next configured primary for the next attempt.
    fn down(
        &mut self,
        e: &PrimaryError,
        status: &watch::Sender<StatusCell>,
        client: &PrimaryClient,
    ) {
        let primary = client.current();
        match self.state.failed(&e.to_string(), Instant::now()) {
            Some(Note::Down) => {
                tracing::warn!(%primary, cause = %e, "primary unreachable; serving what this replica has and retrying");
                self.said_down = true;
            }
            Some(Note::StillDown { for_ }) => {
                tracing::warn!(%primary, cause = %e, down_for = ?for_, "primary still unreachable; serving what this replica has");
            }
            _ => tracing::debug!(%primary, cause = %e, "primary still unreachable"),
        }
        self.up = false;
        status.send_modify(|s| {
            s.reachable = false;
            s.primary = primary;
            s.link_error = Some(e.to_string());
        });
        if matches!(e, PrimaryError::Unreachable { .. }) {
            client.rotate();
        }
    }

    /// Marks the link up; returns whether it was not up before.
    fn up(&mut self, status: &watch::Sender<StatusCell>, primary: &str) -> bool {
        let was_down = !self.up;
        if was_down {
            let note = self.state.connected(Instant::now());
            if std::mem::take(&mut self.said_down) {
                match note {
                    Note::Back { after } => {
                        tracing::info!(%primary, down_for = ?after, "primary reachable again")
                    }
                    _ => tracing::info!(%primary, "primary reachable again"),
                }
            }
        }
        self.up = true;
        status.send_modify(|s| {
            s.reachable = true;
            s.primary = primary.to_string();
            s.link_error = None;
        });
        was_down
    }
}

/// Runs until `cancel` fires.
pub(super) async fn run(
    replica: ReplicaHandle,
    opts: Options,
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
    let mut link = Link::new();
    // Long-poll only after an answer that found this replica caught up. Otherwise (first
    // request, catching up, after a failure) ask with no wait: the answer comes at once, so a
    // primary that is back is known to be back at once, not after a whole long poll.
    let mut long_poll = false;
    let mut stall: Option<Stall> = None;
    // Compare digests at the first caught-up answer, after reconnects and resyncs, and
    // every `antientropy` in between.
    let mut next_check = Instant::now();
    // During a rebuild (see below): every key the primary's feed has had since sequence 0.
    let mut rebuild: Option<HashSet<(Kind, Arc<str>)>> = None;
    pin_configured_operator(&replica).await;
    let mut cluster_view = replica.cluster.as_ref().map(|c| c.subscribe());

    while !cancel.is_cancelled() {
        if let (Some(cluster), Some(view)) = (replica.cluster.clone(), cluster_view.as_mut()) {
            // Cluster mode: follow the leader the lease names; while this node leads, or no
            // leader is known, there is nobody to follow.
            let leader = cluster.leader_to_follow();
            let url = leader.as_ref().map(|l| l.url.as_str());
            if url.map(crate::link::display_url).unwrap_or_default() != client.current() {
                client.set_primary(url);
                ahead = None;
                long_poll = false;
                backoff = Duration::from_millis(100);
                next_check = Instant::now();
            }
            if leader.is_none() {
                status.send_modify(|s| {
                    s.reachable = false;
                    s.primary = String::new();
                    s.link_error = Some(format!(
                        "no leader to follow (this node is {})",
                        cluster.role().as_str()
                    ));
                });
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    changed = view.changed() => if changed.is_err() { break },
                }
                continue;
            }
        }
        if replica.anchor.current().operator.is_none() {
            if let Err(e) = refresh_operator(&replica).await {
                link.down(&e, &status, &client);
                if sleep_or_cancel(&cancel, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(opts.max_backoff);
                continue;
            }
        }
        // A long poll ends by the next digest check, which runs on a caught-up answer.
        let wait = if long_poll {
            let until_check = next_check.saturating_duration_since(Instant::now());
            opts.poll_wait
                .min(until_check.max(Duration::from_millis(100)))
        } else {
            Duration::ZERO
        };
        let since = cursor;
        // A cluster follower's request acknowledges `since` to the leader (semi-synchronous
        // writes): everything before it is committed here.
        let ack = replica.cluster.as_ref().map(|c| Ack {
            node: c.node().to_string(),
            lineage: lineage.clone().unwrap_or_default(),
        });
        let following = client.current();
        let fetch = async {
            match ahead.take() {
                Some(p) if p.since == since => match p.task.await {
                    Ok(page) => page,
                    Err(e) => Err(PrimaryError::Protocol {
                        url: client.current().to_string(),
                        message: format!("prefetching the next page failed: {e}"),
                    }),
                },
                _ => fetch_verified(replica.clone(), since, opts.batch, wait, ack).await,
            }
        };
        let page = tokio::select! {
            _ = cancel.cancelled() => break,
            // A new leader: drop the request to the old one (a long poll could hold it).
            () = leader_changes(cluster_view.as_mut(), &following) => {
                ahead = None;
                continue;
            }
            page = fetch => page,
        };
        let page = match page {
            Ok(page) => page,
            Err(PrimaryError::Busy { url, retry_after }) => {
                // Reachable, only full: not a failure of the link.
                link.up(&status, &url);
                tracing::debug!(primary = %url, ?retry_after, "the primary is busy; asking again later");
                ahead = None;
                long_poll = false;
                if sleep_or_cancel(&cancel, retry_after.min(Duration::from_secs(30))).await {
                    break;
                }
                continue;
            }
            Err(PrimaryError::NoFeed { url }) => {
                if link.up(&status, &url) {
                    next_check = Instant::now();
                }
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
                link.down(&e, &status, &client);
                long_poll = false;
                ahead = None;
                if sleep_or_cancel(&cancel, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(opts.max_backoff);
                continue;
            }
        };
        if link.up(&status, &client.current()) {
            next_check = Instant::now();
        }

        if let Some(cluster) = &replica.cluster {
            // Fencing: a feed from a node that is not (or no longer) the leader of the newest
            // term this node has seen is not applied; the lease says whom to follow next.
            let current = page.term.is_some_and(|t| cluster.current_term(t));
            if !current {
                tracing::warn!(node = %following, term = ?page.term, newest = cluster.term(),
                    "refused a change feed from an older cluster term; following the lease");
                ahead = None;
                long_poll = false;
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    () = leader_changes(cluster_view.as_mut(), &following) => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(opts.max_backoff);
                continue;
            }
        }

        if lineage.as_deref() != Some(page.store_id.as_str()) {
            if lineage.is_some() {
                tracing::warn!(primary = %client.current(), old = ?lineage, new = %page.store_id,
                    "primary store lineage changed (new or promoted primary): full resync, newer wins");
            }
            lineage = Some(page.store_id.clone());
            if since != 0 {
                // This page is relative to another store's sequence numbers; start over. What
                // this replica already holds byte for byte is neither verified nor stored
                // again (`verify_many`): after a failover that is nearly everything.
                replica.metrics.replica_resync("new_lineage");
                cursor = 0;
                long_poll = false;
                ahead = None;
                next_check = Instant::now();
                continue;
            }
        }
        if page.head < since {
            // Same lineage, but the primary's head is behind what this replica already
            // applied: it was restored from an older copy of its data. Its new writes would
            // get sequence numbers this replica believes it has; start over from 0 (newer
            // wins, so nothing newer held here is lost; anti-entropy sends it back).
            tracing::warn!(primary = %client.current(), head = page.head, cursor = since,
                "the primary's head is below this replica's cursor (restored from a backup?): full resync, newer wins");
            replica.metrics.replica_resync("restored_primary");
            cursor = 0;
            long_poll = false;
            ahead = None;
            next_check = Instant::now();
            continue;
        }

        if since > 0 && since < page.compacted {
            // The primary dropped tombstones older than its `tombstonettl` up to a sequence
            // this replica has not reached: it may hold accounts deleted since. Resync from
            // 0, then drop whatever the primary no longer has.
            tracing::warn!(primary = %client.current(), cursor = since, compacted = page.compacted,
                "this replica was away longer than the primary keeps deletions: rebuilding from the primary");
            replica.metrics.replica_resync("compacted");
            rebuild = Some(HashSet::new());
            cursor = 0;
            long_poll = false;
            ahead = None;
            next_check = Instant::now();
            continue;
        }

        // A change that does not verify: never skip it. Apply what comes before it, learn the
        // primary's operator JWT again (a new signing key is the usual cause), and retry.
        let (new_cursor, caught_up) = match &page.stall {
            None => {
                // Everything up to `complete_to` is in the page: past its last entry there
                // were only removals, which a cursor may skip.
                let last = page
                    .last
                    .unwrap_or(cursor)
                    .max(page.complete_to.unwrap_or(0));
                (last, page.count < opts.batch && last >= page.head)
            }
            Some(s) => (s.seq.saturating_sub(1).max(cursor), false),
        };
        if page.stall.is_none() && page.count == opts.batch {
            // A full page: more are waiting. Ask for the next one now.
            ahead = Some(Prefetch {
                since: new_cursor,
                // No acknowledgement: this page is not committed yet when the request leaves.
                task: AbortOnDropHandle::new(tokio::spawn(fetch_verified(
                    replica.clone(),
                    new_cursor,
                    opts.batch,
                    Duration::ZERO,
                    None,
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
        if let Some(seen) = rebuild.as_mut() {
            seen.extend(page.tokens.iter().map(|e| (e.kind, e.key.clone())));
            seen.extend(
                page.held
                    .iter()
                    .map(|(kind, key)| (*kind, Arc::from(key.as_str()))),
            );
        }
        if let Err(e) = commit_in_chunks(&store, page.tokens, meta).await {
            tracing::error!(cause = %e, "could not store replicated tokens; retrying");
            ahead = None;
            if sleep_or_cancel(&cancel, backoff).await {
                break;
            }
            continue;
        }
        replica.metrics.replica_applied("feed", applied);
        replica
            .metrics
            .replica_feed_unchanged(page.held.len() as u64);
        cursor = new_cursor;
        if let (true, Some(seen)) = (caught_up, rebuild.as_ref()) {
            let gone: Vec<(Kind, String)> = store
                .in_buckets(&[true; DIGEST_BUCKETS])
                .iter()
                .filter(|e| !seen.contains(&(e.kind, e.key.clone())))
                .map(|e| (e.kind, e.key.to_string()))
                .collect();
            match store.drop_keys(gone.clone()).await {
                Ok(()) => {
                    tracing::info!(
                        dropped = gone.len(),
                        "rebuild complete: dropped what the primary no longer has"
                    );
                    rebuild = None;
                }
                Err(e) => tracing::error!(cause = %e, "rebuild: could not drop keys; retrying"),
            }
        }
        if caught_up && !synced {
            tracing::info!(primary = %client.current(), head = page.head, "initial sync complete");
            crate::heap::trim();
            synced = true;
        }
        long_poll = caught_up;

        if let Some(s) = page.stall {
            ahead = None;
            // The operator may have changed since this replica learned it.
            let learned = refresh_operator(&replica).await;
            let retry_now = matches!(learned, Ok(Learned::Updated | Learned::Pinned));
            if stall.as_ref() != Some(&s) && !retry_now {
                tracing::error!(primary = %client.current(), seq = s.seq, key = %s.key, cause = %s.reason,
                    "replication stalled: the primary's change does not verify here; serving what this replica has, retrying");
            }
            if !retry_now {
                stall = Some(s.clone());
                replica.metrics.replica_stalled(Some(s.seq));
            }
            status.send_modify(|st| {
                st.synced = synced;
                st.applied_seq = cursor;
                st.primary_head = page.head;
                st.stall = stall.clone();
            });
            if !retry_now {
                if sleep_or_cancel(&cancel, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(opts.max_backoff);
            }
            continue;
        }
        backoff = Duration::from_millis(100);
        if let Some(old) = stall.take() {
            tracing::info!(primary = %client.current(), seq = old.seq, "replication resumed: the stalled change verifies now");
            replica.metrics.replica_stalled(None);
        }
        status.send_modify(|s| {
            s.synced = synced;
            s.applied_seq = cursor;
            s.primary_head = page.head;
            s.stall = None;
            s.partial = false;
            if caught_up {
                s.in_sync_at = Instant::now();
            }
        });
        if caught_up && Instant::now() >= next_check {
            let lineage = lineage.clone().unwrap_or_default();
            // Not comparable now, or failed: again soon, but never in a tight loop.
            let soon = Instant::now() + opts.antientropy.min(Duration::from_secs(5));
            next_check = match antientropy::check(&replica, &lineage, cursor).await {
                Ok(Some(o)) if o.matched => Instant::now() + opts.antientropy,
                Ok(Some(o)) => {
                    tracing::info!(primary = %client.current(), fetched = o.fetched, sent_back = o.sent_back, failed = o.failed,
                        "anti-entropy: this store differed from the primary's; repaired what differed");
                    // Versions sent back moved the primary's head: confirm convergence soon.
                    soon
                }
                Ok(None) => soon,
                Err(e) => {
                    tracing::warn!(primary = %client.current(), cause = %e, "anti-entropy check failed");
                    soon
                }
            };
        }
    }
}

/// Verifies a page's tokens (in parallel: signature checks dominate a large initial sync).
/// Returns those before the first change that does not verify, and that change.
async fn verify_page(replica: &ReplicaHandle, changes: Vec<Change>) -> PageCheck {
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
    let mut out = PageCheck {
        entries: Vec::new(),
        held: Vec::new(),
        stall: None,
    };
    for job in jobs {
        let part = match job.await {
            Ok(done) => done,
            // A verification task panicked: nothing after what verified so far is applied, and
            // the cursor stays where it is (seq 0 never moves it).
            Err(e) => PageCheck {
                entries: Vec::new(),
                held: Vec::new(),
                stall: Some(Stall {
                    seq: 0,
                    key: String::new(),
                    reason: format!("verification task failed: {e}"),
                }),
            },
        };
        out.entries.extend(part.entries);
        out.held.extend(part.held);
        if part.stall.is_some() {
            out.stall = part.stall;
            return out;
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
        // Not flushed: the last slice's flush writes these too (see `put_entries_unflushed`).
        store
            .put_entries_unflushed(std::mem::replace(&mut applied, rest), Policy::MirrorPrimary)
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
    // A pack has no sequence to stop at: each token that verifies is stored, each one that
    // does not is reported (and tried again with the next refresh). A pack cut at `max`, or
    // with lines that could not be used, may lack what the primary has: until a whole one
    // comes, this replica is not caught up, so its read misses go to the primary rather than
    // being answered 404 here.
    let full = opts.max_pack > 0 && i64::try_from(lines.len()).is_ok_and(|n| n >= opts.max_pack);
    if full {
        tracing::warn!(max = opts.max_pack, "the primary's pack filled maxreplicationpack, so it may be cut short: raise it to copy every token; read misses are asked of the primary meanwhile");
    }
    let mut unusable = 0;
    let mut applied = Vec::new();
    let mut unchanged = 0;
    for line in lines {
        let (key, jwt) = match line {
            Ok(line) => line,
            Err(malformed) => {
                tracing::error!(%malformed, "a line of the primary's pack is malformed; skipped");
                unusable += 1;
                continue;
            }
        };
        let kind = if crate::jwt::is_account_key(&key) {
            Kind::Account
        } else {
            Kind::Activation
        };
        // Held byte for byte: verified when stored, and storing it again changes nothing.
        // Every refresh of the pack is then a comparison of what changed, not a check of all.
        if replica.store.holds(kind, &key, jwt.as_bytes()) {
            unchanged += 1;
            continue;
        }
        match replica.verify(kind, &key, &jwt) {
            Ok(jwt) => applied.push(Arc::new(Entry::new(kind, &key, &jwt))),
            Err(e) => {
                tracing::error!(%key, cause = %e, "a token of the primary's pack does not verify here; not stored");
                unusable += 1;
            }
        }
    }
    let count = applied.len() as u64;
    let meta = vec![(META_SYNCED.to_string(), b"1".to_vec())];
    if let Err(e) = commit_in_chunks(&replica.store, applied, meta).await {
        tracing::error!(cause = %e, "could not store the primary's pack");
        return false;
    }
    replica.metrics.replica_applied("feed", count);
    replica.metrics.replica_feed_unchanged(unchanged);
    status.send_modify(|s| {
        s.primary = replica.client.current().to_string();
        s.reachable = true;
        s.synced = true;
        s.partial = full || unusable > 0;
        if !s.partial {
            s.in_sync_at = Instant::now();
        }
    });
    true
}

/// Asks the primary for its operator JWT and offers it to the trust anchor: taken on first
/// use (pinned), or when it is a newer JWT of the trusted operator (a new signing key).
///
/// # Errors
/// A [`PrimaryError`] to report as the link's state: the primary cannot be asked, has no
/// operator, or offers one this replica does not trust.
pub(super) async fn refresh_operator(replica: &ReplicaHandle) -> Result<Learned, PrimaryError> {
    let url = replica.client.current().to_string();
    let token = match replica.client.operator().await? {
        Some(token) => token,
        None => {
            return Err(PrimaryError::Protocol {
                url,
                message: "the primary has no operator JWT, and neither has this replica".into(),
            })
        }
    };
    match replica.anchor.learn(&token).await {
        Ok(Learned::Pinned) => {
            tracing::warn!(primary = %url, operator = ?replica.anchor.identity(),
                "trusting the primary's operator on first use (pinned in this replica's store; configure --operator to pin it explicitly)");
            Ok(Learned::Pinned)
        }
        Ok(Learned::Updated) => {
            tracing::info!(primary = %url, operator = ?replica.anchor.identity(),
                "took a newer operator JWT from the primary");
            Ok(Learned::Updated)
        }
        Ok(Learned::Unchanged) => Ok(Learned::Unchanged),
        Err(e) => {
            tracing::error!(primary = %url, cause = %e, "refused the primary's operator JWT");
            replica.metrics.rejection("untrusted_operator");
            Err(PrimaryError::Protocol {
                url,
                message: format!("refused the primary's operator JWT: {e}"),
            })
        }
    }
}

/// A replica with `--operator` records that operator in its store, so its identity key stays
/// pinned if it is later started without the file.
async fn pin_configured_operator(replica: &ReplicaHandle) {
    if replica.store.meta(META_OPERATOR).is_some() {
        return;
    }
    let trust = replica.anchor.current();
    let Some(op) = &trust.operator else {
        return;
    };
    if let Err(e) = replica.anchor.persist(op.jwt().raw.as_str()).await {
        tracing::error!(cause = %e, "could not record the trusted operator in the store");
    }
}

/// Resolves when the cluster leader to follow is no longer `url` (never without a cluster).
async fn leader_changes(view: Option<&mut watch::Receiver<crate::cluster::View>>, url: &str) {
    let Some(view) = view else {
        return std::future::pending().await;
    };
    loop {
        let now = {
            let v = view.borrow_and_update();
            match (v.role, &v.leader) {
                (crate::cluster::Role::Follower, Some(l)) => crate::link::display_url(&l.url),
                _ => String::new(),
            }
        };
        if now != url || view.changed().await.is_err() {
            return;
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
