//! The in-memory index: every stored token with what the read path needs precomputed, plus the
//! change log (sequence → key) the replication feed reads. Owned by `Store` behind a `RwLock`;
//! only the writer thread mutates it, after the backend has made the change durable.

use super::{Kind, Loaded, StoreError};
use crate::jwt::Jwt;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// A stored token and what serving it needs, computed once at write or load time.
///
/// Kept small because the index holds one per stored token (a million accounts of 800-byte
/// JWTs must fit in 1.3 GiB with everything else, DESIGN §9): besides the token's own buffer
/// there are the key (one allocation shared with the index's set and the change log) and this
/// struct, 104 bytes. The ETag is kept as the 16 bytes it is made of and rendered when served
/// (a `Bytes` view of it cost 32 bytes, its text 34 more in the buffer and a shared-buffer
/// header 32 more, per token); the same 16 bytes are the token's digest element.
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
    /// The first 128 bits of the sha256 of `jwt`: the ETag ([`Entry::etag`]) and, for a token
    /// that is not a tombstone, its digest element.
    pub(crate) tag: DigestHash,
    /// Issued-at; orders versions.
    pub iat: i64,
    /// Expiry, if any (0 in the token means none).
    pub exp: Option<i64>,
    /// The sequence number of this version in the change log (0 until committed).
    pub seq: u64,
    /// A tombstone: the account was deleted by the operator-signed delete request in `jwt`,
    /// issued at `iat`. Served as 404; kept as a version so that replicas delete too and no
    /// older copy brings the account back.
    pub deleted: bool,
}

impl Entry {
    /// A tombstone for account `key`, deleted by the verified delete request `request`.
    pub fn tombstone(key: &str, request: &Jwt) -> Entry {
        Entry {
            deleted: true,
            exp: None,
            ..Entry::new(Kind::Account, key, request)
        }
    }

    /// The entry's element of the store digest: the 128-bit sha256 prefix its ETag already
    /// holds (no second hash of every token at start), or for a tombstone a hash of
    /// `delete|key|request` (one request can delete several accounts, and equal elements would
    /// cancel out in the XOR).
    pub fn digest_hash(&self) -> DigestHash {
        if self.deleted {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(b"delete|");
            h.update(self.key.as_bytes());
            h.update(b"|");
            h.update(&self.jwt);
            let full: [u8; 32] = h.finalize().into();
            let mut out = [0u8; 16];
            out.copy_from_slice(&full[..16]);
            out
        } else {
            self.tag
        }
    }

    /// An entry for a verified token, not yet sequenced.
    pub fn new(kind: Kind, key: &str, jwt: &Jwt) -> Entry {
        Entry::from_parts(
            kind,
            key.into(),
            Bytes::copy_from_slice(jwt.raw.as_bytes()),
            jwt.claims.iat,
            jwt.claims.expires(),
            0,
        )
    }

    /// [`Entry::new`] taking the token's text instead of copying it.
    pub fn from_jwt(kind: Kind, key: &str, jwt: Jwt) -> Entry {
        let (iat, exp) = (jwt.claims.iat, jwt.claims.expires());
        Entry::from_parts(kind, key.into(), Bytes::from(jwt.raw), iat, exp, 0)
    }

    /// An entry for `jwt` (whose `iat` and expiry are given) at `seq`.
    pub(super) fn from_parts(
        kind: Kind,
        key: Arc<str>,
        jwt: Bytes,
        iat: i64,
        exp: Option<i64>,
        seq: u64,
    ) -> Entry {
        Entry {
            kind,
            key,
            tag: tag_of(&jwt),
            jwt,
            iat,
            exp,
            seq,
            deleted: false,
        }
    }

    /// The token as text (it was UTF-8 when it was accepted).
    pub fn jwt_str(&self) -> &str {
        std::str::from_utf8(&self.jwt).unwrap_or("")
    }

    /// The ETag header value, [`etag`] of `jwt`: `"` + 32 hex digits + `"`.
    pub fn etag(&self) -> Bytes {
        let mut out = Vec::with_capacity(ETAG_LEN);
        write_etag_of(&self.tag, &mut out);
        Bytes::from(out)
    }

    /// The quoted ETag, as text.
    pub fn etag_str(&self) -> String {
        let mut out = Vec::with_capacity(ETAG_LEN);
        write_etag_of(&self.tag, &mut out);
        String::from_utf8(out).expect("hex is ASCII")
    }

    /// Whether `other` holds the same token, byte for byte (what "unchanged" means).
    pub fn same_token(&self, other: &Entry) -> bool {
        self.jwt == other.jwt
    }
}

/// Number of digest buckets: keys are spread over them by a hash of the key, so two stores
/// that differ in a few keys differ in a few buckets, and only those are compared key by key.
pub const DIGEST_BUCKETS: usize = 256;

/// The bucket of a key (stable across versions, processes and releases).
pub fn digest_bucket(kind: Kind, key: &str) -> usize {
    // FNV-1a: a fixed, portable function (the std hasher is randomly keyed per process).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(kind as u8).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % DIGEST_BUCKETS as u64) as usize
}

/// An entry's element of the digest (see [`Entry::digest_hash`]).
pub type DigestHash = [u8; 16];

/// An order-independent digest of a store's content: per bucket, the XOR of a 128-bit sha256
/// prefix of every token in it (nats-server's directory hash, split by key and shortened). Two stores with the same
/// tokens have the same digest, whatever order the tokens arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// One XOR per bucket.
    pub buckets: Box<[DigestHash; DIGEST_BUCKETS]>,
}

impl Default for Digest {
    fn default() -> Digest {
        Digest {
            buckets: Box::new([[0u8; 16]; DIGEST_BUCKETS]),
        }
    }
}

impl Digest {
    /// Adds or removes (XOR is its own inverse) a token.
    fn toggle(&mut self, entry: &Entry) {
        let bucket = &mut self.buckets[digest_bucket(entry.kind, &entry.key)];
        for (d, b) in bucket.iter_mut().zip(entry.digest_hash()) {
            *d ^= b;
        }
    }

    /// The whole store's digest: the XOR of every bucket.
    pub fn total(&self) -> DigestHash {
        let mut out = [0u8; 16];
        for bucket in self.buckets.iter() {
            for (o, b) in out.iter_mut().zip(bucket) {
                *o ^= b;
            }
        }
        out
    }
}

/// Hex digits of sha256 in an ETag: 128 bits, so two versions of a token never share one by
/// chance, in a header half the length of a `jti`.
const ETAG_HEX: usize = 32;
/// Length of a quoted ETag.
const ETAG_LEN: usize = ETAG_HEX + 2;

/// The first 128 bits of the sha256 of `jwt`.
pub(super) fn tag_of(jwt: &[u8]) -> DigestHash {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(jwt);
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..ETAG_HEX / 2]);
    out
}

fn write_etag_of(tag: &DigestHash, out: &mut Vec<u8>) {
    let mut hex = [0u8; ETAG_HEX];
    data_encoding::HEXLOWER.encode_mut(tag, &mut hex);
    out.push(b'"');
    out.extend_from_slice(&hex);
    out.push(b'"');
}

/// The `ETag` a token is served with: a quoted hex prefix of the sha256 of its bytes, so any
/// change to the token, even one that keeps its `jti` and `iat`, changes its ETag (and a
/// conditional GET with the old one answers 200 with the new token, never 304).
pub fn etag(jwt: &[u8]) -> String {
    let mut out = Vec::with_capacity(ETAG_LEN);
    write_etag_of(&tag_of(jwt), &mut out);
    String::from_utf8(out).expect("hex is ASCII")
}

/// An entry in the index's sets, hashed and compared by its key alone, so a set of them is a
/// map from key to entry at 8 bytes a slot (a `HashMap<Arc<str>, Arc<Entry>>` slot is 24).
#[derive(Debug, Clone)]
struct ByKey(Arc<Entry>);

impl std::borrow::Borrow<str> for ByKey {
    fn borrow(&self) -> &str {
        &self.0.key
    }
}

impl std::hash::Hash for ByKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Exactly as `str` hashes, which `Borrow<str>` requires.
        (*self.0.key).hash(state);
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &ByKey) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for ByKey {}

/// All entries and the change log.
#[derive(Debug, Default)]
pub(super) struct Index {
    accounts: HashSet<ByKey>,
    activations: HashSet<ByKey>,
    /// Each key appears once, at the sequence of its latest version.
    log: BTreeMap<u64, Arc<Entry>>,
    head: u64,
    meta: HashMap<String, Vec<u8>>,
    /// Kept up to date by every insert and removal.
    digest: Digest,
    /// Tombstones among `accounts` (not counted as accounts).
    tombstones: usize,
}

impl Index {
    pub(super) fn from_loaded(loaded: Loaded) -> Result<Index, StoreError> {
        let mut index = Index {
            meta: loaded.meta,
            ..Index::default()
        };
        // Sized once: growing a set of a million keys rehashes every key at each doubling and
        // holds the old table and the new one at once.
        let activations = loaded
            .entries
            .iter()
            .filter(|e| e.kind == Kind::Activation)
            .count();
        index.accounts.reserve(loaded.entries.len() - activations);
        index.activations.reserve(activations);
        for entry in loaded.entries {
            index.insert(entry);
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

    fn set(&self, kind: Kind) -> &HashSet<ByKey> {
        match kind {
            Kind::Account => &self.accounts,
            Kind::Activation => &self.activations,
        }
    }

    /// The stored token of `key`; `None` for a deleted key.
    pub(super) fn get(&self, kind: Kind, key: &str) -> Option<Arc<Entry>> {
        self.set(kind)
            .get(key)
            .filter(|e| !e.0.deleted)
            .map(|e| e.0.clone())
    }

    /// The latest version of `key`, a tombstone included (version comparisons).
    pub(super) fn version(&self, kind: Kind, key: &str) -> Option<Arc<Entry>> {
        self.set(kind).get(key).map(|e| e.0.clone())
    }

    /// Inserts a sequenced entry, moving its key in the log.
    pub(super) fn insert(&mut self, entry: Arc<Entry>) {
        let set = match entry.kind {
            Kind::Account => &mut self.accounts,
            Kind::Activation => &mut self.activations,
        };
        if let Some(ByKey(old)) = set.replace(ByKey(entry.clone())) {
            self.log.remove(&old.seq);
            self.digest.toggle(&old);
            self.tombstones -= usize::from(old.deleted);
        }
        self.tombstones += usize::from(entry.deleted);
        self.digest.toggle(&entry);
        self.head = self.head.max(entry.seq);
        self.log.insert(entry.seq, entry);
    }

    /// Removes a key and its change-log entry. The head does not move: a removal adds nothing
    /// to the feed (replicas never delete, as nats-server's own stores never do).
    pub(super) fn remove(&mut self, kind: Kind, key: &str) -> Option<Arc<Entry>> {
        let set = match kind {
            Kind::Account => &mut self.accounts,
            Kind::Activation => &mut self.activations,
        };
        let ByKey(old) = set.take(key)?;
        self.log.remove(&old.seq);
        self.digest.toggle(&old);
        self.tombstones -= usize::from(old.deleted);
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

    /// [`Index::changes_since`] and the head of the same moment.
    pub(super) fn changes_and_head(&self, since: u64, limit: usize) -> (Vec<Arc<Entry>>, u64) {
        (self.changes_since(since, limit), self.head)
    }

    /// Every live (not deleted) entry in change-log order.
    pub(super) fn live(&self) -> Vec<Arc<Entry>> {
        self.log.values().filter(|e| !e.deleted).cloned().collect()
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
            .filter(|e| e.kind == kind && !e.deleted)
            .take(max)
            .cloned()
            .collect()
    }

    /// Tombstones issued before `before` (unix seconds), oldest first (compaction).
    pub(super) fn tombstones_before(&self, before: i64) -> Vec<Arc<Entry>> {
        if self.tombstones == 0 {
            return Vec::new();
        }
        self.log
            .values()
            .filter(|e| e.deleted && e.iat < before)
            .cloned()
            .collect()
    }

    /// The head and the digest of the same moment.
    pub(super) fn digest(&self) -> (u64, Digest) {
        (self.head, self.digest.clone())
    }

    /// Every entry whose key falls in one of `buckets`.
    pub(super) fn in_buckets(&self, buckets: &[bool; DIGEST_BUCKETS]) -> Vec<Arc<Entry>> {
        self.accounts
            .iter()
            .chain(self.activations.iter())
            .filter(|e| buckets[digest_bucket(e.0.kind, &e.0.key)])
            .map(|e| e.0.clone())
            .collect()
    }

    pub(super) fn counts(&self) -> (usize, usize) {
        (
            self.accounts.len() - self.tombstones,
            self.activations.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, name: &str, iat: i64, seq: u64) -> Arc<Entry> {
        let signer = nkeys::KeyPair::new_operator();
        let token = crate::jwt::encode::sign(
            serde_json::json!({ "name": name, "sub": key, "iat": iat,
                "nats": { "type": "account", "version": 2 } }),
            &signer,
        );
        let claims = crate::jwt::parse_unverified(&token).unwrap();
        Arc::new(Entry::from_parts(
            Kind::Account,
            key.into(),
            Bytes::from(token),
            claims.iat,
            claims.expires(),
            seq,
        ))
    }

    /// The digest depends on what is stored, not on the order it arrived in or on the versions
    /// replaced and removed on the way.
    #[test]
    fn the_digest_is_order_independent_and_follows_every_change() {
        let keys: Vec<String> = (0..50)
            .map(|_| nkeys::KeyPair::new_account().public_key())
            .collect();
        let finals: Vec<Arc<Entry>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| entry(k, "final", 10, i as u64 + 100))
            .collect();
        let mut forward = Index::default();
        for e in &finals {
            forward.insert(e.clone());
        }
        let mut churned = Index::default();
        for (i, k) in keys.iter().enumerate().rev() {
            churned.insert(entry(k, "old", 1, i as u64 + 1));
        }
        churned.insert(entry("AEXTRA", "gone", 1, 60));
        for e in finals.iter().rev() {
            churned.insert(e.clone());
        }
        churned.remove(Kind::Account, "AEXTRA");
        assert_eq!(forward.digest().1, churned.digest().1);
        assert_ne!(forward.digest().1, Index::default().digest().1);
        let mut tombstoned = Index::default();
        for e in &finals {
            tombstoned.insert(e.clone());
        }
        let mut t = Entry::clone(&finals[0]);
        t.deleted = true;
        t.seq = 999;
        tombstoned.insert(Arc::new(t));
        assert_ne!(
            forward.digest().1,
            tombstoned.digest().1,
            "a deletion is a version"
        );
        assert_eq!(tombstoned.counts().0, 49);
        assert!(tombstoned.get(Kind::Account, &keys[0]).is_none());
        assert!(tombstoned.version(Kind::Account, &keys[0]).is_some());
    }
}
