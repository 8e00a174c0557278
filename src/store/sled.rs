//! The sled backend, the default durable store.
//!
//! One sled tree, with prefixes, so that a commit is a single atomic `Batch`:
//! - `a/<account pubkey>` → account JWT
//! - `t/<activation hash>` → activation token
//! - `s/<seq, u64 big-endian>` → `a|t` + key (the change log; each key once, at its latest seq)
//! - `m/<name>` → metadata (lineage id, head, replication cursors)
//!
//! `commit` applies the batch and then `flush`es (fsync) before returning, which is what lets the
//! HTTP layer answer 200 only for writes that survive `kill -9`.

use super::{Backend, Commit, Kind, Loaded, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::Path;

/// Metadata key of the persisted head sequence.
pub const META_HEAD: &str = "head";

/// sled's page cache. The index already holds every token in memory, so sled's cache only
/// needs to cover the write path; its 1 GiB default would dominate resident memory.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// A sled database used as a [`Backend`].
pub struct SledBackend {
    db: ::sled::Db,
}

impl SledBackend {
    /// Opens or creates the database in `dir`.
    ///
    /// # Errors
    /// [`StoreError::Io`], e.g. when another process holds the directory's lock.
    pub fn open(dir: &Path) -> Result<SledBackend, StoreError> {
        let db = ::sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| StoreError::Io(format!("opening sled store {}: {e}", dir.display())))?;
        Ok(SledBackend { db })
    }
}

fn io(e: ::sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn prefix(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::Account => b"a/",
        Kind::Activation => b"t/",
    }
}

fn seq_key(seq: u64) -> Vec<u8> {
    let mut k = b"s/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Backend for SledBackend {
    fn load(&self) -> Result<Loaded, StoreError> {
        let mut seqs: HashMap<(Kind, String), u64> = HashMap::new();
        for item in self.db.scan_prefix(b"s/") {
            let (k, v) = item.map_err(io)?;
            let seq = <[u8; 8]>::try_from(&k[2..])
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into(),
                    reason: "bad sequence key".into(),
                })?;
            let kind = match v.first() {
                Some(b'a') => Kind::Account,
                Some(b't') => Kind::Activation,
                _ => {
                    return Err(StoreError::Corrupt {
                        key: format!("s/{seq}"),
                        reason: "bad change-log entry".into(),
                    })
                }
            };
            seqs.insert((kind, String::from_utf8_lossy(&v[1..]).into_owned()), seq);
        }
        let mut loaded = Loaded::default();
        for kind in [Kind::Account, Kind::Activation] {
            for item in self.db.scan_prefix(prefix(kind)) {
                let (k, v) = item.map_err(io)?;
                let key = String::from_utf8_lossy(&k[2..]).into_owned();
                let seq = seqs.get(&(kind, key.clone())).copied().unwrap_or(0);
                loaded
                    .records
                    .push((kind, key, Bytes::copy_from_slice(&v), seq));
            }
        }
        for item in self.db.scan_prefix(b"m/") {
            let (k, v) = item.map_err(io)?;
            loaded
                .meta
                .insert(String::from_utf8_lossy(&k[2..]).into_owned(), v.to_vec());
        }
        Ok(loaded)
    }

    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let mut batch = ::sled::Batch::default();
        for r in &commit.records {
            let mut key = prefix(r.kind).to_vec();
            key.extend_from_slice(r.key.as_bytes());
            batch.insert(key, r.jwt.as_ref());
            if let Some(old) = r.old_seq {
                batch.remove(seq_key(old));
            }
            let mut v = vec![if r.kind == Kind::Account { b'a' } else { b't' }];
            v.extend_from_slice(r.key.as_bytes());
            batch.insert(seq_key(r.seq), v);
        }
        for (name, value) in &commit.meta {
            batch.insert(format!("m/{name}").into_bytes(), value.as_slice());
        }
        batch.insert(
            format!("m/{META_HEAD}").into_bytes(),
            &commit.head.to_be_bytes()[..],
        );
        self.db.apply_batch(batch).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "sled"
    }
}
