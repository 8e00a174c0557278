//! Activation tokens (`/jwt/v1/activations`): the official hashes, the round trip and read
//! options, every refusal (with nothing stored), newer-wins per hash, signing-key issuers, NATS
//! notifications, and replication to replicas with and without NATS, including forwarding.
//!
//! The vectors' `activations/token.jwt` is issued by account A for account B; A's account JWT
//! (signed by the operator's signing key, which `TestServer::primary()` trusts) must be posted
//! first, because the server only hosts activations of accounts it knows.

use crate::common::feed::{self, Change};
use crate::common::fixtures::{account_a, account_b, account_jwt, vector};
use crate::common::nats::{use_nats, wait_nats_connected, NatsServer};
use crate::common::{
    etag_of, eventually, free_port, get, http, max_age, metric, post, post_accepted, replica_of,
    send, wait_ready, TestServer,
};
use futures_util::StreamExt;
use nats_account_server::config::Dur;
use nats_account_server::jwt::{self, encode, JwtError};
use nkeys::KeyPair;
use serde_json::{json, Value};
use std::time::Duration;

/// How long replication or a NATS round trip may take before a test fails.
const WITHIN: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn activation_url(base: &str, hash: &str) -> String {
    format!("{base}/jwt/v1/activations/{hash}")
}

/// POST of an activation token → (status, body).
async fn post_activation(base: &str, token: &str) -> (u16, String) {
    post(&format!("{base}/jwt/v1/activations"), token).await
}

/// Posts account A (the vectors' activation issuer); returns its public key.
async fn post_account_a(base: &str) -> String {
    let a = vector("account_a.pub");
    post_accepted(base, &a, &account_jwt(&a, "A", json!({}))).await;
    a
}

/// The official hash of a token, from its claims.
fn hash_of(token: &str) -> String {
    jwt::activation_hash(&jwt::parse_unverified(token).expect("claims parse")).expect("hash")
}

/// Activation claims from `sub` for `subject`, `iat` now (callers adjust before signing).
fn claims(sub: &str, subject: &str) -> Value {
    json!({ "sub": sub, "iat": jwt::now_unix(), "nats": {
        "subject": subject, "kind": "service", "type": "activation", "version": 2 } })
}

/// An activation from `issuer` to account B for `subject`, issued at `iat`.
fn activation_at(issuer: &KeyPair, subject: &str, iat: i64) -> String {
    let mut c = claims(&account_b().public_key(), subject);
    c["iat"] = json!(iat);
    encode::sign(c, issuer)
}

/// The token with one character in the middle of its signature changed (still base64url, so
/// the failure is the signature's, not the encoding's).
fn tamper_signature(token: &str) -> String {
    let at = token.rfind('.').expect("three segments") + 1 + 20;
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// The activations in a server's change feed.
async fn feed_activations(base: &str) -> Vec<Change> {
    feed::read(base).await.of_kind("activation")
}

/// True when `base` serves exactly `token` under `hash`.
async fn serves(base: &str, hash: &str, token: &str) -> bool {
    let (status, body) = get(&activation_url(base, hash)).await;
    status == 200 && body == token
}

/// The next message of `sub`, failing the test after [`WITHIN`].
async fn next_message(sub: &mut async_nats::Subscriber, what: &str) -> async_nats::Message {
    tokio::time::timeout(WITHIN, sub.next())
        .await
        .unwrap_or_else(|_| panic!("timed out after {WITHIN:?} waiting for {what}"))
        .expect("subscription open")
}

// ---------------------------------------------------------------------------------------------
// Hashes, round trip, read options
// ---------------------------------------------------------------------------------------------

/// The library's hash and the POST answer both equal the official `HashID()` of each vector,
/// and GET under that hash returns the exact token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_hashes_match_library_and_post_answer() {
    let server = TestServer::primary().await;
    post_account_a(&server.url).await;
    for name in ["token", "wildcard_first"] {
        let token = vector(&format!("activations/{name}.jwt"));
        let expected = vector(&format!("activations/{name}.hash"));
        let decoded = jwt::decode_activation(&token, jwt::now_unix()).expect("vector decodes");
        assert_eq!(
            jwt::activation_hash(&decoded.claims).unwrap(),
            expected,
            "library hash of {name}"
        );

        let (status, body) = post_activation(&server.url, &token).await;
        assert_eq!(status, 200, "POST of {name}: {body}");
        assert_eq!(body, expected, "POST answers the hash of {name}");

        let r = send(http().get(activation_url(&server.url, &expected))).await;
        assert_eq!(r.status, 200, "GET {name}: {}", r.body);
        assert_eq!(r.body, token, "round trip of {name}");
        assert_eq!(r.header("content-type"), "application/jwt");
    }
    // Two distinct keys, not one overwritten by the other.
    assert_eq!(feed_activations(&server.url).await.len(), 2);
    // Posting the same token again is a no-op 200 with the same answer.
    let token = vector("activations/token.jwt");
    let (status, body) = post_activation(&server.url, &format!("{token}\n")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, vector("activations/token.hash").as_str())
    );
    assert_eq!(feed_activations(&server.url).await.len(), 2);
}

/// `text`, `decode`, `check`, ETag/304 and Cache-Control work as for accounts; unknown hashes
/// are 404 and malformed ones 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_options_etag_and_cache_control() {
    let server = TestServer::start_with(|s| s.http.maxage = Dur(Duration::from_secs(300))).await;
    post_account_a(&server.url).await;
    let token = vector("activations/token.jwt");
    let hash = vector("activations/token.hash");
    assert_eq!(post_activation(&server.url, &token).await.0, 200);
    let url = activation_url(&server.url, &hash);

    // Raw: the ETag is derived from the token's bytes; a non-expiring token gets the
    // configured max-age.
    let etag = etag_of(&token);
    let r = send(http().get(&url)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), etag);
    assert_eq!(max_age(r.header("cache-control")), 300);

    // If-None-Match → 304, no body, same ETag; another tag → 200.
    let r = send(http().get(&url).header("if-none-match", &etag)).await;
    assert_eq!(r.status, 304);
    assert_eq!(r.body, "");
    assert_eq!(r.header("etag"), etag);
    assert_eq!(max_age(r.header("cache-control")), 300);
    let r = send(http().get(&url).header("if-none-match", "\"other\"")).await;
    assert_eq!((r.status, r.body.as_str()), (200, token.as_str()));

    // text=true: the same token as text/plain.
    let r = send(http().get(format!("{url}?text=true"))).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type").starts_with("text/plain"),
        "{}",
        r.header("content-type")
    );
    assert_eq!(r.body, token);

    // decode=true: header JSON, claims JSON with dates annotated, signature.
    let r = send(http().get(format!("{url}?decode=true"))).await;
    assert_eq!(r.status, 200);
    let parts: Vec<&str> = r.body.split("\r\n").collect();
    assert_eq!(
        parts.len(),
        3,
        "header\\r\\nclaims\\r\\nsignature: {}",
        r.body
    );
    let header: Value = serde_json::from_str(parts[0]).expect("header JSON");
    assert_eq!(header["alg"], "ed25519-nkey");
    let decoded: Value = serde_json::from_str(parts[1]).expect("claims JSON");
    assert_eq!(decoded["nats"]["subject"], "svc.aak2sy.>");
    assert_eq!(decoded["nats"]["type"], "activation");
    assert_eq!(decoded["sub"], vector("account_b.pub"));
    assert!(
        decoded["iat_rfc3339"]
            .as_str()
            .is_some_and(|s| s.starts_with("2026-")),
        "{decoded}"
    );
    assert_eq!(parts[2].trim_end(), token.rsplit('.').next().unwrap());

    // check=true on a valid token, and notify=true without NATS, are plain 200s.
    for opt in ["check=true", "notify=true"] {
        let (status, body) = get(&format!("{url}?{opt}")).await;
        assert_eq!((status, body.as_str()), (200, token.as_str()), "{opt}");
    }

    // An expiring activation: max-age is positive and at most the time left.
    let mut c = claims(&account_b().public_key(), "expiring.>");
    c["exp"] = json!(jwt::now_unix() + 100);
    let expiring = encode::sign(c, &account_a());
    let (status, h) = post_activation(&server.url, &expiring).await;
    assert_eq!(status, 200, "{h}");
    let r = send(http().get(activation_url(&server.url, &h))).await;
    let age = max_age(r.header("cache-control"));
    assert!(
        age > 0 && age <= 100,
        "max-age {age} for a token expiring in 100 s"
    );

    // Unknown hash 404, malformed hash 400.
    let unknown = hash_of(&activation_at(&account_a(), "nobody.>", jwt::now_unix()));
    assert_eq!(get(&activation_url(&server.url, &unknown)).await.0, 404);
    for bad in ["nope", "..%2F..%2Fetc", &unknown[..50]] {
        assert_eq!(get(&activation_url(&server.url, bad)).await.0, 400, "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

/// An activation whose issuing account was never posted is refused with a message saying so,
/// and nothing is stored; once the account is posted the same token is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_issuer_account_is_refused() {
    let server = TestServer::primary().await;
    let token = vector("activations/token.jwt");
    let hash = vector("activations/token.hash");
    let r = send(
        http()
            .post(server.at("/jwt/v1/activations"))
            .body(token.clone()),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("not known to this server") && r.body.contains(&vector("account_a.pub")),
        "the reason names the unknown issuing account: {}",
        r.body
    );
    assert_eq!(r.header("x-error-code"), "unknown_issuer");
    assert_eq!(get(&activation_url(&server.url, &hash)).await.0, 404);
    assert!(
        feed_activations(&server.url).await.is_empty(),
        "nothing stored"
    );

    post_account_a(&server.url).await;
    assert_eq!(
        post_activation(&server.url, &token).await,
        (200, hash.clone())
    );
    assert!(serves(&server.url, &hash, &token).await);
}

/// Garbage, a bad signature, a user-key subject, an expired token and an account JWT are all
/// 400 with a reason, and none of them is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_and_not_stored() {
    let server = TestServer::primary().await;
    let a = post_account_a(&server.url).await;
    let now = jwt::now_unix();

    let good = activation_at(&account_a(), "refused.>", now);
    let bad_sig = tamper_signature(&good);
    assert!(
        matches!(jwt::decode(&bad_sig), Err(JwtError::BadSignature(_))),
        "the tampered token fails on its signature"
    );
    let user_subject = encode::sign(
        claims(&KeyPair::new_user().public_key(), "u.>"),
        &account_a(),
    );
    let mut c = claims(&account_b().public_key(), "expired.>");
    c["iat"] = json!(now - 7200);
    c["exp"] = json!(now - 3600);
    let expired = encode::sign(c, &account_a());
    let account = account_jwt(&a, "A again", json!({}));
    let no_subject = encode::sign(
        json!({ "sub": account_b().public_key(), "nats": { "type": "activation", "version": 2 } }),
        &account_a(),
    );

    let cases: [(&str, &str, &str); 7] = [
        ("garbage", "this is not a JWT", "malformed"),
        ("empty", "", "empty"),
        ("bad signature", &bad_sig, "signature does not verify"),
        (
            "user-key subject",
            &user_subject,
            "not an account public key",
        ),
        ("expired", &expired, "expired"),
        ("account JWT", &account, "expected an activation JWT"),
        ("no import subject", &no_subject, "no import subject"),
    ];
    for (what, token, reason) in cases {
        let (status, body) = post_activation(&server.url, token).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(
            body.contains(reason),
            "{what}: reason {reason:?} in {body:?}"
        );
        assert_eq!(body.lines().count(), 1, "{what}: one-line reason");
        if let Ok(c) = jwt::parse_unverified(token) {
            if let Ok(h) = jwt::activation_hash(&c) {
                assert_eq!(
                    get(&activation_url(&server.url, &h)).await.0,
                    404,
                    "{what} stored"
                );
            }
        }
    }
    assert!(
        feed_activations(&server.url).await.is_empty(),
        "nothing stored"
    );
    let (_, body) = get(&server.at("/jwt/v1/changes?since=0")).await;
    assert_eq!(
        body.lines().count(),
        1,
        "only account A is in the store: {body}"
    );
}

/// Newer wins per hash: a token with an older `iat` for the same issuer, subject account and
/// import subject is 409 and does not replace the stored one; a newer one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_wins_per_hash() {
    let server = TestServer::primary().await;
    post_account_a(&server.url).await;
    let now = jwt::now_unix();
    let older = activation_at(&account_a(), "orders.>", now - 100);
    let newer = activation_at(&account_a(), "orders.>", now - 10);
    let newest = activation_at(&account_a(), "orders.*", now);
    let hash = hash_of(&newer);
    assert_eq!(hash_of(&older), hash);
    assert_eq!(
        hash_of(&newest),
        hash,
        "wildcard tails do not change the hash"
    );

    assert_eq!(
        post_activation(&server.url, &newer).await,
        (200, hash.clone())
    );
    let (status, body) = post_activation(&server.url, &older).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("newer"), "{body}");
    assert!(
        serves(&server.url, &hash, &newer).await,
        "the older token did not replace it"
    );

    assert_eq!(
        post_activation(&server.url, &newest).await,
        (200, hash.clone())
    );
    assert!(serves(&server.url, &hash, &newest).await);
    assert_eq!(
        feed_activations(&server.url).await.len(),
        1,
        "one key per hash"
    );
}

/// An activation signed by one of the account's signing keys, naming the account in
/// `issuer_account`, is accepted; a key the account does not list is refused, as is a signing
/// key that does not name its account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_issuers_need_issuer_account_and_a_listed_key() {
    let server = TestServer::primary().await;
    let a = vector("account_a.pub");
    let sk = KeyPair::new_account();
    let a_jwt = account_jwt(&a, "A", json!({ "signing_keys": [sk.public_key()] }));
    post_accepted(&server.url, &a, &a_jwt).await;

    let mut c = claims(&account_b().public_key(), "signed.>");
    c["nats"]["issuer_account"] = json!(a);
    let token = encode::sign(c.clone(), &sk);
    let hash = hash_of(&token);
    assert_eq!(
        post_activation(&server.url, &token).await,
        (200, hash.clone())
    );
    assert!(serves(&server.url, &hash, &token).await);

    // A key A does not list.
    let rogue = encode::sign(c.clone(), &KeyPair::new_account());
    let (status, body) = post_activation(&server.url, &rogue).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a signing key of account"), "{body}");
    assert_eq!(
        get(&activation_url(&server.url, &hash_of(&rogue))).await.0,
        404
    );

    // A listed key without issuer_account: the signer is taken for the account, unknown.
    let mut bare = c.clone();
    bare["nats"]
        .as_object_mut()
        .unwrap()
        .remove("issuer_account");
    let bare = encode::sign(bare, &sk);
    let (status, body) = post_activation(&server.url, &bare).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not known to this server"), "{body}");

    // issuer_account naming an account the server does not know.
    let mut other = c;
    other["nats"]["issuer_account"] = json!(KeyPair::new_account().public_key());
    let other = encode::sign(other, &sk);
    assert_eq!(post_activation(&server.url, &other).await.0, 400);

    // A scoped signing key entry counts too.
    let scoped = KeyPair::new_account();
    let a_jwt = account_jwt(
        &a,
        "A",
        json!({ "signing_keys": [ { "kind": "user_scope", "key": scoped.public_key(), "role": "r" } ] }),
    );
    post_accepted(&server.url, &a, &a_jwt).await;
    let mut c = claims(&account_b().public_key(), "scoped.>");
    c["nats"]["issuer_account"] = json!(a);
    let scoped_token = encode::sign(c, &scoped);
    assert_eq!(post_activation(&server.url, &scoped_token).await.0, 200);

    assert_eq!(
        feed_activations(&server.url).await.len(),
        2,
        "only the accepted ones"
    );
}

// ---------------------------------------------------------------------------------------------
// NATS and replication
// ---------------------------------------------------------------------------------------------

/// Each accepted activation is published on `$SYS.ACCOUNT.<issuer>.CLAIMS.ACTIVATE.<hash>`,
/// and `?notify=true` publishes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_on_post_and_notify_option() {
    let port = free_port();
    let server = TestServer::start_with(|s| use_nats(s, port)).await;
    let nats = NatsServer::resolving_from(port, &server.url).await;
    wait_nats_connected(&server.url).await;
    let a = post_account_a(&server.url).await;

    let client = nats.sys_client().await;
    let mut sub = client
        .subscribe(format!("$SYS.ACCOUNT.{a}.CLAIMS.ACTIVATE.>"))
        .await
        .unwrap();
    client.flush().await.unwrap();

    let token = vector("activations/token.jwt");
    let hash = vector("activations/token.hash");
    assert_eq!(
        post_activation(&server.url, &token).await,
        (200, hash.clone())
    );
    let msg = next_message(&mut sub, "the activation notification").await;
    assert_eq!(
        msg.subject.as_str(),
        format!("$SYS.ACCOUNT.{a}.CLAIMS.ACTIVATE.{hash}")
    );
    assert_eq!(std::str::from_utf8(&msg.payload).unwrap(), token);

    let (status, body) = get(&format!(
        "{}?notify=true",
        activation_url(&server.url, &hash)
    ))
    .await;
    assert_eq!((status, body.as_str()), (200, token.as_str()));
    let msg = next_message(&mut sub, "the re-sent notification").await;
    assert_eq!(
        msg.subject.as_str(),
        format!("$SYS.ACCOUNT.{a}.CLAIMS.ACTIVATE.{hash}")
    );
    assert_eq!(std::str::from_utf8(&msg.payload).unwrap(), token);

    // A 304 re-sends nothing (the Go server's order: the ETag check came first). Re-sends go
    // out in the order they were asked for, so the account's, asked for next, comes first.
    let mut both = client
        .subscribe(format!("$SYS.ACCOUNT.{a}.CLAIMS.>"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let r = send(
        http()
            .get(format!(
                "{}?notify=true",
                activation_url(&server.url, &hash)
            ))
            .header("If-None-Match", etag_of(&token)),
    )
    .await;
    assert_eq!(r.status, 304);
    let (status, _) = get(&format!("{}/jwt/v1/accounts/{a}?notify=true", server.url)).await;
    assert_eq!(status, 200);
    let msg = next_message(&mut both, "the account's re-sent notification").await;
    assert_eq!(
        msg.subject.as_str(),
        format!("$SYS.ACCOUNT.{a}.CLAIMS.UPDATE")
    );
}

/// Without NATS, a replica gets activations (and their newer versions) through the change
/// feed; activations posted to the replica are forwarded, even when the replica has not yet
/// replicated the issuing account, and the primary's refusals come back unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_without_nats_gets_activations_through_the_feed_and_forwards_posts() {
    let primary = TestServer::primary().await;
    let replica = replica_of(&[&primary.url], |_| {}).await;
    wait_ready(&replica.url).await;

    post_account_a(&primary.url).await;
    let mut expected = Vec::new();
    for name in ["token", "wildcard_first"] {
        let token = vector(&format!("activations/{name}.jwt"));
        let hash = vector(&format!("activations/{name}.hash"));
        assert_eq!(
            post_activation(&primary.url, &token).await,
            (200, hash.clone())
        );
        expected.push((hash, token));
    }
    for (hash, token) in &expected {
        eventually(WITHIN, &format!("replica serves {hash}"), || {
            serves(&replica.url, hash, token)
        })
        .await;
    }
    let lines = feed_activations(&replica.url).await;
    assert_eq!(
        lines.len(),
        2,
        "the replica stored both in its own log: {lines:?}"
    );
    for (hash, token) in &expected {
        assert!(lines.iter().any(|c| c.key == *hash && c.jwt == *token));
    }
    assert!(metric(&replica.url, "nas_replica_applied_total{source=\"feed\"}").await >= 3.0);

    // A newer version on the primary replaces the replica's copy.
    let now = jwt::now_unix();
    let v1 = activation_at(&account_a(), "versions.>", now - 10);
    let v2 = activation_at(&account_a(), "versions.>", now);
    let h = hash_of(&v1);
    assert_eq!(post_activation(&primary.url, &v1).await.0, 200);
    eventually(WITHIN, "replica serves v1", || {
        serves(&replica.url, &h, &v1)
    })
    .await;
    assert_eq!(post_activation(&primary.url, &v2).await.0, 200);
    eventually(WITHIN, "replica serves v2", || {
        serves(&replica.url, &h, &v2)
    })
    .await;

    // POST to the replica: forwarded, stored on the primary, readable on the replica at once.
    let fwd = activation_at(&account_a(), "forwarded.>", now);
    let fh = hash_of(&fwd);
    assert_eq!(post_activation(&replica.url, &fwd).await, (200, fh.clone()));
    assert!(
        serves(&primary.url, &fh, &fwd).await,
        "the primary stored the forwarded token"
    );
    assert!(
        serves(&replica.url, &fh, &fwd).await,
        "read-your-writes on the replica"
    );

    // The issuing account was just posted to the primary; the replica need not have it yet
    // (it may win the race with the feed, so a few rounds make a wrong refusal show).
    for i in 0..3 {
        let c = KeyPair::new_account();
        let (key, name) = (c.public_key(), format!("C{i}"));
        post_accepted(&primary.url, &key, &account_jwt(&key, &name, json!({}))).await;
        let from_c = activation_at(&c, "c.>", now);
        assert_eq!(
            post_activation(&replica.url, &from_c).await,
            (200, hash_of(&from_c))
        );
    }

    // The primary's refusals pass through unchanged, and nothing is stored anywhere.
    let (status, body) = post_activation(
        &replica.url,
        &activation_at(&account_a(), "versions.>", now - 100),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let stranger = KeyPair::new_account();
    let orphan = activation_at(&stranger, "x.>", now);
    let (status, body) = post_activation(&replica.url, &orphan).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not known to this server"), "{body}");
    let (status, body) = post_activation(&replica.url, &tamper_signature(&fwd)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        get(&activation_url(&primary.url, &hash_of(&orphan)))
            .await
            .0,
        404
    );
    assert_eq!(
        get(&activation_url(&replica.url, &hash_of(&orphan)))
            .await
            .0,
        404
    );
}

/// With NATS, a replica applies activation messages at once: the primary's POST reaches it,
/// and a token published on the activation subject is applied from NATS alone (the primary
/// never had it), counted as `source="nats"`; one that does not verify is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_with_nats_applies_activation_messages() {
    let port = free_port();
    let primary = TestServer::start_with(|s| use_nats(s, port)).await;
    let nats = NatsServer::resolving_from(port, &primary.url).await;
    let replica = replica_of(&[&primary.url], |s| {
        use_nats(s, port);
        s.replication.pollwait = Dur(Duration::from_secs(30));
    })
    .await;
    for base in [&primary.url, &replica.url] {
        wait_nats_connected(base).await;
    }
    wait_ready(&replica.url).await;

    // The ordinary path: POST on the primary, the replica serves it.
    let a = post_account_a(&primary.url).await;
    let token = vector("activations/token.jwt");
    let hash = vector("activations/token.hash");
    assert_eq!(
        post_activation(&primary.url, &token).await,
        (200, hash.clone())
    );
    eventually(WITHIN, "replica serves the token", || {
        serves(&replica.url, &hash, &token)
    })
    .await;

    // NATS alone: published straight on the subject, never posted to the primary.
    let before = metric(&replica.url, "nas_replica_applied_total{source=\"nats\"}").await;
    let client = nats.sys_client().await;
    let direct = activation_at(&account_a(), "direct.>", jwt::now_unix());
    let dh = hash_of(&direct);
    // First a forgery (signature altered) under its hash; then the genuine token. Once the
    // genuine one is applied, the forgery sent before it on the same connection was processed.
    let forged = tamper_signature(&activation_at(&account_a(), "forged.>", jwt::now_unix()));
    let fh = hash_of(&forged);
    client
        .publish(
            format!("$SYS.ACCOUNT.{a}.CLAIMS.ACTIVATE.{fh}"),
            forged.clone().into(),
        )
        .await
        .unwrap();
    client
        .publish(
            format!("$SYS.ACCOUNT.{a}.CLAIMS.ACTIVATE.{dh}"),
            direct.clone().into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    eventually(WITHIN, "replica serves the NATS-only token", || {
        serves(&replica.url, &dh, &direct)
    })
    .await;
    let after = metric(&replica.url, "nas_replica_applied_total{source=\"nats\"}").await;
    assert!(
        after >= before + 1.0,
        "applied from NATS: {before} → {after}"
    );
    assert_eq!(
        get(&activation_url(&primary.url, &dh)).await.0,
        404,
        "the primary never had it"
    );
    let stored = feed_activations(&replica.url).await;
    assert!(
        !stored.iter().any(|c| c.key == fh || c.jwt == forged),
        "a forged activation was stored"
    );
    assert!(stored.iter().any(|c| c.key == dh));
}
