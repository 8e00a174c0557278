//! The in-memory index: every stored token with what the read path needs precomputed, plus the
//! change log (sequence → key) the replication feed reads. Owned by `Store` behind a `RwLock`;
//! only the writer thread mutates it, after the backend has made the change durable.

use super::{Kind, Loaded, StoreError};
use crate::jwt::{Claims, Jwt};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A stored token and what serving it needs, computed once at write or load time.
///
/// Kept small because the index holds one per stored token (100,000 accounts must fit in well
/// under 200 MiB with everything else): the key is one allocation shared with the index's map,
/// and the ETag and the JWT are two views of one buffer (the quoted ETag followed by the
/// token), so serving either is a reference count, never a copy.
///
/// A token's identity is its bytes (`jwt`), not its `jti`, which the Go library derives from
/// the standard claims only and so repeats across same-second versions; the ETag is derived
/// from the bytes for the same reason ([`etag`]).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Account or activation.
    pub kind: Kind,
    /// The account public key or activation hash.
    pub key: Arc<str>,
    /// The raw token, served as the body.
    pub jwt: Bytes,
    /// The ETag header value, [`etag`] of `jwt` (a view of the same buffer as `jwt`).
    pub etag: Bytes,
    /// Issued-at; orders versions.
    pub iat: i64,
    /// Expiry, if any (0 in the token means none).
    pub exp: Option<i64>,
    /// The sequence number of this version in the change log (0 until committed).
    pub seq: u64,
}

impl Entry {
    /// An entry for a verified token, not yet sequenced.
    pub fn new(kind: Kind, key: &str, jwt: &Jwt) -> Entry {
        Entry::from_parts(kind, key.into(), jwt.raw.as_bytes(), &jwt.claims, 0)
    }

    pub(super) fn from_parts(
        kind: Kind,
        key: Arc<str>,
        jwt: &[u8],
        claims: &Claims,
        seq: u64,
    ) -> Entry {
        let mut buf = Vec::with_capacity(ETAG_LEN + jwt.len());
        write_etag(jwt, &mut buf);
        let etag_len = buf.len();
        buf.extend_from_slice(jwt);
        let buf = Bytes::from(buf);
        Entry {
            kind,
            key,
            etag: buf.slice(..etag_len),
            jwt: buf.slice(etag_len..),
            iat: claims.iat,
            exp: claims.expires(),
            seq,
        }
    }

    /// The token as text (it was UTF-8 when it was accepted).
    pub fn jwt_str(&self) -> &str {
        std::str::from_utf8(&self.jwt).unwrap_or("")
    }

    /// The quoted ETag, as text.
    pub fn etag_str(&self) -> &str {
        std::str::from_utf8(&self.etag).unwrap_or("")
    }

    /// Whether `other` holds the same token, byte for byte (what "unchanged" means).
    pub fn same_token(&self, other: &Entry) -> bool {
        self.jwt == other.jwt
    }
}

/// Hex digits of sha256 in an ETag: 128 bits, so two versions of a token never share one by
/// chance, in a header half the length of a `jti`.
const ETAG_HEX: usize = 32;
/// Length of a quoted ETag.
const ETAG_LEN: usize = ETAG_HEX + 2;

fn write_etag(jwt: &[u8], out: &mut Vec<u8>) {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(jwt);
    out.push(b'"');
    out.extend_from_slice(
        data_encoding::HEXLOWER
            .encode(&digest[..ETAG_HEX / 2])
            .as_bytes(),
    );
    out.push(b'"');
}

/// The `ETag` a token is served with: a quoted hex prefix of the sha256 of its bytes, so any
/// change to the token, even one that keeps its `jti` and `iat`, changes its ETag (and a
/// conditional GET with the old one answers 200 with the new token, never 304).
pub fn etag(jwt: &[u8]) -> String {
    let mut out = Vec::with_capacity(ETAG_LEN);
    write_etag(jwt, &mut out);
    String::from_utf8(out).expect("hex is ASCII")
}

/// All entries and the change log.
#[derive(Debug, Default)]
pub(super) struct Index {
    accounts: HashMap<Arc<str>, Arc<Entry>>,
    activations: HashMap<Arc<str>, Arc<Entry>>,
    /// Each key appears once, at the sequence of its latest version.
    log: BTreeMap<u64, Arc<Entry>>,
    head: u64,
    meta: HashMap<String, Vec<u8>>,
}

impl Index {
    pub(super) fn from_loaded(loaded: Loaded) -> Result<Index, StoreError> {
        let mut index = Index {
            meta: loaded.meta,
            ..Index::default()
        };
        for entry in loaded.entries {
            index.insert(Arc::new(entry));
        }
        if let Some(h) = index
            .meta
            .get(super::sled::META_HEAD)
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        {
            index.head = index.head.max(u64::from_be_bytes(h));
        }
        Ok(index)
    }

    fn map(&self, kind: Kind) -> &HashMap<Arc<str>, Arc<Entry>> {
        match kind {
            Kind::Account => &self.accounts,
            Kind::Activation => &self.activations,
        }
    }

    pub(super) fn get(&self, kind: Kind, key: &str) -> Option<Arc<Entry>> {
        self.map(kind).get(key).cloned()
    }

    /// Inserts a sequenced entry, moving its key in the log.
    pub(super) fn insert(&mut self, entry: Arc<Entry>) {
        let map = match entry.kind {
            Kind::Account => &mut self.accounts,
            Kind::Activation => &mut self.activations,
        };
        if let Some(old) = map.insert(entry.key.clone(), entry.clone()) {
            self.log.remove(&old.seq);
        }
        self.head = self.head.max(entry.seq);
        self.log.insert(entry.seq, entry);
    }

    /// Removes a key and its change-log entry. The head does not move: a removal adds nothing
    /// to the feed (replicas never delete, as nats-server's own stores never do).
    pub(super) fn remove(&mut self, kind: Kind, key: &str) -> Option<Arc<Entry>> {
        let map = match kind {
            Kind::Account => &mut self.accounts,
            Kind::Activation => &mut self.activations,
        };
        let old = map.remove(key)?;
        self.log.remove(&old.seq);
        Some(old)
    }

    pub(super) fn head(&self) -> u64 {
        self.head
    }

    pub(super) fn set_head(&mut self, head: u64) {
        self.head = self.head.max(head);
    }

    pub(super) fn meta(&self, name: &str) -> Option<&[u8]> {
        self.meta.get(name).map(Vec::as_slice)
    }

    pub(super) fn set_meta(&mut self, name: &str, value: Vec<u8>) {
        self.meta.insert(name.to_string(), value);
    }

    pub(super) fn changes_since(&self, since: u64, limit: usize) -> Vec<Arc<Entry>> {
        self.log
            .range(since.saturating_add(1)..)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect()
    }

    pub(super) fn all(&self, kind: Kind, max: usize) -> Vec<Arc<Entry>> {
        self.log
            .values()
            .filter(|e| e.kind == kind)
            .take(max)
            .cloned()
            .collect()
    }

    pub(super) fn counts(&self) -> (usize, usize) {
        (self.accounts.len(), self.activations.len())
    }
}
