//! NATS notifications, proven against a real nats-server (2.9) in operator mode whose URL
//! resolver is one of our in-process servers.
//!
//! nats-server's URL resolver fetches an account over HTTP once, when it first loads it, and
//! never again (no expiry, no cache headers): only a claims-update message on NATS changes a
//! loaded account. So a connection limit that takes effect without restarting nats-server proves
//! that our notification reached it.
//!
//! Start order is the real one (README, "A local cluster in three commands"): our server first,
//! configured with the port nats-server will listen on; then nats-server, whose startup probe
//! needs our HTTP server.
//! Every test runs its own pair, so tests run in parallel.

use crate::common::fixtures::{self, account_jwt, user_creds};
use crate::common::nats::{use_nats, NatsServer};
use crate::common::{eventually, free_port, get, http, post_accepted, TestServer};
use async_nats::{Client, Message, Subscriber};
use futures_util::{FutureExt, StreamExt};
use nats_account_server::config::Settings;
use nats_account_server::config::UpdateSubjects;
use nkeys::KeyPair;
use serde_json::{json, Value};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// How long a claims update may take to apply in nats-server (the bound).
const APPLY_WITHIN: Duration = Duration::from_secs(2);
/// How long our server may take to (re)connect to a nats-server that has just started.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// What nats-server answers a CONNECT beyond the account's `limits.conn`.
const CONN_LIMIT_ERROR: &str = "maximum account active connections exceeded";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Our server and the nats-server that resolves accounts from it.
struct Stack {
    server: TestServer,
    nats: NatsServer,
}

/// Our server, configured for a nats-server on `port` that need not be running.
async fn our_server(port: u16, tweak: impl FnOnce(&mut Settings)) -> TestServer {
    TestServer::start_with(|s| {
        use_nats(s, port);
        tweak(s);
    })
    .await
}

/// Our server, then nats-server; returns once our server is connected to it.
async fn stack(tweak: impl FnOnce(&mut Settings)) -> Stack {
    let port = free_port();
    let server = our_server(port, tweak).await;
    let nats = NatsServer::resolving_from(port, &server.url).await;
    let connected = AssertUnwindSafe(wait_nats_state(&server, "connected"))
        .catch_unwind()
        .await;
    if let Err(panic) = connected {
        eprintln!("nats-server log:\n{}", nats.log_text());
        std::panic::resume_unwind(panic);
    }
    Stack { server, nats }
}

/// Stands in for a nats-server that is down but reachable: accepts and at once closes
/// connections on `port` until our server has tried `attempts` times, proving it keeps retrying
/// after failures (not only once). The port is free again on return.
async fn observe_retries(port: u16, attempts: usize) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("binding the nats port");
    let accept_all = async {
        for _ in 0..attempts {
            let (socket, _) = listener.accept().await.expect("accept");
            drop(socket);
        }
    };
    tokio::time::timeout(CONNECT_WITHIN, accept_all)
        .await
        .unwrap_or_else(|_| {
            panic!("our server stopped trying to connect to NATS (fewer than {attempts} attempts)")
        });
}

/// The `nats` field of `/healthz`.
async fn nats_state(server: &TestServer) -> String {
    let (status, body) = get(&server.at("/healthz")).await;
    assert_eq!(status, 200, "healthz: {body}");
    let v: Value = serde_json::from_str(&body).expect("healthz is JSON");
    v["nats"].as_str().unwrap_or_default().to_string()
}

async fn wait_nats_state(server: &TestServer, want: &str) {
    eventually(
        CONNECT_WITHIN,
        &format!("healthz reports \"nats\":\"{want}\""),
        || async move { nats_state(server).await == want },
    )
    .await;
}

/// `nas_notifications_total{result="<result>"}` from `/metrics` (0 when absent).
async fn notifications(server: &TestServer, result: &str) -> u64 {
    let (status, body) = get(&server.at("/metrics")).await;
    assert_eq!(status, 200, "metrics: {body}");
    let prefix = format!("nas_notifications_total{{result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse::<f64>().expect("metric value") as u64)
        .unwrap_or(0)
}

/// An account JWT with `limits.conn` = `conn` (iat = now, never older than a stored one).
fn jwt_with_conn_limit(account: &str, conn: i64) -> String {
    account_jwt(account, "notified", json!({ "limits": { "conn": conn } }))
}

/// One more connection is refused, and because of the account's connection limit.
async fn refused_by_conn_limit(nats: &NatsServer, creds: &str) -> bool {
    match nats.try_connect_user(creds).await {
        Ok(c) => {
            let _ = c.drain().await;
            false
        }
        Err(e) => {
            let why = format!("{e} {:?}", std::error::Error::source(&e));
            assert!(
                why.contains(CONN_LIMIT_ERROR),
                "connection refused for another reason: {why}"
            );
            true
        }
    }
}

/// The core proof, on a running stack whose nats-server has not loaded `account` yet:
/// a user connects (nats-server fetches the JWT over HTTP); lowering the connection limit to 1
/// refuses a second connection within 2 s; raising it admits one again. nats-server is never
/// restarted, so only our NATS notifications can have changed its view of the account.
async fn assert_limit_changes_apply(stack: &Stack, account: &KeyPair) {
    let key = account.public_key();
    let creds = user_creds(account, "user");
    let first = stack
        .nats
        .try_connect_user(&creds)
        .await
        .expect("a user of a posted account connects (nats-server fetched it over HTTP)");
    assert!(
        stack.nats.admits(&creds).await,
        "no connection limit yet: a second connection is admitted"
    );

    post_accepted(&stack.server.url, &key, &jwt_with_conn_limit(&key, 1)).await;
    eventually(
        APPLY_WITHIN,
        "a second connection is refused after lowering limits.conn to 1",
        || refused_by_conn_limit(&stack.nats, &creds),
    )
    .await;
    // `first` holds the one slot: a round trip on its live connection. When a limit drops,
    // nats-server keeps the newest connections, so a probe admitted just before the update may
    // have displaced `first`; it then reconnects by itself once the probe is closed. Either
    // way, from here on a second connection can only be admitted by the next update.
    tokio::time::timeout(APPLY_WITHIN, first.flush())
        .await
        .expect("the first connection holds its slot")
        .expect("flush");

    post_accepted(&stack.server.url, &key, &jwt_with_conn_limit(&key, -1)).await;
    eventually(
        APPLY_WITHIN,
        "a second connection is admitted after raising limits.conn to -1",
        || stack.nats.admits(&creds),
    )
    .await;

    first
        .flush()
        .await
        .expect("the first connection is still usable");
}

/// A system-account client subscribed to the old and the new update subjects, registered at
/// the server. One connection: messages from one publisher reach it in publish order.
async fn sys_subscribe(nats: &NatsServer) -> (Client, Subscriber, Subscriber) {
    let client = nats.sys_client().await;
    let old = client
        .subscribe("$SYS.ACCOUNT.*.CLAIMS.UPDATE")
        .await
        .expect("subscribe");
    let new = client
        .subscribe("$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE")
        .await
        .expect("subscribe");
    // A round trip: the SUBs are registered before anything is published.
    client.flush().await.expect("flush");
    (client, old, new)
}

/// The next message on `sub`, within the update bound.
async fn next_msg(sub: &mut Subscriber, what: &str) -> Message {
    tokio::time::timeout(APPLY_WITHIN, sub.next())
        .await
        .unwrap_or_else(|_| panic!("no message within {APPLY_WITHIN:?}: {what}"))
        .expect("subscription open")
}

/// Asserts `msg` came on `subject` and carries exactly `jwt`.
fn assert_update(msg: &Message, subject: &str, jwt: &str) {
    assert_eq!(msg.subject.as_str(), subject);
    assert_eq!(
        std::str::from_utf8(&msg.payload).expect("UTF-8 payload"),
        jwt,
        "payload is the raw account JWT"
    );
    assert!(msg.headers.is_none(), "published without headers");
}

fn old_subject(account: &str) -> String {
    format!("$SYS.ACCOUNT.{account}.CLAIMS.UPDATE")
}

fn new_subject(account: &str) -> String {
    format!("$SYS.REQ.ACCOUNT.{account}.CLAIMS.UPDATE")
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// nats-server in operator mode starts against us (its startup probe passes) and admits a user
/// of an account only once that account was POSTed to us (it fetches the JWT over HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_boots_and_resolves_posted_accounts() {
    let stack = stack(|_| {}).await;
    let account = fixtures::account_a();
    let key = account.public_key();
    let creds = user_creds(&account, "alice");

    let err = stack
        .nats
        .try_connect_user(&creds)
        .await
        .expect_err("an account we do not have cannot be resolved");
    let why = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(
        why.to_lowercase().contains("authorization"),
        "refused for an unexpected reason: {why}"
    );

    post_accepted(
        &stack.server.url,
        &key,
        &account_jwt(&key, "A", json!({ "limits": { "conn": -1 } })),
    )
    .await;
    let client = stack
        .nats
        .try_connect_user(&creds)
        .await
        .expect("a user of the posted account connects");
    client.flush().await.expect("round trip");
}

/// A limit change applies to a running nats-server within 2 s (the update went over NATS), both
/// ways: `conn: 1` refuses a second connection, `conn: -1` admits it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_changes_reach_running_nats_server() {
    let stack = stack(|_| {}).await;
    let account = KeyPair::new_account();
    let key = account.public_key();
    post_accepted(&stack.server.url, &key, &jwt_with_conn_limit(&key, -1)).await;
    assert_limit_changes_apply(&stack, &account).await;
    assert_eq!(notifications(&stack.server, "failed").await, 0);
    assert!(notifications(&stack.server, "sent").await >= 3);
}

/// Started before any nats-server listens, our server serves HTTP at once, keeps trying, connects
/// by itself when nats-server comes up, and its notifications then apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_to_nats_server_started_later() {
    let port = free_port();
    let server = our_server(port, |_| {}).await;
    let state = nats_state(&server).await;
    assert!(
        state == "connecting" || state == "disconnected",
        "no nats-server yet, but healthz says {state:?}"
    );
    let account = KeyPair::new_account();
    let key = account.public_key();
    post_accepted(&server.url, &key, &jwt_with_conn_limit(&key, -1)).await;
    observe_retries(port, 3).await;
    assert_ne!(nats_state(&server).await, "connected");

    let nats = NatsServer::resolving_from(port, &server.url).await;
    wait_nats_state(&server, "connected").await;
    let stack = Stack { server, nats };
    assert_limit_changes_apply(&stack, &account).await;
}

/// After nats-server is killed, writes still succeed at once (notification counted as failed),
/// our server keeps retrying, and once nats-server restarts on the same port it reconnects and
/// notifications apply again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_nats_server_restart() {
    let mut stack = stack(|_| {}).await;
    let account = KeyPair::new_account();
    let key = account.public_key();
    post_accepted(&stack.server.url, &key, &jwt_with_conn_limit(&key, -1)).await;

    stack.nats.kill();
    eventually(
        CONNECT_WITHIN,
        "healthz reports NATS lost after killing nats-server",
        || async { nats_state(&stack.server).await != "connected" },
    )
    .await;
    let failed = notifications(&stack.server, "failed").await;
    let started = Instant::now();
    post_accepted(
        &stack.server.url,
        &key,
        &account_jwt(&key, "during-outage", json!({})),
    )
    .await;
    assert!(
        started.elapsed() < APPLY_WITHIN,
        "a write during the NATS outage took {:?}",
        started.elapsed()
    );
    eventually(
        APPLY_WITHIN,
        "the notification during the outage is counted as failed",
        || async { notifications(&stack.server, "failed").await > failed },
    )
    .await;

    observe_retries(stack.nats.port, 3).await;
    stack.nats.restart().await;
    wait_nats_state(&stack.server, "connected").await;
    assert_limit_changes_apply(&stack, &account).await;
}

/// A POST publishes the JWT on `$SYS.ACCOUNT.<pub>.CLAIMS.UPDATE` only (the default);
/// `GET ?notify=true` re-sends it, a plain GET does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_and_get_notify_publish_claims_update() {
    let stack = stack(|_| {}).await;
    let (_sys, mut old, mut new) = sys_subscribe(&stack.nats).await;
    let key = KeyPair::new_account().public_key();
    let url = stack.server.at(&format!("/jwt/v1/accounts/{key}"));

    let first = account_jwt(&key, "first", json!({}));
    post_accepted(&stack.server.url, &key, &first).await;
    let msg = next_msg(&mut old, "the POST's notification").await;
    assert_update(&msg, &old_subject(&key), &first);

    let (status, body) = get(&format!("{url}?notify=true")).await;
    assert_eq!((status, body.as_str()), (200, first.as_str()));
    let msg = next_msg(&mut old, "the GET ?notify=true re-send").await;
    assert_update(&msg, &old_subject(&key), &first);

    // A plain GET sends nothing: the next message is the next POST's, not a re-send of `first`
    // (one publisher, one subscriber connection, so order is kept).
    let (status, _) = get(&url).await;
    assert_eq!(status, 200);
    let second = account_jwt(&key, "second", json!({}));
    post_accepted(&stack.server.url, &key, &second).await;
    let msg = next_msg(&mut old, "the second POST's notification").await;
    assert_update(&msg, &old_subject(&key), &second);

    // Nothing went to the new subject: such a message, published before `second`, would have
    // reached our one subscriber connection, and been queued on `new`, before `second`.
    assert!(
        new.next().now_or_never().is_none(),
        "the default `old` setting published on {}",
        new_subject(&key)
    );
}

/// `nats.updatesubjects = both` publishes every change, and every `?notify=true`, on
/// `$SYS.ACCOUNT.<pub>.CLAIMS.UPDATE` and `$SYS.REQ.ACCOUNT.<pub>.CLAIMS.UPDATE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updatesubjects_both_publishes_on_both_subjects() {
    let stack = stack(|s| s.nats.updatesubjects = UpdateSubjects::Both).await;
    let (_sys, mut old, mut new) = sys_subscribe(&stack.nats).await;
    let key = KeyPair::new_account().public_key();
    let jwt = account_jwt(&key, "both", json!({}));

    post_accepted(&stack.server.url, &key, &jwt).await;
    assert_update(
        &next_msg(&mut old, "POST, old").await,
        &old_subject(&key),
        &jwt,
    );
    assert_update(
        &next_msg(&mut new, "POST, new").await,
        &new_subject(&key),
        &jwt,
    );

    let (status, _) = get(&stack
        .server
        .at(&format!("/jwt/v1/accounts/{key}?notify=true")))
    .await;
    assert_eq!(status, 200);
    assert_update(
        &next_msg(&mut old, "notify, old").await,
        &old_subject(&key),
        &jwt,
    );
    assert_update(
        &next_msg(&mut new, "notify, new").await,
        &new_subject(&key),
        &jwt,
    );
}

/// `nats.updatesubjects = new` alone updates nats-server 2.9 (it listens on the new subject too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updatesubjects_new_alone_updates_nats_server() {
    let stack = stack(|s| s.nats.updatesubjects = UpdateSubjects::New).await;
    let account = KeyPair::new_account();
    let key = account.public_key();
    post_accepted(&stack.server.url, &key, &jwt_with_conn_limit(&key, -1)).await;
    assert_limit_changes_apply(&stack, &account).await;
}

/// With NATS configured but unreachable, a write is answered 200 at once and the lost
/// notification shows in `nas_notifications_total{result="failed"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_never_fails_or_delays_a_write() {
    let server = our_server(free_port(), |_| {}).await;
    assert_ne!(nats_state(&server).await, "connected");
    assert_eq!(notifications(&server, "failed").await, 0);

    let (account, jwt) = fixtures::new_account("offline");
    let key = account.public_key();
    let started = Instant::now();
    let response = tokio::time::timeout(
        APPLY_WITHIN,
        http()
            .post(server.at(&format!("/jwt/v1/accounts/{key}")))
            .body(jwt.clone())
            .send(),
    )
    .await
    .expect("the POST is answered promptly while NATS is down")
    .expect("POST");
    assert_eq!(response.status().as_u16(), 200, "{:?}", started.elapsed());

    eventually(
        APPLY_WITHIN,
        "nas_notifications_total{result=\"failed\"} counts the lost notification",
        || async { notifications(&server, "failed").await >= 1 },
    )
    .await;
    assert_eq!(notifications(&server, "sent").await, 0);
    let (status, body) = get(&server.at(&format!("/jwt/v1/accounts/{key}"))).await;
    assert_eq!((status, body), (200, jwt), "the write was stored");
}

/// A change accepted while our link to NATS is cut (nats-server itself keeps running with the
/// account loaded) is re-sent when the link comes back, so nats-server does not keep the
/// outdated account until someone calls `?notify=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_nats_is_unreachable_are_resent_on_reconnect() {
    use crate::common::proxy::{Mode, Proxy};
    let nats_port = free_port();
    let proxy = Proxy::start(&format!("127.0.0.1:{nats_port}")).await;
    let server = our_server(proxy.addr.port(), |_| {}).await;
    let nats = NatsServer::resolving_from(nats_port, &server.url).await;
    wait_nats_state(&server, "connected").await;

    let account = KeyPair::new_account();
    let key = account.public_key();
    let creds = user_creds(&account, "user");
    post_accepted(&server.url, &key, &jwt_with_conn_limit(&key, -1)).await;
    let _first = nats
        .try_connect_user(&creds)
        .await
        .expect("user connects; nats-server loads the account");

    proxy.set(Mode::Reset);
    wait_nats_state(&server, "disconnected").await;
    let failed_before = notifications(&server, "failed").await;
    post_accepted(&server.url, &key, &jwt_with_conn_limit(&key, 1)).await;
    eventually(
        APPLY_WITHIN,
        "the notification failed while NATS is cut off",
        || async { notifications(&server, "failed").await > failed_before },
    )
    .await;
    assert!(
        nats.admits(&creds).await,
        "nats-server has not heard of the new limit yet"
    );

    proxy.set(Mode::Pass);
    wait_nats_state(&server, "connected").await;
    eventually(
        APPLY_WITHIN,
        "the missed update is re-sent after reconnecting",
        || refused_by_conn_limit(&nats, &creds),
    )
    .await;
}

/// What our content validation accepts, nats-server loads: a rich pair of accounts (a private
/// service export with an activation token, a stream export, an import of each, a subject
/// mapping, a scoped signing key, limits) is POSTed to us and a user of each account connects,
/// and the importer can use the imported service. (The refusals are in tests/accounts.rs and the
/// unit tests of `jwt::account_rules`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rich_accounts_we_accept_load_in_nats_server() {
    let stack = stack(|_| {}).await;
    let exporter = KeyPair::new_account();
    let importer = KeyPair::new_account();
    let (ex_pub, im_pub) = (exporter.public_key(), importer.public_key());
    let unlimited = json!({ "imports": -1, "exports": -1, "wildcards": true, "conn": -1,
        "subs": -1, "data": -1, "payload": -1, "leaf": -1 });
    let scoped = KeyPair::new_account().public_key();
    let exporter_jwt = account_jwt(
        &ex_pub,
        "exporter",
        json!({ "limits": unlimited, "exports": [
            { "name": "help", "subject": "help.>", "type": "service", "token_req": true,
              "response_type": "Singleton" },
            { "name": "news", "subject": "news.>", "type": "stream" } ],
          "signing_keys": [ { "kind": "user_scope", "key": scoped, "role": "helpers",
              "template": { "pub": { "allow": ["help.>"] }, "sub": {}, "subs": -1,
                            "data": -1, "payload": -1 } } ] }),
    );
    let token =
        nats_account_server::jwt::encode::activation(&exporter, &im_pub, "help.>", "service");
    let importer_jwt = account_jwt(
        &im_pub,
        "importer",
        json!({ "limits": unlimited, "imports": [
            { "name": "help", "subject": "help.>", "account": ex_pub, "type": "service",
              "token": token },
            { "name": "news", "subject": "news.>", "account": ex_pub, "type": "stream" } ],
          "mappings": { "orders": [ { "subject": "orders.v2", "weight": 100 } ] } }),
    );
    post_accepted(&stack.server.url, &ex_pub, &exporter_jwt).await;
    post_accepted(&stack.server.url, &im_pub, &importer_jwt).await;

    let provider = stack
        .nats
        .try_connect_user(&user_creds(&exporter, "provider"))
        .await
        .unwrap_or_else(|e| panic!("exporter user: {e}\n{}", stack.nats.log_text()));
    let mut requests = provider.subscribe("help.>").await.unwrap();
    let responder = provider.clone();
    tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            if let Some(reply) = msg.reply {
                let _ = responder.publish(reply, "helped".into()).await;
            }
        }
    });
    provider.flush().await.unwrap();
    let client = stack
        .nats
        .try_connect_user(&user_creds(&importer, "client"))
        .await
        .unwrap_or_else(|e| panic!("importer user: {e}\n{}", stack.nats.log_text()));
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        client.request("help.me", "please".into()),
    )
    .await
    .expect("the imported service answers in time")
    .unwrap_or_else(|e| panic!("request through the import: {e}\n{}", stack.nats.log_text()));
    assert_eq!(&answer.payload[..], b"helped");
}
