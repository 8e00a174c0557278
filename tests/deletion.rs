//! Account deletion: `$SYS.REQ.CLAIMS.DELETE` against a real nats-server full resolver, HTTP
//! `DELETE` (also through a replica), tombstones that replicas follow (also when they were
//! away or restored from an old copy), durability across kill -9, and compaction.

use crate::common::fixtures;
use crate::common::nats::{our_reply, use_nats, wait_nats_connected, NatsServer};
use crate::common::process::ServerProcess;
use crate::common::{
    account, copy_dir, eventually, free_port, get, http, post, post_accepted, post_new_account,
    replica_of, replica_settings, restart_as_replica_of, send, serves, status_of, wait_ready,
    TestServer,
};
use nats_account_server::jwt::encode;
use nkeys::KeyPair;
use serde_json::{json, Value};
use std::time::Duration;

/// A delete request for `accounts`, self-signed by `signer` (an operator key), as `nsc push
/// --prune` makes it.
fn delete_request(signer: &KeyPair, accounts: &[&str]) -> String {
    encode::sign(
        json!({ "sub": signer.public_key(),
            "nats": { "type": "generic", "version": 2, "accounts": accounts } }),
        signer,
    )
}

/// The vectors' operator signing key.
fn operator_signer() -> KeyPair {
    fixtures::signing_key()
}

async fn delete(base: &str, key: &str, body: &str) -> (u16, String) {
    let r = http()
        .delete(format!("{base}/jwt/v1/accounts/{key}"))
        .body(body.to_string())
        .send()
        .await
        .expect("DELETE");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn wait_gone(base: &str, key: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{base} deleted {key}"),
        || async { status_of(base, key).await == 404 },
    )
    .await;
}

/// `nsc push --prune` over NATS: a delete request signed by the operator removes the account
/// on our primary, our replica and nats-server's own full-resolver directory; one signed by
/// anyone else, or naming the system account, is refused with nats-server's text and changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_delete_request_removes_the_account_everywhere() {
    let nats = NatsServer::start_nats_resolver(0, "full", "allow_delete: true").await;
    let port = nats.port;
    let primary = TestServer::start_with(|s| {
        use_nats(s, port);
        s.store.allowdelete = true;
    })
    .await;
    let replica = replica_of(&[&primary.url], |s| use_nats(s, port)).await;
    for url in [&primary.url, &replica.url] {
        wait_nats_connected(url).await;
    }
    let (a, a_jwt) = post_new_account(&primary.url, "doomed").await;
    let (b, b_jwt) = post_new_account(&primary.url, "stays").await;
    let in_nats_dir = nats.resolver_dir().join(format!("{a}.jwt"));
    eventually(Duration::from_secs(10), "nats-server stored A", || async {
        in_nats_dir.exists()
    })
    .await;
    wait_ready(&replica.url).await;
    assert!(serves(&replica.url, &a, &a_jwt).await);

    let sys = nats.sys_client().await;
    // Refused: a rogue operator's request, and one naming the system account.
    let rogue = KeyPair::new_operator();
    let reply = our_reply(
        &sys,
        "$SYS.REQ.CLAIMS.DELETE",
        &delete_request(&rogue, &[&a]),
    )
    .await;
    assert_eq!(
        reply["error"]["description"],
        format!(
            "delete accounts request by {} failed - not trusted",
            rogue.public_key()
        )
    );
    let system = fixtures::vector("system_account.pub");
    let reply = our_reply(
        &sys,
        "$SYS.REQ.CLAIMS.DELETE",
        &delete_request(&operator_signer(), &[&a, &system]),
    )
    .await;
    assert_eq!(
        reply["error"]["description"],
        format!(
            "delete accounts request by {} failed - not allowed to delete system account",
            operator_signer().public_key()
        )
    );
    assert!(serves(&primary.url, &a, &a_jwt).await, "nothing changed");

    let reply = our_reply(
        &sys,
        "$SYS.REQ.CLAIMS.DELETE",
        &delete_request(&operator_signer(), &[&a]),
    )
    .await;
    assert_eq!(reply["data"]["message"], "deleted 1 accounts", "{reply}");
    assert_eq!(status_of(&primary.url, &a).await, 404);
    wait_gone(&replica.url, &a).await;
    eventually(
        Duration::from_secs(10),
        "nats-server deleted A too",
        || async { !in_nats_dir.exists() },
    )
    .await;
    assert!(nats
        .resolver_dir()
        .join(format!("{a}.jwt.deleted"))
        .exists());
    assert!(serves(&primary.url, &b, &b_jwt).await);
    assert!(serves(&replica.url, &b, &b_jwt).await);

    // Gone from LIST and from the pack.
    let list: Value = serde_json::from_slice(
        &sys.request("$SYS.REQ.CLAIMS.LIST", "".into())
            .await
            .unwrap()
            .payload,
    )
    .unwrap();
    let listed: Vec<&str> = list["data"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(!listed.is_empty());
    assert!(!listed.contains(&a.as_str()));
    assert!(!get(&primary.at("/jwt/v1/pack")).await.1.contains(&a));
}

/// HTTP `DELETE`: 200 on the primary, forwarded by a replica, and the clear refusals: 404
/// nothing to delete, 400 a request that does not list the account, 403 not the operator, 405
/// deletion off. A newer account JWT brings a deleted account back; an older one is 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_delete_on_the_primary_and_through_a_replica() {
    let primary = TestServer::start_with(|s| s.store.allowdelete = true).await;
    let replica = replica_of(&[&primary.url], |_| {}).await;
    let (a, a_jwt) = post_new_account(&primary.url, "a").await;
    let (b, b_jwt) = post_new_account(&primary.url, "b").await;
    wait_ready(&replica.url).await;
    eventually(Duration::from_secs(10), "replica has both", || async {
        serves(&replica.url, &a, &a_jwt).await && serves(&replica.url, &b, &b_jwt).await
    })
    .await;
    let signer = operator_signer();

    let (status, body) = delete(&primary.url, &a, &delete_request(&signer, &[&a])).await;
    assert_eq!(
        (status, body.as_str()),
        (200, format!("deleted {a}\n").as_str())
    );
    assert_eq!(status_of(&primary.url, &a).await, 404);
    wait_gone(&replica.url, &a).await;
    let feed = get(&primary.at("/jwt/v1/changes?since=0")).await.1;
    assert!(feed.contains(&format!("|delete|{a}|")), "{feed}");

    // Through the replica: forwarded, and gone on both at once.
    let (status, body) = delete(&replica.url, &b, &delete_request(&signer, &[&b])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_of(&replica.url, &b).await, 404);
    assert_eq!(status_of(&primary.url, &b).await, 404);

    // Refusals.
    let c = KeyPair::new_account().public_key();
    assert_eq!(
        delete(&primary.url, &c, &delete_request(&signer, &[&c]))
            .await
            .0,
        404
    );
    let (d, _) = post_new_account(&primary.url, "d").await;
    let (status, body) = delete(&primary.url, &d, &delete_request(&signer, &[&c])).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("does not list"), "{body}");
    let rogue = KeyPair::new_operator();
    let (status, body) = delete(&primary.url, &d, &delete_request(&rogue, &[&d])).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.trim_end().ends_with("failed - not trusted"), "{body}");
    assert_eq!(delete(&primary.url, &d, "junk").await.0, 400);
    let off = TestServer::primary().await;
    let (e, _) = post_new_account(&off.url, "e").await;
    let (status, body) = delete(&off.url, &e, &delete_request(&signer, &[&e])).await;
    assert_eq!(status, 405, "{body}");
    assert!(
        body.trim_end()
            .ends_with("delete must be enabled in server config"),
        "{body}"
    );
    assert_eq!(
        status_of(&primary.url, &d).await,
        200,
        "refusals changed nothing"
    );

    // Recreated by a later JWT; an older one stays refused.
    let deleted_at = nats_account_server::jwt::parse_unverified(&a_jwt)
        .unwrap()
        .iat;
    let older = fixtures::account_jwt_at(&a, "older", deleted_at - 10);
    assert_eq!(
        post(&primary.at(&format!("/jwt/v1/accounts/{a}")), older)
            .await
            .0,
        409
    );
    let newer = fixtures::account_jwt_at(&a, "back", nats_account_server::jwt::now_unix() + 1);
    post_accepted(&primary.url, &a, &newer).await;
    eventually(Duration::from_secs(10), "replica has A back", || async {
        serves(&replica.url, &a, &newer).await
    })
    .await;
}

/// A replica that was down during the deletion, and one started on an old copy of a replica's
/// data, both end without the account; re-creating it with a newer JWT works everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_that_missed_the_deletion_catch_up() {
    let primary = TestServer::start_with(|s| s.store.allowdelete = true).await;
    let (a, a_jwt) = post_new_account(&primary.url, "a").await;
    let mut away = replica_of(&[&primary.url], |_| {}).await;
    eventually(Duration::from_secs(10), "replica has A", || async {
        serves(&away.url, &a, &a_jwt).await
    })
    .await;
    away.stop().await;
    let old_copy = tempfile::tempdir().unwrap();
    copy_dir(&away.path("data"), &old_copy.path().join("data"));

    let (status, body) = delete(&primary.url, &a, &delete_request(&operator_signer(), &[&a])).await;
    assert_eq!(status, 200, "{body}");

    let back = restart_as_replica_of(away, &[&primary.url]).await;
    wait_gone(&back.url, &a).await;
    let restored = {
        let s = replica_settings(old_copy.path(), &[&primary.url]);
        TestServer::start_in(old_copy, s).await
    };
    wait_gone(&restored.url, &a).await;

    let newer = fixtures::account_jwt_at(&a, "back", nats_account_server::jwt::now_unix() + 1);
    post_accepted(&primary.url, &a, &newer).await;
    for r in [&back, &restored] {
        eventually(Duration::from_secs(10), "A is back", || async {
            serves(&r.url, &a, &newer).await
        })
        .await;
    }
}

/// Tombstones survive kill -9 (an older JWT stays refused after the restart) and are compacted
/// after `store.tombstonettl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_survive_kill_9_and_are_compacted_after_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let op = fixtures::vectors().join("operator.jwt");
    let config = dir.path().join("primary.toml");
    std::fs::write(
        &config,
        format!(
            "operatorjwtpath = {:?}\n[store]\ndata = \"data\"\nallowdelete = true\ntombstonettl = \"3s\"\n",
            op.display().to_string()
        ),
    )
    .unwrap();
    let port = free_port();
    let args = ["-c", config.to_str().unwrap()];
    let start = || ServerProcess::start(dir.path(), "primary", port, &args);
    let mut server = start().await;
    let (a, a_jwt) = post_new_account(&server.url, "a").await;
    let (status, body) = delete(&server.url, &a, &delete_request(&operator_signer(), &[&a])).await;
    assert_eq!(status, 200, "{body}");
    server.kill9();
    let server = start().await;
    assert_eq!(
        status_of(&server.url, &a).await,
        404,
        "the deletion survived kill -9"
    );
    let (status, _) = post(&format!("{}/jwt/v1/accounts/{a}", server.url), a_jwt).await;
    assert_eq!(status, 409, "the tombstone still refuses the older version");

    eventually(
        Duration::from_secs(15),
        "the tombstone is compacted",
        || async {
            !get(&format!("{}/jwt/v1/changes?since=0", server.url))
                .await
                .1
                .contains("|delete|")
        },
    )
    .await;
    let r = http()
        .get(format!("{}/jwt/v1/changes?since=0", server.url))
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-compacted-seq"], "0");
}

/// Directory stores: a deleted account's file is renamed `<key>.jwt.deleted` (nats-server's
/// default) or removed (`store.deletemode = "hard"`); a read-only store (like an nsc folder)
/// answers 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_stores_rename_or_remove_deleted_files() {
    for hard in [false, true] {
        let files = tempfile::tempdir().unwrap();
        let root = files.path().join("jwt");
        let dir = root.clone();
        let server = TestServer::start_with(move |s| {
            s.store.data = None;
            s.store.dir = Some(dir);
            s.store.allowdelete = true;
            if hard {
                s.store.deletemode = nats_account_server::config::DeleteMode::Hard;
            }
        })
        .await;
        let (a, _) = post_new_account(&server.url, "a").await;
        let file = root.join(format!("{a}.jwt"));
        assert!(file.exists());
        let (status, body) =
            delete(&server.url, &a, &delete_request(&operator_signer(), &[&a])).await;
        assert_eq!(status, 200, "{body}");
        assert!(!file.exists());
        assert_eq!(root.join(format!("{a}.jwt.deleted")).exists(), !hard);
        assert_eq!(status_of(&server.url, &a).await, 404);
    }

    let files = tempfile::tempdir().unwrap();
    let (a, a_jwt) = crate::common::account("read-only");
    std::fs::write(files.path().join(format!("{a}.jwt")), &a_jwt).unwrap();
    let dir = files.path().to_path_buf();
    let server = TestServer::start_with(move |s| {
        s.store.data = None;
        s.store.dir = Some(dir);
        s.store.readonly = true;
        s.store.allowdelete = true;
    })
    .await;
    let (status, body) = delete(&server.url, &a, &delete_request(&operator_signer(), &[&a])).await;
    assert_eq!(status, 405, "{body}");
    assert!(serves(&server.url, &a, &a_jwt).await);
}

/// A primary that keeps deletions for 1 s, with deletion on.
async fn primary_with_short_tombstone_ttl() -> TestServer {
    TestServer::start_with(|s| {
        s.store.allowdelete = true;
        s.store.tombstonettl = nats_account_server::config::Dur(Duration::from_secs(1));
    })
    .await
}

/// A replica of `primary` that is caught up with account `a`, stopped; then `a` is deleted on
/// the primary and the deletion compacted while the replica is away.
async fn away_during_a_compacted_deletion(
    primary: &TestServer,
    a: &str,
    a_jwt: &str,
) -> TestServer {
    let mut away = replica_of(&[&primary.url], |_| {}).await;
    // Caught up, not just serving A (a read could have fetched it as a miss).
    eventually(
        Duration::from_secs(10),
        "replica caught up with A",
        || async {
            let r: Value =
                serde_json::from_str(&get(&format!("{}/readyz", away.url)).await.1).unwrap();
            r["replica"]["caught_up"] == true && serves(&away.url, a, a_jwt).await
        },
    )
    .await;
    away.stop().await;
    let (status, body) = delete(&primary.url, a, &delete_request(&operator_signer(), &[a])).await;
    assert_eq!(status, 200, "{body}");
    eventually(
        Duration::from_secs(15),
        "the primary compacted the deletion",
        || async { primary.running().state().store.compacted() > 0 },
    )
    .await;
    away
}

/// A replica away for longer than the primary keeps tombstones (`store.tombstonettl`) cannot
/// learn of the deletion from the feed: it sees the compaction horizon, rebuilds from the
/// primary, and drops the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_away_longer_than_the_tombstone_ttl_rebuilds() {
    let primary = primary_with_short_tombstone_ttl().await;
    let (a, a_jwt) = post_new_account(&primary.url, "a").await;
    let (b, b_jwt) = post_new_account(&primary.url, "b").await;
    let (c, c_jwt) = account("c");
    let away = away_during_a_compacted_deletion(&primary, &a, &a_jwt).await;
    post_accepted(&primary.url, &c, &c_jwt).await;

    let back = restart_as_replica_of(away, &[&primary.url]).await;
    eventually(
        Duration::from_secs(10),
        "the rebuilt replica has C",
        || async { serves(&back.url, &c, &c_jwt).await },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the rebuilt replica dropped A",
        || async {
            back.running()
                .state()
                .store
                .get(nats_account_server::store::Kind::Account, &a)
                .is_none()
        },
    )
    .await;
    assert!(serves(&back.url, &b, &b_jwt).await);
    assert_eq!(
        crate::common::metric(&back.url, "nas_replica_resyncs_total{reason=\"compacted\"}").await,
        1.0
    );
}

/// Anti-entropy never brings back an account whose deletion the primary has compacted: a
/// replica that still holds it (here: one that lost its change-feed cursor, so it syncs from 0
/// and the compaction horizon cannot tell it to rebuild) drops it instead of sending it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_never_resurrects_a_compacted_deletion() {
    let primary = primary_with_short_tombstone_ttl().await;
    let (a, a_jwt) = post_new_account(&primary.url, "a").await;
    let away = away_during_a_compacted_deletion(&primary, &a, &a_jwt).await;
    // The replica loses its cursor (as if its metadata were restored from elsewhere).
    crate::common::edit_sled(&away.path("data"), |db| {
        db.remove(b"m/replica.primary_cursor").unwrap();
    });
    let back = restart_as_replica_of(away, &[&primary.url]).await;
    eventually(Duration::from_secs(15), "the replica dropped A", || async {
        back.running()
            .state()
            .store
            .get(nats_account_server::store::Kind::Account, &a)
            .is_none()
    })
    .await;
    assert_eq!(
        status_of(&primary.url, &a).await,
        404,
        "never sent back to the primary"
    );
    assert!(
        crate::common::metric(
            &back.url,
            "nas_replica_antientropy_total{result=\"dropped\"}"
        )
        .await
            >= 1.0
    );
}

/// A replica holding a deletion that its primary lacks (the primary was restored from a copy
/// taken before it, and deletion is now off there) keeps the deletion: anti-entropy offers it
/// back, the primary refuses it (405), and the older account the primary still has is not
/// taken in its place. Only an account issued after a deletion undoes it (DESIGN §7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_deletion_is_kept_not_replaced_by_an_older_account() {
    let port = free_port();
    let start = |dir: tempfile::TempDir, allow: bool| {
        let mut settings = crate::common::primary_settings(dir.path());
        settings.store.allowdelete = allow;
        TestServer::start_on(dir, settings, port)
    };
    let mut primary = start(tempfile::tempdir().unwrap(), true).await;
    let (a, _) = post_new_account(&primary.url, "deleted-later").await;
    primary.stop().await;
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&primary.path("data"), backup.path());
    let dir = std::mem::replace(&mut primary.dir, tempfile::tempdir().unwrap());
    let mut primary = start(dir, true).await;
    let replica = replica_of(&[&primary.url], |_| {}).await;
    let request = delete_request(&operator_signer(), &[&a]);
    assert_eq!(delete(&primary.url, &a, &request).await.0, 200);
    // Held, not only answered 404 by asking the primary during the initial sync.
    crate::common::wait_applied(&primary.url, &replica.url).await;
    assert_eq!(status_of(&replica.url, &a).await, 404);

    primary.stop().await;
    std::fs::remove_dir_all(primary.path("data")).unwrap();
    copy_dir(backup.path(), &primary.path("data"));
    let dir = std::mem::replace(&mut primary.dir, tempfile::tempdir().unwrap());
    let primary = start(dir, false).await;
    assert_eq!(
        status_of(&primary.url, &a).await,
        200,
        "restored without the deletion"
    );
    let failed = "nas_replica_antientropy_total{result=\"failed\"}";
    // Either way anti-entropy ends its check: the deletion refused and kept (failed), or
    // the primary's account taken.
    eventually(
        Duration::from_secs(20),
        "anti-entropy settled A or gave up on it",
        || async {
            crate::common::metric(&replica.url, failed).await >= 1.0
                || status_of(&replica.url, &a).await == 200
        },
    )
    .await;
    assert_eq!(status_of(&replica.url, &a).await, 404, "the deletion stays");
    assert_eq!(
        crate::common::metric(
            &replica.url,
            "nas_replica_antientropy_total{result=\"fetched\"}"
        )
        .await,
        0.0,
        "nothing taken from the primary"
    );
}

/// A POST against a deleted account (older than the deletion, or of its second) says the
/// account was deleted, when, and that only a later JWT brings it back; not that a newer JWT is
/// stored, since none is. Still 409 with the code `stale`, which clients and replicas know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_refused_by_a_deletion_says_the_account_was_deleted() {
    let primary = TestServer::start_with(|s| s.store.allowdelete = true).await;
    let (a, _) = post_new_account(&primary.url, "a").await;
    let request = delete_request(&operator_signer(), &[&a]);
    assert_eq!(delete(&primary.url, &a, &request).await.0, 200);
    let deleted_at = nats_account_server::jwt::parse_unverified(&request)
        .unwrap()
        .iat;
    for iat in [deleted_at - 10, deleted_at] {
        let r = send(
            http()
                .post(primary.at(&format!("/jwt/v1/accounts/{a}")))
                .body(fixtures::account_jwt_at(&a, "old", iat)),
        )
        .await;
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(r.header("x-error-code"), "stale");
        assert!(
            r.body.contains(&format!(
                "the account was deleted by a delete request issued at {deleted_at} and the \
                 posted JWT was issued at {iat}; only a JWT issued after the deletion brings \
                 the account back"
            )),
            "{}",
            r.body
        );
        assert!(!r.body.contains("newer JWT is stored"), "{}", r.body);
    }
}
