//! Replicas never serve stale or untrusted data silently: the trust anchor survives SIGHUP and
//! follows operator signing-key rotation; a spoofed primary gets nothing served; a restored
//! primary is noticed; read misses of a caught-up replica stay local; credentials in primary
//! URLs are never shown; the link's state is honest; HTTPS primaries with a private CA.

use crate::common::fixtures::{self, account_signed_at, iat};
use crate::common::process::ServerProcess;
use crate::common::{
    account, copy_dir, eventually, free_port, get, metric, post_accepted, post_new_account,
    primary_settings, readyz, replica_of, restart_as_replica_of, serves, wait_ready, wait_serves,
    TestServer,
};
use nats_account_server::config::Settings;
use nats_account_server::jwt::{encode, trust::Operator};
use nats_account_server::server::load_trust;
use nkeys::KeyPair;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// The vectors' operator JWT with `signing_keys` (and a fresh `iat`), self-signed.
fn operator_with_signing_keys(signing_keys: &[String]) -> String {
    let current = Operator::from_jwt(&fixtures::vector("operator.jwt")).unwrap();
    encode::operator(
        &fixtures::operator_key(),
        "rotated",
        signing_keys,
        current.system_account(),
    )
}

/// A primary whose operator JWT is a file the test rewrites (see [`RotatingPrimary::add_signing_key`]).
struct RotatingPrimary {
    server: TestServer,
    settings: Settings,
    op_path: std::path::PathBuf,
    _files: tempfile::TempDir,
}

impl RotatingPrimary {
    /// A primary trusting the vectors' operator, from a file of its own.
    async fn start() -> RotatingPrimary {
        let files = tempfile::tempdir().unwrap();
        let op_path = files.path().join("operator.jwt");
        std::fs::copy(fixtures::vectors().join("operator.jwt"), &op_path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut settings = primary_settings(dir.path());
        settings.operatorjwtpath = Some(op_path.clone());
        let server = TestServer::start_in(dir, settings.clone()).await;
        RotatingPrimary {
            server,
            settings,
            op_path,
            _files: files,
        }
    }

    /// The operator adds a signing key: its JWT file is rewritten and the primary reloads it.
    /// Returns the new key.
    fn add_signing_key(&self) -> KeyPair {
        let new_signer = KeyPair::new_operator();
        let rotated = operator_with_signing_keys(&[
            fixtures::signing_key().public_key(),
            new_signer.public_key(),
        ]);
        std::fs::write(&self.op_path, rotated).unwrap();
        self.server
            .running()
            .reload_trust(load_trust(&self.settings).unwrap())
            .unwrap();
        new_signer
    }
}

/// Number of account GETs `base` has answered.
async fn account_gets(base: &str) -> f64 {
    metric(
        base,
        "nas_http_requests_total{method=\"GET\",route=\"/jwt/v1/accounts/{key}\"",
    )
    .await
}

/// A replica started without `--operator` learns its primary's; a SIGHUP (which re-reads the
/// configured files, none here) must not make it forget, or the next change would not verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_never_forgets_the_operator_a_replica_learned() {
    let primary = TestServer::primary().await;
    let (key, v1) = post_new_account(&primary.url, "v1").await;
    let dir = tempfile::tempdir().unwrap();
    let replica = ServerProcess::start_replica(dir.path(), &primary.url).await;
    wait_serves(&replica.url, &key, &v1, Duration::from_secs(10)).await;

    replica.signal("HUP");
    eventually(Duration::from_secs(10), "the replica reloaded", || async {
        replica.log_text().contains("configuration reloaded")
    })
    .await;
    let v2 = fixtures::account_jwt_at(&key, "v2", iat(&v1) + 1);
    post_accepted(&primary.url, &key, &v2).await;
    wait_serves(&replica.url, &key, &v2, Duration::from_secs(10)).await;
    assert!(readyz(&replica.url).await.1["replica"]["stalled"].is_null());
}

/// The operator adds a signing key (its JWT changes, the primary reloads): accounts signed with
/// the new key reach replicas with and without `--operator`, and a restart keeps them working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_operator_signing_key_reaches_every_replica() {
    let rotating = RotatingPrimary::start().await;
    let primary = &rotating.server;
    let learning = replica_of(&[&primary.url], |_| {}).await;
    let configured = replica_of(&[&primary.url], |s| {
        s.operatorjwtpath = Some(fixtures::vectors().join("operator.jwt"))
    })
    .await;
    let (k0, j0) = post_new_account(&primary.url, "before").await;
    for r in [&learning, &configured] {
        wait_serves(&r.url, &k0, &j0, Duration::from_secs(10)).await;
    }

    let new_signer = rotating.add_signing_key();
    let k1 = KeyPair::new_account().public_key();
    let j1 = encode::account(&new_signer, &k1, "rotated", json!({}));
    post_accepted(&primary.url, &k1, &j1).await;
    for r in [&learning, &configured] {
        wait_serves(&r.url, &k1, &j1, Duration::from_secs(10)).await;
        assert!(readyz(&r.url).await.1["replica"]["stalled"].is_null());
    }

    // After a restart on the same data, the learned operator is still in force.
    let learning = restart_as_replica_of(learning, &[&primary.url]).await;
    let k2 = KeyPair::new_account().public_key();
    let j2 = encode::account(&new_signer, &k2, "after-restart", json!({}));
    post_accepted(&primary.url, &k2, &j2).await;
    wait_serves(&learning.url, &k2, &j2, Duration::from_secs(10)).await;
    assert!(serves(&learning.url, &k1, &j1).await);
}

/// A replica still syncing asks its primary for keys it lacks; an account signed by a signing
/// key the operator added since (unknown to the replica's copy of the operator) makes it fetch
/// the operator JWT again and serve the account, not a 404 (DESIGN §6: the operator is fetched
/// again whenever a token names an unknown issuer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_miss_signed_by_a_new_signing_key_is_served_while_syncing() {
    let rotating = RotatingPrimary::start().await;
    let primary = &rotating.server;
    for i in 0..400 {
        post_new_account(&primary.url, &format!("bulk-{i}")).await;
    }
    // One change per page: the replica is still syncing below. It has learned the operator
    // (before the rotation) once it has applied a change.
    let syncing = replica_of(&[&primary.url], |s| s.replication.batch = 1).await;
    eventually(
        Duration::from_secs(10),
        "the replica started its sync",
        || async { readyz(&syncing.url).await.1["replica"]["applied_seq"].as_u64() >= Some(1) },
    )
    .await;

    let new_signer = rotating.add_signing_key();
    let key = KeyPair::new_account().public_key();
    let jwt = encode::account(&new_signer, &key, "new-signer", json!({}));
    post_accepted(&primary.url, &key, &jwt).await;

    assert_eq!(
        get(&syncing.at(&format!("/jwt/v1/accounts/{key}"))).await,
        (200, jwt.clone())
    );
    assert_eq!(
        readyz(&syncing.url).await.1["replica"]["caught_up"],
        false,
        "served by a read miss, not by the feed"
    );
    // The feed goes on past the rotation with the operator learned (400 pages of one change:
    // a liveness bound).
    eventually(Duration::from_secs(60), "the replica synced", || async {
        readyz(&syncing.url).await.0 == 200
    })
    .await;
    assert!(serves(&syncing.url, &key, &jwt).await);
    assert!(readyz(&syncing.url).await.1["replica"]["stalled"].is_null());
}

/// A spoofed primary (another operator) gets nothing served: not by a replica that pinned the
/// real operator, not by one configured with it. The replica stalls loudly instead of skipping,
/// keeps serving what it has, and converges once pointed back at the real primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_primary_gets_nothing_served() {
    let real = TestServer::primary().await;
    let (k, j) = post_new_account(&real.url, "real").await;

    let rogue = KeyPair::new_operator();
    let files = tempfile::tempdir().unwrap();
    let rogue_op = files.path().join("rogue.jwt");
    std::fs::write(&rogue_op, encode::operator(&rogue, "rogue", &[], None)).unwrap();
    let spoof = TestServer::start_with(|s| s.operatorjwtpath = Some(rogue_op.clone())).await;
    // The spoof has a "newer" version of the real account and an account of its own.
    let evil = account_signed_at(&rogue, &k, "evil", iat(&j) + 5);
    post_accepted(&spoof.url, &k, &evil).await;
    let x = KeyPair::new_account().public_key();
    let x_jwt = encode::account(&rogue, &x, "rogue-only", json!({}));
    post_accepted(&spoof.url, &x, &x_jwt).await;

    // A replica pins the real operator on first use, then is pointed at the spoof.
    let replica = replica_of(&[&real.url], |_| {}).await;
    wait_serves(&replica.url, &k, &j, Duration::from_secs(10)).await;
    let replica = restart_as_replica_of(replica, &[&spoof.url]).await;
    eventually(
        Duration::from_secs(10),
        "the replica reports a stall",
        || async { !readyz(&replica.url).await.1["replica"]["stalled"].is_null() },
    )
    .await;
    assert!(
        serves(&replica.url, &k, &j).await,
        "keeps serving what it has"
    );
    assert_eq!(
        get(&replica.at(&format!("/jwt/v1/accounts/{x}"))).await.0,
        404
    );
    assert_eq!(metric(&replica.url, "nas_replica_stalled ").await, 1.0);
    assert!(get(&replica.url).await.1.contains("STALLED"));
    assert_eq!(readyz(&replica.url).await.1["replica"]["caught_up"], false);

    // Pointed back at the real primary: converges, nothing of the spoof stays.
    let replica = restart_as_replica_of(replica, &[&real.url]).await;
    let (k2, j2) = post_new_account(&real.url, "after").await;
    wait_serves(&replica.url, &k2, &j2, Duration::from_secs(10)).await;
    assert!(serves(&replica.url, &k, &j).await);
    assert_eq!(
        get(&replica.at(&format!("/jwt/v1/accounts/{x}"))).await.0,
        404
    );
    assert!(readyz(&replica.url).await.1["replica"]["stalled"].is_null());
    assert_eq!(metric(&replica.url, "nas_replica_stalled ").await, 0.0);

    // A fresh replica configured with the real operator serves nothing of the spoof either.
    let fresh = replica_of(&[&spoof.url], |s| {
        s.operatorjwtpath = Some(fixtures::vectors().join("operator.jwt"))
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the fresh replica stalls",
        || async { !readyz(&fresh.url).await.1["replica"]["stalled"].is_null() },
    )
    .await;
    for key in [&k, &x] {
        assert_eq!(
            get(&fresh.at(&format!("/jwt/v1/accounts/{key}"))).await.0,
            404
        );
    }
    assert_eq!(fresh.running().state().store.counts(), (0, 0));
}

/// A primary restored from an older backup keeps its lineage but its head goes back: the
/// replica notices (head below its cursor) and follows the primary's new writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_restored_from_a_backup_is_followed() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let start = |dir: tempfile::TempDir| {
        let settings = primary_settings(dir.path());
        TestServer::start_on(dir, settings, port)
    };
    let mut primary = start(dir).await;
    for i in 0..3 {
        post_new_account(&primary.url, &format!("old-{i}")).await;
    }
    primary.stop().await;
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&primary.path("data"), backup.path());
    let dir = std::mem::replace(&mut primary.dir, tempfile::tempdir().unwrap());
    let mut primary = start(dir).await;
    let mut newer = Vec::new();
    for i in 0..3 {
        newer.push(post_new_account(&primary.url, &format!("new-{i}")).await);
    }
    let replica = replica_of(&[&primary.url], |_| {}).await;
    let (k, j) = newer.last().unwrap();
    wait_serves(&replica.url, k, j, Duration::from_secs(10)).await;

    primary.stop().await;
    std::fs::remove_dir_all(primary.path("data")).unwrap();
    copy_dir(backup.path(), &primary.path("data"));
    let dir = std::mem::replace(&mut primary.dir, tempfile::tempdir().unwrap());
    let primary = start(dir).await;
    assert_eq!(primary.running().state().store.head(), 3, "restored");
    let (x, x_jwt) = post_new_account(&primary.url, "after-restore").await;
    wait_serves(&replica.url, &x, &x_jwt, Duration::from_secs(10)).await;
    for (k, j) in &newer {
        assert!(serves(&replica.url, k, j).await, "newer versions stay");
    }
    eventually(
        Duration::from_secs(10),
        "the replica noticed the restore",
        || async {
            metric(
                &replica.url,
                "nas_replica_resyncs_total{reason=\"restored_primary\"}",
            )
            .await
                >= 1.0
        },
    )
    .await;
    // Anti-entropy gives the restored primary back what only the replica still had.
    for (k, j) in &newer {
        wait_serves(&primary.url, k, j, Duration::from_secs(15)).await;
    }
    assert!(
        metric(
            &replica.url,
            "nas_replica_antientropy_total{result=\"sent_back\"}"
        )
        .await
            >= 3.0
    );
}

/// Rewrites a stopped sled store behind the server's back: removes the record of `removed` and
/// puts `older` in place of `replaced`'s record (as a lost write or a bad restore would).
fn tamper(data: &Path, removed: &str, replaced: &str, older: &str) {
    let hits = crate::common::edit_sled(data, |db| {
        let mut hits = 0;
        for item in db.scan_prefix(b"s/") {
            let (k, v) = item.unwrap();
            let end = 2 + v[1] as usize;
            let key = std::str::from_utf8(&v[2..end]).unwrap().to_string();
            if key == removed {
                db.remove(k).unwrap();
                hits += 1;
            } else if key == replaced {
                let mut value = v[..end].to_vec();
                value.extend_from_slice(older.as_bytes());
                db.insert(k, value).unwrap();
                hits += 1;
            }
        }
        hits
    });
    assert_eq!(hits, 2, "both records found");
}

/// A replica whose store was changed behind its back (a token removed, an older version put
/// in) is found out by the digest comparison and repaired key by key, without a full resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_replica_is_repaired_by_the_digest_without_a_resync() {
    let primary = TestServer::primary().await;
    let mut keys = Vec::new();
    for i in 0..20 {
        keys.push(post_new_account(&primary.url, &format!("k-{i}")).await);
    }
    let (b, b1) = keys[1].clone();
    let b2 = fixtures::account_jwt_at(&b, "b-v2", iat(&b1) + 1);
    post_accepted(&primary.url, &b, &b2).await;
    let mut replica = replica_of(&[&primary.url], |_| {}).await;
    // Caught up, not just serving B (a read could have fetched it as a miss).
    eventually(Duration::from_secs(10), "the replica caught up", || async {
        readyz(&replica.url).await.1["replica"]["caught_up"] == true
    })
    .await;
    assert!(serves(&replica.url, &b, &b2).await);
    replica.stop().await;

    let (a, a1) = keys[0].clone();
    tamper(&replica.path("data"), &a, &b, &b1);
    let replica = restart_as_replica_of(replica, &[&primary.url]).await;
    // Checked before any read: a read of the missing key could fetch it as a miss.
    eventually(
        Duration::from_secs(15),
        "anti-entropy repaired two keys",
        || async {
            metric(
                &replica.url,
                "nas_replica_antientropy_total{result=\"fetched\"}",
            )
            .await
                == 2.0
        },
    )
    .await;
    assert!(serves(&replica.url, &a, &a1).await);
    assert!(serves(&replica.url, &b, &b2).await);
    assert_eq!(
        replica.running().state().store.digest().1,
        primary.running().state().store.digest().1,
        "digests agree"
    );
    assert_eq!(metric(&replica.url, "nas_replica_resyncs_total").await, 0.0);
}

/// A caught-up replica answers unknown keys from its own store: random keys never reach the
/// primary. A replica still syncing asks, but one request per key, with the answer cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_misses_reach_the_primary_only_when_the_replica_may_be_missing_data() {
    let primary = TestServer::primary().await;
    let (k, j) = post_new_account(&primary.url, "known").await;
    let replica = replica_of(&[&primary.url], |_| {}).await;
    wait_serves(&replica.url, &k, &j, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), "caught up", || async {
        readyz(&replica.url).await.1["replica"]["caught_up"] == true
    })
    .await;
    let before = account_gets(&primary.url).await;
    for _ in 0..500 {
        let key = KeyPair::new_account().public_key();
        assert_eq!(
            get(&replica.at(&format!("/jwt/v1/accounts/{key}"))).await.0,
            404
        );
    }
    assert_eq!(
        account_gets(&primary.url).await,
        before,
        "a caught-up replica asked the primary about unknown keys"
    );

    // A replica that is still syncing (one change per page, many pages) may be missing data.
    for i in 0..600 {
        post_new_account(&primary.url, &format!("bulk-{i}")).await;
    }
    let syncing = replica_of(&[&primary.url], |s| s.replication.batch = 1).await;
    let unknown = KeyPair::new_account().public_key();
    let before = account_gets(&primary.url).await;
    let url = syncing.at(&format!("/jwt/v1/accounts/{unknown}"));
    let burst: Vec<_> = (0..40)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await.0 })
        })
        .collect();
    for b in burst {
        assert_eq!(b.await.unwrap(), 404);
    }
    assert_eq!(
        readyz(&syncing.url).await.1["replica"]["caught_up"],
        false,
        "the burst ran while the replica was still syncing"
    );
    assert_eq!(
        account_gets(&primary.url).await - before,
        1.0,
        "40 reads of one unknown key made one request to the primary"
    );
    assert!(metric(&syncing.url, "nas_replica_misses_total{result=\"fetched\"}").await >= 1.0);
}

/// `--primary http://user:password@host`: the password is used, never shown: not in `/readyz`,
/// the status page, the metrics or the log (including "primary unreachable" lines, which name
/// the underlying cause).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_primary_url_are_never_shown() {
    let port = free_port();
    let with_creds = format!("http://nas:s3cret-pw@127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let replica = ServerProcess::start_replica(dir.path(), &with_creds).await;
    eventually(
        Duration::from_secs(10),
        "the replica logs the unreachable primary",
        || async { replica.log_text().contains("primary unreachable") },
    )
    .await;
    let primary = {
        let d = tempfile::tempdir().unwrap();
        let s = primary_settings(d.path());
        TestServer::start_on(d, s, port).await
    };
    let (k, j) = post_new_account(&primary.url, "creds").await;
    wait_serves(&replica.url, &k, &j, Duration::from_secs(15)).await;
    let shown = [
        get(&format!("{}/readyz", replica.url)).await.1,
        get(&replica.url).await.1,
        get(&format!("{}/metrics", replica.url)).await.1,
        replica.log_text(),
    ];
    for text in &shown {
        assert!(!text.contains("s3cret-pw"), "password shown in:\n{text}");
    }
    assert_eq!(
        readyz(&replica.url).await.1["replica"]["primary"],
        format!("http://127.0.0.1:{port}")
    );
    let log = replica.log_text().to_lowercase();
    assert!(
        log.contains("connection refused"),
        "the cause is logged:\n{log}"
    );
    assert!(log.contains("primary reachable again"), "{log}");
}

/// After the primary comes back, the replica says so at once (not after a whole long poll),
/// its lag is 0 again, and the log says the link is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reachability_is_honest_when_the_primary_returns() {
    let port = free_port();
    let start = |d: tempfile::TempDir| {
        let s = primary_settings(d.path());
        TestServer::start_on(d, s, port)
    };
    let mut primary = start(tempfile::tempdir().unwrap()).await;
    let (k, j) = post_new_account(&primary.url, "a").await;
    let dir = tempfile::tempdir().unwrap();
    let replica = ServerProcess::start_replica(dir.path(), &primary.url).await;
    wait_serves(&replica.url, &k, &j, Duration::from_secs(10)).await;
    primary.stop().await;
    eventually(
        Duration::from_secs(15),
        "replica sees the primary down",
        || async { readyz(&replica.url).await.1["replica"]["primary_reachable"] == false },
    )
    .await;
    let dir = std::mem::replace(&mut primary.dir, tempfile::tempdir().unwrap());
    let _primary = start(dir).await;
    // Well under the 25 s long poll.
    eventually(
        Duration::from_secs(8),
        "replica sees the primary back, lag 0",
        || async {
            let (_, r) = readyz(&replica.url).await;
            r["replica"]["primary_reachable"] == true && r["replica"]["lag_seconds"] == 0.0
        },
    )
    .await;
    assert!(replica.log_text().contains("primary reachable again"));
}

/// An HTTPS primary with the certificate in `certs` (from [`crate::common::tls::files`]);
/// `client_ca`: it admits only clients with a certificate of that CA. Returns it and its URL.
async fn https_primary(certs: &Path, client_ca: bool) -> (TestServer, String) {
    let tls = nats_account_server::config::HttpTlsSettings {
        cert: Some(certs.join("cert.pem")),
        key: Some(certs.join("key.pem")),
        ca: client_ca.then(|| certs.join("ca.pem")),
    };
    let primary = TestServer::start_with(|s| s.http.tls = Some(tls)).await;
    let url = primary.url.replace("http://", "https://");
    (primary, url)
}

/// An HTTPS primary with a certificate from a private CA: a replica with `replication.tls.ca`
/// syncs; one without it refuses the certificate and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_an_https_primary_through_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, _, _) = crate::common::tls::files(certs.path());
    let (_primary, url) = https_primary(certs.path(), false).await;
    let (k, j) = account("over-tls");
    let client = crate::common::tls::client(&ca);
    let r = client
        .post(format!("{url}/jwt/v1/accounts/{k}"))
        .body(j.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let trusting = replica_of(&[&url], |s: &mut Settings| {
        s.replication.tls = Some(nats_account_server::config::TlsSettings {
            root: Some(ca.clone()),
            ..Default::default()
        })
    })
    .await;
    wait_ready(&trusting.url).await;
    assert!(serves(&trusting.url, &k, &j).await);

    let untrusting = replica_of(&[&url], |_| {}).await;
    eventually(
        Duration::from_secs(10),
        "the untrusting replica reports the cause",
        || async {
            readyz(&untrusting.url).await.1["replica"]["primary_error"]
                .as_str()
                .is_some_and(|e| e.contains("certificate"))
        },
    )
    .await;
    assert_eq!(get(&format!("{}/readyz", untrusting.url)).await.0, 503);
}

/// A primary that admits only clients with a certificate of its private CA (`http.tls.ca`):
/// a replica with `replication.tls { ca, cert, key }` syncs; one with the CA but no client
/// certificate is refused at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_can_require_replica_client_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::common::tls::files(certs.path());
    let (_primary, url) = https_primary(certs.path(), true).await;
    // The leaf made for the server doubles as the replica's client certificate (same CA).
    let with_cert = replica_of(&[&url], |s: &mut Settings| {
        s.replication.tls = Some(nats_account_server::config::TlsSettings {
            root: Some(ca.clone()),
            cert: Some(cert.clone()),
            key: Some(key.clone()),
        })
    })
    .await;
    wait_ready(&with_cert.url).await;
    let without_cert = replica_of(&[&url], |s: &mut Settings| {
        s.replication.tls = Some(nats_account_server::config::TlsSettings {
            root: Some(ca.clone()),
            ..Default::default()
        })
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the replica without a certificate is refused",
        || async {
            readyz(&without_cert.url).await.1["replica"]["primary_error"]
                .as_str()
                .is_some_and(|e| {
                    e.contains("certificate") || e.contains("handshake") || e.contains("alert")
                })
        },
    )
    .await;
    assert_eq!(get(&format!("{}/readyz", without_cert.url)).await.0, 503);
}

/// A primary whose long-poll cap is full answers the replica's long polls with 503 and
/// `Retry-After`: the replica stays reachable (it was answered), backs off, and still gets
/// every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_primary_is_not_an_unreachable_one() {
    let primary = TestServer::start_with(|s| s.http.maxlongpolls = 1).await;
    let (k, j) = post_new_account(&primary.url, "first").await;
    // Someone else holds the only long-poll slot (parked at the head) before the replica
    // starts: its first long poll, after the initial sync, is the one refused.
    let head = primary.running().state().store.head();
    let hog = primary.at(&format!("/jwt/v1/changes?since={head}&wait=50"));
    let _hog = tokio::spawn(async move { crate::common::http().get(hog).send().await });
    eventually(Duration::from_secs(10), "the hog parked", || async {
        metric(&primary.url, "nas_changes_long_polls").await == 1.0
    })
    .await;
    let replica = replica_of(&[&primary.url], |_| {}).await;
    wait_serves(&replica.url, &k, &j, Duration::from_secs(10)).await;
    eventually(
        Duration::from_secs(10),
        "the replica was refused a long poll",
        || async { metric(&primary.url, "nas_refused_total{reason=\"long_polls\"}").await >= 1.0 },
    )
    .await;
    let (_, r) = readyz(&replica.url).await;
    assert_eq!(r["replica"]["primary_reachable"], true, "{r}");
    assert!(r["replica"]["primary_error"].is_null(), "{r}");
    let (k2, j2) = post_new_account(&primary.url, "second").await;
    wait_serves(&replica.url, &k2, &j2, Duration::from_secs(10)).await;
}

/// A replica's data directory trusts the operator it pinned: started again with `--operator`
/// naming another operator, it refuses to start (its tokens were verified against the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_data_directory_refuses_another_operator() {
    let primary = TestServer::primary().await;
    let (k, j) = post_new_account(&primary.url, "pinned").await;
    let mut replica = replica_of(&[&primary.url], |_| {}).await;
    wait_serves(&replica.url, &k, &j, Duration::from_secs(10)).await;
    replica.stop().await;

    let rogue = KeyPair::new_operator();
    let rogue_op = replica.path("rogue.jwt");
    std::fs::write(&rogue_op, encode::operator(&rogue, "rogue", &[], None)).unwrap();
    let mut settings = nats_account_server::config::Settings::default();
    settings.store.data = Some(replica.path("data"));
    settings.primary = nats_account_server::config::StringList(vec![primary.url.clone()]);
    settings.operatorjwtpath = Some(rogue_op);
    let message =
        crate::common::assert_start_refused_for_operator(settings, &rogue.public_key()).await;
    assert!(
        message.contains("use a fresh --data directory"),
        "{message}"
    );
}

/// A proxy in front of a primary it cannot reach answers 502, or a 503 without Retry-After (a
/// busy primary of ours always sends one): the replica counts that primary as unreachable and
/// moves on to the next one it was given, instead of waiting on the proxy forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_answering_502_sends_the_replica_to_the_next_primary() {
    use actix_web::{http::StatusCode, web, HttpResponse};
    let proxies = [StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE].map(|status| {
        crate::common::serve_routes(move |routes| {
            routes.default_service(web::to(move || async move {
                HttpResponse::build(status).finish()
            }));
        })
    });

    let primary = TestServer::primary().await;
    let (k, j) = post_new_account(&primary.url, "behind-the-proxies").await;
    let list = [
        proxies[0].0.as_str(),
        proxies[1].0.as_str(),
        primary.url.as_str(),
    ];
    // One replica learns the operator from its primary (the operator fetch meets the proxies
    // first), one has it configured (the change feed meets them first).
    let learns = replica_of(&list, |_| {}).await;
    let configured = replica_of(&list, |s| {
        s.operatorjwtpath = Some(fixtures::vectors().join("operator.jwt"));
    })
    .await;
    for replica in [&learns, &configured] {
        wait_serves(&replica.url, &k, &j, Duration::from_secs(15)).await;
        // Served may be a read miss (asked of each primary in turn); the change feed moves on
        // after a backoff per proxy.
        eventually(
            Duration::from_secs(15),
            "the replica follows the primary behind the proxies",
            || async { readyz(&replica.url).await.1["replica"]["primary"] == primary.url.as_str() },
        )
        .await;
    }
    for (_, handle) in proxies {
        handle.stop(false).await;
    }
}
