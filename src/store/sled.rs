//! The sled backend, the default durable store.
//!
//! One sled tree, with prefixes, so that a commit is a single atomic `Batch`:
//! - `s/<seq, u64 big-endian>` → `a|t`, key length (one byte), key, JWT: the change log and the
//!   tokens in one record. Each key has one record, at the sequence of its latest version; a
//!   new version inserts its record and removes the old one in the same batch.
//! - `m/<name>` → metadata (lineage id, head, replication cursors)
//!
//! Why records are keyed by sequence and not by account key: new sequences always go to the
//! right end of sled's tree, so a write appends to the last leaf instead of copying a leaf
//! somewhere random. Syncing 100,000 accounts into a replica costs a third of the CPU it did
//! with `a/<key>` records plus a separate `s/<seq>` index (benches/BENCHMARKS.md). Lookups by
//! key are never made against sled: the in-memory index holds every token and is rebuilt from
//! this log at open.
//!
//! Stores written by the first layout (`a/<key>`, `t/<hash>`, `s/<seq>` → kind + key) are
//! converted at open, in one atomic batch (see `migrate_v1`).
//!
//! `commit` applies the batch and then `flush`es (fsync) before returning, which is what lets the
//! HTTP layer answer 200 only for writes that survive `kill -9`.

use super::{Backend, Commit, Kind, Loaded, StoreError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Metadata key of the persisted head sequence.
pub const META_HEAD: &str = "head";

/// sled's page cache. The index already holds every token in memory, so sled's cache only
/// needs to cover the write path, which appends at the right end of the tree; its 1 GiB
/// default would dominate resident memory. 8 MiB instead of 32 took 25 MiB off a primary
/// holding 100,000 accounts with no measurable change in durable POSTs/s.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// A sled database used as a [`Backend`].
pub struct SledBackend {
    /// Always `Some`, except for the moment [`Backend::load`] reopens it.
    db: Option<::sled::Db>,
    dir: PathBuf,
}

impl SledBackend {
    /// Opens or creates the database in `dir`, converting a store of the first layout.
    ///
    /// # Errors
    /// [`StoreError::Io`], e.g. when another process holds the directory's lock;
    /// [`StoreError::Corrupt`] when a first-layout store cannot be converted.
    pub fn open(dir: &Path) -> Result<SledBackend, StoreError> {
        let db = open_db(dir)?;
        migrate_v1(&db)?;
        Ok(SledBackend {
            db: Some(db),
            dir: dir.to_path_buf(),
        })
    }

    /// Drops the handle and opens a fresh one: what sled keeps of pages it has read goes with
    /// the old one. The old one must be gone first: it holds the directory's lock.
    fn reopen(&mut self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        self.db = None;
        self.db = Some(reopen_db(&self.dir)?);
        tracing::debug!(took = ?started.elapsed(), "sled handle reopened");
        Ok(())
    }

    /// The open handle; absent only after a reopen failed (see [`Backend::recover`]).
    fn db(&self) -> Result<&::sled::Db, StoreError> {
        self.db
            .as_ref()
            .ok_or_else(|| StoreError::Io("the sled store could not be reopened".into()))
    }
}

/// Opens the sled database in `dir`.
///
/// sled 0.34 writes a snapshot at every open, to `snap.<lsn>.generating`, renamed to
/// `snap.<lsn>` once complete. When that write fails (a full disk) the `.generating` file
/// stays, and every later open picks it as the newest snapshot and reports corruption: one
/// start attempt on a full disk would make the store unopenable for good, although nothing in
/// it is damaged. Such a file is incomplete by construction, so when an open reports
/// corruption and one exists, it is removed and the open tried again.
fn open_db(dir: &Path) -> Result<::sled::Db, StoreError> {
    check_not_locked(dir)?;
    let open = || {
        ::sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
    };
    let fail =
        |e: ::sled::Error| StoreError::Io(format!("opening sled store {}: {e}", dir.display()));
    match open() {
        Err(e @ ::sled::Error::Corruption { .. }) => {
            let stale = unfinished_snapshots(dir);
            if stale.is_empty() {
                return Err(fail(e));
            }
            for path in &stale {
                tracing::warn!(path = %path.display(), "removing an unfinished sled snapshot left by a failed write (full disk?)");
                std::fs::remove_file(path)
                    .map_err(|e| StoreError::Io(format!("removing {}: {e}", path.display())))?;
            }
            open().map_err(fail)
        }
        other => other.map_err(fail),
    }
}

/// Fails with [`StoreError::Locked`] when another process holds the store's lock. sled takes
/// an exclusive `flock` on `<dir>/db` at open, but reports a failure to get it only as an I/O
/// error whose text names the lock; taking the same lock for a moment first tells that case
/// apart without reading error text ([`is_locked`]).
fn check_not_locked(dir: &Path) -> Result<(), StoreError> {
    if is_locked(dir) {
        return Err(StoreError::Locked(dir.to_path_buf()));
    }
    Ok(())
}

/// Whether a sled handle (of this process or another) holds the lock of the store in `dir`.
/// The probe's own lock is released when its file closes, before this returns.
pub fn is_locked(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    // No lock file yet: a new store, which nobody can hold.
    let Ok(file) = std::fs::File::open(dir.join("db")) else {
        return false;
    };
    // SAFETY: flock on a descriptor owned by `file`, which outlives the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// `snap.*.generating` files in `dir` (see [`open_db`]).
fn unfinished_snapshots(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("snap.") && n.ends_with(".generating"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How long a reopen waits for the handle it just dropped to let go of the directory lock.
const RELOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens the store again after this process dropped its handle. Dropping a sled handle does
/// not always release the directory's lock at once (background threads finishing a write,
/// notably after an I/O error), so a lock conflict is retried for a bounded time. Only for
/// reopening: at start, a lock held by another process must fail at once.
fn reopen_db(dir: &Path) -> Result<::sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + RELOCK_WAIT;
    loop {
        // `Locked` is the probe's verdict (`check_not_locked`); sled's own lock error can
        // still come when the old handle takes the lock between the probe and sled's open.
        let conflict = |e: &StoreError| match e {
            StoreError::Locked(_) => true,
            StoreError::Io(msg) => msg.contains("could not acquire lock"),
            _ => false,
        };
        match open_db(dir) {
            Err(e) if conflict(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn io(e: ::sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::Account => b'a',
        Kind::Activation => b't',
    }
}

fn kind_of(b: Option<&u8>) -> Option<Kind> {
    match b {
        Some(b'a' | b'd') => Some(Kind::Account),
        Some(b't') => Some(Kind::Activation),
        _ => None,
    }
}

/// The record kind byte of a tombstone (an account deleted by the request it holds).
const TOMBSTONE: u8 = b'd';

fn seq_key(seq: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(b"s/");
    k[2..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn parse_seq_key(k: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(&k[2..])
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            key: String::from_utf8_lossy(k).into(),
            reason: "bad sequence key".into(),
        })
}

/// A record's value: kind, key length, key, JWT.
fn record_value(kind: Kind, key: &str, jwt: &[u8]) -> Result<Vec<u8>, StoreError> {
    // Keys are account public keys or activation hashes (56 bytes); the HTTP layer and the
    // service refuse anything else long before a write gets here.
    let len = u8::try_from(key.len()).map_err(|_| StoreError::Corrupt {
        key: key.chars().take(64).collect(),
        reason: "keys longer than 255 bytes cannot be stored".into(),
    })?;
    let mut v = Vec::with_capacity(2 + key.len() + jwt.len());
    v.push(kind_byte(kind));
    v.push(len);
    v.extend_from_slice(key.as_bytes());
    v.extend_from_slice(jwt);
    Ok(v)
}

fn parse_record(seq: u64, v: &[u8]) -> Result<(Kind, &str, &[u8]), StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: format!("s/{seq}"),
        reason: reason.into(),
    };
    let kind = kind_of(v.first()).ok_or_else(|| corrupt("unknown record kind"))?;
    let len = usize::from(*v.get(1).ok_or_else(|| corrupt("truncated record"))?);
    let key = v
        .get(2..2 + len)
        .ok_or_else(|| corrupt("truncated record key"))?;
    let key = std::str::from_utf8(key).map_err(|_| corrupt("record key is not UTF-8"))?;
    Ok((kind, key, &v[2 + len..]))
}

/// Converts a store written by the first layout (`a/<key>` and `t/<hash>` → JWT, `s/<seq>` →
/// kind + key) to records keyed by sequence, in one atomic batch: a crash during it leaves the
/// old layout whole, and the next open converts again.
fn migrate_v1(db: &::sled::Db) -> Result<(), StoreError> {
    let mut old = Vec::new();
    for prefix in [&b"a/"[..], &b"t/"[..]] {
        for item in db.scan_prefix(prefix) {
            let (k, v) = item.map_err(io)?;
            old.push((k, v));
        }
    }
    if old.is_empty() {
        return Ok(());
    }
    let mut seqs: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut batch = ::sled::Batch::default();
    for item in db.scan_prefix(b"s/") {
        let (k, v) = item.map_err(io)?;
        let seq = parse_seq_key(&k)?;
        // First-layout log values are the kind byte and the key, the same two parts a record
        // key has once `/` is put between them.
        let mut record_key = vec![*v.first().unwrap_or(&b'?'), b'/'];
        record_key.extend_from_slice(v.get(1..).unwrap_or_default());
        seqs.insert(record_key, seq);
        batch.remove(k);
    }
    let mut head = seqs.values().copied().max().unwrap_or(0);
    if let Some(h) = db.get(format!("m/{META_HEAD}")).map_err(io)? {
        head = head.max(<[u8; 8]>::try_from(h.as_ref()).map_or(0, u64::from_be_bytes));
    }
    let count = old.len();
    for (k, jwt) in old {
        let kind = kind_of(k.first()).expect("scanned under a/ or t/");
        let key = std::str::from_utf8(&k[2..]).map_err(|_| StoreError::Corrupt {
            key: String::from_utf8_lossy(&k).into(),
            reason: "key is not UTF-8".into(),
        })?;
        // A token without a log entry (never written by this server, but cheap to keep)
        // gets a new sequence after everything else.
        let seq = match seqs.get(k.as_ref()) {
            Some(seq) => *seq,
            None => {
                head += 1;
                head
            }
        };
        batch.insert(&seq_key(seq)[..], record_value(kind, key, &jwt)?);
        batch.remove(k);
    }
    batch.insert(
        format!("m/{META_HEAD}").into_bytes(),
        &head.to_be_bytes()[..],
    );
    db.apply_batch(batch).map_err(io)?;
    db.flush().map_err(io)?;
    tracing::info!(
        records = count,
        "converted the sled store to the sequence-keyed layout"
    );
    Ok(())
}

/// Below this many sequences a store is read on one thread.
const PARALLEL_LOAD_MIN: u64 = 20_000;

/// A record as a loading thread leaves it: read and parsed, not yet an index entry (see
/// [`SledBackend::load`]). The record's bytes stay in sled's buffer until the entry is built.
struct Parsed {
    seq: u64,
    kind: Kind,
    deleted: bool,
    /// The record: kind, key length, key, token.
    value: ::sled::IVec,
    key_len: usize,
    iat: i64,
    exp: Option<i64>,
    tag: super::index::DigestHash,
}

impl Parsed {
    /// The index entry: the key and the token copied out of sled's buffer.
    fn into_entry(self) -> super::Entry {
        let key = &self.value[2..2 + self.key_len];
        let jwt = &self.value[2 + self.key_len..];
        super::Entry {
            kind: self.kind,
            key: std::str::from_utf8(key).unwrap_or_default().into(),
            jwt: bytes::Bytes::copy_from_slice(jwt),
            tag: self.tag,
            iat: self.iat,
            exp: if self.deleted { None } else { self.exp },
            seq: self.seq,
            deleted: self.deleted,
        }
    }
}

/// Records parsed per message from a loading thread.
const LOAD_CHUNK: usize = 1024;

/// What a loading thread sends: records for the receiving thread to build entries from, or
/// entries it built itself (see [`BUILD_IN_ONE_THREAD_BELOW`]).
enum Chunk {
    Parsed(Vec<Parsed>),
    Built(Vec<Arc<super::Entry>>),
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Parsed(v) => v.len(),
            Chunk::Built(v) => v.len(),
        }
    }

    fn push(&mut self, p: Parsed) {
        match self {
            Chunk::Parsed(v) => v.push(p),
            Chunk::Built(v) => v.push(Arc::new(p.into_entry())),
        }
    }

    fn empty_like(&self) -> Chunk {
        match self {
            Chunk::Parsed(_) => Chunk::Parsed(Vec::with_capacity(LOAD_CHUNK)),
            Chunk::Built(_) => Chunk::Built(Vec::with_capacity(LOAD_CHUNK)),
        }
    }
}

/// Reads and parses the records with sequences in `from..to`, sending them in chunks tagged
/// with `part` (the range's place in sequence order); `build`: as entries built here.
fn parse_range(
    db: &::sled::Db,
    from: u64,
    to: u64,
    part: usize,
    build: bool,
    out: &std::sync::mpsc::SyncSender<(usize, Chunk)>,
) -> Result<(), StoreError> {
    let end = if to == u64::MAX {
        std::ops::Bound::Included(seq_key(u64::MAX))
    } else {
        std::ops::Bound::Excluded(seq_key(to))
    };
    let range = (std::ops::Bound::Included(seq_key(from)), end);
    let mut chunk = if build {
        Chunk::Built(Vec::with_capacity(LOAD_CHUNK))
    } else {
        Chunk::Parsed(Vec::with_capacity(LOAD_CHUNK))
    };
    for item in db.range::<[u8; 10], _>(range) {
        let (k, v) = item.map_err(io)?;
        let seq = parse_seq_key(&k)?;
        let (kind, key, jwt) = parse_record(seq, &v)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_string(),
            reason,
        };
        let text = std::str::from_utf8(jwt).map_err(|_| corrupt("not UTF-8".into()))?;
        let (iat, exp) = crate::jwt::parse_times(text).map_err(|e| corrupt(e.to_string()))?;
        let tag = super::index::tag_of(jwt);
        let key_len = key.len();
        chunk.push(Parsed {
            seq,
            kind,
            deleted: v.first() == Some(&TOMBSTONE),
            value: v,
            key_len,
            iat,
            exp,
            tag,
        });
        if chunk.len() == LOAD_CHUNK {
            let next = chunk.empty_like();
            let full = std::mem::replace(&mut chunk, next);
            if out.send((part, full)).is_err() {
                return Ok(());
            }
        }
    }
    if chunk.len() > 0 {
        let _ = out.send((part, chunk));
    }
    Ok(())
}

/// The most segments a store is read in at start ([`Backend::load`]); each costs a reopen.
const LOAD_SEGMENTS: u64 = 8;

/// The fewest sequences in a load segment.
const MIN_SEGMENT: u64 = 16_384;

/// Below this many records the log is read in segments with a fresh handle for each, and the
/// entries that stay are built on one thread while the loading threads only read and parse;
/// above it, in one pass, each loading thread building its own entries. Measured with
/// 800-byte tokens (peak / idle RSS at start): 100,000 records 143 / 129 MiB the first way,
/// 208 / 184 MiB the second (entries interleaved in each thread's malloc arena with sled's
/// freed read buffers, in pages that cannot be returned); 1,000,000 records 1,306–1,362 /
/// 1,083 MiB the first way, 1,199–1,209 / 1,166–1,180 MiB the second, and 1,431–1,488 /
/// 1,331–1,378 MiB with segments but each thread building (the reopens interleave too). Why
/// the large store fares better in one pass was not found; each way keeps its size within
/// the goals of DESIGN §9.
const BUILD_IN_ONE_THREAD_BELOW: u64 = 400_000;

/// Reads the records with sequences in `from..to` on `threads` threads and appends their
/// entries to `out`, in sequence order. The loading threads read and parse (the CPU: JSON of
/// the claims, sha256 of the token); with `build_here`, this thread alone allocates the
/// entries that stay ([`BUILD_IN_ONE_THREAD_BELOW`]).
fn load_segment(
    db: &::sled::Db,
    (from, to): (u64, u64),
    threads: u64,
    build_here: bool,
    out: &mut Vec<Arc<super::Entry>>,
) -> Result<(), StoreError> {
    let width = (to - from).div_ceil(threads);
    let mut parts: Vec<Vec<Arc<super::Entry>>> = (0..threads).map(|_| Vec::new()).collect();
    let results: Vec<Result<(), StoreError>> = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Chunk)>(4 * threads as usize);
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let start = from.saturating_add(i * width);
                let end = start.saturating_add(width).min(to);
                let tx = tx.clone();
                s.spawn(move || parse_range(db, start, end, i as usize, !build_here, &tx))
            })
            .collect();
        drop(tx);
        for (i, chunk) in rx {
            match chunk {
                Chunk::Parsed(v) => {
                    parts[i].extend(v.into_iter().map(|p| Arc::new(p.into_entry())))
                }
                Chunk::Built(v) => parts[i].extend(v),
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(StoreError::Io("a loading thread panicked".into())))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    out.reserve(parts.iter().map(Vec::len).sum());
    for part in parts {
        out.extend(part);
    }
    Ok(())
}

/// Dropping the handle does not release the directory lock at once: sled's background threads
/// hold the files a moment longer. The writer drops its backend on [`super::Store::close`] and
/// then answers; waiting here (bounded) makes "closed" mean "another open will succeed", so a
/// server stopped and started again in one process (tests, embedders) never sees its own lock.
impl Drop for SledBackend {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            drop(db);
            let deadline = std::time::Instant::now() + RELOCK_WAIT;
            while check_not_locked(&self.dir).is_err() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

impl Backend for SledBackend {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        let db = self.db()?;
        let first = db.scan_prefix(b"s/").next().transpose().map_err(io)?;
        let last = db.scan_prefix(b"s/").next_back().transpose().map_err(io)?;
        let (first, last) = match (first, last) {
            (Some((f, _)), Some((l, _))) => (parse_seq_key(&f)?, parse_seq_key(&l)?),
            _ => (0, 0),
        };
        let threads = if last - first < PARALLEL_LOAD_MIN {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) as u64
        };
        // sled keeps pages a scan touched in memory until the handle is dropped (~75 MiB at
        // 100,000 accounts), so a small store is read in at most LOAD_SEGMENTS segments with a
        // fresh handle for each (a reopen took ~110 ms at 1M). Together with one
        // thread building the entries this took the 100k peak from 206 to 159 MiB; the two
        // parts were not measured apart. Large stores: see BUILD_IN_ONE_THREAD_BELOW.
        let build_here = last - first < BUILD_IN_ONE_THREAD_BELOW;
        let segment = if build_here {
            ((last - first) / LOAD_SEGMENTS + 1).max(MIN_SEGMENT)
        } else {
            u64::MAX
        };
        let mut loaded = Loaded::default();
        let mut from = first;
        loop {
            let to = from.saturating_add(segment).min(last.saturating_add(1));
            let db = self.db()?;
            load_segment(db, (from, to), threads, build_here, &mut loaded.entries)?;
            if to > last {
                break;
            }
            from = to;
            self.reopen()?;
        }
        for item in self.db()?.scan_prefix(b"m/") {
            let (k, v) = item.map_err(io)?;
            loaded
                .meta
                .insert(String::from_utf8_lossy(&k[2..]).into_owned(), v.to_vec());
        }
        self.reopen()?;
        Ok(loaded)
    }

    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let mut batch = ::sled::Batch::default();
        for r in &commit.records {
            // Remove first: when one commit writes a key twice, the second record's `old_seq`
            // is the first's sequence, and a batch keeps the last operation per key.
            if let Some(old) = r.old_seq {
                batch.remove(&seq_key(old)[..]);
            }
            let mut value = record_value(r.kind, &r.key, &r.jwt)?;
            if r.deleted {
                value[0] = TOMBSTONE;
            }
            batch.insert(&seq_key(r.seq)[..], value);
        }
        for seq in &commit.removed {
            batch.remove(&seq_key(*seq)[..]);
        }
        for (name, value) in &commit.meta {
            batch.insert(format!("m/{name}").into_bytes(), value.as_slice());
        }
        batch.insert(
            format!("m/{META_HEAD}").into_bytes(),
            &commit.head.to_be_bytes()[..],
        );
        let db = self.db()?;
        db.apply_batch(batch).map_err(io)?;
        // A commit that need not wait is written by sled's background flusher (every 500 ms)
        // or by the next flush, which writes everything applied before it.
        if commit.durable {
            db.flush().map_err(io)?;
        }
        Ok(())
    }

    /// After an I/O error sled refuses every later operation with that error, so a disk that
    /// filled up would keep the server from writing until a restart. Reopening recovers what
    /// reached the disk, as a restart does, and `load` hands it to the writer. While the disk
    /// is still full the reopen fails, and the writer tries again at the next write.
    fn recover(&mut self) -> Result<Option<Loaded>, StoreError> {
        self.reopen()?;
        self.load().map(Some)
    }

    fn name(&self) -> &'static str {
        "sled"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A signed account JWT named `name` (loading parses what it reads).
    fn token(name: &str) -> String {
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account().public_key();
        crate::jwt::encode::account(&operator, &account, name, serde_json::json!({}))
    }

    /// A store written with the first layout loads with the same tokens, sequences and head,
    /// and the old keys are gone.
    #[test]
    fn converts_first_layout() {
        let dir = tempfile::tempdir().unwrap();
        let (jwt_a, jwt_t) = (token("a"), token("t"));
        {
            let db = ::sled::open(dir.path()).unwrap();
            db.insert(b"a/AKEY", jwt_a.as_bytes()).unwrap();
            db.insert(b"t/HASH", jwt_t.as_bytes()).unwrap();
            db.insert(seq_key(3), &b"aAKEY"[..]).unwrap();
            db.insert(seq_key(7), &b"tHASH"[..]).unwrap();
            db.insert(b"m/head", &7u64.to_be_bytes()[..]).unwrap();
            db.insert(b"m/lineage", &b"abc"[..]).unwrap();
            db.flush().unwrap();
        }
        // Dropping a sled handle does not release the directory lock at once (see `Drop for
        // SledBackend`): a busy machine saw this open refused as `Locked`.
        let deadline = std::time::Instant::now() + RELOCK_WAIT;
        while is_locked(dir.path()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut backend = SledBackend::open(dir.path()).unwrap();
        let mut loaded = backend.load().unwrap();
        loaded.entries.sort_by_key(|e| e.seq);
        let got: Vec<_> = loaded
            .entries
            .iter()
            .map(|e| (e.kind, &*e.key, e.jwt_str(), e.seq))
            .collect();
        assert_eq!(
            got,
            vec![
                (Kind::Account, "AKEY", jwt_a.as_str(), 3),
                (Kind::Activation, "HASH", jwt_t.as_str(), 7)
            ]
        );
        assert_eq!(loaded.meta["lineage"], b"abc");
        assert!(backend.db().unwrap().scan_prefix(b"a/").next().is_none());
        assert!(backend.db().unwrap().scan_prefix(b"t/").next().is_none());
        drop(backend);
        // Opening again does nothing more.
        let again = SledBackend::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(again.entries.len(), 2);
    }

    #[test]
    fn rewriting_a_key_moves_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = SledBackend::open(dir.path()).unwrap();
        let rec = |seq, old_seq, jwt: &str| super::super::Record {
            entry: std::sync::Arc::new(super::super::Entry::from_parts(
                Kind::Account,
                "AKEY".into(),
                Bytes::copy_from_slice(jwt.as_bytes()),
                0,
                None,
                seq,
            )),
            old_seq,
        };
        let (one, two, three) = (token("one"), token("two"), token("three"));
        backend
            .commit(&Commit {
                records: vec![rec(1, None, &one)],
                meta: vec![],
                removed: vec![],
                head: 1,
                durable: true,
            })
            .unwrap();
        // Twice in one commit: only the last survives.
        backend
            .commit(&Commit {
                records: vec![rec(2, Some(1), &two), rec(3, Some(2), &three)],
                meta: vec![],
                removed: vec![],
                head: 3,
                durable: true,
            })
            .unwrap();
        let loaded = backend.load().unwrap();
        assert_eq!(loaded.entries.len(), 1);
        assert_eq!(loaded.entries[0].jwt_str(), three);
        assert_eq!(loaded.entries[0].seq, 3);
    }

    /// A store larger than one load segment, with gaps in its sequences and tombstones, loads
    /// every record once, in sequence order, on several threads and several handles.
    #[test]
    fn loads_in_segments_and_ranges_every_record_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = SledBackend::open(dir.path()).unwrap();
        let jwt = token("many");
        // Every third sequence is missing (rewritten keys leave gaps); every 1,000th record
        // is a tombstone.
        let seqs: Vec<u64> = (1..=3 * MIN_SEGMENT + 10).filter(|s| s % 3 != 0).collect();
        let records: Vec<super::super::Record> = seqs
            .iter()
            .map(|&seq| {
                let mut entry = super::super::Entry::from_parts(
                    Kind::Account,
                    format!("K{seq}").into(),
                    Bytes::copy_from_slice(jwt.as_bytes()),
                    0,
                    None,
                    seq,
                );
                entry.deleted = seq % 1000 == 1;
                super::super::Record {
                    entry: std::sync::Arc::new(entry),
                    old_seq: None,
                }
            })
            .collect();
        backend
            .commit(&Commit {
                records,
                meta: vec![],
                removed: vec![],
                head: *seqs.last().unwrap(),
                durable: true,
            })
            .unwrap();
        let loaded = backend.load().unwrap();
        let got: Vec<u64> = loaded.entries.iter().map(|e| e.seq).collect();
        assert_eq!(got, seqs, "every record once, in order");
        for e in &loaded.entries {
            assert_eq!(&*e.key, format!("K{}", e.seq));
            assert_eq!(e.deleted, e.seq % 1000 == 1, "seq {}", e.seq);
            assert_eq!(e.jwt_str(), jwt);
        }
        // The handle still works after the reopens.
        assert!(backend.db().unwrap().get(seq_key(1)).unwrap().is_some());
        // Entries built by the loading threads themselves (large stores) are the same.
        let mut built = Vec::new();
        load_segment(backend.db().unwrap(), (0, 1 << 20), 2, false, &mut built).unwrap();
        let same = built
            .iter()
            .zip(&loaded.entries)
            .all(|(a, b)| a.seq == b.seq && a.key == b.key && a.deleted == b.deleted);
        assert!(same && built.len() == loaded.entries.len());
    }
}
