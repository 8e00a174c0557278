//! Robustness: faults with real processes (SIGKILL of a primary and of a replica, a restarted
//! nats-server, a network partition through a TCP proxy, a full disk, a failing store),
//! hostile HTTP against a live server, many concurrent writers of one account, and property
//! tests of the JWT decoder, claim validation and the config parser ([`props`]).
//!
//! Every test waits for conditions (`eventually`), never for time; the only sleeps are the
//! pauses of the slow-loris writers, which are what that test is about.

mod props;

use crate::common::fixtures::{self, account_jwt_at};
use crate::common::nats::{use_nats, wait_nats_connected, NatsServer};
use crate::common::process::ServerProcess;
use crate::common::proxy::{Mode, Proxy};
use crate::common::{
    account, assert_no_failures, eventually, free_port, get, http, metric, post, post_new_account,
    primary_settings, replica_of, TestServer,
};
use data_encoding::BASE64URL_NOPAD;
use nats_account_server::config::{Dur, Settings};
use nats_account_server::jwt::{self, encode};
use nats_account_server::store::{self, Backend, Commit, Kind, Loaded, StoreError};
use nats_account_server::RunningServer;
use nkeys::KeyPair;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One line of a change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    seq: u64,
    kind: String,
    key: String,
    jwt: String,
}

/// The whole change feed of `base` (paged) and the head it reported last.
async fn feed(base: &str) -> (Vec<Change>, u64) {
    let mut out: Vec<Change> = Vec::new();
    let mut since = 0;
    loop {
        let r = http()
            .get(format!("{base}/jwt/v1/changes?since={since}&limit=10000"))
            .send()
            .await
            .expect("change feed");
        assert_eq!(r.status(), 200, "change feed of {base}");
        let head: u64 = r.headers()["x-head-seq"].to_str().unwrap().parse().unwrap();
        let body = r.text().await.unwrap();
        let before = out.len();
        for line in body.lines() {
            let mut p = line.splitn(4, '|');
            let (Some(seq), Some(kind), Some(key), Some(jwt)) =
                (p.next(), p.next(), p.next(), p.next())
            else {
                panic!("malformed feed line from {base}: {line:.80}");
            };
            out.push(Change {
                seq: seq.parse().expect("numeric sequence"),
                kind: kind.into(),
                key: key.into(),
                jwt: jwt.into(),
            });
        }
        if out.len() == before {
            return (out, head);
        }
        since = out.last().expect("a change").seq;
    }
}

/// key → JWT of a feed, asserting that sequences increase and each key is listed once.
fn by_key(changes: &[Change], who: &str) -> HashMap<String, String> {
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

/// The key → JWT map of a server's whole feed.
async fn contents(base: &str, who: &str) -> HashMap<String, String> {
    by_key(&feed(base).await.0, who)
}

fn iat(token: &str) -> i64 {
    jwt::parse_unverified(token)
        .expect("stored token parses")
        .iat
}

/// `/readyz` status and detail.
async fn readyz(base: &str) -> (u16, Value) {
    let (status, body) = get(&format!("{base}/readyz")).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// A JWT from arbitrary header and claims JSON, signed over `header.payload`.
fn raw_token(header: &Value, claims: &Value, signer: &KeyPair) -> String {
    let h = BASE64URL_NOPAD.encode(header.to_string().as_bytes());
    let p = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let sig = signer.sign(format!("{h}.{p}").as_bytes()).unwrap();
    format!("{h}.{p}.{}", BASE64URL_NOPAD.encode(&sig))
}

/// A v2 JWT whose claims are exactly `claims` (text, so it can hold what JSON values cannot
/// express: duplicate keys, integers beyond i64), signed by `signer`.
fn token_of_text(claims: &str, signer: &KeyPair) -> String {
    let h = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let p = BASE64URL_NOPAD.encode(claims.as_bytes());
    let sig = signer.sign(format!("{h}.{p}").as_bytes()).unwrap();
    format!("{h}.{p}.{}", BASE64URL_NOPAD.encode(&sig))
}

/// A raw HTTP exchange: `request` is written on a fresh connection (concurrently with reading,
/// so a server that answers early and closes is still heard), and the response head and body
/// (by `Content-Length`) are read. `status` is `None` when the connection closed without an
/// answer. Never waits longer than `within`.
async fn raw(addr: SocketAddr, request: Vec<u8>, within: Duration) -> (Option<u16>, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        // Keep the write half open until the exchange ends: a half-close could end the
        // request early for the server.
        wr
    });
    let mut buf = Vec::new();
    let read = async {
        let mut tmp = [0u8; 8192];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return;
                }
            }
            match rd.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
    writer.abort();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|s| s.parse().ok());
    (status, text)
}

/// The store's observable state: full feed, head and pack.
async fn observable(server: &TestServer) -> (Vec<Change>, u64, String) {
    let (changes, head) = feed(&server.url).await;
    let pack = get(&server.at("/jwt/v1/pack")).await.1;
    (changes, head, pack)
}

// ---------------------------------------------------------------------------------------------
// Faults with real processes
// ---------------------------------------------------------------------------------------------

/// Everything the writers of the kill test sent and what was acknowledged.
#[derive(Default)]
struct Ledger {
    /// Every token sent per key, acknowledged or not.
    posted: HashMap<String, HashSet<String>>,
    /// `(key, token)` answered 200.
    acked: Vec<(String, String)>,
    /// Answers that are neither 200 nor the 409 of a lost race.
    unexpected: Vec<String>,
}

/// Posts until `stop` or until the server stops answering: every third write is a newer
/// version of a "hot" account that all writers update, the others are fresh accounts.
async fn kill_test_writer(
    w: usize,
    url: String,
    hot: Arc<Vec<String>>,
    next_iat: Arc<AtomicI64>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let client = http();
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let (key, token) = if i % 3 == 0 {
            let key = hot[(w + i) % hot.len()].clone();
            let at = next_iat.fetch_add(1, Ordering::SeqCst);
            let token = account_jwt_at(&key, &format!("hot-{w}-{i}"), at);
            (key, token)
        } else {
            account(&format!("fresh-{w}-{i}"))
        };
        ledger
            .lock()
            .unwrap()
            .posted
            .entry(key.clone())
            .or_default()
            .insert(token.clone());
        let sent = client
            .post(format!("{url}/jwt/v1/accounts/{key}"))
            .body(token.clone())
            .send()
            .await;
        let Ok(resp) = sent else {
            return; // the server is gone
        };
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let mut l = ledger.lock().unwrap();
        match status {
            200 => l.acked.push((key, token)),
            // A newer version of a hot account was acknowledged first.
            409 if hot.contains(&key) => {}
            _ => l.unexpected.push(format!("{status} for {key}: {body}")),
        }
        i += 1;
    }
}

/// The restarted primary holds every acknowledged write (hot accounts: that version or a newer
/// one), and everything it holds is a whole, verifying token that some writer posted.
async fn assert_durable(url: &str, hot: &[String], ledger: &Ledger) -> u64 {
    let (changes, head) = feed(url).await;
    let stored = by_key(&changes, "restarted primary");
    assert!(
        head >= changes.last().map_or(0, |c| c.seq),
        "head {head} behind the feed"
    );
    for c in &changes {
        assert_eq!(c.kind, "account");
        let decoded = jwt::decode(&c.jwt)
            .unwrap_or_else(|e| panic!("stored JWT of {} does not verify: {e}", c.key));
        assert_eq!(decoded.claims.sub, c.key);
        assert!(
            ledger
                .posted
                .get(&c.key)
                .is_some_and(|p| p.contains(&c.jwt)),
            "stored JWT of {} is not one that was posted",
            c.key
        );
    }
    for (key, token) in &ledger.acked {
        let have = stored
            .get(key)
            .unwrap_or_else(|| panic!("acknowledged write of {key} was lost"));
        if hot.contains(key) {
            assert!(
                iat(have) >= iat(token),
                "{key} regressed to an older version than one acknowledged"
            );
        } else {
            assert_eq!(have, token, "{key} holds another token than acknowledged");
        }
    }
    // Reads agree with the feed.
    for (key, token) in ledger.acked.iter().step_by(37) {
        let (status, body) = get(&format!("{url}/jwt/v1/accounts/{key}")).await;
        assert_eq!(status, 200);
        assert_eq!(&body, stored.get(key).unwrap_or(token));
    }
    head
}

/// SIGKILL of the primary (our binary) while 16 clients stream POSTs, twice: after each restart
/// every acknowledged write is there, nothing is half-written, and the store takes new writes
/// at sequence numbers above everything it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_primary_mid_stream_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hot: Arc<Vec<String>> = Arc::new(
        (0..4)
            .map(|_| KeyPair::new_account().public_key())
            .collect(),
    );
    // Unique, increasing iats in the past for the hot accounts.
    let next_iat = Arc::new(AtomicI64::new(jwt::now_unix() - 1_000_000));
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    let mut server = ServerProcess::start_primary(dir.path(), "primary-0", port);
    for round in 1..=2 {
        let stop = Arc::new(AtomicBool::new(false));
        let target = ledger.lock().unwrap().acked.len() + 250;
        let writers: Vec<_> = (0..16)
            .map(|w| {
                tokio::spawn(kill_test_writer(
                    w,
                    server.url.clone(),
                    hot.clone(),
                    next_iat.clone(),
                    ledger.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        eventually(
            Duration::from_secs(30),
            "250 more acknowledged writes",
            || async { ledger.lock().unwrap().acked.len() >= target },
        )
        .await;
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.await.unwrap();
        }
        {
            let l = ledger.lock().unwrap();
            assert!(
                l.unexpected.is_empty(),
                "unexpected answers: {:?}",
                l.unexpected
            );
        }

        server = ServerProcess::start_primary(dir.path(), &format!("primary-{round}"), port);
        let snapshot = {
            let l = ledger.lock().unwrap();
            Ledger {
                posted: l.posted.clone(),
                acked: l.acked.clone(),
                unexpected: Vec::new(),
            }
        };
        let head = assert_durable(&server.url, &hot, &snapshot).await;

        // New writes continue above the recovered head, and are not mistaken for old ones.
        let (key, token) = account(&format!("after-kill-{round}"));
        let (status, body) = post(
            &format!("{}/jwt/v1/accounts/{key}", server.url),
            token.clone(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (after, new_head) = feed(&server.url).await;
        let last = after.last().unwrap();
        assert_eq!(
            (last.key.as_str(), last.jwt.as_str()),
            (key.as_str(), token.as_str())
        );
        assert_eq!(
            last.seq,
            head + 1,
            "the first write after a restart takes head + 1"
        );
        assert_eq!(new_head, head + 1);
        ledger
            .lock()
            .unwrap()
            .posted
            .entry(key.clone())
            .or_default()
            .insert(token.clone());
        ledger.lock().unwrap().acked.push((key, token));
    }
}

/// SIGKILL of a replica (our binary, `--primary` through a slowed proxy) a third of the way
/// through its initial sync of 3,000 accounts, after the primary updated accounts the replica
/// had already copied and after writes forwarded through the replica put newer versions of
/// accounts it had not reached yet. After the restart it has lost nothing it served and never
/// goes back to an older version, resumes from its persisted cursor, and converges to exactly
/// the primary's contents with each key once in its own change feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_replica_during_initial_sync_converges_without_duplicates() {
    let primary = TestServer::primary().await;
    // Setup, not under test: 3,000 verified accounts straight into the primary's store.
    let store = primary.running().state().store.clone();
    let mut originals = Vec::new();
    for chunk in 0..6 {
        let mut items = Vec::new();
        for i in 0..500 {
            let (key, token) = account(&format!("bulk-{chunk}-{i}"));
            items.push((Kind::Account, key.clone(), jwt::decode(&token).unwrap()));
            originals.push(key);
        }
        store.put_many(items, Vec::new()).await.unwrap();
    }
    assert_eq!(store.head(), 3000);

    // Each forwarded chunk waits a little, so a 50-account page takes a while and the whole
    // initial sync a few seconds.
    let proxy = Proxy::start(&primary.running().addr().to_string()).await;
    proxy.set(Mode::Delay(15));
    let rdir = tempfile::tempdir().unwrap();
    let conf = rdir.path().join("replica.toml");
    std::fs::write(
        &conf,
        "replicationtimeout = \"3s\"\n[replication]\nbatch = 50\nmaxbackoff = \"200ms\"\n",
    )
    .unwrap();
    let conf = conf.display().to_string();
    let rdata = rdir.path().join("data").display().to_string();
    let args = [
        "-c",
        conf.as_str(),
        "--primary",
        proxy.url.as_str(),
        "--data",
        rdata.as_str(),
    ];
    let rport = free_port();
    let mut replica = ServerProcess::start(rdir.path(), "replica-0", rport, &args);
    let applied = |url: String| async move {
        let (_, r) = readyz(&url).await;
        r["replica"]["applied_seq"].as_u64().unwrap_or(0)
    };
    eventually(
        Duration::from_secs(30),
        "replica 300 changes into its initial sync",
        || async { applied(replica.url.clone()).await >= 300 },
    )
    .await;

    // Newer versions of accounts the replica already copied: they move to the end of the
    // primary's feed.
    let mut newest = HashMap::new();
    for (i, key) in originals[..50].iter().enumerate() {
        let token = account_jwt_at(key, &format!("updated-{i}"), jwt::now_unix() + 1);
        let (status, body) = post(
            &primary.at(&format!("/jwt/v1/accounts/{key}")),
            token.clone(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        newest.insert(key.clone(), token);
    }
    // Newer versions of accounts the replica has not reached yet, written through the replica:
    // it applies them at once, out of feed order, and must never trade them for older ones.
    let mut forwarded = Vec::new();
    for (i, key) in originals[2000..2020].iter().enumerate() {
        let token = account_jwt_at(key, &format!("forwarded-{i}"), jwt::now_unix() + 1);
        let url = format!("{}/jwt/v1/accounts/{key}", replica.url);
        let body = token.clone();
        let reply = tokio::spawn(async move { post(&url, body).await });
        forwarded.push((key.clone(), token, reply));
    }
    for (key, token, reply) in forwarded.drain(..) {
        let (status, body) = reply.await.unwrap();
        assert_eq!(status, 200, "forwarded {key}: {body}");
        newest.insert(key, token);
    }
    eventually(
        Duration::from_secs(30),
        "replica 900 changes into its initial sync",
        || async { applied(replica.url.clone()).await >= 900 },
    )
    .await;

    // What the replica serves was durable before it was visible; kill it right away.
    let before = contents(&replica.url, "replica before the kill").await;
    let (status, detail) = readyz(&replica.url).await;
    replica.kill9();
    assert_eq!(status, 503, "the kill is meant to land mid-sync: {detail}");
    assert!(
        before.len() >= 900 && before.len() < 3000,
        "{} applied",
        before.len()
    );
    for key in &originals[2000..2020] {
        assert_eq!(
            before.get(key),
            newest.get(key),
            "forwarded write of {key} served"
        );
    }

    proxy.set(Mode::Pass);
    let replica = ServerProcess::start(rdir.path(), "replica-1", rport, &args);
    let after = contents(&replica.url, "restarted replica").await;
    for (key, token) in &before {
        let have = after
            .get(key)
            .unwrap_or_else(|| panic!("the replica lost {key}, which it served before the kill"));
        assert!(
            iat(have) >= iat(token),
            "the replica went back to an older version of {key}"
        );
    }

    let expected = contents(&primary.url, "primary").await;
    assert_eq!(expected.len(), 3000);
    for (key, token) in &newest {
        assert_eq!(expected.get(key), Some(token));
    }
    eventually(Duration::from_secs(30), "the replica converges", || async {
        readyz(&replica.url).await.0 == 200
            && contents(&replica.url, "converging replica").await == expected
    })
    .await;
    // It resumed from its cursor rather than copying everything again.
    let resumed = metric(&replica.url, "nas_replica_applied_total{source=\"feed\"}").await;
    assert!(
        resumed <= (3070 - 900) as f64,
        "the restarted replica re-applied {resumed} changes: it did not resume from its cursor"
    );
}

/// nats-server is restarted in the middle of a stream of writes: no write fails, and the
/// replicas converge to every write (the change feed carries what NATS dropped), and NATS
/// notifications resume by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_during_a_write_stream_replicas_still_converge() {
    let nats_port = free_port();
    let with_nats = |s: &mut Settings| use_nats(s, nats_port);
    let primary = TestServer::start_with(with_nats).await;
    let mut nats = NatsServer::start(nats_port, &format!("{}/jwt/v1/accounts/", primary.url));
    let r1 = replica_of(&[&primary.url], with_nats).await;
    let r2 = replica_of(&[&primary.url], with_nats).await;
    for url in [&primary.url, &r1.url, &r2.url] {
        wait_nats_connected(url).await;
    }

    let acked = Arc::new(AtomicI64::new(0));
    let writer = {
        let (url, acked) = (primary.url.clone(), acked.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..150 {
                let (key, token) = account(&format!("stream-{i}"));
                let (status, body) = post(&format!("{url}/jwt/v1/accounts/{key}"), token).await;
                if status == 200 {
                    acked.fetch_add(1, Ordering::SeqCst);
                } else {
                    failures.push(format!("{status} {body}"));
                }
            }
            failures
        })
    };
    eventually(
        Duration::from_secs(20),
        "50 writes acknowledged",
        || async { acked.load(Ordering::SeqCst) >= 50 },
    )
    .await;
    tokio::task::block_in_place(|| nats.restart());
    let failures = writer.await.unwrap();
    assert!(
        failures.is_empty(),
        "writes failed during the NATS restart: {failures:?}"
    );

    let expected = contents(&primary.url, "primary").await;
    assert_eq!(expected.len(), 150);
    for r in [&r1, &r2] {
        eventually(
            Duration::from_secs(20),
            "replica has every write",
            || async { contents(&r.url, "replica").await == expected },
        )
        .await;
    }
    // NATS comes back by itself, and later writes still arrive.
    for url in [&primary.url, &r1.url, &r2.url] {
        eventually(Duration::from_secs(15), "reconnected to NATS", || async {
            get(&format!("{url}/healthz"))
                .await
                .1
                .contains("\"connected\"")
        })
        .await;
    }
    let (key, token) = post_new_account(&primary.url, "after-restart").await;
    for r in [&r1, &r2] {
        eventually(
            Duration::from_secs(10),
            "replica has the later write",
            || async {
                get(&format!("{}/jwt/v1/accounts/{key}", r.url)).await == (200, token.clone())
            },
        )
        .await;
    }
}

/// A replica cut off from its primary by a proxy (black hole, then resets, then a slow link)
/// keeps serving everything it has, reports the primary unreachable, refuses writes with a
/// clear 503 instead of hanging, and converges once the link heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_replica_keeps_serving_and_converges_when_healed() {
    let primary = TestServer::primary().await;
    let proxy = Proxy::start(&host_port(&primary.url)).await;
    let replica = replica_of(&[&proxy.url], |s| {
        s.replication.pollwait = Dur(Duration::from_secs(1));
        s.replicationtimeout = Dur(Duration::from_secs(1));
    })
    .await;
    let mut known = Vec::new();
    for i in 0..20 {
        let (key, token) = post_new_account(&primary.url, &format!("before-{i}")).await;
        known.push((key, token));
    }
    eventually(
        Duration::from_secs(10),
        "replica has the first 20",
        || async { contents(&replica.url, "replica").await.len() == 20 },
    )
    .await;

    let mut missed = Vec::new();
    for (mode, name) in [(Mode::Drop, "black hole"), (Mode::Reset, "resets")] {
        proxy.set(mode);
        for i in 0..10 {
            let (key, token) = post_new_account(&primary.url, &format!("during-{name}-{i}")).await;
            missed.push((key, token));
        }
        for (key, token) in &known {
            let start = Instant::now();
            assert_eq!(
                get(&format!("{}/jwt/v1/accounts/{key}", replica.url)).await,
                (200, token.clone()),
                "{name}: the replica stopped serving {key}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "{name}: a read of a known key waited on the primary"
            );
        }
        assert_eq!(get(&replica.at("/healthz")).await.0, 200);
        eventually(
            Duration::from_secs(10),
            "replica reports the primary unreachable",
            || async {
                let (status, r) = readyz(&replica.url).await;
                status == 200 && r["replica"]["primary_reachable"] == false
            },
        )
        .await;
        // A write is refused clearly and in bounded time.
        let (key, token) = account(&format!("write-during-{name}"));
        let start = Instant::now();
        let r = http()
            .post(replica.at(&format!("/jwt/v1/accounts/{key}")))
            .body(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 503, "{name}");
        assert!(r.headers().contains_key("retry-after"));
        assert!(r.text().await.unwrap().contains("unreachable"));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{name}: the refused write took {:?}",
            start.elapsed()
        );
        // A miss cannot be fetched: answered (not hung) with 503.
        let (key, _) = &missed[missed.len() - 1];
        let start = Instant::now();
        let (status, body) = get(&format!("{}/jwt/v1/accounts/{key}", replica.url)).await;
        assert_eq!(status, 503, "{name}: {body}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    // A slow link still gets everything through; then full speed.
    proxy.set(Mode::Delay(20));
    let expected = contents(&primary.url, "primary").await;
    assert_eq!(expected.len(), 40);
    eventually(
        Duration::from_secs(20),
        "replica converges over the slow link",
        || async { contents(&replica.url, "replica").await == expected },
    )
    .await;
    proxy.set(Mode::Pass);
    let (key, token) = post_new_account(&primary.url, "after-heal").await;
    eventually(
        Duration::from_secs(10),
        "replica has the write after healing",
        || async {
            get(&format!("{}/jwt/v1/accounts/{key}", replica.url)).await == (200, token.clone())
        },
    )
    .await;
    let (status, r) = readyz(&replica.url).await;
    assert_eq!(status, 200);
    assert_eq!(r["replica"]["primary_reachable"], true, "{r}");
}

/// A tmpfs mounted for the test, lazily unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Tmpfs(at.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A 500 from a storage failure says so in one line and leaks nothing internal.
fn assert_clean_500(status: u16, body: &str, secrets: &[&str]) {
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("could not be stored"),
        "the 500 says what failed: {body}"
    );
    assert_eq!(body.trim().lines().count(), 1, "one line: {body}");
    for s in secrets {
        assert!(
            !body.to_lowercase().contains(&s.to_lowercase()),
            "the 500 body leaks {s:?}: {body}"
        );
    }
}

/// The primary's data directory runs out of space (a real 2 MiB tmpfs, filled up): writes are
/// answered with a clean 500 and `/healthz` says the store is failing, reads and the feed keep
/// working, nothing acknowledged is lost; once there is space again the next write succeeds
/// without a restart. A start attempt on the full disk fails cleanly and does not make the store
/// unopenable (with sled alone it would); after it, the store is whole and writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_answers_500_and_keeps_serving_reads() {
    // Declared before the mount guard, so the guard unmounts before the dir is removed.
    let mount_dir = tempfile::tempdir().unwrap();
    let mnt = mount_dir.path().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = match Tmpfs::mount(&mnt, "2m") {
        Ok(t) => t,
        Err(e) => {
            // Not permitted in this sandbox: the failing-backend test below covers the
            // write path's handling of storage errors on its own.
            eprintln!("SKIPPED real-disk-full check: cannot mount a tmpfs ({e})");
            return;
        }
    };
    let mut settings = primary_settings(dir.path());
    settings.store.data = Some(mnt.join("data"));
    let mut server = TestServer::start_in(dir, settings.clone()).await;

    let mut acked = Vec::new();
    for i in 0..5 {
        let (key, token) = post_new_account(&server.url, &format!("roomy-{i}")).await;
        acked.push((key, token));
    }
    let filler = mnt.join("filler");
    fill(&filler);

    // Writes fail (a few may still fit in pages the store already holds), cleanly.
    let mut failed = None;
    for i in 0..200 {
        let (key, token) = account(&format!("full-{i}"));
        let (status, body) = post(
            &server.at(&format!("/jwt/v1/accounts/{key}")),
            token.clone(),
        )
        .await;
        if status == 200 {
            acked.push((key, token));
            continue;
        }
        assert_clean_500(
            status,
            &body,
            &["space", "os error", "sled", &mnt.display().to_string()],
        );
        failed = Some(key);
        break;
    }
    let failed = failed.expect("a write on a full disk failed");
    // Still full: still refused.
    let (key, token) = account("still-full");
    let (status, body) = post(&server.at(&format!("/jwt/v1/accounts/{key}")), token).await;
    assert_clean_500(status, &body, &["space", "os error", "sled"]);

    // Reads, health and the feed go on.
    for (key, token) in &acked {
        assert_eq!(
            get(&server.at(&format!("/jwt/v1/accounts/{key}"))).await,
            (200, token.clone())
        );
    }
    assert_eq!(
        get(&server.at(&format!("/jwt/v1/accounts/{failed}")))
            .await
            .0,
        404
    );
    assert_eq!(get(&server.at("/healthz")).await.0, 200);
    assert_eq!(readyz(&server.url).await.0, 200);
    assert_eq!(store_health(&server.url).await, ("failing".into(), 1.0));
    assert_eq!(
        contents(&server.url, "full primary").await.len(),
        acked.len()
    );

    // Space again: without a restart, a write reopens the store (sled refuses every write after
    // an I/O error until then; attempts are at most every 2 s) and is stored; nothing
    // acknowledged went missing.
    std::fs::remove_file(&filler).unwrap();
    acked.push(post_until_stored(&server, "space-again").await);
    assert_eq!(store_health(&server.url).await, ("ok".into(), 0.0));
    let have = contents(&server.url, "recovered primary").await;
    for (key, token) in &acked {
        assert_eq!(have.get(key), Some(token), "{key} lost before the restart");
    }

    // Full again, and a restart while it is: opening the store fails cleanly (sled leaves an
    // unfinished snapshot behind). With space again it opens whole (that leftover, which sled
    // itself would take for corruption, is removed), and writes work.
    fill(&filler);
    server.stop().await;
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    drop(server);
    let err = nats_account_server::server::open_store(&settings)
        .err()
        .expect("opening the store on a full disk fails");
    assert!(err.to_string().contains("space"), "{err}");
    std::fs::remove_file(&filler).unwrap();
    let server = TestServer::start_in(dir, settings).await;
    let have = contents(&server.url, "restarted primary").await;
    for (key, token) in &acked {
        assert_eq!(have.get(key), Some(token), "{key} lost");
    }
    for (key, token) in &have {
        jwt::decode(token).unwrap_or_else(|e| panic!("{key} half-written: {e}"));
    }
    let (key, token) = account("after-space");
    assert_eq!(
        post(&server.at(&format!("/jwt/v1/accounts/{key}")), token)
            .await
            .0,
        200
    );
    drop(server);
    drop(tmpfs);
}

/// POSTs a new account until it is stored (a failing store tries to recover at most every 2 s,
/// and answers 500 in between); returns `(key, jwt)`.
async fn post_until_stored(server: &TestServer, name: &str) -> (String, String) {
    let (key, token) = account(name);
    let url = server.at(&format!("/jwt/v1/accounts/{key}"));
    eventually(Duration::from_secs(10), "a write succeeds again", || {
        let (url, token) = (url.clone(), token.clone());
        async move { post(&url, token).await.0 == 200 }
    })
    .await;
    (key, token)
}

/// Fills the file system `path` is on with `path`.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).and_then(|_| f.flush()).is_ok() {}
    let _ = f.sync_all();
}

/// The real sled backend behind a switch that makes commits fail as a read-only file system
/// does (a real read-only remount is refused while sled holds its files open for writing).
struct Faulty {
    inner: store::sled::SledBackend,
    fail: Arc<AtomicBool>,
}

impl Backend for Faulty {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        self.inner.load()
    }
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Io(
                "Read-only file system (os error 30) writing /srv/secret/data/db".into(),
            ));
        }
        self.inner.commit(commit)
    }
    fn recover(&mut self) -> Result<Option<Loaded>, StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Io("Read-only file system (os error 30)".into()));
        }
        self.inner.recover()
    }
    fn name(&self) -> &'static str {
        "sled"
    }
}

/// `/healthz`'s store state and `nas_store_write_failing`.
async fn store_health(base: &str) -> (String, f64) {
    let (_, body) = get(&format!("{base}/healthz")).await;
    let health: Value = serde_json::from_str(&body).unwrap();
    (
        health["store"].as_str().unwrap_or_default().to_string(),
        metric(base, "nas_store_write_failing").await,
    )
}

async fn start_faulty(dir: tempfile::TempDir, fail: Arc<AtomicBool>) -> TestServer {
    let settings = primary_settings(dir.path());
    let backend = Faulty {
        inner: store::sled::SledBackend::open(&dir.path().join("data")).unwrap(),
        fail,
    };
    let store = store::Store::open(Box::new(backend), true).unwrap();
    let trust = nats_account_server::server::load_trust(&settings).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = RunningServer::start_with_store(settings, listener, store, trust)
        .await
        .unwrap();
    TestServer {
        url: format!("http://{}", server.addr()),
        server: Some(server),
        dir,
    }
}

/// Commits fail as on a read-only data directory: concurrent writes all get a clean 500 and
/// leave no trace (not in reads, not in the feed, not in the head), reads go on, and once the
/// fault clears writes continue at the next sequence number; a restart sees exactly the
/// acknowledged writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_store_answers_500_leaves_no_trace_and_recovers() {
    let fail = Arc::new(AtomicBool::new(false));
    let mut server = start_faulty(tempfile::tempdir().unwrap(), fail.clone()).await;
    let mut acked = Vec::new();
    for i in 0..3 {
        let (key, token) = post_new_account(&server.url, &format!("ok-{i}")).await;
        acked.push((key, token));
    }
    let before = observable(&server).await;

    fail.store(true, Ordering::SeqCst);
    let mut refused = Vec::new();
    let mut posts = Vec::new();
    for i in 0..16 {
        let (key, token) = account(&format!("refused-{i}"));
        let url = server.at(&format!("/jwt/v1/accounts/{key}"));
        refused.push(key);
        posts.push(tokio::spawn(async move {
            let r = http().post(url).body(token).send().await.unwrap();
            let code = r
                .headers()
                .get("x-error-code")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), code, r.text().await.unwrap())
        }));
    }
    // An update of a stored account fails too, and the old version stays.
    let (key0, token0) = &acked[0];
    let newer = account_jwt_at(key0, "newer", iat(token0) + 1);
    let (status, body) = post(&server.at(&format!("/jwt/v1/accounts/{key0}")), newer).await;
    assert_clean_500(
        status,
        &body,
        &["read-only", "os error", "/srv/secret", "sled"],
    );
    for p in posts {
        let (status, code, body) = p.await.unwrap();
        assert_clean_500(
            status,
            &body,
            &["read-only", "os error", "/srv/secret", "sled"],
        );
        assert_eq!(code.as_deref(), Some("storage"));
    }
    for key in &refused {
        assert_eq!(
            get(&server.at(&format!("/jwt/v1/accounts/{key}"))).await.0,
            404
        );
    }
    for (key, token) in &acked {
        assert_eq!(
            get(&server.at(&format!("/jwt/v1/accounts/{key}"))).await,
            (200, token.clone())
        );
    }
    assert_eq!(
        observable(&server).await,
        before,
        "failed writes left a trace"
    );
    assert_eq!(readyz(&server.url).await.0, 200);
    assert_eq!(store_health(&server.url).await, ("failing".into(), 1.0));
    assert!(metric(&server.url, "nas_store_write_failures_total").await >= 1.0);
    let (_, page) = get(&server.at("/")).await;
    assert!(page.contains("FAILING"), "the status page shows it: {page}");

    // Fixed: the next recovery attempt (at most every 2 s) succeeds and writes go on.
    fail.store(false, Ordering::SeqCst);
    let (key, token) = post_until_stored(&server, "after-recovery").await;
    assert_eq!(store_health(&server.url).await, ("ok".into(), 0.0));
    let (changes, head) = feed(&server.url).await;
    assert_eq!(
        head,
        before.1 + 1,
        "no sequence numbers were burnt by failed commits"
    );
    assert_eq!(changes.last().unwrap().key, key);
    acked.push((key, token));

    server.stop().await;
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let server = start_faulty(dir, Arc::new(AtomicBool::new(false))).await;
    let have = contents(&server.url, "restarted").await;
    let want: HashMap<String, String> = acked.into_iter().collect();
    assert_eq!(have, want);
}

// ---------------------------------------------------------------------------------------------
// Hostile input against a live server (tests/accounts.rs has the body-level corpus: bad
// tokens, malformed keys, 413s, empty and non-UTF-8 bodies, the common wrong methods)
// ---------------------------------------------------------------------------------------------

/// Raw HTTP the client libraries would never send: wrong methods on every other route,
/// unnormalized path traversal, 10 KB paths, oversized and too many headers, invalid UTF-8 in
/// the path, query and headers, framing attacks and garbage. Each gets its 4xx (a request head
/// over `http.maxheaderbytes`, 32 KiB by default, or with more than 96 headers: 431), the
/// server stays up, and the store is unchanged. A 16 KB header is within the limit and served
/// normally; a 64 KB one gets 431, whatever the request (DESIGN §8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_gets_4xx_and_leaves_the_store_unchanged() {
    let server = TestServer::primary().await;
    let (key, token) = post_new_account(&server.url, "target").await;
    let before = observable(&server).await;
    let addr = server.running().addr();
    let hash = fixtures::vector("activations/token.hash");
    let (fresh, fresh_token) = account("never-stored");
    let req = |line: &str| {
        format!("{line} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let post_req = |path: &str, extra: &str, body: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n{body}")
            .into_bytes()
    };
    let big = "x".repeat(64 * 1024);

    // (what, request, allowed statuses)
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("POST /healthz", req("POST /healthz"), &[405]),
        ("PUT /jwt/v1/changes", req("PUT /jwt/v1/changes"), &[405]),
        ("DELETE an activation", req(&format!("DELETE /jwt/v1/activations/{hash}")), &[405]),
        ("GET /jwt/v1/activations", req("GET /jwt/v1/activations"), &[405]),
        ("PATCH /metrics", req("PATCH /metrics"), &[405]),
        ("POST /", req("POST /"), &[405]),
        ("POST /readyz", req("POST /readyz"), &[405]),
        ("made-up method", req(&format!("FROB /jwt/v1/accounts/{key}")), &[405]),
        ("TRACE", req(&format!("TRACE /jwt/v1/accounts/{key}")), &[405]),
        ("CONNECT", req("CONNECT 127.0.0.1:22"), &[404]),
        ("raw ../ traversal", req("GET /jwt/v1/accounts/../../../../etc/passwd"), &[400, 404]),
        ("traversal above the root", req("GET /../../../../etc/passwd"), &[400, 404]),
        ("traversal after a key", req(&format!("GET /jwt/v1/accounts/{key}/../../operator")), &[400, 404]),
        ("encoded traversal segments", req("GET /jwt/v1/accounts/%2e%2e/%2e%2e/%2e%2e/etc/passwd"), &[400, 404]),
        ("double-encoded traversal", req("GET /jwt/v1/accounts/%252e%252e%252fetc%252fpasswd"), &[400]),
        ("backslash traversal", req("GET /jwt/v1/accounts/..\\..\\..\\etc\\passwd"), &[400]),
        ("POST traversal", post_req("/jwt/v1/accounts/../../tmp/x", &format!("Content-Length: {}\r\n", token.len()), &token), &[400, 404]),
        ("10 KB key", req(&format!("GET /jwt/v1/accounts/{}", "A".repeat(10 * 1024))), &[400]),
        ("10 KB of segments", req(&format!("GET {}", "/a".repeat(5 * 1024))), &[404]),
        ("10 KB POST path", post_req(&format!("/jwt/v1/accounts/{}", "A".repeat(10 * 1024)), &format!("Content-Length: {}\r\n", token.len()), &token), &[400]),
        ("head beyond the server's buffer", format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "y".repeat(200 * 1024)).into_bytes(), &[431]),
        ("200 headers", {
            let mut h = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
            for i in 0..200 {
                h.push_str(&format!("X-H{i}: v\r\n"));
            }
            h.push_str("\r\n");
            h.into_bytes()
        }, &[431]),
        ("invalid UTF-8 percent-encoded in the key", req("GET /jwt/v1/accounts/%FF%FE%C3%28"), &[400]),
        ("invalid UTF-8 bytes in the path", [b"GET /jwt/v1/accounts/\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n".as_slice()].concat(), &[400]),
        // A flag is on only when it says `true` or `1` (as in the Go server); junk is off.
        ("invalid UTF-8 in a query flag", req(&format!("GET /jwt/v1/accounts/{key}?text=%FF%FE")), &[200]),
        ("invalid UTF-8 in the feed query", req("GET /jwt/v1/changes?since=%FF"), &[400]),
        ("negative since", req("GET /jwt/v1/changes?since=-1"), &[400]),
        ("since beyond u64", req("GET /jwt/v1/changes?since=99999999999999999999999"), &[400]),
        ("limit not a number", req("GET /jwt/v1/changes?limit=lots"), &[400]),
        ("wait not a number", req("GET /jwt/v1/changes?wait=forever"), &[400]),
        ("POST without a length", format!("POST /jwt/v1/accounts/{fresh} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n{fresh_token}").into_bytes(), &[400]),
        ("Content-Length and chunked", post_req(&format!("/jwt/v1/accounts/{fresh}"), &format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", fresh_token.len()), &fresh_token), &[400]),
        ("two Content-Lengths", post_req(&format!("/jwt/v1/accounts/{fresh}"), &format!("Content-Length: {}\r\nContent-Length: 5\r\n", fresh_token.len()), &fresh_token), &[400]),
        ("negative Content-Length", post_req(&format!("/jwt/v1/accounts/{fresh}"), "Content-Length: -1\r\n", &fresh_token), &[400]),
        ("Content-Length not a number", post_req(&format!("/jwt/v1/accounts/{fresh}"), "Content-Length: lots\r\n", &fresh_token), &[400]),
        ("bad chunk size", post_req(&format!("/jwt/v1/accounts/{fresh}"), "Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n"), &[400]),
        ("unknown transfer coding", post_req(&format!("/jwt/v1/accounts/{fresh}"), "Transfer-Encoding: gzip\r\n", &fresh_token), &[400]),
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), &[400]),
        ("NUL bytes", vec![0u8; 64], &[400]),
        ("HTTP/2 preface on HTTP/1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), &[400]),
        ("unsupported HTTP version", b"GET /healthz HTTP/9.9\r\nHost: t\r\n\r\n".to_vec(), &[400]),
        ("header without a colon", b"GET /healthz HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n".to_vec(), &[400]),
        ("space before the colon", b"GET /healthz HTTP/1.1\r\nHost : t\r\n\r\n".to_vec(), &[400]),
    ];

    let mut failures = Vec::new();
    for (what, request, allowed) in cases {
        let (status, text) = raw(addr, request, Duration::from_secs(10)).await;
        match status {
            Some(s) if allowed.contains(&s) => {
                if text.contains("root:") {
                    failures.push(format!("{what}: served a system file"));
                }
                if text.len() > 4096 {
                    failures.push(format!("{what}: echoed {} bytes back", text.len()));
                }
            }
            other => failures.push(format!(
                "{what}: expected one of {allowed:?}, got {other:?}: {:.200}",
                text
            )),
        }
        // The server stays up after every case.
        if get(&server.at("/healthz")).await.0 != 200 {
            failures.push(format!("{what}: the server stopped answering"));
        }
    }

    // Within `http.maxheaderbytes`: answered as if the header were small. Beyond it (within
    // actix's own 128 KiB buffer): 431 before anything else runs, also on a write.
    let within = "x".repeat(16 * 1024);
    for (what, request, expected) in [
        ("16 KB header on a read", format!("GET /jwt/v1/accounts/{key} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: {within}\r\n\r\n"), 200),
        ("16 KB If-None-Match", format!("GET /jwt/v1/accounts/{key} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nIf-None-Match: \"{within}\"\r\n\r\n"), 200),
        ("16 KB Content-Type on a junk write", format!("POST /jwt/v1/accounts/{fresh} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {within}\r\nContent-Length: 3\r\n\r\nabc"), 400),
        ("64 KB header on a read", format!("GET /jwt/v1/accounts/{key} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: {big}\r\n\r\n"), 431),
        ("64 KB If-None-Match", format!("GET /jwt/v1/accounts/{key} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nIf-None-Match: \"{big}\"\r\n\r\n"), 431),
        ("64 KB Content-Type on a write", format!("POST /jwt/v1/accounts/{fresh} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {big}\r\nContent-Length: {}\r\n\r\n{fresh_token}", fresh_token.len()), 431),
    ] {
        let (status, text) = raw(addr, request.into_bytes(), Duration::from_secs(10)).await;
        if status != Some(expected) {
            failures.push(format!("{what}: expected {expected}, got {status:?}: {text:.200}"));
        }
    }
    // Invalid UTF-8 in header values is ignored, not an error.
    let mut r = format!(
        "GET /jwt/v1/accounts/{key} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nIf-None-Match: "
    )
    .into_bytes();
    r.extend_from_slice(b"\"\xff\xfe\"\r\nX-Junk: \x80\x81\r\n\r\n");
    let (status, text) = raw(addr, r, Duration::from_secs(10)).await;
    if status != Some(200) || !text.ends_with(&token) {
        failures.push(format!("non-UTF-8 header values: {status:?} {text:.200}"));
    }

    assert_no_failures(&failures);
    assert_eq!(
        observable(&server).await,
        before,
        "hostile input changed the store"
    );
    assert_eq!(
        get(&server.at(&format!("/jwt/v1/accounts/{fresh}")))
            .await
            .0,
        404
    );
    assert_eq!(
        get(&server.at(&format!("/jwt/v1/accounts/{key}"))).await,
        (200, token)
    );
}

/// Slow-loris: connections that send their body (or their head) a byte at a time, slower than
/// `http.readtimeout`, are cut off with 408 once it passes instead of being held for as long
/// as the client likes, and meanwhile ordinary requests are answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_is_cut_off_and_does_not_hold_up_other_requests() {
    let read_timeout = Duration::from_millis(1000);
    let server = TestServer::start_with(|s| s.http.readtimeout = Dur(read_timeout)).await;
    let (key, token) = post_new_account(&server.url, "stored").await;
    let before = observable(&server).await;
    let addr = server.running().addr();

    // More slow clients than the server has workers (2).
    let mut slow = Vec::new();
    for i in 0..6 {
        let (k, t) = account(&format!("slow-{i}"));
        let head_only = i % 3 == 2;
        slow.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = stream.into_split();
            let (head, body) = if head_only {
                (String::new(), format!("GET /jwt/v1/accounts/{k} HTTP/1.1\r\nHost: t\r\n\r\n"))
            } else {
                (
                    format!("POST /jwt/v1/accounts/{k} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", t.len()),
                    t,
                )
            };
            let start = Instant::now();
            let trickle = tokio::spawn(async move {
                if wr.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for b in body.bytes() {
                    if wr.write_all(&[b]).await.is_err() {
                        return;
                    }
                    // The slow-loris pause: this client is slow on purpose (a whole body at
                    // this pace would take minutes).
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            });
            let mut buf = Vec::new();
            let mut tmp = [0u8; 1024];
            let got = tokio::time::timeout(Duration::from_secs(15), async {
                loop {
                    match rd.read(&mut tmp).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            buf.extend_from_slice(&tmp[..n]);
                            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
            })
            .await;
            trickle.abort();
            (head_only, got.is_ok(), start.elapsed(), String::from_utf8_lossy(&buf).into_owned())
        }));
    }

    // Meanwhile ordinary requests are answered promptly, many times over.
    let mut normal_writes = 0;
    let start = Instant::now();
    while start.elapsed() < read_timeout {
        let t = Instant::now();
        assert_eq!(
            get(&server.at(&format!("/jwt/v1/accounts/{key}"))).await,
            (200, token.clone())
        );
        assert!(
            t.elapsed() < read_timeout,
            "a normal GET took {:?}",
            t.elapsed()
        );
        let (k, t2) = account("normal-write");
        let t = Instant::now();
        assert_eq!(
            post(&server.at(&format!("/jwt/v1/accounts/{k}")), t2)
                .await
                .0,
            200
        );
        normal_writes += 1;
        assert!(
            t.elapsed() < read_timeout,
            "a normal POST took {:?}",
            t.elapsed()
        );
    }

    for s in slow {
        let (head_only, answered, took, text) = s.await.unwrap();
        let what = if head_only { "slow head" } else { "slow body" };
        assert!(answered, "{what}: still held after {took:?}");
        assert!(
            text.starts_with("HTTP/1.1 408") || (head_only && text.is_empty()),
            "{what}: expected 408, got {text:?}"
        );
        assert!(
            took < read_timeout * 4,
            "{what}: cut off only after {took:?}"
        );
    }
    let (after, _) = feed(&server.url).await;
    assert_eq!(
        after.len(),
        before.0.len() + normal_writes,
        "only the normal writes were stored"
    );
    for c in &after {
        let name = jwt::parse_unverified(&c.jwt)
            .unwrap()
            .name
            .unwrap_or_default();
        assert!(!name.starts_with("slow-"), "a slow-loris body was stored");
    }
    assert_eq!(get(&server.at("/healthz")).await.0, 200);
}

/// Near the 1 MiB body limit and inside JSON: a valid account JWT of almost 1 MiB is stored and
/// served whole (also decoded), deeply nested or huge-number claims within the limit are 400
/// without crashing the server, and type confusion in the header and claims is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_limit_claims_and_json_type_confusion() {
    let server = TestServer::primary().await;
    let signer = fixtures::signing_key();
    let key = KeyPair::new_account().public_key();
    let url = server.at(&format!("/jwt/v1/accounts/{key}"));

    // A base64url payload grows by 4/3: 760 KiB of claims make a token just under 1 MiB. (Not
    // in `description`: the JWT library caps that at 8 KiB, and so do we. A field it does not
    // know is ignored by it and by us.)
    let huge = encode::account(
        &signer,
        &key,
        "huge",
        json!({ "x_padding": "d".repeat(760 * 1024) }),
    );
    assert!(
        huge.len() > 1000 * 1024 && huge.len() < 1024 * 1024,
        "{}",
        huge.len()
    );
    assert_eq!(post(&url, huge.clone()).await.0, 200);
    assert_eq!(get(&url).await, (200, huge.clone()));
    let (status, decoded) = get(&format!("{url}?decode=true")).await;
    assert_eq!(status, 200);
    assert!(decoded.len() > 760 * 1024);

    let v2 = json!({ "typ": "JWT", "alg": "ed25519-nkey" });
    // Valid account claims (as `encode::sign` makes them) that each case spoils in one way.
    let base = |k: &str| {
        json!({ "jti": "J", "iat": jwt::now_unix() + 10, "name": "x", "sub": k,
                "iss": signer.public_key(), "nats": { "type": "account", "version": 2 } })
    };
    let with = |patch: Value| {
        let mut c = base(&key);
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        raw_token(&v2, &c, &signer)
    };
    let nested = |depth: usize| {
        let mut c = base(&key).to_string();
        c.pop();
        c.push_str(&format!(
            ",\"deep\":{}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        ));
        token_of_text(&c, &signer)
    };
    let cases: Vec<(&str, String)> = vec![
        ("200,000-deep array in the claims", nested(200_000)),
        ("129-deep array in the claims", nested(129)),
        ("iat beyond i64", with(json!({ "iat": 1e30 }))),
        (
            "iat as big integer",
            token_of_text(
                &format!(
                    r#"{{"jti":"J","iat":9223372036854775808,"name":"x","sub":"{key}","iss":"{}","nats":{{"type":"account","version":2}}}}"#,
                    signer.public_key()
                ),
                &signer,
            ),
        ),
        ("jti as number", with(json!({ "jti": 7 }))),
        ("iss as array", {
            let mut c = base(&key);
            c["iss"] = json!([signer.public_key()]);
            raw_token(&v2, &c, &signer)
        }),
        ("name as object", with(json!({ "name": { "first": "x" } }))),
        ("nbf as string", with(json!({ "nbf": "tomorrow" }))),
        (
            "nats.type as number",
            with(json!({ "nats": { "type": 7, "version": 2 } })),
        ),
        (
            "nats.version as string",
            with(json!({ "nats": { "type": "account", "version": "2" } })),
        ),
        (
            "signing_keys as string",
            with(json!({ "nats": { "type": "account", "version": 2, "signing_keys": "AAAA" } })),
        ),
        (
            "signing_keys of numbers",
            with(json!({ "nats": { "type": "account", "version": 2, "signing_keys": [1, 2] } })),
        ),
        (
            "scoped signing key without key",
            with(
                json!({ "nats": { "type": "account", "version": 2, "signing_keys": [{ "kind": "user_scope" }] } }),
            ),
        ),
        ("duplicate sub", {
            let mut c = base(&key).to_string();
            c.pop();
            c.push_str(&format!(
                ",\"sub\":\"{}\"}}",
                KeyPair::new_account().public_key()
            ));
            token_of_text(&c, &signer)
        }),
        ("claims null", raw_token(&v2, &Value::Null, &signer)),
        (
            "claims a string",
            raw_token(&v2, &json!("account"), &signer),
        ),
        (
            "header alg a number",
            raw_token(&json!({ "typ": "JWT", "alg": 25519 }), &base(&key), &signer),
        ),
        (
            "header an array",
            raw_token(&json!(["JWT", "ed25519-nkey"]), &base(&key), &signer),
        ),
        ("header null", raw_token(&Value::Null, &base(&key), &signer)),
        (
            "padded signature",
            format!("{}=", encode::account(&signer, &key, "padded", json!({}))),
        ),
    ];
    // The unspoiled claims are fine (on another key), so each case fails for its own reason.
    let control = KeyPair::new_account().public_key();
    let (status, reply) = post(
        &server.at(&format!("/jwt/v1/accounts/{control}")),
        raw_token(&v2, &base(&control), &signer),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let before = observable(&server).await;

    let mut failures = Vec::new();
    for (what, body) in &cases {
        let (status, reply) = post(&url, body.clone()).await;
        if status != 400 || reply.trim().is_empty() {
            failures.push(format!(
                "{what}: expected 400 with a reason, got {status} {reply:.200}"
            ));
        }
        if get(&server.at("/healthz")).await.0 != 200 {
            failures.push(format!("{what}: the server stopped answering"));
        }
    }
    assert_no_failures(&failures);
    assert_eq!(
        observable(&server).await,
        before,
        "bad claims changed the store"
    );
    assert_eq!(get(&url).await, (200, huge));
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

/// 72 concurrent writers post 24 versions (distinct iats, in shuffled order) of each of three
/// accounts to the primary and, forwarded, to two replicas: every answer is 200 or 409, the
/// newest version is accepted, and it is what the primary and both replicas end up serving,
/// with each key once in every change feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_one_account_end_with_the_newest_everywhere() {
    let nats_port = free_port();
    let with_nats = |s: &mut Settings| use_nats(s, nats_port);
    let primary = TestServer::start_with(with_nats).await;
    let _nats = NatsServer::start(nats_port, &format!("{}/jwt/v1/accounts/", primary.url));
    let r1 = replica_of(&[&primary.url], with_nats).await;
    let r2 = replica_of(&[&primary.url], |_| {}).await;
    for r in [&r1, &r2] {
        eventually(Duration::from_secs(10), "replica ready", || async {
            readyz(&r.url).await.0 == 200
        })
        .await;
    }

    let keys: Vec<String> = (0..3)
        .map(|_| KeyPair::new_account().public_key())
        .collect();
    let base = jwt::now_unix() - 10_000;
    let targets = [primary.url.clone(), r1.url.clone(), r2.url.clone()];
    let mut jobs = Vec::new();
    let mut newest = HashMap::new();
    for (k, key) in keys.iter().enumerate() {
        // A fixed shuffle of 0..24 (7 is coprime with 24).
        for n in 0..24i64 {
            let version = (n * 7 + k as i64) % 24;
            let token = account_jwt_at(key, &format!("v{version}"), base + version);
            if version == 23 {
                newest.insert(key.clone(), token.clone());
            }
            let url = format!("{}/jwt/v1/accounts/{key}", targets[(n as usize + k) % 3]);
            jobs.push(tokio::spawn(async move {
                let (status, body) = post(&url, token).await;
                (version, status, body)
            }));
        }
    }
    for job in jobs {
        let (version, status, body) = job.await.unwrap();
        match (version, status) {
            (23, 200) | (0..=22, 200 | 409) => {}
            _ => panic!("version {version}: {status} {body}"),
        }
    }
    for server in [&primary, &r1, &r2] {
        eventually(
            Duration::from_secs(15),
            "the newest version everywhere",
            || async {
                let mut all = true;
                for key in &keys {
                    all &= get(&server.at(&format!("/jwt/v1/accounts/{key}"))).await
                        == (200, newest[key].clone());
                }
                all
            },
        )
        .await;
        let have = contents(&server.url, "after the race").await;
        for key in &keys {
            assert_eq!(have.get(key), Some(&newest[key]));
        }
    }
}
