//! nats-server's NATS-based resolvers (`resolver { type: cache }` and `type: full`) served by
//! our server over NATS: LOOKUP answered with the account JWT (silence when unknown), PACK
//! answered with every account and the end-of-stream empty message. Proven against a real
//! nats-server 2.9.10, and by speaking the protocol directly.

use crate::common::fixtures::{new_account, user_creds};
use crate::common::nats::{our_reply, use_nats, wait_nats_connected, NatsServer};
use crate::common::{
    eventually, free_port, metric, post_accepted, post_new_account, primary_settings, TestServer,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// A nats-server with a cache resolver (lookups time out after 1 s) and our server connected
/// to it as a system-account client.
async fn cache_resolver_and_us() -> (NatsServer, TestServer) {
    let nats = NatsServer::start_nats_resolver(0, "cache", "timeout: \"1s\"").await;
    let server = TestServer::start_with(|s| use_nats(s, nats.port)).await;
    wait_nats_connected(&server.url).await;
    (nats, server)
}

/// A cache resolver holds nothing and ignores updates of accounts it has not loaded, so a user
/// of an account POSTed to us can only connect if our LOOKUP answer reached it. A user of an
/// account we do not have is refused, and we stay silent on its lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_resolver_looks_accounts_up_from_us() {
    let (nats, server) = cache_resolver_and_us().await;

    let (kp, jwt) = new_account("looked-up");
    post_accepted(&server.url, &kp.public_key(), &jwt).await;
    assert!(
        nats.admits(&user_creds(&kp, "u")).await,
        "a user of an account only we hold connects through the cache resolver; nats-server log:\n{}",
        nats.log_text()
    );
    assert!(
        metric(
            &server.url,
            "nas_resolver_requests_total{request=\"lookup\",result=\"found\"}"
        )
        .await
            >= 1.0
    );

    let (stranger, _) = new_account("never-posted");
    assert!(!nats.admits(&user_creds(&stranger, "u")).await);
    assert!(
        metric(
            &server.url,
            "nas_resolver_requests_total{request=\"lookup\",result=\"unknown\"}"
        )
        .await
            >= 1.0
    );
    // Silence, not an empty reply: a direct request gets no answer at all.
    let sys = nats.sys_client().await;
    let asked = tokio::time::timeout(
        Duration::from_millis(500),
        sys.request(
            format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.LOOKUP", stranger.public_key()),
            "".into(),
        ),
    )
    .await;
    assert!(
        !matches!(asked, Ok(Ok(_))),
        "an unknown account must not be answered: {asked:?}"
    );
}

/// The configured election account (`cluster.accountjwtpath`), which no store holds, is
/// answered over NATS as over HTTP: a nats-server with a cache resolver admits its users (in
/// operator mode a cluster's nodes connect with it before any leader can be elected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_account_is_answered_to_a_lookup() {
    let nats = NatsServer::start_nats_resolver(0, "cache", "timeout: \"1s\"").await;
    let dir = tempfile::tempdir().unwrap();
    let (election, election_jwt) = new_account("election");
    let path = dir.path().join("election.jwt");
    std::fs::write(&path, &election_jwt).unwrap();
    let mut settings = primary_settings(dir.path());
    use_nats(&mut settings, nats.port);
    settings.cluster.accountjwtpath = Some(path);
    let server = TestServer::start_in(dir, settings).await;
    wait_nats_connected(&server.url).await;
    assert_eq!(server.running().state().store.counts().0, 0, "not stored");
    assert!(
        nats.admits(&user_creds(&election, "u")).await,
        "nats-server log:\n{}",
        nats.log_text()
    );
}

/// PACK spoken directly: a stale hash, or none (`nsc pull`), gets every account as `key|jwt`
/// and an empty message; the hash of exactly those tokens gets the empty message alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pack_request_streams_every_account_then_an_empty_message() {
    let (nats, server) = cache_resolver_and_us().await;
    let mut want = HashMap::new();
    for i in 0..5 {
        let (k, j) = post_new_account(&server.url, &format!("packed-{i}")).await;
        want.insert(k, j);
    }
    let sys = nats.sys_client().await;

    let got = pack(&sys, &[0u8; 32]).await;
    assert_eq!(got, want);
    // `nsc pull` sends no hash at all.
    assert_eq!(pack(&sys, &[]).await, want);

    let mut hash = [0u8; 32];
    for jwt in want.values() {
        for (h, b) in hash.iter_mut().zip(Sha256::digest(jwt.as_bytes())) {
            *h ^= b;
        }
    }
    assert!(pack(&sys, &hash).await.is_empty(), "in sync: nothing sent");
    assert!(
        metric(
            &server.url,
            "nas_resolver_requests_total{request=\"pack\",result=\"in_sync\"}"
        )
        .await
            >= 1.0
    );
}

/// Sends a PACK request with `hash` and collects the answer up to its empty message.
async fn pack(sys: &async_nats::Client, hash: &[u8]) -> HashMap<String, String> {
    use futures_util::StreamExt;
    let inbox = sys.new_inbox();
    let mut sub = sys.subscribe(inbox.clone()).await.unwrap();
    sys.publish_with_reply("$SYS.REQ.CLAIMS.PACK", inbox, hash.to_vec().into())
        .await
        .unwrap();
    let mut got = HashMap::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("the pack answer ends with an empty message")
            .expect("subscription open");
        if msg.payload.is_empty() {
            return got;
        }
        let line = String::from_utf8(msg.payload.to_vec()).unwrap();
        let (k, j) = line.split_once('|').expect("key|jwt");
        got.insert(k.to_string(), j.to_string());
    }
}

/// A full resolver started after our server already held accounts (so no update message ever
/// carried them) syncs them into its directory with its periodic PACK request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_resolver_syncs_our_accounts_by_pack() {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut settings = primary_settings(data.path());
    // First without NATS: the accounts exist before any connection, so none is notified.
    let mut first = TestServer::start_in(tempfile::tempdir().unwrap(), settings.clone()).await;
    let mut keys = Vec::new();
    for i in 0..3 {
        keys.push(post_new_account(&first.url, &format!("synced-{i}")).await.0);
    }
    first.stop().await;
    use_nats(&mut settings, port);
    let server = TestServer::start_in(tempfile::tempdir().unwrap(), settings).await;

    let nats = NatsServer::start_nats_resolver(port, "full", "interval: \"1s\"").await;
    wait_nats_connected(&server.url).await;
    let dir = nats.resolver_dir();
    eventually(
        Duration::from_secs(10),
        "the full resolver's directory holds our accounts",
        || {
            let (dir, keys) = (dir.clone(), keys.clone());
            async move { keys.iter().all(|k| dir.join(format!("{k}.jwt")).exists()) }
        },
    )
    .await;
    for k in &keys {
        let file = std::fs::read_to_string(dir.join(format!("{k}.jwt"))).unwrap();
        let (_, served) = crate::common::get(&server.at(&format!("/jwt/v1/accounts/{k}"))).await;
        assert_eq!(file, served);
    }
    assert!(
        metric(
            &server.url,
            "nas_resolver_requests_total{request=\"pack\",result=\"sent\"}"
        )
        .await
            >= 1.0,
        "nats-server log:\n{}",
        nats.log_text()
    );
}

/// `nsc push` to a `nats://` URL: account JWTs sent as requests on `$SYS.REQ.CLAIMS.UPDATE`
/// (and the per-account subject) are validated and stored like a POST, and answered with
/// nats-server's JSON; a bad one is refused with the reason and stores nothing. LIST names the
/// stored accounts. Replies from
/// the nats-server itself (a cache resolver also answers) are told apart by `server.name`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_requests_are_stored_and_answered_like_nats_server() {
    let (nats, server) = cache_resolver_and_us().await;
    let sys = nats.sys_client().await;

    let (kp, jwt) = new_account("pushed");
    let key = kp.public_key();
    let reply = our_reply(&sys, "$SYS.REQ.CLAIMS.UPDATE", &jwt).await;
    assert_eq!(reply["data"]["code"], 200, "{reply}");
    assert_eq!(reply["data"]["account"], key.as_str());
    let (status, body) = crate::common::get(&server.at(&format!("/jwt/v1/accounts/{key}"))).await;
    assert_eq!((status, body), (200, jwt.clone()));
    // LIST (nsc push --diff) names it.
    let listed = our_reply(&sys, "$SYS.REQ.CLAIMS.LIST", "").await;
    assert_eq!(listed["data"], serde_json::json!([key]), "{listed}");

    // The per-account subject must name the token's subject.
    let (other, _) = new_account("other");
    let reply = our_reply(
        &sys,
        format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", other.public_key()),
        &jwt,
    )
    .await;
    assert_eq!(reply["error"]["code"], 400, "{reply}");
    assert!(
        crate::common::get(&server.at(&format!("/jwt/v1/accounts/{}", other.public_key())))
            .await
            .0
            == 404
    );

    // An empty body: nats-server's own words.
    let reply = our_reply(
        &sys,
        format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", other.public_key()),
        "",
    )
    .await;
    assert_eq!(
        reply["error"]["description"], "jwt update error - request body is empty",
        "{reply}"
    );
    assert_eq!(reply["error"]["account"], other.public_key().as_str());

    // A token signed by a key the operator does not trust.
    let rogue = nkeys::KeyPair::new_operator();
    let (mallory, _) = new_account("mallory");
    let forged = nats_account_server::jwt::encode::account(
        &rogue,
        &mallory.public_key(),
        "forged",
        serde_json::json!({}),
    );
    let reply = our_reply(&sys, "$SYS.REQ.CLAIMS.UPDATE", &forged).await;
    assert_eq!(reply["error"]["code"], 400, "{reply}");
    assert!(
        reply["error"]["description"]
            .as_str()
            .unwrap()
            .contains("jwt update resulted in error"),
        "{reply}"
    );
    assert_eq!(
        crate::common::get(&server.at(&format!("/jwt/v1/accounts/{}", mallory.public_key())))
            .await
            .0,
        404
    );
    assert!(
        metric(
            &server.url,
            "nas_resolver_requests_total{request=\"update\",result=\"rejected\"}"
        )
        .await
            >= 2.0
    );
}

/// `nats.resolverpeer = false`: resolver requests are left to nats-servers; a lookup of an
/// account we hold gets no answer from us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_peer_can_be_turned_off() {
    let nats = NatsServer::start_nats_resolver(0, "cache", "timeout: \"1s\"").await;
    let server = TestServer::start_with(|s| {
        use_nats(s, nats.port);
        s.nats.resolverpeer = false;
    })
    .await;
    wait_nats_connected(&server.url).await;
    let (key, _) = post_new_account(&server.url, "kept-quiet").await;
    let sys = nats.sys_client().await;
    let asked = tokio::time::timeout(
        Duration::from_millis(500),
        sys.request(format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.LOOKUP"), "".into()),
    )
    .await;
    assert!(!matches!(asked, Ok(Ok(_))), "answered: {asked:?}");
    assert_eq!(
        metric(&server.url, "nas_resolver_requests_total").await,
        0.0
    );
}
