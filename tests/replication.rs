//! Primary/replica clusters with real parts: in-process primaries and replicas on ephemeral
//! ports with their own sled directories, our binary as a killable primary, a real nats-server
//! and a real nginx in front of the replicas.

use crate::common::feed;
use crate::common::fixtures::{self, account_jwt_at};
use crate::common::nats::{use_nats, wait_nats_connected, NatsServer};
use crate::common::nginx::Nginx;
use crate::common::process::ServerProcess;
use crate::common::{
    account, eventually, free_port, get, http, metric, post, post_accepted, post_new_account,
    replica_of, replica_settings, serves, wait_ready, wait_serves, TestServer,
};
use nats_account_server::config::UpdateSubjects;
use nats_account_server::config::{Dur, Settings, StringList};
use nats_account_server::jwt::{self, encode};
use nats_account_server::server::load_trust;
use nkeys::KeyPair;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The change feed: snapshot from 0, incremental from a sequence, lineage and head headers,
/// and a long poll that returns as soon as a write lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_feed_snapshot_and_long_poll() {
    let primary = TestServer::primary().await;
    let (a, a_jwt) = post_new_account(&primary.url, "a").await;

    let r = http()
        .get(primary.at("/jwt/v1/changes?since=0"))
        .send()
        .await
        .unwrap();
    let store_id = r.headers()["x-store-id"].to_str().unwrap().to_string();
    assert_eq!(store_id, primary.running().state().store.lineage());
    assert_eq!(r.headers()["x-head-seq"], "1");
    assert_eq!(r.text().await.unwrap(), format!("1|account|{a}|{a_jwt}\n"));

    // Nothing after 1: a long poll waits until the next write, then returns it.
    let url = primary.at("/jwt/v1/changes?since=1&wait=20");
    let poll = tokio::spawn(async move {
        let start = Instant::now();
        let body = http().get(url).send().await.unwrap().text().await.unwrap();
        (body, start.elapsed())
    });
    let (b, b_jwt) = account("b");
    // The poll must be parked before the write for this to test the wake-up: wait until the
    // primary reports it waiting (a condition on the server, not a sleep).
    eventually(
        Duration::from_secs(5),
        "long poll parked on the primary",
        || async { metric(&primary.url, "nas_changes_long_polls").await == 1.0 },
    )
    .await;
    assert_eq!(
        post(&primary.at(&format!("/jwt/v1/accounts/{b}")), b_jwt.clone())
            .await
            .0,
        200
    );
    let (body, took) = poll.await.unwrap();
    assert_eq!(metric(&primary.url, "nas_changes_long_polls").await, 0.0);
    assert_eq!(body, format!("2|account|{b}|{b_jwt}\n"));
    assert!(
        took < Duration::from_secs(15),
        "long poll returned on the write, not on its timeout"
    );

    // An empty poll with a short wait returns empty with the head.
    let r = http()
        .get(primary.at("/jwt/v1/changes?since=2&wait=0.2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-head-seq"], "2");
    assert_eq!(r.text().await.unwrap(), "");
    // A cursor beyond the head (a replica of this store before it was restored from an older
    // copy) is never parked: the answer, with the lower head, comes at once, not after `wait`.
    let started = Instant::now();
    let r = http()
        .get(primary.at("/jwt/v1/changes?since=50&wait=20"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-head-seq"], "2");
    assert_eq!(r.text().await.unwrap(), "");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a poll beyond the head was parked: {:?}",
        started.elapsed()
    );
    assert_eq!(metric(&primary.url, "nas_changes_long_polls").await, 0.0);
    // limit pages through in order.
    let body = get(&primary.at("/jwt/v1/changes?since=0&limit=1")).await.1;
    assert!(body.starts_with(&format!("1|account|{a}|")) && body.lines().count() == 1);
}

/// POST on the primary → both replicas serve it, through the feed alone (no NATS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_converge_through_the_feed_without_nats() {
    let primary = TestServer::primary().await;
    let r1 = replica_of(&[&primary.url], |_| {}).await;
    let r2 = replica_of(&[&primary.url], |_| {}).await;
    for r in [&r1, &r2] {
        wait_ready(&r.url).await;
    }
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let (key, jwt) = post_new_account(&primary.url, &format!("feed-{i}")).await;
        for r in [&r1, &r2] {
            worst = worst.max(wait_serves(&r.url, &key, &jwt, Duration::from_secs(5)).await);
        }
    }
    eprintln!("feed-only convergence: worst {worst:?} over 20 writes x 2 replicas");
    // The replicas' copies are durable and carry their own change log.
    let (_, feed) = get(&format!("{}/jwt/v1/changes?since=0", r1.url)).await;
    assert_eq!(feed.lines().count(), 20);
    assert!(metric(&r1.url, "nas_replica_applied_total{source=\"feed\"}").await >= 20.0);
}

/// With NATS, replicas apply the primary's claims-update message at once; the feed is not
/// needed (its long poll is parked), and forged updates signed by a rogue operator are ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_apply_nats_updates_and_ignore_forgeries() {
    let nats_port = free_port();
    let with_nats = |s: &mut Settings| use_nats(s, nats_port);
    let primary = TestServer::start_with(with_nats).await;
    let nats = NatsServer::resolving_from(nats_port, &primary.url).await;
    let replica = replica_of(&[&primary.url], with_nats).await;
    for url in [&primary.url, &replica.url] {
        wait_nats_connected(url).await;
    }
    wait_ready(&replica.url).await;

    let mut worst = Duration::ZERO;
    for i in 0..10 {
        let (key, jwt) = post_new_account(&primary.url, &format!("nats-{i}")).await;
        worst = worst.max(wait_serves(&replica.url, &key, &jwt, Duration::from_secs(5)).await);
    }
    eprintln!("NATS convergence: worst {worst:?} over 10 writes");
    assert!(
        metric(&replica.url, "nas_replica_applied_total{source=\"nats\"}").await >= 1.0,
        "updates arrived over NATS"
    );

    // A rogue operator signs a JWT for account A and publishes it where the primary would.
    let rogue_op = nkeys::KeyPair::new_operator();
    let a = fixtures::vector("account_a.pub");
    let forged =
        nats_account_server::jwt::encode::account(&rogue_op, &a, "forged", serde_json::json!({}));
    let sys = nats.sys_client().await;
    sys.publish(
        format!("$SYS.ACCOUNT.{a}.CLAIMS.UPDATE"),
        forged.clone().into(),
    )
    .await
    .unwrap();
    // Then a genuine update through the same path; once it is applied, the forgery (sent
    // earlier on the same connection and subject) has been processed too.
    let genuine = fixtures::account_jwt(&a, "genuine", serde_json::json!({}));
    sys.publish(
        format!("$SYS.ACCOUNT.{a}.CLAIMS.UPDATE"),
        genuine.clone().into(),
    )
    .await
    .unwrap();
    sys.flush().await.unwrap();
    wait_serves(&replica.url, &a, &genuine, Duration::from_secs(5)).await;
    let (_, feed) = get(&format!("{}/jwt/v1/changes?since=0", replica.url)).await;
    assert!(!feed.contains(&forged), "a forged JWT was stored");
}

/// Writes posted to a replica are forwarded to the primary, readable on the replica at once,
/// and the primary's refusals come back unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_forwards_writes_and_reads_its_own() {
    let primary = TestServer::primary().await;
    let replica = replica_of(&[&primary.url], |s| {
        s.replication.pollwait = Dur(Duration::from_secs(30))
    })
    .await;
    wait_ready(&replica.url).await;
    let (key, jwt) = account("forwarded");
    let (status, _) = post(
        &format!("{}/jwt/v1/accounts/{key}", replica.url),
        jwt.clone(),
    )
    .await;
    assert_eq!(status, 200);
    // Read-your-writes: no waiting.
    assert!(serves(&replica.url, &key, &jwt).await);
    assert!(serves(&primary.url, &key, &jwt).await);
    // A bad JWT gets the primary's 400, reason and X-Error-Code, exactly as from the primary.
    let refusal = |base: String| {
        let key = key.clone();
        async move {
            let r = http()
                .post(format!("{base}/jwt/v1/accounts/{key}"))
                .body(fixtures::vector("post/bad_self_signed.jwt"))
                .send()
                .await
                .expect("POST");
            let code = r.headers().get("X-Error-Code").cloned();
            (
                r.status().as_u16(),
                code,
                r.text().await.unwrap_or_default(),
            )
        }
    };
    let from_replica = refusal(replica.url.clone()).await;
    assert_eq!(from_replica, refusal(primary.url.clone()).await);
    assert_eq!(
        (from_replica.0, from_replica.1.unwrap()),
        (400, "key_mismatch".parse().unwrap())
    );
}

/// 72 concurrent writers post 24 versions (distinct iats, in shuffled order) of each of three
/// accounts to the primary and, forwarded, to two replicas: every answer is 200 or 409, the
/// newest version is accepted, and it is what the primary and both replicas end up serving,
/// with each key once in every change feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_one_account_end_with_the_newest_everywhere() {
    let nats_port = free_port();
    let with_nats = |s: &mut Settings| use_nats(s, nats_port);
    let primary = TestServer::start_with(with_nats).await;
    let _nats = NatsServer::resolving_from(nats_port, &primary.url).await;
    let r1 = replica_of(&[&primary.url], with_nats).await;
    let r2 = replica_of(&[&primary.url], |_| {}).await;
    for r in [&r1, &r2] {
        wait_ready(&r.url).await;
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
        let have = feed::contents(&server.url, "after the race").await;
        for key in &keys {
            assert_eq!(have.get(key), Some(&newest[key]));
        }
    }
}

/// Replica gauges exist on replicas only: a primary reporting `nas_replica_primary_reachable 0`
/// would look like a replica that lost its primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_replicas_export_replica_metrics() {
    let primary = TestServer::primary().await;
    let replica = replica_of(&[&primary.url], |_| {}).await;
    wait_ready(&replica.url).await;
    let (_, on_primary) = get(&primary.at("/metrics")).await;
    assert!(
        on_primary.contains("nas_store_head_sequence"),
        "{on_primary}"
    );
    assert!(!on_primary.contains("nas_replica_"), "{on_primary}");
    let (_, on_replica) = get(&replica.at("/metrics")).await;
    assert!(
        on_replica.contains("nas_replica_primary_reachable 1"),
        "{on_replica}"
    );
}

/// The primary dies: replicas keep serving every account they have, a POST to a replica is a
/// clear 503, readiness stays up with the primary reported unreachable; when it comes back the
/// replicas reconnect by themselves and new writes reach them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_survive_a_primary_outage() {
    let pdir = tempfile::tempdir().unwrap();
    let pport = free_port();
    let mut primary = ServerProcess::start_primary(pdir.path(), "primary", pport).await;
    let r1 = replica_of(&[&primary.url], |_| {}).await;
    let r2 = replica_of(&[&primary.url], |_| {}).await;
    let mut known = Vec::new();
    for i in 0..10 {
        let (key, jwt) = post_new_account(&primary.url, &format!("outage-{i}")).await;
        known.push((key, jwt));
    }
    for r in [&r1, &r2] {
        for (k, j) in &known {
            wait_serves(&r.url, k, j, Duration::from_secs(10)).await;
        }
    }

    primary.kill9();
    for r in [&r1, &r2] {
        for (k, j) in &known {
            assert!(
                serves(&r.url, k, j).await,
                "replica stopped serving {k} while the primary is down"
            );
        }
        let (key, jwt) = account("during-outage");
        let resp = http()
            .post(format!("{}/jwt/v1/accounts/{key}", r.url))
            .body(jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 503);
        assert!(resp.headers().contains_key("retry-after"));
        assert!(resp.text().await.unwrap().contains("unreachable"));
        eventually(
            Duration::from_secs(10),
            "replica reports the primary unreachable",
            || async {
                let (status, body) = get(&format!("{}/readyz", r.url)).await;
                status == 200 && body.contains("\"primary_reachable\":false")
            },
        )
        .await;
        assert_eq!(metric(&r.url, "nas_replica_primary_reachable").await, 0.0);
        assert!(
            metric(&r.url, "nas_replica_lag_seconds").await > 0.0,
            "lag grows while the primary is away"
        );
    }

    let primary = ServerProcess::start_primary(pdir.path(), "primary-again", pport).await;
    let (key, jwt) = post_new_account(&primary.url, "after-outage").await;
    for r in [&r1, &r2] {
        wait_serves(&r.url, &key, &jwt, Duration::from_secs(10)).await;
        eventually(
            Duration::from_secs(10),
            "primary reachable and no lag",
            || async {
                metric(&r.url, "nas_replica_primary_reachable").await == 1.0
                    && metric(&r.url, "nas_replica_lag_sequences").await == 0.0
            },
        )
        .await;
    }
}

/// A replica that was down during 1,000 writes catches up completely on restart, from its
/// persisted cursor, over many feed pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_catches_up_after_missing_1000_writes() {
    let primary = TestServer::primary().await;
    let rdir = tempfile::tempdir().unwrap();
    let mut settings = replica_settings(rdir.path(), &[&primary.url]);
    // 16 pages: the catch-up goes through the prefetch of full pages, and the exact applied
    // count below shows no page was applied twice or skipped.
    settings.replication.batch = 64;
    let mut first = TestServer::start_in(tempfile::tempdir().unwrap(), settings.clone()).await;
    let (k0, j0) = post_new_account(&primary.url, "before").await;
    wait_serves(&first.url, &k0, &j0, Duration::from_secs(10)).await;
    // Served is not yet applied from the feed (a miss fetches it from the primary): stop only
    // once the cursor has passed it, or the restart applies it again and the count is off.
    crate::common::wait_applied(&primary.url, &first.url).await;
    first.stop().await;

    // 1,000 writes with 16 concurrent clients while the replica is down.
    let mut all = Vec::new();
    let client = http();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(16) {
        let mut posts = Vec::new();
        for i in chunk {
            let (key, jwt) = account(&format!("missed-{i}"));
            let c = client.clone();
            let url = primary.at(&format!("/jwt/v1/accounts/{key}"));
            let body = jwt.clone();
            posts.push(tokio::spawn(async move {
                c.post(url)
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
            all.push((key, jwt));
        }
        for p in posts {
            assert_eq!(p.await.unwrap(), 200);
        }
    }

    let replica = TestServer::start_in(tempfile::tempdir().unwrap(), settings).await;
    let store = replica.running().state().store.clone();
    eventually(
        Duration::from_secs(20),
        "replica holds all 1,001 accounts",
        || {
            let store = store.clone();
            async move { store.counts().0 == 1001 }
        },
    )
    .await;
    for (k, j) in all.iter().step_by(97) {
        assert!(serves(&replica.url, k, j).await);
    }
    // It resumed from its cursor: the feed applied only the 1,000 it missed.
    assert_eq!(
        metric(&replica.url, "nas_replica_applied_total{source=\"feed\"}").await,
        1000.0
    );
}

/// Failover: the primary is gone, a replica restarts without `--primary` on its own data and
/// becomes the primary; the other replica follows it through its primary list (lineage change
/// → full resync) and receives its writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoted_replica_becomes_the_primary() {
    let mut old = TestServer::primary().await;
    let r1_port = free_port();
    let r1_dir = tempfile::tempdir().unwrap();
    let r1_settings = replica_settings(r1_dir.path(), &[&old.url]);
    let mut r1 =
        TestServer::start_on(tempfile::tempdir().unwrap(), r1_settings.clone(), r1_port).await;
    let r1_url = r1.url.clone();
    let r2 = replica_of(&[&old.url, &r1_url], |_| {}).await;

    let (k, j) = post_new_account(&old.url, "before-failover").await;
    wait_serves(&r1_url, &k, &j, Duration::from_secs(10)).await;
    wait_serves(&r2.url, &k, &j, Duration::from_secs(10)).await;

    // The primary goes away for good; r1 is restarted as a primary on its own data.
    old.stop().await;
    r1.stop().await;
    let mut promoted = r1_settings;
    promoted.primary = StringList::default();
    promoted.operatorjwtpath = Some(fixtures::vectors().join("operator.jwt"));
    let r1 = TestServer::start_on(tempfile::tempdir().unwrap(), promoted, r1_port).await;
    assert!(
        serves(&r1.url, &k, &j).await,
        "the promoted replica kept its data"
    );

    let (k2, j2) = post_new_account(&r1.url, "after-failover").await;
    wait_serves(&r2.url, &k2, &j2, Duration::from_secs(15)).await;
    assert!(serves(&r2.url, &k, &j).await);
}

/// A read miss on a replica that has not synced a key yet is fetched from the primary; an
/// unknown key is 404; readiness is 503 until the initial sync completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_fetches_misses_from_the_primary() {
    let primary = TestServer::primary().await;
    let mut keys = Vec::new();
    for i in 0..300 {
        let (k, j) = post_new_account(&primary.url, &format!("miss-{i}")).await;
        keys.push((k, j));
    }
    // One change per feed page makes the initial sync slow enough to observe.
    let replica = replica_of(&[&primary.url], |s| s.replication.batch = 1).await;
    let (status, _) = get(&format!("{}/readyz", replica.url)).await;
    assert_eq!(status, 503, "not ready before the initial sync");
    let (k, j) = keys.last().unwrap();
    assert!(
        serves(&replica.url, k, j).await,
        "a miss is fetched from the primary"
    );
    assert!(metric(&replica.url, "nas_replica_applied_total{source=\"miss\"}").await >= 1.0);
    let unknown = nkeys::KeyPair::new_account().public_key();
    assert_eq!(
        get(&format!("{}/jwt/v1/accounts/{unknown}", replica.url))
            .await
            .0,
        404
    );
    eventually(
        Duration::from_secs(30),
        "replica ready after the initial sync",
        || async { get(&format!("{}/readyz", replica.url)).await.0 == 200 },
    )
    .await;
}

/// The whole shape: nginx balances GETs over two replicas, a nats-server whose URL resolver
/// points at nginx authenticates users of accounts POSTed to the primary, and POSTs through
/// nginx succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_resolves_through_nginx_and_replicas() {
    let primary = TestServer::primary().await;
    let r1 = replica_of(&[&primary.url], |_| {}).await;
    let r2 = replica_of(&[&primary.url], |_| {}).await;
    let host = |u: &str| u.trim_start_matches("http://").to_string();
    let lb = Nginx::start([&host(&r1.url), &host(&r2.url)], &host(&primary.url)).await;

    // The system account and account A, POSTed to the primary.
    let a = fixtures::account_a();
    let a_jwt = fixtures::account_jwt(&a.public_key(), "A", serde_json::json!({}));
    assert_eq!(
        post(
            &primary.at(&format!("/jwt/v1/accounts/{}", a.public_key())),
            a_jwt.clone()
        )
        .await
        .0,
        200
    );
    post_accepted(
        &primary.url,
        &fixtures::vector("system_account.pub"),
        &fixtures::vector("sys.jwt"),
    )
    .await;
    for r in [&r1, &r2] {
        wait_serves(&r.url, &a.public_key(), &a_jwt, Duration::from_secs(10)).await;
    }
    // GETs through nginx reach both replicas.
    for _ in 0..10 {
        assert!(serves(&lb.url, &a.public_key(), &a_jwt).await);
    }
    let served_by_r1 = metric(
        &r1.url,
        "nas_http_requests_total{method=\"GET\",route=\"/jwt/v1/accounts/{key}\"",
    )
    .await;
    let served_by_r2 = metric(
        &r2.url,
        "nas_http_requests_total{method=\"GET\",route=\"/jwt/v1/accounts/{key}\"",
    )
    .await;
    assert!(
        served_by_r1 > 0.0 && served_by_r2 > 0.0,
        "nginx balanced over both replicas ({served_by_r1}, {served_by_r2})"
    );

    let nats = NatsServer::resolving_from(0, &lb.url).await;
    // Its resolver reaches us through nginx.
    nats.connect_user(&fixtures::user_creds(&a, "alice")).await;

    // A POST through nginx lands on the primary and reaches both replicas.
    let (k, j) = account("via-nginx");
    let (status, body) = post(&format!("{}/jwt/v1/accounts/{k}", lb.url), j.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(serves(&primary.url, &k, &j).await);
    for r in [&r1, &r2] {
        wait_serves(&r.url, &k, &j, Duration::from_secs(10)).await;
    }
}

/// A replica of a Go-era primary (no change feed, only `/jwt/v1/pack`) copies the pack, up to
/// `maxreplicationpack` tokens, and refreshes it. A pack cut at that cap may lack accounts, so
/// the replica does not count itself caught up: a read of one the pack left out is asked of
/// the primary, not answered 404. The Go server cannot run here, so a minimal HTTP responder
/// serves the Go routes with real tokens, in the Go server's formats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_of_a_go_primary_imports_its_pack() {
    use actix_web::{web, HttpResponse};
    let pack: Vec<(String, String)> = (0..5).map(|i| account(&format!("go-{i}"))).collect();
    let body = pack
        .iter()
        .map(|(k, j)| format!("{k}|{j}"))
        .collect::<Vec<_>>()
        .join("\n");
    let operator = fixtures::vector("operator.jwt");
    let by_key: std::collections::HashMap<String, String> = pack.iter().cloned().collect();
    let (go_url, handle) = crate::common::serve_routes(move |routes| {
        let (body, operator, by_key) = (body.clone(), operator.clone(), by_key.clone());
        routes
            .route(
                "/jwt/v1/accounts/{key}",
                web::get().to(move |key: web::Path<String>| {
                    let found = by_key.get(key.as_str()).cloned();
                    async move {
                        match found {
                            Some(jwt) => HttpResponse::Ok().body(jwt),
                            None => HttpResponse::NotFound().finish(),
                        }
                    }
                }),
            )
            .route(
                "/jwt/v1/pack",
                web::get().to(
                    move |q: web::Query<std::collections::HashMap<String, String>>| {
                        let max: usize = q
                            .get("max")
                            .and_then(|m| m.parse().ok())
                            .unwrap_or(usize::MAX);
                        let lines: Vec<&str> = body.lines().take(max).collect();
                        let out = lines.join("\n");
                        async move { HttpResponse::Ok().body(out) }
                    },
                ),
            )
            .route(
                "/jwt/v1/operator",
                web::get().to(move || {
                    let op = operator.clone();
                    async move { HttpResponse::Ok().body(op) }
                }),
            );
    });

    let replica = replica_of(&[&go_url], |s| s.maxreplicationpack = 3).await;
    wait_ready(&replica.url).await;
    for (k, j) in &pack[..3] {
        assert!(serves(&replica.url, k, j).await);
    }
    assert_eq!(
        replica.running().state().store.counts().0,
        3,
        "maxreplicationpack caps the import"
    );
    let (_, ready) = crate::common::readyz(&replica.url).await;
    assert_eq!(ready["replica"]["partial"], true, "{ready}");
    assert_eq!(ready["replica"]["caught_up"], false, "{ready}");
    let (left_out, jwt) = &pack[4];
    assert!(
        serves(&replica.url, left_out, jwt).await,
        "a key the cut pack left out is asked of the primary"
    );
    handle.stop(false).await;
}

/// A primary and a replica sharing a real nats-server, both publishing and listening on the
/// account update subject `which` names; returns once both are connected and the replica is
/// ready.
async fn nats_pair(which: UpdateSubjects) -> (TestServer, NatsServer, TestServer) {
    let nats_port = free_port();
    let with_nats = |s: &mut Settings| {
        use_nats(s, nats_port);
        s.nats.updatesubjects = which;
    };
    let primary = TestServer::start_with(with_nats).await;
    let nats = NatsServer::resolving_from(nats_port, &primary.url).await;
    let replica = replica_of(&[&primary.url], with_nats).await;
    for url in [&primary.url, &replica.url] {
        wait_nats_connected(url).await;
    }
    wait_ready(&replica.url).await;
    (primary, nats, replica)
}

/// `nas_replica_nats_ignored_total{reason="<reason>"}` of `base`.
async fn ignored(base: &str, reason: &str) -> f64 {
    metric(
        base,
        &format!("nas_replica_nats_ignored_total{{reason=\"{reason}\"}}"),
    )
    .await
}

/// DESIGN §6, "NATS": what a replica receives on the claims-update subjects is a hint from an
/// untrusted channel (anyone with system-account credentials can publish there). It is applied
/// at once only when a POST to the primary would accept it and it is strictly newer; anything
/// else is ignored and counted. It used to apply an expired account JWT sent as a
/// `$SYS.REQ.ACCOUNT.<pub>.CLAIMS.UPDATE` request, content nats-server refuses, and an
/// activation signed by a key its issuing account does not list; and it listened on every
/// update subject, not only the one its primary publishes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_applies_only_nats_updates_a_post_would_accept() {
    let (primary, nats, replica) = nats_pair(UpdateSubjects::New).await;
    let sk = fixtures::signing_key();
    let a_kp = fixtures::account_a();
    let a = a_kp.public_key();
    let a_signer = nkeys::KeyPair::new_account();
    let base = nats_account_server::jwt::now_unix() - 1000;
    let account = |iat: i64, exp: Option<i64>, name: &str, extra: Value, signer: &KeyPair| {
        let mut nats = json!({ "type": "account", "version": 2, "limits": { "conn": -1 },
            "signing_keys": [a_signer.public_key()] });
        for (k, v) in extra.as_object().unwrap() {
            nats[k] = v.clone();
        }
        let mut claims = json!({ "iat": iat, "name": name, "sub": a, "nats": nats });
        if let Some(exp) = exp {
            claims["exp"] = json!(exp);
        }
        encode::sign(claims, signer)
    };
    let v1 = account(base, None, "v1", json!({}), &sk);
    post_accepted(&primary.url, &a, &v1).await;
    wait_serves(&replica.url, &a, &v1, Duration::from_secs(5)).await;

    let sys = nats.sys_client().await;
    let req_subject = format!("$SYS.REQ.ACCOUNT.{a}.CLAIMS.UPDATE");
    let now = nats_account_server::jwt::now_unix();
    // Sent as a request, as the issue reproduced it: newer than v1, signed right, expired.
    let expired = account(base + 10, Some(now - 5), "expired", json!({}), &sk);
    sys.publish_with_reply(req_subject.clone(), sys.new_inbox(), expired.clone().into())
        .await
        .unwrap();
    let forged = account(
        base + 20,
        None,
        "forged",
        json!({}),
        &KeyPair::new_operator(),
    );
    // An export nats-server refuses when it loads the account.
    let bad_content = account(
        base + 30,
        None,
        "bad-content",
        json!({ "exports": [{ "type": "stream", "subject": "bad subject" }] }),
        &sk,
    );
    // Account B's JWT on account A's subject.
    let other_key = fixtures::account_jwt(&fixtures::account_b().public_key(), "b", json!({}));
    let older = account(base - 10, None, "older", json!({}), &sk);
    let same_second = account(base, None, "same-second", json!({}), &sk);
    for token in [&forged, &bad_content, &other_key, &older, &same_second] {
        sys.publish(req_subject.clone(), token.clone().into())
            .await
            .unwrap();
    }
    // Valid and newer, but on the subject this primary does not publish on (`new` setting).
    let elsewhere = account(base + 60, None, "elsewhere", json!({}), &sk);
    sys.publish(
        format!("$SYS.ACCOUNT.{a}.CLAIMS.UPDATE"),
        elsewhere.clone().into(),
    )
    .await
    .unwrap();
    // Valid, newer, on the right subject, and never posted to the primary: only NATS can
    // bring it. Once it is served, everything published before it has been handled.
    let good = account(base + 50, None, "good", json!({}), &sk);
    sys.publish(req_subject.clone(), good.clone().into())
        .await
        .unwrap();
    sys.flush().await.unwrap();
    wait_serves(&replica.url, &a, &good, Duration::from_secs(5)).await;
    assert_eq!(ignored(&replica.url, "expired").await, 1.0);
    assert_eq!(
        ignored(&replica.url, "invalid_jwt").await,
        2.0,
        "forged, bad content"
    );
    assert_eq!(ignored(&replica.url, "key_mismatch").await, 1.0);
    assert_eq!(
        ignored(&replica.url, "not_newer").await,
        2.0,
        "older, same second"
    );
    let (_, feed) = get(&format!("{}/jwt/v1/changes?since=0", replica.url)).await;
    for (what, token) in [
        ("expired", &expired),
        ("forged", &forged),
        ("bad content", &bad_content),
        ("other account", &other_key),
        ("older", &older),
        ("same second", &same_second),
        ("other subject", &elsewhere),
    ] {
        assert!(!feed.contains(token.as_str()), "the {what} JWT was stored");
    }

    // Activations: signed by a key account A does not list, expired, or under another hash
    // than its subject names, they are ignored; a valid one is applied at once.
    let b = fixtures::account_b().public_key();
    let activation = |signer: &KeyPair, subject: &str, exp: Option<i64>| {
        let mut claims = json!({ "sub": b, "iat": now, "nats": { "subject": subject,
            "kind": "stream", "type": "activation", "version": 2 } });
        if signer.public_key() != a {
            claims["nats"]["issuer_account"] = json!(a);
        }
        if let Some(exp) = exp {
            claims["exp"] = json!(exp);
        }
        encode::sign(claims, signer)
    };
    let hash_of = |token: &str| {
        nats_account_server::jwt::activation_hash(
            &nats_account_server::jwt::parse_unverified(token).unwrap(),
        )
        .unwrap()
    };
    let publish_activation = |token: String, hash: String| {
        let iss = nats_account_server::jwt::parse_unverified(&token)
            .unwrap()
            .iss;
        sys.publish(
            format!("$SYS.ACCOUNT.{iss}.CLAIMS.ACTIVATE.{hash}"),
            token.into(),
        )
    };
    let rogue = activation(&KeyPair::new_account(), "rogue.>", None);
    let expired_act = activation(&a_kp, "expired.>", Some(now - 5));
    let misfiled = activation(&a_kp, "misfiled.>", None);
    let by_listed_key = activation(&a_signer, "listed.>", None);
    let good_act = activation(&a_kp, "good.>", None);
    for (token, hash) in [
        (&rogue, hash_of(&rogue)),
        (&expired_act, hash_of(&expired_act)),
        (&misfiled, hash_of(&good_act)),
        (&by_listed_key, hash_of(&by_listed_key)),
        (&good_act, hash_of(&good_act)),
    ] {
        publish_activation(token.clone(), hash).await.unwrap();
    }
    sys.flush().await.unwrap();
    let good_url = format!("{}/jwt/v1/activations/{}", replica.url, hash_of(&good_act));
    eventually(
        Duration::from_secs(5),
        "the valid activation applied",
        || async { get(&good_url).await == (200, good_act.clone()) },
    )
    .await;
    let listed_url = format!(
        "{}/jwt/v1/activations/{}",
        replica.url,
        hash_of(&by_listed_key)
    );
    assert_eq!(get(&listed_url).await, (200, by_listed_key.clone()));
    assert_eq!(
        ignored(&replica.url, "unknown_issuer").await,
        1.0,
        "rogue signer"
    );
    assert_eq!(ignored(&replica.url, "expired").await, 2.0);
    assert_eq!(ignored(&replica.url, "subject_mismatch").await, 1.0);
    for token in [&rogue, &expired_act] {
        let url = format!("{}/jwt/v1/activations/{}", replica.url, hash_of(token));
        assert_eq!(get(&url).await.0, 404, "an ignored activation is served");
    }
}

/// DESIGN §4 and §6 on a replica: two versions of account C issued in the same second. A
/// replica that got one of them first (as a NATS hint) ends with the one its primary accepted,
/// through the feed, whatever order the versions reached it in. Both share their `jti`, as the
/// Go library's same-second versions do; the replica used to keep the first one it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_mirrors_its_primarys_choice_between_same_second_versions() {
    let (primary, nats, replica) = nats_pair(UpdateSubjects::Old).await;
    let (c_kp, _) = fixtures::new_account("c");
    let c = c_kp.public_key();
    let iat = nats_account_server::jwt::now_unix() - 60;
    let version = |conn: i64| {
        encode::sign(
            json!({ "jti": "SAME", "iat": iat, "name": "c", "sub": c,
                "nats": { "type": "account", "version": 2, "limits": { "conn": conn } } }),
            &fixtures::signing_key(),
        )
    };
    let (first_here, the_primarys) = (version(2), version(1));
    let sys = nats.sys_client().await;
    sys.publish(
        format!("$SYS.ACCOUNT.{c}.CLAIMS.UPDATE"),
        first_here.clone().into(),
    )
    .await
    .unwrap();
    sys.flush().await.unwrap();
    wait_serves(&replica.url, &c, &first_here, Duration::from_secs(5)).await;

    post_accepted(&primary.url, &c, &the_primarys).await;
    // The primary's own notification of its version is not newer than the hint (ignored, or
    // unchanged when the feed was first): the feed, which mirrors the primary, replaces it.
    wait_serves(&replica.url, &c, &the_primarys, Duration::from_secs(5)).await;
    assert_eq!(
        get(&format!("{}/jwt/v1/accounts/{c}", primary.url)).await,
        (200, the_primarys)
    );
}

/// The configured system-account JWT answers while the primary is unreachable: it is the one
/// account nats-server needs to start, so it must not depend on the primary. (Before, the
/// replica asked the primary first and answered 503.) Another unknown key still needs the
/// primary: 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_serves_its_configured_system_account_while_the_primary_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let op = fixtures::vectors().join("operator.jwt");
    let sys = fixtures::vectors().join("sys.jwt");
    let replica = ServerProcess::start(
        dir.path(),
        "replica",
        free_port(),
        &[
            "--primary",
            &dead,
            "--operator",
            op.to_str().unwrap(),
            "--system-account",
            sys.to_str().unwrap(),
            "--data",
            "data",
        ],
    )
    .await;
    let key = fixtures::vector("system_account.pub");
    assert_eq!(
        get(&format!("{}/jwt/v1/accounts/{key}", replica.url)).await,
        (200, fixtures::vector("sys.jwt"))
    );
    let other = KeyPair::new_account().public_key();
    assert_eq!(
        get(&format!("{}/jwt/v1/accounts/{other}", replica.url))
            .await
            .0,
        503
    );
}

/// A caught-up replica started without `--system-account` serves the system account its
/// primary serves from `systemaccountjwtpath` (no feed carries it: it is not in the primary's
/// store). It is asked of the primary and verified, but not stored, so the two stores stay
/// equal; the last answer is served on while the primary is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_serves_the_system_account_its_primary_serves_from_a_file() {
    let mut primary = TestServer::start_with(|s| {
        s.systemaccountjwtpath = Some(fixtures::vectors().join("sys.jwt"));
    })
    .await;
    let replica = replica_of(&[&primary.url], |s| {
        s.replication.notfoundttl = Dur(Duration::from_millis(200));
    })
    .await;
    let (k, j) = post_new_account(&primary.url, "a").await;
    wait_serves(&replica.url, &k, &j, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), "the replica caught up", || async {
        crate::common::readyz(&replica.url).await.1["replica"]["caught_up"] == true
    })
    .await;

    let (sys_key, sys) = (
        fixtures::vector("system_account.pub"),
        fixtures::vector("sys.jwt"),
    );
    assert!(serves(&replica.url, &sys_key, &sys).await);
    let store = &replica.running().state().store;
    assert!(
        store
            .get(nats_account_server::store::Kind::Account, &sys_key)
            .is_none(),
        "served, not stored"
    );
    assert_eq!(
        get(&replica.at("/jwt/v1/pack")).await,
        get(&primary.at("/jwt/v1/pack")).await,
        "the replica holds what the primary holds"
    );

    // The primary goes away: past the answer's TTL, the last answer is still served.
    primary.stop().await;
    eventually(
        Duration::from_secs(10),
        "the primary is unreachable",
        || async {
            crate::common::readyz(&replica.url).await.1["replica"]["primary_reachable"] == false
        },
    )
    .await;
    assert!(serves(&replica.url, &sys_key, &sys).await);
}

/// A replica without `--operator` (it pinned its primary's on first contact) restarted
/// without `--primary` becomes a primary that still trusts that operator (DESIGN §6.1): it
/// serves `/jwt/v1/operator`, takes writes signed by it, and a new replica without `--operator`
/// bootstraps from it. With another `--operator`, its data directory refuses to start, as a
/// replica's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_without_operator_keeps_the_one_it_pinned() {
    let mut old = TestServer::primary().await;
    let (k, j) = post_new_account(&old.url, "before-failover").await;
    let mut r1 = replica_of(&[&old.url], |_| {}).await;
    wait_serves(&r1.url, &k, &j, Duration::from_secs(10)).await;
    old.stop().await;
    r1.stop().await;

    let dir = std::mem::replace(&mut r1.dir, tempfile::tempdir().unwrap());
    let mut promoted = crate::common::primary_settings(dir.path());
    promoted.operatorjwtpath = None;
    let rogue = KeyPair::new_operator();
    let rogue_op = dir.path().join("rogue.jwt");
    std::fs::write(&rogue_op, encode::operator(&rogue, "rogue", &[], None)).unwrap();
    let mut settings = promoted.clone();
    settings.operatorjwtpath = Some(rogue_op);
    let mut p = TestServer::start_in(dir, promoted.clone()).await;
    assert_eq!(
        get(&p.at("/jwt/v1/operator")).await,
        (200, fixtures::vector("operator.jwt"))
    );
    let (k2, j2) = post_new_account(&p.url, "after-failover").await;
    let r2 = replica_of(&[&p.url], |_| {}).await;
    wait_serves(&r2.url, &k2, &j2, Duration::from_secs(10)).await;
    assert!(serves(&r2.url, &k, &j).await);

    // A SIGHUP keeps the pinned operator and refuses another one.
    let reload = |s: &Settings| p.running().reload_trust(load_trust(s).unwrap());
    assert!(reload(&settings).is_err(), "another operator on reload");
    reload(&promoted).unwrap();
    post_new_account(&p.url, "after-reload").await;

    p.stop().await;
    crate::common::assert_start_refused_for_operator(settings, &rogue.public_key()).await;
}
