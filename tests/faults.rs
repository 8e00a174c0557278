//! Faults with real processes and real resources: SIGKILL of a primary and of a replica (our
//! binary) mid-stream, a nats-server restarted under writes, a replica partitioned from its
//! primary by a TCP proxy, a full disk (a real tmpfs), and a store whose commits fail. After
//! each, nothing acknowledged is lost, nothing half-written is served, and the servers converge
//! by themselves.
//!
//! Every test waits for conditions (`eventually`), never for time.

use crate::common::feed;
use crate::common::fixtures::{self, account_jwt_at};
use crate::common::nats::{use_nats, wait_nats_connected, NatsServer};
use crate::common::process::ServerProcess;
use crate::common::proxy::{Mode, Proxy};
use crate::common::{
    account, eventually, free_port, get, http, metric, post, post_new_account, primary_settings,
    readyz, replica_of, wait_serves, TestServer,
};
use nats_account_server::config::{Dur, Settings};
use nats_account_server::jwt;
use nats_account_server::store::{self, Backend, Commit, Kind, Loaded, StoreError};
use nats_account_server::RunningServer;
use nkeys::KeyPair;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

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

impl Ledger {
    /// Records a token as sent for `key` (before its answer is known).
    fn sent(&mut self, key: &str, token: &str) {
        self.posted
            .entry(key.to_string())
            .or_default()
            .insert(token.to_string());
    }
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
        ledger.lock().unwrap().sent(&key, &token);
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
    let feed::Feed { changes, head, .. } = feed::read(url).await;
    let stored = feed::by_key(&changes, "restarted primary");
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
                fixtures::iat(have) >= fixtures::iat(token),
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

    let mut server = ServerProcess::start_primary(dir.path(), "primary-0", port).await;
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

        server = ServerProcess::start_primary(dir.path(), &format!("primary-{round}"), port).await;
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
        let after = feed::read(&server.url).await;
        let last = after.changes.last().unwrap();
        assert_eq!(
            (last.key.as_str(), last.jwt.as_str()),
            (key.as_str(), token.as_str())
        );
        assert_eq!(
            last.seq,
            head + 1,
            "the first write after a restart takes head + 1"
        );
        assert_eq!(after.head, head + 1);
        ledger.lock().unwrap().sent(&key, &token);
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
    let mut replica = ServerProcess::start(rdir.path(), "replica-0", rport, &args).await;
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
    let before = feed::contents(&replica.url, "replica before the kill").await;
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
    let replica = ServerProcess::start(rdir.path(), "replica-1", rport, &args).await;
    let after = feed::contents(&replica.url, "restarted replica").await;
    for (key, token) in &before {
        let have = after
            .get(key)
            .unwrap_or_else(|| panic!("the replica lost {key}, which it served before the kill"));
        assert!(
            fixtures::iat(have) >= fixtures::iat(token),
            "the replica went back to an older version of {key}"
        );
    }

    let expected = feed::contents(&primary.url, "primary").await;
    assert_eq!(expected.len(), 3000);
    for (key, token) in &newest {
        assert_eq!(expected.get(key), Some(token));
    }
    eventually(Duration::from_secs(30), "the replica converges", || async {
        readyz(&replica.url).await.0 == 200
            && feed::contents(&replica.url, "converging replica").await == expected
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
    let mut nats = NatsServer::resolving_from(nats_port, &primary.url).await;
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
    nats.restart().await;
    let failures = writer.await.unwrap();
    assert!(
        failures.is_empty(),
        "writes failed during the NATS restart: {failures:?}"
    );

    let expected = feed::contents(&primary.url, "primary").await;
    assert_eq!(expected.len(), 150);
    for r in [&r1, &r2] {
        eventually(
            Duration::from_secs(20),
            "replica has every write",
            || async { feed::contents(&r.url, "replica").await == expected },
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
        wait_serves(&r.url, &key, &token, Duration::from_secs(10)).await;
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
        || async { feed::contents(&replica.url, "replica").await.len() == 20 },
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
    let expected = feed::contents(&primary.url, "primary").await;
    assert_eq!(expected.len(), 40);
    eventually(
        Duration::from_secs(20),
        "replica converges over the slow link",
        || async { feed::contents(&replica.url, "replica").await == expected },
    )
    .await;
    proxy.set(Mode::Pass);
    let (key, token) = post_new_account(&primary.url, "after-heal").await;
    wait_serves(&replica.url, &key, &token, Duration::from_secs(10)).await;
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
        feed::contents(&server.url, "full primary").await.len(),
        acked.len()
    );

    // Space again: without a restart, a write reopens the store (sled refuses every write after
    // an I/O error until then; attempts are at most every 2 s) and is stored; nothing
    // acknowledged went missing.
    std::fs::remove_file(&filler).unwrap();
    acked.push(post_until_stored(&server, "space-again").await);
    assert_eq!(store_health(&server.url).await, ("ok".into(), 0.0));
    let have = feed::contents(&server.url, "recovered primary").await;
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
    let have = feed::contents(&server.url, "restarted primary").await;
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
    let before = feed::observable(&server).await;

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
    let newer = account_jwt_at(key0, "newer", fixtures::iat(token0) + 1);
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
        feed::observable(&server).await,
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
    let after = feed::read(&server.url).await;
    assert_eq!(
        after.head,
        before.feed.head + 1,
        "no sequence numbers were burnt by failed commits"
    );
    assert_eq!(after.changes.last().unwrap().key, key);
    acked.push((key, token));

    server.stop().await;
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let server = start_faulty(dir, Arc::new(AtomicBool::new(false))).await;
    let have = feed::contents(&server.url, "restarted").await;
    let want: HashMap<String, String> = acked.into_iter().collect();
    assert_eq!(have, want);
}

/// A write forwarded to a primary that stops answering mid-request (a partition after the
/// connection was made) may or may not have been stored there: the replica says exactly that
/// (503, retry with the same JWT, which is safe), never "not stored", and does not send the
/// write on to another primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_forwarded_write_is_reported_as_unknown_not_as_lost() {
    let primary = TestServer::primary().await;
    let proxy = Proxy::start(&host_port(&primary.url)).await;
    let replica = replica_of(&[&proxy.url], |s| {
        s.operatorjwtpath = Some(fixtures::vectors().join("operator.jwt"));
        s.replicationtimeout = Dur(Duration::from_secs(1));
    })
    .await;
    crate::common::wait_ready(&replica.url).await;
    proxy.set(Mode::Drop);
    let (key, token) = account("unanswered");
    let r = post(
        &format!("{}/jwt/v1/accounts/{key}", replica.url),
        token.clone(),
    )
    .await;
    assert_eq!(r.0, 503, "{}", r.1);
    assert!(r.1.contains("may or may not have been stored"), "{}", r.1);
    assert!(!r.1.contains("was not stored"), "{}", r.1);
    // The same JWT again once the link is back: accepted (stored now, or found unchanged).
    proxy.set(Mode::Pass);
    eventually(Duration::from_secs(10), "the retry is accepted", || async {
        post(
            &format!("{}/jwt/v1/accounts/{key}", replica.url),
            token.clone(),
        )
        .await
        .0 == 200
    })
    .await;
    wait_serves(&primary.url, &key, &token, Duration::from_secs(5)).await;
}
