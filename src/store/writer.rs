//! The single writer: one OS thread that owns ordering and durability of every write.
//!
//! Why one thread: newer-wins and sequence numbering need a total order, and fsync is the
//! expensive part of a durable write. Draining everything that is queued into one backend commit
//! (group commit) gives 16 concurrent clients one fsync per batch instead of one each, while each
//! client still gets its answer only after its write is on disk.
//!
//! Why a thread and not a task: the backend's commit blocks on fsync; a dedicated thread keeps
//! that off the async runtime without a `spawn_blocking` round trip per batch.

use super::index::Index;
use super::{
    Backend, Commit, Entry, Kind, Policy, PutOutcome, Record, StoreError, WriteHealth, WriteRequest,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Largest number of requests folded into one commit; bounds commit latency under load.
const MAX_BATCH: usize = 512;

/// Least time between two attempts to bring a failing backend back. A reopen reads the whole
/// store, so while a disk stays full, writes in between fail at once with the last cause
/// instead of each paying for one.
const RECOVER_EVERY: Duration = Duration::from_secs(2);

/// What the writer thread receives.
pub(super) enum Msg {
    /// A write to commit.
    Write(WriteRequest),
    /// Commit what came before, release the backend, answer, and stop.
    Close(oneshot::Sender<()>),
}

/// Starts the writer thread; it stops on [`Msg::Close`] or when every sender (every `Store`
/// clone) is dropped, and drops the backend as it stops.
pub(super) fn spawn(
    mut backend: Box<dyn Backend>,
    index: Arc<RwLock<Index>>,
    head_tx: watch::Sender<u64>,
    health_tx: watch::Sender<WriteHealth>,
) -> mpsc::Sender<Msg> {
    let (tx, mut rx) = mpsc::channel::<Msg>(4096);
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let mut close = None;
            // When the last recovery attempt failed, and why.
            let mut last_attempt: Option<(Instant, String)> = None;
            while close.is_none() {
                let Some(first) = rx.blocking_recv() else {
                    break;
                };
                let mut batch = Vec::new();
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Write(req) => batch.push(req),
                        Msg::Close(done) => {
                            close = Some(done);
                            break;
                        }
                    }
                    if batch.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                if health_tx.borrow().failing {
                    let due = last_attempt
                        .as_ref()
                        .is_none_or(|(at, _)| at.elapsed() >= RECOVER_EVERY);
                    if due {
                        last_attempt = recover(backend.as_mut(), &index, &head_tx).err().map(|e| {
                            tracing::error!(cause = %e, "the store is still failing");
                            (Instant::now(), e.to_string())
                        });
                    }
                    if let Some((_, cause)) = &last_attempt {
                        health_tx.send_modify(|h| h.failures += 1);
                        for req in batch {
                            let _ = req.reply.send(Err(StoreError::Io(cause.clone())));
                        }
                        continue;
                    }
                }
                let ok = commit_batch(backend.as_ref(), &index, &head_tx, batch);
                health_tx.send_if_modified(|h| {
                    let was = h.failing;
                    h.failing = !ok;
                    h.failures += u64::from(!ok);
                    was != h.failing || !ok
                });
            }
            // Refuse what is still queued, then release the backend before answering, so the
            // closer can reopen the same directory as soon as it hears back.
            rx.close();
            drop(rx);
            drop(backend);
            if let Some(done) = close {
                let _ = done.send(());
            }
        })
        .expect("spawning the store writer thread");
    tx
}

/// Brings a backend back after a failed commit (see [`Backend::recover`]); when it hands back
/// what is on disk, that replaces the index.
fn recover(
    backend: &mut dyn Backend,
    index: &RwLock<Index>,
    head_tx: &watch::Sender<u64>,
) -> Result<(), StoreError> {
    let Some(loaded) = backend.recover()? else {
        return Ok(());
    };
    let fresh = Index::from_loaded(loaded)?;
    let head = fresh.head();
    *index.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    head_tx.send_if_modified(|h| {
        let moved = head > *h;
        *h = (*h).max(head);
        moved
    });
    tracing::info!(
        head,
        "the store was reopened after a failed write and takes writes again"
    );
    Ok(())
}

/// Keys staged earlier in a batch: the version written (`None`: removed).
type Staged = HashMap<(Kind, Arc<str>), Option<Arc<Entry>>>;

/// Sequences `entry` as the new version of its key (replacing `current`) in `commit`.
fn store(
    head: &mut u64,
    commit: &mut Commit,
    staged: &mut Staged,
    id: (Kind, Arc<str>),
    mut entry: Arc<Entry>,
    current: Option<Arc<Entry>>,
) -> PutOutcome {
    *head += 1;
    // The writer usually holds the only reference (the caller built the entry for this
    // write): sequence it in place. A copy would also take a second reference to the token's
    // buffer, which for a buffer made from a `Vec` allocates a shared header that stays.
    let new = match Arc::get_mut(&mut entry) {
        Some(e) => {
            e.seq = *head;
            entry
        }
        None => Arc::new(Entry {
            seq: *head,
            ..Entry::clone(&entry)
        }),
    };
    commit.records.push(Record {
        entry: new.clone(),
        old_seq: current.map(|c| c.seq),
    });
    staged.insert(id, Some(new.clone()));
    PutOutcome::Stored(new)
}

/// Commits one group of writes and answers each; returns whether the commit succeeded.
fn commit_batch(
    backend: &dyn Backend,
    index: &RwLock<Index>,
    head_tx: &watch::Sender<u64>,
    mut batch: Vec<WriteRequest>,
) -> bool {
    let mut head = index.read().unwrap_or_else(|p| p.into_inner()).head();
    // Writes earlier in this batch are not in the index yet; later writes of the same key must
    // be compared against them, not against the index.
    // `None` marks a key removed earlier in the batch.
    let mut staged: Staged = HashMap::new();
    let mut commit = Commit::default();
    let mut outcomes = Vec::with_capacity(batch.len());

    for req in &mut batch {
        // A replica's cursor advances even when its records are stale or unchanged.
        commit.meta.extend(req.meta.iter().cloned());
        let mut these = Vec::with_capacity(req.entries.len());
        for entry in std::mem::take(&mut req.entries) {
            let id = (entry.kind, entry.key.clone());
            let current = match staged.get(&id) {
                Some(staged) => staged.clone(),
                None => index
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .version(entry.kind, &entry.key),
            };
            these.push(match current {
                // Identity is the bytes: the `jti` repeats across same-second versions.
                Some(cur) if cur.same_token(&entry) => PutOutcome::Unchanged(cur),
                // The version rules (see `Policy`). Equal `iat` with other bytes: the node
                // that decides keeps the first version it accepted, which makes the outcome
                // independent of arrival order; a replica takes its primary's decision.
                Some(cur) if req.policy != Policy::External && entry.iat < cur.iat => {
                    PutOutcome::Stale { current: cur }
                }
                // A deletion and an account of the same second: the deletion wins (it was
                // issued for what existed then), wherever each arrived first.
                Some(cur)
                    if req.policy != Policy::External
                        && entry.iat == cur.iat
                        && cur.deleted != entry.deleted =>
                {
                    if entry.deleted {
                        store(&mut head, &mut commit, &mut staged, id, entry, Some(cur))
                    } else {
                        PutOutcome::Stale { current: cur }
                    }
                }
                Some(cur) if req.policy == Policy::NewerWins && entry.iat == cur.iat => {
                    PutOutcome::Conflict { current: cur }
                }
                current => store(&mut head, &mut commit, &mut staged, id, entry, current),
            });
        }
        // See `WriteRequest::removals`: compaction drops a key only while it is a tombstone
        // (an account issued since stays).
        for (kind, key) in &req.removals {
            let id: (Kind, Arc<str>) = (*kind, key.as_str().into());
            let current = match staged.get(&id) {
                Some(staged) => staged.clone(),
                None => index
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .version(*kind, key),
            };
            let Some(current) = current else { continue };
            if req.policy != Policy::External && !current.deleted {
                continue;
            }
            if current.seq > 0 {
                commit.removed.push(current.seq);
            }
            staged.insert(id, None);
        }
        outcomes.push(these);
    }
    commit.head = head;
    // See `Commit::durable`: a commit that stores no token and only moves a replica's cursor
    // (metadata under `replica.`) may wait for the next flush; anything else may not.
    // Nor may tokens written by requests that all said they need not wait (see
    // `Store::put_entries_unflushed`).
    let flush = batch.iter().any(|r| r.flush);
    commit.durable = (flush && (!commit.records.is_empty() || !commit.removed.is_empty()))
        || commit.meta.iter().any(|(k, _)| !k.starts_with("replica."));

    let result = if commit.records.is_empty() && commit.meta.is_empty() && commit.removed.is_empty()
    {
        Ok(())
    } else {
        backend.commit(&commit)
    };
    match result {
        Ok(()) => {
            {
                let mut idx = index.write().unwrap_or_else(|p| p.into_inner());
                let mut stored: Vec<&Arc<Entry>> = staged.values().flatten().collect();
                stored.sort_by_key(|e| e.seq);
                for e in stored {
                    idx.insert(e.clone());
                }
                for ((kind, key), _) in staged.iter().filter(|(_, e)| e.is_none()) {
                    idx.remove(*kind, key);
                }
                for (k, v) in commit.meta {
                    idx.set_meta(&k, v);
                }
                idx.set_head(head);
            }
            head_tx.send_replace(head);
            for (req, outcome) in batch.into_iter().zip(outcomes) {
                let _ = req.reply.send(Ok(outcome));
            }
            true
        }
        Err(e) => {
            tracing::error!(cause = %e, writes = batch.len(), "store commit failed; no write of the batch is acknowledged");
            for req in batch {
                let _ = req.reply.send(Err(StoreError::Io(e.to_string())));
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Backend, Commit, Entry, Kind, Loaded, Policy, Store, StoreError};
    use std::sync::{Arc, Mutex};

    /// The index entry of an account `token` stored under `key`, not yet sequenced.
    fn entry_of(key: &str, token: &str) -> Arc<Entry> {
        let jwt = crate::jwt::parse_unverified(token).unwrap();
        Arc::new(Entry::from_parts(
            Kind::Account,
            key.into(),
            bytes::Bytes::copy_from_slice(token.as_bytes()),
            jwt.iat,
            jwt.expires(),
            0,
        ))
    }

    /// Records whether each commit asked to wait for the disk.
    struct Spy(Arc<Mutex<Vec<bool>>>);

    impl Backend for Spy {
        fn load(&mut self) -> Result<Loaded, StoreError> {
            Ok(Loaded::default())
        }
        fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
            self.0.lock().unwrap().push(commit.durable);
            Ok(())
        }
        fn name(&self) -> &'static str {
            "spy"
        }
    }

    /// A commit that stores a token waits for the disk; one that only moves a replica's cursor
    /// past tokens already stored does not (see `Commit::durable`); other metadata does.
    #[tokio::test]
    async fn only_commits_that_store_tokens_wait_for_the_disk() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let store = Store::open(Box::new(Spy(seen.clone())), true).unwrap();
        seen.lock().unwrap().clear(); // the lineage written at open
        let operator = nkeys::KeyPair::new_operator();
        let key = nkeys::KeyPair::new_account().public_key();
        let token = crate::jwt::encode::account(&operator, &key, "a", serde_json::json!({}));
        let jwt = crate::jwt::parse_unverified(&token).unwrap();
        let entry = || {
            Arc::new(Entry::from_parts(
                Kind::Account,
                key.as_str().into(),
                bytes::Bytes::copy_from_slice(token.as_bytes()),
                jwt.iat,
                jwt.expires(),
                0,
            ))
        };
        let cursor = |n: u8| vec![("replica.cursor".to_string(), vec![n])];
        store
            .put_entries(vec![entry()], cursor(1), Policy::NewerWins)
            .await
            .unwrap();
        // The same token again (a feed page after NATS applied it): only the cursor moves.
        store
            .put_entries(vec![entry()], cursor(2), Policy::NewerWins)
            .await
            .unwrap();
        // Other metadata (the operator a replica trusts) always waits for the disk.
        let pin = vec![("trust.operator".to_string(), vec![1])];
        store
            .put_entries(Vec::new(), pin, Policy::NewerWins)
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![true, false, true]);
        assert_eq!(store.meta("replica.cursor"), Some(vec![2]));
    }

    /// The version table of `Policy`, cell by cell: identity is the bytes (every token here
    /// has the same `jti`, as same-second versions from the Go library do), order is `iat`.
    #[tokio::test]
    async fn versions_are_ordered_by_iat_and_identified_by_bytes() {
        use super::super::{Policy, PutOutcome};
        let operator = nkeys::KeyPair::new_operator();
        let key = nkeys::KeyPair::new_account().public_key();
        let version = |iat: i64, name: &str| {
            let token = crate::jwt::encode::sign(
                serde_json::json!({ "jti": "J", "iat": iat, "name": name, "sub": key,
                    "nats": { "type": "account", "version": 2 } }),
                &operator,
            );
            entry_of(&key, &token)
        };
        let verdict = |o: &PutOutcome| match o {
            PutOutcome::Stored(_) => "stored",
            PutOutcome::Unchanged(_) => "unchanged",
            PutOutcome::Stale { .. } => "stale",
            PutOutcome::Conflict { .. } => "conflict",
        };
        let stored = version(10, "stored");
        let cases = [
            (version(10, "stored"), ["unchanged"; 3]),
            (version(11, "later"), ["stored"; 3]),
            (version(10, "same-second"), ["conflict", "stored", "stored"]),
            (version(9, "earlier"), ["stale", "stale", "stored"]),
        ];
        for (incoming, want) in cases {
            for (policy, want) in [Policy::NewerWins, Policy::MirrorPrimary, Policy::External]
                .into_iter()
                .zip(want)
            {
                let store = Store::memory(true);
                store
                    .put_entries(vec![stored.clone()], vec![], Policy::NewerWins)
                    .await
                    .unwrap();
                let out = store
                    .submit(vec![incoming.clone()], vec![], policy, vec![])
                    .await
                    .unwrap();
                assert_eq!(
                    verdict(&out[0]),
                    want,
                    "{policy:?}, iat {} over 10",
                    incoming.iat
                );
                let now = store.get(Kind::Account, &key).unwrap();
                let winner = if want == "stored" { &incoming } else { &stored };
                assert!(now.same_token(winner), "{policy:?}: what is stored");
                assert_eq!(now.etag(), super::super::etag(&winner.jwt).as_bytes());
            }
        }
    }

    /// Pack readers of one store state share one snapshot; a change makes the next reader
    /// take a new one, and the old one still streams what it held.
    #[tokio::test]
    async fn live_snapshots_are_shared_per_store_state() {
        let operator = nkeys::KeyPair::new_operator();
        let account = |name: &str| {
            let key = nkeys::KeyPair::new_account().public_key();
            let token = crate::jwt::encode::account(&operator, &key, name, serde_json::json!({}));
            entry_of(&key, &token)
        };
        let store = Store::memory(true);
        store
            .put_entries(vec![account("a"), account("b")], vec![], Policy::NewerWins)
            .await
            .unwrap();
        let first = store.live_snapshot();
        assert_eq!(first.len(), 2);
        assert!(Arc::ptr_eq(&first, &store.live_snapshot()), "shared");
        store
            .put_entries(vec![account("c")], vec![], Policy::NewerWins)
            .await
            .unwrap();
        let second = store.live_snapshot();
        assert_eq!((first.len(), second.len()), (2, 3));
        // Nobody holds a snapshot: the next one is built afresh, with the same content.
        drop((first, second));
        assert_eq!(store.live_snapshot().len(), 3);
    }
}
