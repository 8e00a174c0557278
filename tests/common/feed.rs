//! Reading a server's change feed (`/jwt/v1/changes`) as a client would: every page, parsed into
//! [`Change`]s, with the headers that describe the store. Tests that check the feed's wire format
//! itself read the raw text instead.

use super::{get, http, TestServer};
use std::collections::HashMap;

/// One line of a change feed: `seq|kind|key|jwt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its sequence number.
    pub seq: u64,
    /// `account`, `activation` or `delete`.
    pub kind: String,
    /// The account key or activation hash.
    pub key: String,
    /// The token (empty for a deletion).
    pub jwt: String,
}

/// A whole change feed and what its last page said about the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// `X-Store-Id`: the store's lineage.
    pub store_id: String,
    /// `X-Head-Seq` of the last page.
    pub head: u64,
    /// Every change, in feed order.
    pub changes: Vec<Change>,
}

impl Feed {
    /// The changes of one kind (`account`, `activation`, `delete`).
    pub fn of_kind(&self, kind: &str) -> Vec<Change> {
        self.changes
            .iter()
            .filter(|c| c.kind == kind)
            .cloned()
            .collect()
    }
}

/// The whole change feed of `base`, page by page from sequence 0.
pub async fn read(base: &str) -> Feed {
    let mut changes: Vec<Change> = Vec::new();
    let mut since = 0;
    loop {
        let r = http()
            .get(format!("{base}/jwt/v1/changes?since={since}&limit=10000"))
            .send()
            .await
            .expect("change feed");
        assert_eq!(r.status(), 200, "change feed of {base}");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .unwrap_or_else(|| panic!("change feed of {base} without {name}"))
                .to_str()
                .expect("ASCII header")
                .to_string()
        };
        let store_id = header("x-store-id");
        let head: u64 = header("x-head-seq").parse().expect("numeric head");
        let body = r.text().await.expect("change feed body");
        let before = changes.len();
        for line in body.lines() {
            let mut p = line.splitn(4, '|');
            let (Some(seq), Some(kind), Some(key), Some(jwt)) =
                (p.next(), p.next(), p.next(), p.next())
            else {
                panic!("malformed feed line from {base}: {line:.80}");
            };
            changes.push(Change {
                seq: seq.parse().expect("numeric sequence"),
                kind: kind.into(),
                key: key.into(),
                jwt: jwt.into(),
            });
        }
        if changes.len() == before {
            return Feed {
                store_id,
                head,
                changes,
            };
        }
        since = changes.last().expect("a change").seq;
    }
}

/// key → JWT of a feed, asserting that sequences increase and each key is listed once.
pub fn by_key(changes: &[Change], who: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut last = 0;
    for c in changes {
        assert!(c.seq > last, "{who}: feed out of order at seq {}", c.seq);
        last = c.seq;
        assert!(
            map.insert(c.key.clone(), c.jwt.clone()).is_none(),
            "{who}: key {} is listed twice in the change feed",
            c.key
        );
    }
    map
}

/// The key → JWT map of a server's whole feed (see [`by_key`]).
pub async fn contents(base: &str, who: &str) -> HashMap<String, String> {
    by_key(&read(base).await.changes, who)
}

/// Everything a store shows from outside: its whole feed (lineage, head, changes), its pack, and
/// the in-process store's head. Equal before and after means nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observable {
    /// The whole change feed.
    pub feed: Feed,
    /// `/jwt/v1/pack`.
    pub pack: String,
    /// The store's own head sequence.
    pub head: u64,
}

/// The [`Observable`] state of `server`'s store.
pub async fn observable(server: &TestServer) -> Observable {
    let feed = read(&server.url).await;
    let (status, pack) = get(&server.at("/jwt/v1/pack")).await;
    assert_eq!(status, 200, "pack of {}: {pack}", server.url);
    Observable {
        feed,
        pack,
        head: server.running().state().store.head(),
    }
}
