//! Compatible stores with real files: the directory store (flat and sharded, writable and
//! read-only), the nsc operator folder, the memory store, file watching (create, modify, rename,
//! delete) with notifications through a real nats-server, replicas following a read-only
//! directory primary, and the `import` subcommand (our binary as a process).

use crate::common::feed;
use crate::common::fixtures::{self, account_jwt, account_jwt_at, new_account};
use crate::common::nats::{use_nats, wait_nats_connected, NatsServer};
use crate::common::process::run_to_exit;
use crate::common::{
    self, account, eventually, free_port, get, post, post_new_account, replica_of, serves,
    status_of, wait_ready, TestServer,
};
use async_nats::Subscriber;
use futures_util::StreamExt;
use nats_account_server::config::Settings;
use nats_account_server::jwt;
use nats_account_server::store::dir::{DirBackend, DirLayout, META_FILE};
use nats_account_server::store::{Backend, Commit, Kind, Record};
use serde_json::json;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Generous bound for a file change to be picked up (inotify is immediate; CI machines are not).
const WITHIN: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// nats-server's `DirJWTStore` path of `key`.
fn nats_path(root: &Path, key: &str, shard: bool) -> PathBuf {
    if shard {
        root.join(&key[key.len() - 2..]).join(format!("{key}.jwt"))
    } else {
        root.join(format!("{key}.jwt"))
    }
}

/// Writes a token file the way nats-server (and `cp`) would: in place.
fn write_in_place(path: &Path, jwt: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, jwt).unwrap();
}

/// Writes a token file the way git and editors do: a temporary file, then a rename over it.
fn write_by_rename(path: &Path, jwt: &str) {
    let tmp = path.with_file_name(".incoming.tmp");
    std::fs::write(&tmp, jwt).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Every file under `root` (relative paths), our metadata file excepted.
fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.file_name().unwrap() != META_FILE {
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

async fn wait_serves(base: &str, key: &str, jwt: &str) {
    common::wait_serves(base, key, jwt, WITHIN).await;
}

/// A directory-store server over `root` (no sled), trusting the vectors' operator.
async fn dir_server(root: &Path, shard: bool, readonly: bool) -> TestServer {
    let root = root.to_path_buf();
    TestServer::start_with(move |s| {
        s.store.data = None;
        s.store.dir = Some(root);
        s.store.shard = shard;
        s.store.readonly = readonly;
    })
    .await
}

/// Starts nats-server resolving from `server` and waits until `server` is connected to it.
async fn start_nats(port: u16, server: &TestServer) -> NatsServer {
    let nats = NatsServer::resolving_from(port, &server.url).await;
    wait_nats_connected(&server.url).await;
    nats
}

/// A system-account client subscribed to every account's claims-update subject.
async fn sys_updates(nats: &NatsServer) -> (async_nats::Client, Subscriber) {
    let client = nats.sys_client().await;
    let sub = client
        .subscribe("$SYS.ACCOUNT.*.CLAIMS.UPDATE")
        .await
        .unwrap();
    // The subscription is registered on the server before anything is changed.
    client.flush().await.unwrap();
    (client, sub)
}

/// Waits for the claims update of `key` carrying exactly `jwt` (other messages are skipped).
async fn expect_update(sub: &mut Subscriber, key: &str, jwt: &str) {
    let subject = format!("$SYS.ACCOUNT.{key}.CLAIMS.UPDATE");
    let wait = async {
        while let Some(msg) = sub.next().await {
            if msg.subject.as_str() == subject && msg.payload.as_ref() == jwt.as_bytes() {
                return;
            }
        }
        panic!("subscription ended");
    };
    tokio::time::timeout(WITHIN, wait)
        .await
        .unwrap_or_else(|_| {
            panic!("no claims update for {key} with the new JWT within {WITHIN:?}")
        });
}

// ---------------------------------------------------------------------------------------------
// Writable directory store
// ---------------------------------------------------------------------------------------------

/// A flat writable directory: POST writes `<dir>/<key>.jwt` with exactly the JWT (0640 at
/// most), GET serves it, newer-wins holds, and a restart reloads the files with the same lineage
/// and a head above every sequence handed out before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flat_dir_store_reads_writes_and_keeps_newer() {
    let root = tempfile::tempdir().unwrap();
    let mut server = dir_server(root.path(), false, false).await;
    let a = fixtures::vector("account_a.pub");
    let newer = account_jwt_at(&a, "newer", jwt::now_unix());
    let older = account_jwt_at(&a, "older", jwt::now_unix() - 60);

    assert_eq!(
        post(&server.at(&format!("/jwt/v1/accounts/{a}")), newer.clone())
            .await
            .0,
        200
    );
    let file = nats_path(root.path(), &a, false);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        newer,
        "file holds exactly the JWT"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode & !0o640,
        0,
        "file mode {mode:o} is wider than nats-server's 0640"
    );
    assert!(serves(&server.url, &a, &newer).await);

    // Older loses (409) and the file is untouched; same token again is a no-op 200.
    let (status, body) = post(&server.at(&format!("/jwt/v1/accounts/{a}")), older.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), newer);
    assert_eq!(
        post(&server.at(&format!("/jwt/v1/accounts/{a}")), newer.clone())
            .await
            .0,
        200
    );

    let (b, b_jwt) = post_new_account(&server.url, "b").await;
    let mut expected = BTreeSet::new();
    expected.insert(format!("{a}.jwt"));
    expected.insert(format!("{b}.jwt"));
    assert_eq!(
        files_under(root.path()),
        expected,
        "flat layout, no temp files left"
    );

    let before = feed::read(&server.url).await;
    assert_eq!(before.changes.len(), 2);
    server.stop().await;

    // Restart over the same files: same lineage, every token re-sequenced above the old head.
    let server = dir_server(root.path(), false, false).await;
    assert!(serves(&server.url, &a, &newer).await);
    assert!(serves(&server.url, &b, &b_jwt).await);
    let after = feed::read(&server.url).await;
    assert_eq!(
        after.store_id, before.store_id,
        "a writable directory keeps its lineage"
    );
    let (head, head2) = (before.head, after.head);
    assert!(head2 > head, "head {head2} must pass the old head {head}");
    let seqs: Vec<u64> = after.changes.iter().map(|c| c.seq).collect();
    assert!(
        seqs.iter().all(|s| *s > head),
        "replicas at the old head see every token again: {seqs:?}"
    );
}

/// A sharded writable directory uses nats-server's layout byte for byte: accounts at
/// `<dir>/<last 2>/<key>.jwt`, activations (hash ends in `=`) in `<dir>/==/`, files holding
/// exactly the token; newer-wins holds there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_dir_store_matches_nats_server_layout() {
    let root = tempfile::tempdir().unwrap();
    let server = dir_server(root.path(), true, false).await;
    let a = fixtures::vector("account_a.pub");
    let b = fixtures::vector("account_b.pub");
    let a_jwt = account_jwt(&a, "a", json!({}));
    let b_jwt = account_jwt(&b, "b", json!({}));
    for (key, jwt) in [(&a, &a_jwt), (&b, &b_jwt)] {
        assert_eq!(
            post(&server.at(&format!("/jwt/v1/accounts/{key}")), jwt.clone())
                .await
                .0,
            200
        );
    }
    let activation = fixtures::vector("activations/token.jwt");
    let hash = fixtures::vector("activations/token.hash");
    let (status, body) = post(&server.at("/jwt/v1/activations"), activation.clone()).await;
    assert_eq!((status, body.trim()), (200, hash.as_str()));

    let expected: BTreeSet<String> = [
        format!("{}/{a}.jwt", &a[54..]),
        format!("{}/{b}.jwt", &b[54..]),
        format!("==/{hash}.jwt"),
    ]
    .into_iter()
    .collect();
    assert_eq!(files_under(root.path()), expected);
    assert_eq!(
        std::fs::read_to_string(nats_path(root.path(), &a, true)).unwrap(),
        a_jwt
    );
    assert_eq!(
        std::fs::read_to_string(nats_path(root.path(), &hash, true)).unwrap(),
        activation
    );
    let shard_mode = std::fs::metadata(root.path().join("=="))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        shard_mode & !0o750,
        0,
        "dir mode {shard_mode:o} is wider than nats-server's 0750"
    );

    let older = account_jwt_at(&a, "older", jwt::now_unix() - 60);
    assert_eq!(
        post(&server.at(&format!("/jwt/v1/accounts/{a}")), older)
            .await
            .0,
        409
    );
    assert_eq!(
        std::fs::read_to_string(nats_path(root.path(), &a, true)).unwrap(),
        a_jwt
    );
    let (status, body) = get(&server.at(&format!("/jwt/v1/activations/{hash}"))).await;
    assert_eq!((status, body), (200, activation));
}

/// Temporary files left by writes a crash interrupted (`.<key>.jwt.tmp-<pid>`, flat and in
/// shard directories) are removed when a writable directory store opens, unless their process
/// still runs; other dot files are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writable_dir_store_removes_temp_files_of_interrupted_writes() {
    let root = tempfile::tempdir().unwrap();
    let a = fixtures::vector("account_a.pub");
    let b = fixtures::vector("account_b.pub");
    std::fs::create_dir_all(root.path().join(&a[54..])).unwrap();
    // pid_max is at most 2^22 on Linux: this writer cannot be running.
    let dead = 99_999_999;
    let stale = [
        root.path()
            .join(&a[54..])
            .join(format!(".{a}.jwt.tmp-{dead}")),
        root.path().join(format!(".{b}.jwt.tmp-{dead}")),
    ];
    // pid 1 always runs: its file may be about to be renamed.
    let live = root.path().join(format!(".{b}.jwt.tmp-1"));
    let other = root.path().join(".not-ours.tmp-12");
    for f in stale.iter().chain([&live, &other]) {
        std::fs::write(f, "half a token").unwrap();
    }
    let server = dir_server(root.path(), true, false).await;
    for f in &stale {
        assert!(!f.exists(), "{} was left", f.display());
    }
    assert!(live.exists(), "a live writer's temporary file was removed");
    assert!(other.exists(), "a file that is not ours was removed");
    let a_jwt = account_jwt(&a, "a", json!({}));
    assert_eq!(
        post(&server.at(&format!("/jwt/v1/accounts/{a}")), a_jwt)
            .await
            .0,
        200
    );
}

/// Files written by another tool in nats-server's layout load, activations included; files
/// that are not tokens for their name are skipped instead of failing the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_nats_server_directory_loads_and_skips_junk() {
    let root = tempfile::tempdir().unwrap();
    let a = fixtures::vector("account_a.pub");
    let b = fixtures::vector("account_b.pub");
    let a_jwt = account_jwt(&a, "a", json!({}));
    let hash = fixtures::vector("activations/token.hash");
    let activation = fixtures::vector("activations/token.jwt");
    write_in_place(&nats_path(root.path(), &a, true), &a_jwt);
    write_in_place(&nats_path(root.path(), &hash, true), &activation);
    // B's file holds A's token: not B's token, skipped.
    write_in_place(&nats_path(root.path(), &b, true), &a_jwt);
    let (c, _) = account("c");
    write_in_place(&nats_path(root.path(), &c, true), "not a jwt");
    write_in_place(&root.path().join("README.jwt"), "notes");

    let server = dir_server(root.path(), true, true).await;
    assert!(serves(&server.url, &a, &a_jwt).await);
    let (status, body) = get(&server.at(&format!("/jwt/v1/activations/{hash}"))).await;
    assert_eq!((status, body), (200, activation));
    assert_eq!(status_of(&server.url, &b).await, 404);
    assert_eq!(status_of(&server.url, &c).await, 404);
    let feed = feed::read(&server.url).await;
    assert_eq!((feed.head, feed.changes.len()), (2, 2), "{feed:?}");
}

// ---------------------------------------------------------------------------------------------
// Key validation: nothing escapes the directory
// ---------------------------------------------------------------------------------------------

/// Path-like keys are refused over HTTP and by the backend itself, and nothing is written
/// outside (or inside) the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_is_refused() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("store");
    let server = dir_server(&root, false, false).await;
    let a = fixtures::vector("account_a.pub");
    let jwt = account_jwt(&a, "a", json!({}));
    for key in [
        "..%2F..%2Fescape",
        "..%2Fescape",
        "%2E%2E",
        "..",
        "A..",
        "%2Ftmp%2Fescape",
    ] {
        let (status, body) =
            post(&server.at(&format!("/jwt/v1/accounts/{key}")), jwt.clone()).await;
        assert!(
            (400..500).contains(&status) && status != 409,
            "POST to {key:?} answered {status} {body}"
        );
        let (status, _) = get(&server.at(&format!("/jwt/v1/accounts/{key}"))).await;
        assert!(
            (400..500).contains(&status),
            "GET {key:?} answered {status}"
        );
    }
    assert_eq!(
        files_under(outer.path()),
        BTreeSet::new(),
        "nothing was written"
    );

    // The backend refuses on its own, whatever a caller validated.
    let backend = DirBackend::open(&root, true, true).unwrap();
    for key in [
        "../escape",
        "/tmp/escape",
        "..",
        "",
        "A/B",
        &format!("../{a}"),
    ] {
        let commit = Commit {
            records: vec![Record::new(Kind::Account, key, jwt.clone().into(), 1, None)],
            meta: vec![],
            removed: vec![],
            head: 1,
            durable: true,
        };
        assert!(
            backend.commit(&commit).is_err(),
            "backend stored key {key:?}"
        );
    }
    let layout = DirLayout::new(&root, true);
    assert!(layout.path_for("../../etc/passwd").is_err());
    assert!(layout.path_for(&a).unwrap().starts_with(&root));
    assert_eq!(
        files_under(outer.path()),
        BTreeSet::new(),
        "nothing was written"
    );
}

// ---------------------------------------------------------------------------------------------
// Read-only directory store, watched
// ---------------------------------------------------------------------------------------------

/// A read-only directory refuses writes with 405 and picks up file changes of every kind:
/// create, modify in place, write-temp-then-rename (git pull), delete. Each change reaches the
/// index (GET) and a real nats-server as a claims update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_dir_is_watched_and_changes_are_notified() {
    for shard in [true, false] {
        let root = tempfile::tempdir().unwrap();
        let (pre, pre_jwt) = account("preloaded");
        write_in_place(&nats_path(root.path(), &pre, shard), &pre_jwt);

        let port = free_port();
        let dir = root.path().to_path_buf();
        let server = TestServer::start_with(move |s| {
            s.store.data = None;
            s.store.dir = Some(dir);
            s.store.shard = shard;
            s.store.readonly = true;
            use_nats(s, port);
        })
        .await;
        let nats = start_nats(port, &server).await;
        let (_client, mut updates) = sys_updates(&nats).await;
        assert!(serves(&server.url, &pre, &pre_jwt).await);

        // Writes are refused: the files are the truth.
        let (status, body) = post(
            &server.at(&format!("/jwt/v1/accounts/{pre}")),
            pre_jwt.clone(),
        )
        .await;
        assert_eq!(status, 405, "{body}");

        // Create (a new shard directory too, when sharded).
        let (key, v1) = account("created");
        let path = nats_path(root.path(), &key, shard);
        write_in_place(&path, &v1);
        wait_serves(&server.url, &key, &v1).await;
        expect_update(&mut updates, &key, &v1).await;

        // Modify in place.
        let v2 = account_jwt(&key, "modified", json!({ "limits": { "conn": 5 } }));
        write_in_place(&path, &v2);
        wait_serves(&server.url, &key, &v2).await;
        expect_update(&mut updates, &key, &v2).await;

        // Write a temp file, rename it over the token (git pull, editors).
        let v3 = account_jwt(&key, "renamed", json!({ "limits": { "conn": 6 } }));
        write_by_rename(&path, &v3);
        wait_serves(&server.url, &key, &v3).await;
        expect_update(&mut updates, &key, &v3).await;

        // Rename a token file into place from outside the store.
        let (moved, moved_jwt) = account("moved-in");
        let staging = tempfile::tempdir_in(root.path().parent().unwrap()).unwrap();
        let staged = staging.path().join("staged");
        std::fs::write(&staged, &moved_jwt).unwrap();
        let target = nats_path(root.path(), &moved, shard);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::rename(&staged, &target).unwrap();
        wait_serves(&server.url, &moved, &moved_jwt).await;
        expect_update(&mut updates, &moved, &moved_jwt).await;

        // The file is the truth even when an older token is put back (git revert).
        write_in_place(&path, &v1);
        wait_serves(&server.url, &key, &v1).await;

        // Delete: no longer served; the feed no longer lists it (replicas keep their copy).
        std::fs::remove_file(&path).unwrap();
        eventually(WITHIN, "deleted account is 404", || async {
            status_of(&server.url, &key).await == 404
        })
        .await;
        // Rename away: the key is gone too.
        std::fs::rename(&target, root.path().join("moved-away.bak")).unwrap();
        eventually(WITHIN, "renamed-away account is 404", || async {
            status_of(&server.url, &moved).await == 404
        })
        .await;
        let changes = feed::read(&server.url).await.changes;
        assert!(
            changes.iter().all(|c| c.key != key && c.key != moved),
            "{changes:?}"
        );
        assert!(
            serves(&server.url, &pre, &pre_jwt).await,
            "untouched files stay"
        );

        // A half-written file (its signature cut short) never replaces a good token; the
        // completing write does.
        let pre_path = nats_path(root.path(), &pre, shard);
        let pre2 = account_jwt(&pre, "rewritten", json!({ "limits": { "conn": 7 } }));
        write_in_place(&pre_path, &pre2[..pre2.len() - 10]);
        let (marker, marker_jwt) = account("marker");
        write_in_place(&nats_path(root.path(), &marker, shard), &marker_jwt);
        // The marker is written after the broken file; once it is served, the broken one has
        // been looked at too.
        wait_serves(&server.url, &marker, &marker_jwt).await;
        assert!(
            serves(&server.url, &pre, &pre_jwt).await,
            "a half-written file replaced a good token"
        );
        write_in_place(&pre_path, &pre2);
        wait_serves(&server.url, &pre, &pre2).await;
        expect_update(&mut updates, &pre, &pre2).await;
    }
}

/// The read-only store's lineage is new per start (its numbering starts over), so replicas
/// resync instead of trusting a cursor into the old numbering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_dir_lineage_changes_per_start() {
    let root = tempfile::tempdir().unwrap();
    let (a, a_jwt) = account("a");
    write_in_place(&nats_path(root.path(), &a, false), &a_jwt);
    let mut first = dir_server(root.path(), false, true).await;
    let id1 = feed::read(&first.url).await.store_id;
    first.stop().await;
    let second = dir_server(root.path(), false, true).await;
    let feed = feed::read(&second.url).await;
    assert_ne!(id1, feed.store_id);
    assert_eq!((feed.head, feed.changes.len()), (1, 1));
    assert!(
        !root.path().join(META_FILE).exists(),
        "a read-only store writes nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// nsc operator folder
// ---------------------------------------------------------------------------------------------

/// Writes an nsc operator folder `<stores>/TESTOP` with the vectors' operator and `accounts`.
fn nsc_folder(stores: &Path, accounts: &[(&str, &str)]) -> PathBuf {
    let op = stores.join("TESTOP");
    std::fs::create_dir_all(op.join("accounts")).unwrap();
    std::fs::write(
        op.join(".nsc"),
        r#"{"managed":false,"name":"TESTOP","kind":"operator","version":"1"}"#,
    )
    .unwrap();
    std::fs::write(op.join("TESTOP.jwt"), fixtures::vector("operator.jwt")).unwrap();
    for (name, jwt) in accounts {
        write_nsc_account(&op, name, jwt);
    }
    op
}

fn write_nsc_account(op: &Path, name: &str, jwt: &str) {
    let dir = op.join("accounts").join(name);
    std::fs::create_dir_all(dir.join("users")).unwrap();
    write_by_rename(&dir.join(format!("{name}.jwt")), jwt);
}

/// An nsc folder serves its accounts by public key, its operator JWT from
/// `<folder>/<name>.jwt`, refuses writes, ignores user JWTs, and picks up edited and new
/// accounts (new account folders included) with notifications to nats-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsc_folder_serves_accounts_and_is_watched() {
    let stores = tempfile::tempdir().unwrap();
    let a = fixtures::vector("account_a.pub");
    let b = fixtures::vector("account_b.pub");
    let a_jwt = account_jwt(&a, "A", json!({}));
    let b_jwt = account_jwt(&b, "B", json!({}));
    let op = nsc_folder(stores.path(), &[("A", &a_jwt), ("B", &b_jwt)]);
    // A user JWT where nsc keeps them: never served.
    let user = nkeys::KeyPair::new_user();
    let user_jwt = jwt::encode::user(&fixtures::account_a(), &user.public_key(), "u");
    std::fs::write(op.join("accounts/A/users/u.jwt"), &user_jwt).unwrap();

    let port = free_port();
    let folder = op.clone();
    let server = TestServer::start_with(move |s| {
        s.store.data = None;
        s.operatorjwtpath = None; // derived: <folder>/TESTOP.jwt
        s.store.nsc = Some(folder);
        use_nats(s, port);
    })
    .await;
    let nats = start_nats(port, &server).await;
    let (_client, mut updates) = sys_updates(&nats).await;

    assert!(serves(&server.url, &a, &a_jwt).await);
    assert!(serves(&server.url, &b, &b_jwt).await);
    assert_eq!(
        status_of(&server.url, &user.public_key()).await,
        400,
        "a user key is not an account key"
    );
    let (status, body) = get(&server.at("/jwt/v1/operator")).await;
    assert_eq!((status, body), (200, fixtures::vector("operator.jwt")));
    assert_eq!(
        post(&server.at(&format!("/jwt/v1/accounts/{a}")), a_jwt.clone())
            .await
            .0,
        405
    );
    let changes = feed::read(&server.url).await.changes;
    assert_eq!(changes.len(), 2, "{changes:?}");

    // `nsc edit account A` rewrites its file.
    let a2 = account_jwt(&a, "A", json!({ "limits": { "conn": 3 } }));
    write_nsc_account(&op, "A", &a2);
    wait_serves(&server.url, &a, &a2).await;
    expect_update(&mut updates, &a, &a2).await;

    // `nsc add account C`: a new folder.
    let (c, c_jwt) = account("C");
    write_nsc_account(&op, "C", &c_jwt);
    wait_serves(&server.url, &c, &c_jwt).await;
    expect_update(&mut updates, &c, &c_jwt).await;

    // A whole account folder moved in at once (e.g. restored from a backup).
    let (d, d_jwt) = account("D");
    let staging = stores.path().join("D");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("D.jwt"), &d_jwt).unwrap();
    std::fs::rename(&staging, op.join("accounts/D")).unwrap();
    wait_serves(&server.url, &d, &d_jwt).await;
    expect_update(&mut updates, &d, &d_jwt).await;

    // `nsc delete account B` removes its folder.
    std::fs::remove_dir_all(op.join("accounts/B")).unwrap();
    eventually(WITHIN, "deleted nsc account is 404", || async {
        status_of(&server.url, &b).await == 404
    })
    .await;
    assert!(serves(&server.url, &a, &a2).await);
}

/// `--nsc` must point at an operator folder (nsc's `.nsc` marker), not anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsc_store_requires_an_operator_folder() {
    let dir = tempfile::tempdir().unwrap();
    let not_nsc = dir.path().join("TESTOP");
    std::fs::create_dir_all(&not_nsc).unwrap();
    std::fs::write(not_nsc.join("TESTOP.jwt"), fixtures::vector("operator.jwt")).unwrap();
    let mut s = Settings::default();
    s.store.nsc = Some(not_nsc);
    let err = nats_account_server::server::open_store(&s)
        .err()
        .expect("refused");
    assert!(err.to_string().contains(".nsc"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Memory store
// ---------------------------------------------------------------------------------------------

/// The memory store serves the same API: writable takes POSTs and feeds the change log;
/// read-only is empty and answers 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_writable_and_read_only() {
    for readonly in [false, true] {
        let server = TestServer::start_with(|s| {
            s.store.data = None;
            s.store.memory = true;
            s.store.readonly = readonly;
        })
        .await;
        let (key, jwt) = account("mem");
        let (status, _) = post(&server.at(&format!("/jwt/v1/accounts/{key}")), jwt.clone()).await;
        if readonly {
            assert_eq!(status, 405);
            assert_eq!(status_of(&server.url, &key).await, 404);
        } else {
            assert_eq!(status, 200);
            assert!(serves(&server.url, &key, &jwt).await);
            assert_eq!(feed::read(&server.url).await.changes.len(), 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Replication from a read-only directory primary
// ---------------------------------------------------------------------------------------------

/// A replica of a primary that serves a read-only directory sees the files' edits: new files
/// and in-place changes travel through the change feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_follows_a_read_only_directory_primary() {
    let root = tempfile::tempdir().unwrap();
    let (a, a1) = account("a");
    write_in_place(&nats_path(root.path(), &a, true), &a1);
    let primary = dir_server(root.path(), true, true).await;
    let replica = replica_of(&[&primary.url], |_| {}).await;
    wait_ready(&replica.url).await;
    wait_serves(&replica.url, &a, &a1).await;

    let a2 = account_jwt(&a, "edited", json!({ "limits": { "conn": 2 } }));
    write_by_rename(&nats_path(root.path(), &a, true), &a2);
    let (b, b_jwt) = account("b");
    write_in_place(&nats_path(root.path(), &b, true), &b_jwt);
    wait_serves(&replica.url, &a, &a2).await;
    wait_serves(&replica.url, &b, &b_jwt).await;

    // Deleting on the primary does not delete on the replica.
    std::fs::remove_file(nats_path(root.path(), &b, true)).unwrap();
    eventually(WITHIN, "primary stops serving b", || async {
        status_of(&primary.url, &b).await == 404
    })
    .await;
    assert!(serves(&replica.url, &b, &b_jwt).await);
}

// ---------------------------------------------------------------------------------------------
// import
// ---------------------------------------------------------------------------------------------

/// Runs `nats-account-server <args>` to its exit (blocking work off the runtime threads).
async fn run_binary(cwd: &Path, args: Vec<String>) -> (i32, String) {
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_exit(&cwd, &args, &[])
    })
    .await
    .unwrap()
}

fn summary_line(output: &str) -> &str {
    output
        .lines()
        .find(|l| l.starts_with("imported "))
        .unwrap_or_else(|| panic!("no summary in output:\n{output}"))
}

/// `import --from-dir` verifies every token (signature, key, operator; an activation's issuing
/// account) and stores newer-wins; a second run changes nothing; a later run can verify against
/// the operator the first one recorded; a server then serves the imported tokens from sled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_a_sharded_directory() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("jwts");
    let data = work.path().join("data");
    let (a, a_jwt) = account("a");
    let (b, b_jwt) = account("b");
    let hash = fixtures::vector("activations/token.hash");
    let activation = fixtures::vector("activations/token.jwt");
    // The activation's issuing account, which must be imported for the activation to be.
    let issuer = fixtures::vector("account_a.pub");
    let issuer_jwt = account_jwt(&issuer, "A", json!({}));
    for (key, jwt) in [
        (&a, &a_jwt),
        (&b, &b_jwt),
        (&issuer, &issuer_jwt),
        (&hash, &activation),
    ] {
        write_in_place(&nats_path(&src, key, true), jwt);
    }
    // Signed by another operator: valid signature, untrusted issuer.
    let rogue = nkeys::KeyPair::new_operator();
    let (c, _) = account("c");
    write_in_place(
        &nats_path(&src, &c, true),
        &jwt::encode::account(&rogue, &c, "rogue", json!({})),
    );
    // A tampered signature.
    let (d, d_jwt) = account("d");
    write_in_place(
        &nats_path(&src, &d, true),
        &format!("{}AAAA", &d_jwt[..d_jwt.len() - 4]),
    );

    let operator = fixtures::vectors().join("operator.jwt");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "import".into(),
            "--from-dir".into(),
            src.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        // Store flags may follow the subcommand.
        v.extend([
            "--data".into(),
            data.display().to_string(),
            "--operator".into(),
            operator.display().to_string(),
        ]);
        v
    };
    let (code, out) = run_binary(work.path(), args(&["--shard"])).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        summary_line(&out),
        "imported 4, unchanged 0, stale 0, same-iat conflicts 0, skipped 2",
        "{out}"
    );
    assert!(
        out.contains(&format!("skipped {c}: invalid claims: untrusted issuer"))
            && out.contains(&format!("skipped {d}: JWT signature does not verify")),
        "{out}"
    );

    let (code, out) = run_binary(work.path(), args(&["--shard"])).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        summary_line(&out),
        "imported 0, unchanged 4, stale 0, same-iat conflicts 0, skipped 2",
        "{out}"
    );

    // An older copy of A in a flat directory loses against the imported one.
    let flat = work.path().join("flat");
    write_in_place(
        &nats_path(&flat, &a, false),
        &account_jwt_at(&a, "old", jwt::now_unix() - 600),
    );
    // This time verified against the operator the first import recorded in the store.
    let mut older_args = vec![
        "--data".to_string(),
        data.display().to_string(),
        "import".into(),
        "--trust-store-operator".into(),
        "--from-dir".into(),
    ];
    older_args.push(flat.display().to_string());
    let (code, out) = run_binary(work.path(), older_args).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        summary_line(&out),
        "imported 0, unchanged 0, stale 1, same-iat conflicts 0, skipped 0",
        "{out}"
    );

    let server = TestServer::start_with(|s| s.store.data = Some(data.clone())).await;
    assert!(serves(&server.url, &a, &a_jwt).await);
    assert!(serves(&server.url, &b, &b_jwt).await);
    assert_eq!(status_of(&server.url, &c).await, 404);
    assert_eq!(
        get(&server.at(&format!("/jwt/v1/activations/{hash}"))).await,
        (200, activation)
    );
}

/// `import --from-url` reads a live primary's pack; a missing source fails with a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_a_live_primary() {
    let primary = TestServer::primary().await;
    let mut posted = Vec::new();
    for i in 0..5 {
        let (key, jwt) = post_new_account(&primary.url, &format!("p{i}")).await;
        posted.push((key, jwt));
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let operator = fixtures::vectors().join("operator.jwt");
    let args = |url: &str| -> Vec<String> {
        [
            "--data",
            &data.display().to_string(),
            "--operator",
            &operator.display().to_string(),
            "import",
            "--from-url",
            url,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let (code, out) = run_binary(work.path(), args(&primary.url)).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        summary_line(&out),
        "imported 5, unchanged 0, stale 0, same-iat conflicts 0, skipped 0",
        "{out}"
    );

    let dead = format!("http://127.0.0.1:{}", free_port());
    let (code, out) = run_binary(work.path(), args(&dead)).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("/jwt/v1/pack"), "{out}");

    let (code, out) = run_binary(work.path(), vec!["import".into()]).await;
    assert_ne!(code, 0, "import without a source must fail: {out}");

    let server = TestServer::start_with(|s| s.store.data = Some(data.clone())).await;
    for (key, jwt) in &posted {
        assert!(serves(&server.url, key, jwt).await, "{key} imported");
    }
}

/// `import` stores nothing it has not verified against an operator: it used to store tokens of
/// any operator when run without `--operator`, and the server then served them. Without an
/// operator it refuses to run (creating nothing); `--trust-store-operator` verifies against the
/// operator the store records, and refuses when it records none; `--operator` naming another
/// operator than the store records is refused; every token that does not verify is skipped and
/// reported, and the server serves only what was verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_to_run_without_an_operator() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("jwts");
    let data = work.path().join("data");
    let (good, good_jwt) = account("good");
    let rogue = nkeys::KeyPair::new_operator();
    let (forged, _) = account("forged");
    let forged_jwt = jwt::encode::account(&rogue, &forged, "forged", json!({}));
    // An activation whose issuing account (the vectors' A) is neither imported nor stored.
    let orphan_hash = fixtures::vector("activations/token.hash");
    for (key, token) in [
        (&good, &good_jwt),
        (&forged, &forged_jwt),
        (&orphan_hash, &fixtures::vector("activations/token.jwt")),
    ] {
        write_in_place(&nats_path(&src, key, false), token);
    }
    let import = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--data".to_string(),
            data.display().to_string(),
            "import".into(),
            "--from-dir".into(),
            src.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let one_line_error = |out: &str| {
        let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {out}");
        lines[0].to_string()
    };

    // Neither --operator nor --trust-store-operator: refused, nothing created.
    let (code, out) = run_binary(work.path(), import(&[])).await;
    assert_ne!(code, 0, "{out}");
    let line = one_line_error(&out);
    assert!(
        line.contains("--operator") && line.contains("--trust-store-operator"),
        "{line}"
    );
    assert!(
        !data.exists(),
        "a refused import created {}",
        data.display()
    );

    // --trust-store-operator without a store, and with a store that records no operator.
    let (code, out) = run_binary(work.path(), import(&["--trust-store-operator"])).await;
    assert_ne!(code, 0, "{out}");
    assert!(
        one_line_error(&out).contains("records no operator"),
        "{out}"
    );
    let store = nats_account_server::store::Store::open_sled(&data).unwrap();
    store.close().await;
    drop(store);
    let (code, out) = run_binary(work.path(), import(&["--trust-store-operator"])).await;
    assert_ne!(code, 0, "{out}");
    assert!(
        one_line_error(&out).contains("records no operator"),
        "{out}"
    );

    // With the operator: only what verifies is stored; the rest is reported.
    let operator = fixtures::vectors().join("operator.jwt");
    let operator = operator.display().to_string();
    let (code, out) = run_binary(work.path(), import(&["--operator", &operator])).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        summary_line(&out),
        "imported 1, unchanged 0, stale 0, same-iat conflicts 0, skipped 2",
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "skipped {forged}: invalid claims: untrusted issuer"
        )) && out.contains(&format!("skipped {orphan_hash}: the issuing account")),
        "{out}"
    );

    // Later imports may verify against the recorded operator instead.
    let (later, later_jwt) = account("later");
    write_in_place(&nats_path(&src, &later, false), &later_jwt);
    let (code, out) = run_binary(work.path(), import(&["--trust-store-operator"])).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        summary_line(&out),
        "imported 1, unchanged 1, stale 0, same-iat conflicts 0, skipped 2",
        "{out}"
    );

    // Another operator than the store's: refused, not mixed in.
    let rogue_file = work.path().join("rogue.jwt");
    std::fs::write(
        &rogue_file,
        jwt::encode::operator(&rogue, "rogue", &[], None),
    )
    .unwrap();
    let rogue_file = rogue_file.display().to_string();
    let (code, out) = run_binary(work.path(), import(&["--operator", &rogue_file])).await;
    assert_ne!(code, 0, "{out}");
    let line = one_line_error(&out);
    assert!(line.contains("refusing to mix operators"), "{line}");
    assert!(line.contains(&rogue.public_key()), "{line}");

    let server = TestServer::start_with(|s| s.store.data = Some(data.clone())).await;
    assert!(serves(&server.url, &good, &good_jwt).await);
    assert!(serves(&server.url, &later, &later_jwt).await);
    assert_eq!(status_of(&server.url, &forged).await, 404);
    assert_eq!(
        get(&server.at(&format!("/jwt/v1/activations/{orphan_hash}")))
            .await
            .0,
        404
    );
}

/// Pack parsing follows the Go server: blank lines ignored, lines must be exactly `key|jwt`.
#[test]
fn pack_lines_parse_like_the_go_server() {
    let parsed = nats_account_server::import::parse_pack("A|x\n\n  \nB|y|z\nnopipe\nC|w");
    let keys: Vec<(&str, bool)> = parsed
        .iter()
        .map(|(k, r)| (k.as_str(), r.is_ok()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("A", true),
            ("line 4", false),
            ("line 5", false),
            ("C", true)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Interoperability with nats-server's own directory store
// ---------------------------------------------------------------------------------------------

/// Both directions against a real nats-server sharing one directory: what nats-server's full
/// resolver stores is served (and watched) by our read-only directory store, and what our
/// writable directory store writes, nats-server resolves for connecting users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_is_shared_with_nats_servers_full_resolver() {
    let root = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_nats_resolver_in(0, "full", root.path(), "").await;

    // nats-server → us: a claims update makes nats-server write <dir>/<key>.jwt; our
    // read-only store picks the file up.
    let mut reader = dir_server(root.path(), false, true).await;
    let (a_kp, a_jwt) = new_account("from-nats-server");
    let a = a_kp.public_key();
    let sys = nats.sys_client().await;
    let reply = tokio::time::timeout(
        WITHIN,
        sys.request("$SYS.REQ.CLAIMS.UPDATE", a_jwt.clone().into()),
    )
    .await
    .expect("nats-server answers the claims update")
    .expect("request");
    let reply = String::from_utf8_lossy(&reply.payload).into_owned();
    assert!(
        !reply.contains("error"),
        "nats-server refused the update: {reply}"
    );
    wait_serves(&reader.url, &a, &a_jwt).await;
    assert_eq!(
        std::fs::read_to_string(nats_path(root.path(), &a, false)).unwrap(),
        a_jwt
    );
    reader.stop().await;

    // us → nats-server: a POST to our writable store over the same directory; a user of that
    // account connects, so nats-server read our file.
    let writer = dir_server(root.path(), false, false).await;
    let (b_kp, b_jwt) = new_account("from-us");
    let b = b_kp.public_key();
    assert_eq!(
        post(&writer.at(&format!("/jwt/v1/accounts/{b}")), b_jwt.clone())
            .await
            .0,
        200
    );
    // Control: a user of an account that is in no file is refused.
    let (c_kp, _) = new_account("nowhere");
    let stranger = fixtures::user_creds(&c_kp, "u");
    let refused = async_nats::ConnectOptions::with_credentials(&stranger)
        .unwrap()
        .connect(&nats.url)
        .await;
    assert!(
        refused.is_err(),
        "nats-server admitted a user of an unknown account"
    );
    let user = fixtures::user_creds(&b_kp, "u");
    let connected = async_nats::ConnectOptions::with_credentials(&user)
        .unwrap()
        .connect(&nats.url)
        .await;
    assert!(
        connected.is_ok(),
        "nats-server could not resolve account {b} from our file: {:?}\n{}",
        connected.err(),
        nats.log_text()
    );
}
