//! The JWT store: an in-memory index that serves every read, in front of a durable backend that
//! every write goes through first.
//!
//! Ownership, in one place:
//! - **Reads** (`get`, `changes_since`, `pack`) take a short read lock on the `Index` and clone
//!   an `Arc<Entry>`; they never touch the disk and never parse a token.
//! - **Writes** are sent to one writer thread (see `writer`). It alone decides ordering
//!   (newer-wins, sequence numbers), commits a whole group of pending writes to the backend in one
//!   atomic, fsynced batch (group commit), and only then publishes them to the index and answers.
//!   So an acknowledged write is durable, and readers never see a write that could be lost.
//!   (A commit that stores no token, only a replica's cursor, is not fsynced: see
//!   [`Commit::durable`].)
//!
//! Every store has a lineage id (random, made with the store) and a head sequence: each key sits
//! in the change log once, at the sequence of its latest write, which is what the replication
//! feed reads.
//!
//! Backends: [`sled`] (the default), [`dir`] (a folder of `.jwt` files, nats-server's layout),
//! [`nsc`] (an nsc operator folder, read-only) and [`MemoryBackend`]. Read-only file stores are
//! opened with [`Store::open_watched`]: someone else edits the files, and [`dirwatch`] feeds the
//! changes in through the same writer, so they are sequenced like any write.

pub mod dir;
pub mod dirwatch;
mod index;
pub mod nsc;
pub mod sled;
mod writer;

pub use index::{digest_bucket, etag, Digest, DigestHash, Entry, DIGEST_BUCKETS};

use crate::jwt::{self, Jwt};
use bytes::Bytes;
use index::Index;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An account JWT, keyed by the account public key.
    Account,
    /// An activation token, keyed by its `HashID()`.
    Activation,
}

impl Kind {
    /// The kind's name (`account` / `activation`), in logs and in the change feed
    /// ([`crate::wire::feed`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::Activation => "activation",
        }
    }
}

/// Errors a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store does not take writes (read-only memory store, read-only directory, nsc folder).
    #[error("this store is read-only")]
    ReadOnly,
    /// The backend failed to persist; nothing of the batch was acknowledged.
    #[error("storage failure: {0}")]
    Io(String),
    /// A stored record could not be read back (corruption or a foreign file).
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The writer thread is gone (the store is shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// Another process has the sled data directory open (sled allows one process per store).
    #[error(
        "the data directory {} is in use by another process; give this one its own --data",
        .0.display()
    )]
    Locked(std::path::PathBuf),
}

/// How a write is ordered against the version already stored under its key (DESIGN §4,
/// "Versions of one key").
///
/// A token's identity is its bytes, never its `jti`: the Go library computes `jti` from the
/// standard claims only, so two versions of an account issued in the same second with the same
/// name share one. Under every policy the same bytes as stored are [`PutOutcome::Unchanged`].
/// The policies differ only for other bytes:
///
/// | incoming `iat` vs stored | `NewerWins` | `MirrorPrimary` | `External` |
/// | --- | --- | --- | --- |
/// | later | stored | stored | stored |
/// | equal | [`PutOutcome::Conflict`] | stored | stored |
/// | earlier | [`PutOutcome::Stale`] | [`PutOutcome::Stale`] | stored |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A node that decides: the primary's API (POST, NATS resolver updates), `import`, and a
    /// replica's NATS listener (whose messages are hints that must be strictly newer). The
    /// first version accepted for a second stays, so re-posting an older same-second version
    /// can never roll a newer one back, and every node ends with the same version whatever
    /// order it received them in.
    NewerWins,
    /// A replica copying what its primary holds (change feed, misses): the primary decided
    /// between same-second versions, so its version replaces a different one with the same
    /// `iat` here. An older version than the replica holds stays out (anti-entropy sends the
    /// newer one back to a primary restored from an old backup).
    MirrorPrimary,
    /// Replace whenever the bytes differ. Watched files (read-only directory and nsc stores):
    /// the file is the truth, even when someone put an older token back. And a replica taking
    /// its primary's version after the primary refused the newer one held here: the primary
    /// decides.
    External,
}

/// Result of a conditional write.
#[derive(Debug, Clone)]
pub enum PutOutcome {
    /// Stored at a new sequence number.
    Stored(Arc<Entry>),
    /// The same bytes are already stored: nothing to do.
    Unchanged(Arc<Entry>),
    /// The stored token has a strictly later `iat`; the incoming one was dropped.
    Stale {
        /// The newer token that stays.
        current: Arc<Entry>,
    },
    /// [`Policy::NewerWins`] only: a different token with the same `iat` is stored. It stays
    /// (the first accepted version of a second wins); the incoming one was dropped.
    Conflict {
        /// The token that stays.
        current: Arc<Entry>,
    },
}

/// One record handed to the backend in a commit: the entry as it will be in the index (its
/// kind, key, token, new sequence and tombstone flag, read through `Deref`), and the sequence
/// it replaces. Holding the entry itself, not copies of its parts, keeps a commit from taking
/// a second reference to each token's buffer (for a `Bytes` made from a `Vec`, the first clone
/// allocates a shared header that then stays with the token).
#[derive(Debug, Clone)]
pub struct Record {
    /// The new version, sequenced.
    pub entry: Arc<Entry>,
    /// The sequence it replaces in the change log, if the key was stored before.
    pub old_seq: Option<u64>,
}

impl Record {
    /// A record of `jwt` under `key` at `seq` (for backends' tests: the writer makes records
    /// of the entries it sequences; `iat` and expiry are not a backend's concern).
    pub fn new(kind: Kind, key: &str, jwt: Bytes, seq: u64, old_seq: Option<u64>) -> Record {
        Record {
            entry: Arc::new(Entry::from_parts(kind, key.into(), jwt, 0, None, seq)),
            old_seq,
        }
    }
}

impl std::ops::Deref for Record {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.entry
    }
}

/// An atomic unit for the backend: records, metadata and the new head, all or nothing.
#[derive(Debug)]
pub struct Commit {
    /// Records to store.
    pub records: Vec<Record>,
    /// Metadata to set (replication cursors and the like).
    pub meta: Vec<(String, Vec<u8>)>,
    /// Sequences of records to remove (keys dropped: compacted tombstones, a replica's
    /// rebuild).
    pub removed: Vec<u64>,
    /// The head sequence after this commit.
    pub head: u64,
    /// Whether the commit must be on disk before `commit` returns. Only a commit that stores
    /// no token is not: it just moves a replica's change-feed cursor past changes that are
    /// already durable (applied from NATS, or unchanged), and losing it in a crash means
    /// fetching them again from the older cursor. A backend may leave such a commit to its
    /// next flush; one that stores tokens always waits for the disk.
    pub durable: bool,
}

impl Default for Commit {
    /// Empty and durable.
    fn default() -> Commit {
        Commit {
            records: Vec::new(),
            meta: Vec::new(),
            removed: Vec::new(),
            head: 0,
            durable: true,
        }
    }
}

/// What a backend holds at open.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every record, as the index entry it becomes. Backends add records with
    /// [`Loaded::push`], which builds the entry at once: holding a million raw copies until the
    /// index is built would double the memory a start needs (and glibc keeps much of a peak).
    /// Already shared, so the index takes them as they are.
    pub entries: Vec<Arc<Entry>>,
    /// All metadata.
    pub meta: HashMap<String, Vec<u8>>,
}

impl Loaded {
    /// Adds a stored token (verified when it was written; parsed, not re-verified).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is not a parseable JWT.
    pub fn push(&mut self, kind: Kind, key: &str, jwt: &[u8], seq: u64) -> Result<(), StoreError> {
        self.entries
            .push(Arc::new(parse_stored(kind, key, jwt, seq)?));
        Ok(())
    }
}

/// Durable storage behind the index. Implementations must make `commit` atomic and durable
/// before returning `Ok`.
pub trait Backend: Send + Sync + 'static {
    /// Reads everything, once, at open (before any commit; `&mut` lets a backend drop what
    /// reading everything left behind, see [`sled::SledBackend`]).
    ///
    /// # Errors
    /// [`StoreError::Io`] / [`StoreError::Corrupt`].
    fn load(&mut self) -> Result<Loaded, StoreError>;
    /// Persists a commit atomically and durably.
    ///
    /// # Errors
    /// [`StoreError::Io`]; then nothing of the commit may be acknowledged.
    fn commit(&self, commit: &Commit) -> Result<(), StoreError>;
    /// Called by the writer before the next commit after one failed. A backend that refuses
    /// every write after an I/O error (sled does, until it is reopened) reopens here and
    /// returns everything it now holds, which replaces the index: the failed commit may still
    /// have reached the disk, and the index must never disagree with the disk about which
    /// sequence numbers are taken. `Ok(None)`: nothing to do, the next commit just tries.
    ///
    /// # Errors
    /// [`StoreError::Io`] while the backend is still unusable; the writer tries again at the
    /// next write.
    fn recover(&mut self) -> Result<Option<Loaded>, StoreError> {
        Ok(None)
    }
    /// A short name for logs and the status page (`sled`, `memory`, …).
    fn name(&self) -> &'static str;
}

/// The in-memory backend: nothing is durable. For tests and throw-away setups.
#[derive(Debug, Default)]
pub struct MemoryBackend;

impl Backend for MemoryBackend {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        Ok(Loaded::default())
    }
    fn commit(&self, _commit: &Commit) -> Result<(), StoreError> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "memory"
    }
}

/// Whether writes are reaching the disk, as the writer thread last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteHealth {
    /// The last commit failed (disk full, read-only file system, …) and no commit has
    /// succeeded since. Reads are unaffected; writes answer 500 until the cause is fixed.
    pub failing: bool,
    /// Commits that failed since the store was opened.
    pub failures: u64,
}

/// A write request as the writer thread sees it: put each entry if it is newer than what is
/// stored, and set `meta`, all in one atomic commit.
pub(crate) struct WriteRequest {
    pub(crate) entries: Vec<Arc<Entry>>,
    pub(crate) meta: Vec<(String, Vec<u8>)>,
    /// How each entry is ordered against the stored version.
    pub(crate) policy: Policy,
    /// Keys to drop. Watched stores (their files are gone) and a replica rebuilding from its
    /// primary ([`Policy::External`]) drop whatever is stored; tombstone compaction (any other
    /// policy) drops a key only while it is still a tombstone. The dropped records' sequences
    /// go to the backend in [`Commit::removed`].
    pub(crate) removals: Vec<(Kind, String)>,
    /// Whether the tokens must be on disk before the answer (every write but a replica's
    /// feed chunk before the one that carries its cursor: see [`Store::put_entries_unflushed`]).
    pub(crate) flush: bool,
    /// One outcome per entry, in order.
    pub(crate) reply: oneshot::Sender<Result<Vec<PutOutcome>, StoreError>>,
}

/// Cheap, cloneable handle to the store.
#[derive(Clone)]
pub struct Store {
    /// Read-mostly; `std::sync::RwLock` because it is never held across an `.await` and the
    /// critical sections are a hash lookup or a pointer swap. Only the writer thread takes it
    /// for writing.
    index: Arc<RwLock<Index>>,
    writer: Option<mpsc::Sender<writer::Msg>>,
    /// Whether API writes are taken. A watched store has a writer (for external changes) but
    /// is not writable.
    writable: bool,
    /// The files a watched store mirrors; `None` for every other store.
    source: Option<Arc<dirwatch::Source>>,
    head: tokio::sync::watch::Receiver<u64>,
    health: tokio::sync::watch::Receiver<WriteHealth>,
    lineage: Arc<str>,
    backend_name: &'static str,
    /// The last [`Store::live_snapshot`] and the head it was taken at; weak, so it lives only
    /// while an answer streams it.
    live: Arc<std::sync::Mutex<Option<LiveSnapshot>>>,
}

/// A [`Store::live_snapshot`] held weakly, with the head it was taken at.
type LiveSnapshot = (u64, std::sync::Weak<Vec<Arc<Entry>>>);

/// How [`Store::open_with`] runs the store.
enum Mode {
    Writable,
    ReadOnly,
    Watched(dirwatch::Source),
}

impl Store {
    /// Opens (or creates) a sled store in `dir`.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directory cannot be opened (locked by another process,
    /// permissions) or [`StoreError::Corrupt`] on unreadable records.
    pub fn open_sled(dir: &Path) -> Result<Store, StoreError> {
        Store::open(Box::new(sled::SledBackend::open(dir)?), true)
    }

    /// An empty in-memory store, writable or not.
    pub fn memory(writable: bool) -> Store {
        Store::open(Box::new(MemoryBackend), writable)
            .expect("the memory backend cannot fail to load")
    }

    /// Builds the index from `backend` and starts the writer thread (when `writable`).
    ///
    /// # Errors
    /// Whatever the backend's `load` reports.
    pub fn open(backend: Box<dyn Backend>, writable: bool) -> Result<Store, StoreError> {
        Store::open_with(
            backend,
            if writable {
                Mode::Writable
            } else {
                Mode::ReadOnly
            },
        )
    }

    /// Opens a read-only store over files that someone else edits (a read-only directory, an
    /// nsc folder): the index is loaded from `backend`, API writes are refused, and the
    /// watcher ([`dirwatch::spawn`]) applies file changes through the writer thread, so they are
    /// sequenced in order and wake change-feed long polls like any write. Nothing is ever
    /// committed to `backend`.
    ///
    /// # Errors
    /// Whatever the backend's `load` reports.
    pub fn open_watched(
        backend: Box<dyn Backend>,
        source: dirwatch::Source,
    ) -> Result<Store, StoreError> {
        Store::open_with(backend, Mode::Watched(source))
    }

    fn open_with(mut backend: Box<dyn Backend>, mode: Mode) -> Result<Store, StoreError> {
        let writable = matches!(mode, Mode::Writable);
        let started = std::time::Instant::now();
        let loaded = backend.load()?;
        let read = started.elapsed();
        let tokens = loaded.entries.len();
        let mut index = Index::from_loaded(loaded)?;
        if tokens > 0 {
            tracing::debug!(backend = backend.name(), tokens, read = ?read, indexed = ?(started.elapsed() - read),
                "store loaded");
        }
        let mut first_meta = Vec::new();
        if index.meta(META_LINEAGE).is_none() {
            let id = new_lineage_id();
            index.set_meta(META_LINEAGE, id.as_bytes().to_vec());
            first_meta.push((META_LINEAGE.to_string(), id.into_bytes()));
        }
        if !first_meta.is_empty() && writable {
            backend.commit(&Commit {
                records: vec![],
                meta: first_meta,
                removed: vec![],
                head: index.head(),
                durable: true,
            })?;
        }
        let lineage: Arc<str> =
            String::from_utf8_lossy(index.meta(META_LINEAGE).unwrap_or_default()).into();
        let backend_name = backend.name();
        let (head_tx, head_rx) = tokio::sync::watch::channel(index.head());
        let (health_tx, health_rx) = tokio::sync::watch::channel(WriteHealth::default());
        let index = Arc::new(RwLock::new(index));
        let (writer, source) = match mode {
            Mode::Writable => (
                Some(writer::spawn(backend, index.clone(), head_tx, health_tx)),
                None,
            ),
            Mode::ReadOnly => (None, None),
            // The files are already the durable copy of every external change: the writer
            // only orders and sequences them, so its backend is the no-op one.
            Mode::Watched(source) => (
                Some(writer::spawn(
                    Box::new(MemoryBackend),
                    index.clone(),
                    head_tx,
                    health_tx,
                )),
                Some(Arc::new(source)),
            ),
        };
        Ok(Store {
            index,
            writer,
            writable,
            source,
            head: head_rx,
            health: health_rx,
            lineage,
            backend_name,
            live: Arc::default(),
        })
    }

    /// The stored entry for `key`, if any (not a deleted one). Never touches the disk.
    pub fn get(&self, kind: Kind, key: &str) -> Option<Arc<Entry>> {
        self.read().get(kind, key)
    }

    /// Whether `token` is, byte for byte, the stored (not deleted) version of `key`: storing it
    /// again would change nothing, under every policy.
    pub fn holds(&self, kind: Kind, key: &str, token: &[u8]) -> bool {
        self.get(kind, key).is_some_and(|e| e.jwt == token)
    }

    /// The stored JWT of account `key`, as text: the issuing account an activation's checks
    /// look up ([`crate::verify::post::activation`]).
    pub fn account_jwt(&self, key: &str) -> Option<String> {
        self.get(Kind::Account, key).map(|e| e.jwt_str().to_owned())
    }

    /// The latest version of `key`, a tombstone included.
    pub fn version(&self, kind: Kind, key: &str) -> Option<Arc<Entry>> {
        self.read().version(kind, key)
    }

    /// Deletes accounts: one tombstone per key, carrying the verified delete `request`, by the
    /// version rules ([`Policy::NewerWins`]: an account issued after the request stays).
    /// Outcomes are one per key, in order.
    ///
    /// # Errors
    /// As [`Store::put`].
    pub async fn delete(
        &self,
        keys: &[String],
        request: &Jwt,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        let entries = keys
            .iter()
            .map(|k| Arc::new(Entry::tombstone(k, request)))
            .collect();
        self.send(entries, Vec::new(), Policy::NewerWins).await
    }

    /// Tombstones issued before `before` (unix seconds).
    pub fn tombstones_before(&self, before: i64) -> Vec<Arc<Entry>> {
        self.read().tombstones_before(before)
    }

    /// Drops tombstones issued before `before` (unix seconds) for good, and records the
    /// highest sequence dropped as the compaction horizon ([`META_COMPACTED`]): a replica
    /// whose cursor is below it may have missed a deletion and must rebuild. Returns how many
    /// were dropped.
    ///
    /// # Errors
    /// As [`Store::put`].
    pub async fn compact_tombstones(&self, before: i64) -> Result<usize, StoreError> {
        let old = self.tombstones_before(before);
        let Some(horizon) = old.iter().map(|e| e.seq).max() else {
            return Ok(0);
        };
        let horizon = horizon.max(self.compacted());
        let latest = old
            .iter()
            .map(|e| e.iat)
            .max()
            .unwrap_or(0)
            .max(self.compacted_iat());
        let removals = old.iter().map(|e| (e.kind, e.key.to_string())).collect();
        let meta = vec![
            (META_COMPACTED.to_string(), horizon.to_be_bytes().to_vec()),
            (
                META_COMPACTED_IAT.to_string(),
                latest.to_be_bytes().to_vec(),
            ),
        ];
        self.submit(Vec::new(), meta, Policy::NewerWins, removals)
            .await?;
        Ok(old.len())
    }

    /// The compaction horizon: no tombstone at or below this sequence is kept.
    pub fn compacted(&self) -> u64 {
        self.meta(META_COMPACTED)
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_be_bytes)
    }

    /// The latest `iat` of a compacted deletion (0: none). An account issued after it cannot
    /// have been deleted by a deletion that is gone: a deletion only wins over an account
    /// issued at or before it.
    pub fn compacted_iat(&self) -> i64 {
        self.meta(META_COMPACTED_IAT)
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, i64::from_be_bytes)
    }

    /// Drops `keys` whatever is stored (a replica rebuilding from its primary drops what the
    /// primary no longer has), durably.
    ///
    /// # Errors
    /// As [`Store::put`].
    pub async fn drop_keys(&self, keys: Vec<(Kind, String)>) -> Result<(), StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        self.submit(Vec::new(), Vec::new(), Policy::External, keys)
            .await
            .map(drop)
    }

    /// Writes `jwt` under `key` with [`Policy::NewerWins`]: stored only when its `iat` is later
    /// than the stored token's (or nothing is stored). Returns only after the write is durable.
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`], [`StoreError::Io`], [`StoreError::Closed`].
    pub async fn put(&self, kind: Kind, key: &str, jwt: &Jwt) -> Result<PutOutcome, StoreError> {
        self.put_with(kind, key, jwt, Policy::NewerWins).await
    }

    /// [`Store::put`] under another [`Policy`] (a replica mirroring its primary).
    ///
    /// # Errors
    /// As [`Store::put`].
    pub async fn put_with(
        &self,
        kind: Kind,
        key: &str,
        jwt: &Jwt,
        policy: Policy,
    ) -> Result<PutOutcome, StoreError> {
        let entry = Arc::new(Entry::new(kind, key, jwt));
        let mut outcomes = self.send(vec![entry], Vec::new(), policy).await?;
        Ok(outcomes
            .pop()
            .expect("the writer answers one outcome per entry"))
    }

    /// Puts several tokens ([`Policy::NewerWins`] each) and sets `meta`, in one atomic commit
    /// (the `import` command; a replica uses [`Store::put_entries`] to store a feed page
    /// together with its cursor).
    ///
    /// # Errors
    /// As [`Store::put`].
    pub async fn put_many(
        &self,
        items: Vec<(Kind, String, Jwt)>,
        meta: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        let entries = items
            .iter()
            .map(|(kind, key, jwt)| Arc::new(Entry::new(*kind, key, jwt)))
            .collect();
        self.put_entries(entries, meta, Policy::NewerWins).await
    }

    /// [`Store::put_many`] for entries already built ([`Entry::new`]), under `policy`: a
    /// replica turns each verified token into its compact entry at once, so a page in flight
    /// holds no parsed claims, and stores it with [`Policy::MirrorPrimary`].
    ///
    /// # Errors
    /// As [`Store::put`].
    pub async fn put_entries(
        &self,
        entries: Vec<Arc<Entry>>,
        meta: Vec<(String, Vec<u8>)>,
        policy: Policy,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        self.send(entries, meta, policy).await
    }

    /// [`Store::put_entries`] without waiting for the disk: the entries are committed (in
    /// order, atomically, visible to reads) but written out by the backend's next flush, which
    /// the next write that waits for the disk forces. For a replica storing a large feed page
    /// in slices: only the last slice carries the cursor, so a crash can lose only slices the
    /// cursor does not cover yet, which are fetched again; a sync of a million tokens then
    /// waits for the disk once a page instead of once a slice.
    ///
    /// # Errors
    /// As [`Store::put`].
    pub async fn put_entries_unflushed(
        &self,
        entries: Vec<Arc<Entry>>,
        policy: Policy,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        self.submit_with(entries, Vec::new(), policy, Vec::new(), false)
            .await
    }

    /// Applies changes found in watched files ([`Policy::External`]): each entry replaces the
    /// stored one unless it has the same bytes (the file is the truth, older or not), and each
    /// removed key leaves the index. Outcomes are one per entry, in order.
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`] on a store that is not watched; [`StoreError::Closed`].
    pub(crate) async fn apply_external(
        &self,
        entries: Vec<Arc<Entry>>,
        removals: Vec<(Kind, String)>,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        if self.source.is_none() {
            return Err(StoreError::ReadOnly);
        }
        self.submit(entries, Vec::new(), Policy::External, removals)
            .await
    }

    /// The files this store mirrors, when it is a watched store (see [`Store::open_watched`]).
    pub fn watch_source(&self) -> Option<Arc<dirwatch::Source>> {
        self.source.clone()
    }

    /// The API write path: refused unless the store is writable.
    async fn send(
        &self,
        entries: Vec<Arc<Entry>>,
        meta: Vec<(String, Vec<u8>)>,
        policy: Policy,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        self.submit(entries, meta, policy, Vec::new()).await
    }

    async fn submit(
        &self,
        entries: Vec<Arc<Entry>>,
        meta: Vec<(String, Vec<u8>)>,
        policy: Policy,
        removals: Vec<(Kind, String)>,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        self.submit_with(entries, meta, policy, removals, true)
            .await
    }

    async fn submit_with(
        &self,
        entries: Vec<Arc<Entry>>,
        meta: Vec<(String, Vec<u8>)>,
        policy: Policy,
        removals: Vec<(Kind, String)>,
        flush: bool,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        let writer = self.writer.as_ref().ok_or(StoreError::ReadOnly)?;
        let (reply, rx) = oneshot::channel();
        writer
            .send(writer::Msg::Write(WriteRequest {
                entries,
                meta,
                policy,
                removals,
                flush,
                reply,
            }))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops the writer after the writes queued before this call, and releases the backend
    /// (for sled: its directory lock), so the same data directory can be opened again at once.
    /// Reads keep working from the index; later writes fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            let (done, closed) = oneshot::channel();
            if writer.send(writer::Msg::Close(done)).await.is_ok() {
                let _ = closed.await;
            }
        }
    }

    /// Metadata value, if set.
    pub fn meta(&self, name: &str) -> Option<Vec<u8>> {
        self.read().meta(name).map(<[u8]>::to_vec)
    }

    /// Entries changed after `since`, in sequence order, at most `limit`.
    pub fn changes_since(&self, since: u64, limit: usize) -> Vec<Arc<Entry>> {
        self.read().changes_since(since, limit)
    }

    /// [`Store::changes_since`] and the head of the same moment: when fewer than `limit`
    /// entries come back, they are every change up to that head (the head can be above the
    /// last entry when the newest changes were removals, e.g. compacted deletions).
    pub fn changes_and_head(&self, since: u64, limit: usize) -> (Vec<Arc<Entry>>, u64) {
        self.read().changes_and_head(since, limit)
    }

    /// Every live (not deleted) token in change-log order, taken at one moment: what the pack
    /// streams. Readers of one store state share one snapshot (at a million accounts it is
    /// 8 MB of pointers), so slow pack readers cost their sockets, not a list each, unless
    /// the store changes between them.
    pub fn live_snapshot(&self) -> Arc<Vec<Arc<Entry>>> {
        let head = self.read().head();
        let shared = |cached: &Option<LiveSnapshot>| {
            cached
                .as_ref()
                .filter(|(h, _)| *h == head)
                .and_then(|(_, weak)| weak.upgrade())
        };
        if let Some(snapshot) = shared(&self.live.lock().unwrap_or_else(|e| e.into_inner())) {
            return snapshot;
        }
        // Built outside the lock: two requests missing at once build twice, and nobody waits.
        // One list, filtered as it is read: no second copy of a million pointers.
        let (snapshot, head) = {
            let index = self.read();
            (Arc::new(index.live()), index.head())
        };
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((head, Arc::downgrade(&snapshot)));
        snapshot
    }

    /// Waits until the head passes `since` or `timeout` elapses; returns the head.
    pub async fn wait_for_change(&self, since: u64, timeout: Duration) -> u64 {
        let mut rx = self.head.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|h| *h > since)).await;
        let head = *rx.borrow();
        head
    }

    /// Whether writes currently reach the disk.
    pub fn write_health(&self) -> WriteHealth {
        self.health.borrow().clone()
    }

    /// The highest sequence number written.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// The lineage id of this store.
    pub fn lineage(&self) -> &str {
        &self.lineage
    }

    /// Whether the store takes writes.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The backend's short name.
    pub fn backend_name(&self) -> &'static str {
        self.backend_name
    }

    /// Number of stored accounts and activations.
    pub fn counts(&self) -> (usize, usize) {
        self.read().counts()
    }

    /// The head sequence and the content digest, of the same moment (anti-entropy).
    pub fn digest(&self) -> (u64, Digest) {
        self.read().digest()
    }

    /// Every entry whose key falls in a bucket marked in `buckets` (anti-entropy).
    pub fn in_buckets(&self, buckets: &[bool; DIGEST_BUCKETS]) -> Vec<Arc<Entry>> {
        self.read().in_buckets(buckets)
    }

    /// Every entry of `kind`, in sequence order, at most `max` (for the pack endpoint).
    pub fn all(&self, kind: Kind, max: usize) -> Vec<Arc<Entry>> {
        self.read().all(kind, max)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        // A poisoned lock means the writer panicked mid-update of the in-memory maps; the data
        // on disk is still consistent, and reads of the maps remain memory-safe, so keep serving.
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Metadata key of the compaction horizon (see [`Store::compact_tombstones`]).
pub const META_COMPACTED: &str = "compacted_seq";

/// Metadata key of the latest `iat` of a compacted deletion (see [`Store::compacted_iat`]).
pub const META_COMPACTED_IAT: &str = "compacted_iat";

/// Metadata key of the lineage id.
pub const META_LINEAGE: &str = "lineage";

/// Metadata key of the operator JWT the tokens of this store were verified against (its
/// subject is the operator's identity key). `import --operator` records it, and
/// `import --trust-store-operator` verifies against it.
pub const META_OPERATOR: &str = "trust.operator";

fn new_lineage_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut b);
    data_encoding::HEXLOWER.encode(&b)
}

/// Parses a stored token without verifying it: stored tokens were verified before they were
/// written, and re-verifying a million signatures would slow every start. Only what the index
/// keeps is read ([`jwt::parse_times`]).
pub(crate) fn parse_stored(
    kind: Kind,
    key: &str,
    jwt: &[u8],
    seq: u64,
) -> Result<Entry, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let text = std::str::from_utf8(jwt).map_err(|_| corrupt("not UTF-8".into()))?;
    let (iat, exp) = jwt::parse_times(text).map_err(|e| corrupt(e.to_string()))?;
    Ok(Entry::from_parts(
        kind,
        key.into(),
        Bytes::copy_from_slice(jwt),
        iat,
        exp,
        seq,
    ))
}
