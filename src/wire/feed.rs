//! The replication protocol between our nodes: the change feed and the digest listing.
//!
//! - Change feed (`GET /jwt/v1/changes`): one line per change, `seq|kind|key|jwt\n`, in
//!   sequence order. `kind` is `account`, `activation`, or `delete` (a tombstone: `key` is the
//!   deleted account and `jwt` the operator-signed delete request). The JWT is the rest of the
//!   line.
//! - Digest listing (`GET /jwt/v1/digest?buckets=…`): one line per entry of the asked buckets,
//!   `kind|key|iat|hash\n` with `hash` the entry's digest element in lowercase hex; a deletion
//!   adds `|request` (it cannot be fetched with a GET, which answers 404).
//!
//! A line that does not parse makes the whole answer unusable to the replica (it is a
//! protocol error, not a token to skip): the parsers return `None` and the caller says so.

use crate::store::{DigestHash, Entry, Kind};
use bytes::BytesMut;
use std::fmt::Write;

/// The kind as the feed and the digest listing name it: `delete` for a tombstone.
pub fn kind_name(entry: &Entry) -> &'static str {
    if entry.deleted {
        "delete"
    } else {
        entry.kind.as_str()
    }
}

/// A kind name of the feed or the digest listing: `(kind, deleted)`.
pub fn parse_kind(s: &str) -> Option<(Kind, bool)> {
    if s == "delete" {
        return Some((Kind::Account, true));
    }
    [Kind::Account, Kind::Activation]
        .into_iter()
        .find(|k| k.as_str() == s)
        .map(|k| (k, false))
}

/// One change of the feed: `seq|kind|key|jwt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The primary's sequence number.
    pub seq: u64,
    /// What the key names.
    pub kind: Kind,
    /// The account key or activation hash.
    pub key: String,
    /// The token (for a deletion: the delete request).
    pub jwt: String,
    /// A deletion of the account `key` (feed kind `delete`).
    pub deleted: bool,
}

/// Writes the change-feed line of `entry` (with its newline) to `out`.
pub fn write_change(entry: &Entry, out: &mut BytesMut) {
    let _ = write!(out, "{}|{}|{}|", entry.seq, kind_name(entry), entry.key);
    out.extend_from_slice(&entry.jwt);
    out.extend_from_slice(b"\n");
}

/// Parses one change-feed line (without its newline).
pub fn parse_change(line: &str) -> Option<Change> {
    let mut parts = line.splitn(4, '|');
    let seq = parts.next()?.parse::<u64>().ok()?;
    let (kind, deleted) = parse_kind(parts.next()?)?;
    let key = parts.next()?.to_string();
    let jwt = parts.next()?.to_string();
    Some(Change {
        seq,
        kind,
        key,
        jwt,
        deleted,
    })
}

/// One entry of the digest listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestLine {
    /// What the key names.
    pub kind: Kind,
    /// The key.
    pub key: String,
    /// The stored version's `iat`.
    pub iat: i64,
    /// Its digest element ([`Entry::digest_hash`]).
    pub hash: DigestHash,
    /// For a deletion: the delete request.
    pub request: Option<String>,
}

/// Writes the digest-listing line of `entry` (with its newline) to `out`.
pub fn write_digest_line(entry: &Entry, out: &mut String) {
    let _ = write!(
        out,
        "{}|{}|{}|{}",
        kind_name(entry),
        entry.key,
        entry.iat,
        data_encoding::HEXLOWER.encode(&entry.digest_hash())
    );
    if entry.deleted {
        let _ = write!(out, "|{}", entry.jwt_str());
    }
    out.push('\n');
}

/// Parses one digest-listing line (without its newline).
pub fn parse_digest_line(line: &str) -> Option<DigestLine> {
    let mut p = line.split('|');
    let (kind, deleted) = parse_kind(p.next()?)?;
    let key = p.next()?.to_string();
    let iat = p.next()?.parse().ok()?;
    let hash = data_encoding::HEXLOWER
        .decode(p.next()?.as_bytes())
        .ok()?
        .try_into()
        .ok()?;
    let request = if deleted {
        Some(p.next()?.to_string())
    } else {
        None
    };
    Some(DigestLine {
        kind,
        key,
        iat,
        hash,
        request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry holding a real signed token (its text is `entry.jwt_str()`).
    fn entry(kind: Kind, key: &str, seq: u64, deleted: bool) -> Entry {
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        let token = crate::jwt::encode::account(
            &operator,
            &account.public_key(),
            "a",
            serde_json::json!({}),
        );
        let jwt = crate::jwt::decode(&token).expect("decodes");
        Entry {
            seq,
            deleted,
            ..Entry::new(kind, key, &jwt)
        }
    }

    #[test]
    fn changes_round_trip() {
        let account = entry(Kind::Account, "AKEY", 7, false);
        let activation = entry(Kind::Activation, "HASH", 8, false);
        let tombstone = entry(Kind::Account, "BKEY", 9, true);
        let mut body = BytesMut::new();
        for e in [&account, &activation, &tombstone] {
            write_change(e, &mut body);
        }
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(
            text,
            format!(
                "7|account|AKEY|{}\n8|activation|HASH|{}\n9|delete|BKEY|{}\n",
                account.jwt_str(),
                activation.jwt_str(),
                tombstone.jwt_str()
            )
        );
        let parsed: Vec<Change> = text
            .lines()
            .map(|l| parse_change(l).expect("parses"))
            .collect();
        let expected: Vec<Change> = [&account, &activation, &tombstone]
            .iter()
            .map(|e| Change {
                seq: e.seq,
                kind: e.kind,
                key: e.key.to_string(),
                jwt: e.jwt_str().to_string(),
                deleted: e.deleted,
            })
            .collect();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn malformed_changes_do_not_parse() {
        for bad in [
            "",
            "x|account|A|j",
            "1|thing|A|j",
            "1|account|A",
            "-1|account|A|j",
        ] {
            assert_eq!(parse_change(bad), None, "{bad:?}");
        }
        // The token is the rest of the line.
        assert_eq!(parse_change("1|activation|H|a|b").unwrap().jwt, "a|b");
    }

    #[test]
    fn digest_lines_round_trip() {
        let activation = entry(Kind::Activation, "HASH", 1, false);
        let tombstone = entry(Kind::Account, "BKEY", 2, true);
        for e in [&activation, &tombstone] {
            let mut line = String::new();
            write_digest_line(e, &mut line);
            assert!(line.ends_with('\n'));
            let parsed = parse_digest_line(line.trim_end()).expect("parses");
            assert_eq!(
                parsed,
                DigestLine {
                    kind: e.kind,
                    key: e.key.to_string(),
                    iat: e.iat,
                    hash: e.digest_hash(),
                    request: e.deleted.then(|| e.jwt_str().to_string()),
                }
            );
        }
        assert_eq!(parse_digest_line("account|A|1|nothex"), None);
        // A deletion without its request.
        let zero = "00000000000000000000000000000000";
        assert_eq!(parse_digest_line(&format!("delete|A|1|{zero}")), None);
        assert!(parse_digest_line(&format!("account|A|1|{zero}")).is_some());
    }
}
