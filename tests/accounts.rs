//! The HTTP API of a primary (the README's "HTTP API", activations and the change feed aside): the
//! resolver probe, account GETs and their options and headers, every POST verdict, the operator,
//! pack, help, health, metrics and status routes, the system-account fallback, and a batch of
//! hostile input that must leave the store exactly as it was.

use crate::common::feed;
use crate::common::fixtures::{self, vectors};
use crate::common::process::ServerProcess;
use crate::common::{
    assert_no_failures, etag_of, free_port, get, http, max_age, post, post_accepted, send,
    TestServer,
};
use data_encoding::BASE64URL_NOPAD;
use nats_account_server::jwt::{self, encode};
use nats_account_server::store::Kind;
use nkeys::KeyPair;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `/jwt/v1/accounts/<key>` on `server`.
fn account_url(server: &TestServer, key: &str) -> String {
    server.at(&format!("/jwt/v1/accounts/{key}"))
}

/// Mints a new account (signed by the operator's signing key), posts it, asserts 200.
async fn store_new(server: &TestServer, name: &str) -> (String, String) {
    let (kp, token) = fixtures::new_account(name);
    let key = kp.public_key();
    let (status, body) = post(&account_url(server, &key), token.clone()).await;
    assert_eq!(status, 200, "storing {name}: {body}");
    (key, token)
}

/// An account JWT for `key` with arbitrary top-level claims, signed by the signing key.
fn account_with(key: &str, extra: Value) -> String {
    let mut claims = json!({ "name": "custom", "sub": key,
        "nats": { "type": "account", "version": 2, "limits": { "conn": -1 } } });
    for (k, v) in extra.as_object().expect("object") {
        claims[k] = v.clone();
    }
    encode::sign(claims, &fixtures::signing_key())
}

/// Puts a verified token straight into the store, bypassing POST validation (how an expired
/// token can be stored without waiting for it to expire).
async fn inject(server: &TestServer, key: &str, token: &str) {
    let decoded = jwt::decode(token).expect("token decodes");
    server
        .running()
        .state()
        .store
        .put(Kind::Account, key, &decoded)
        .await
        .expect("store put");
}

/// Splits a `?decode=true` body into header JSON, claims JSON and signature.
fn split_decoded(body: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = body.split("\r\n").collect();
    assert_eq!(
        parts.len(),
        3,
        "decode output is header\\r\\nclaims\\r\\nsig: {body:?}"
    );
    let header = serde_json::from_str(parts[0]).expect("header part is JSON");
    let claims = serde_json::from_str(parts[1]).expect("claims part is JSON");
    (header, claims, parts[2].trim_end().to_string())
}

/// Both probe paths answer 200 with an empty body and no-cache headers (nats-server's start).
#[tokio::test]
async fn resolver_probe_answers_200_empty_and_uncacheable() {
    let server = TestServer::primary().await;
    for path in ["/jwt/v1/accounts", "/jwt/v1/accounts/"] {
        let r = send(http().get(server.at(path))).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, "", "{path}");
        assert_eq!(
            r.header("cache-control"),
            "no-cache, no-store, must-revalidate",
            "{path}"
        );
        assert_eq!(r.header("pragma"), "no-cache", "{path}");
        assert_eq!(r.header("expires"), "0", "{path}");
    }
}

/// GET serves the raw JWT as application/jwt with an ETag of its bytes and the default max-age
/// 60.
#[tokio::test]
async fn get_serves_the_raw_jwt_with_etag_and_cache_control() {
    let server = TestServer::primary().await;
    let (key, token) = store_new(&server, "plain").await;
    let r = send(http().get(account_url(&server, &key))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, token);
    assert_eq!(r.header("content-type"), "application/jwt");
    let etag = etag_of(&token);
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "a quoted ETag: {etag}"
    );
    assert_eq!(r.header("etag"), etag);
    let cc = r.header("cache-control");
    assert_eq!(
        max_age(cc),
        60,
        "non-expiring token gets the default max-age: {cc}"
    );
    assert!(cc.contains("stale-while-revalidate=3600"), "{cc}");
    assert!(cc.contains("stale-if-error=3600"), "{cc}");

    // HEAD answers like GET, without the body.
    let r = send(http().head(account_url(&server, &key))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "");
    assert_eq!(r.header("etag"), etag);
}

/// `If-None-Match` with the ETag (alone, in a list, weak, or `*`) answers 304; another tag 200.
#[tokio::test]
async fn if_none_match_answers_304() {
    let server = TestServer::primary().await;
    let (key, token) = store_new(&server, "etag").await;
    let etag = etag_of(&token);
    let url = account_url(&server, &key);
    for inm in [
        etag.clone(),
        format!("\"nope\", {etag}"),
        format!("{etag},\"other\""),
        format!("W/{etag}"),
        "*".to_string(),
    ] {
        let r = send(http().get(&url).header("if-none-match", &inm)).await;
        assert_eq!(r.status, 304, "If-None-Match: {inm}");
        assert_eq!(r.body, "", "a 304 has no body");
        assert_eq!(r.header("etag"), etag);
    }
    for inm in ["\"nope\"", "\"nope\", \"also-not\""] {
        let r = send(http().get(&url).header("if-none-match", inm)).await;
        assert_eq!(r.status, 200, "If-None-Match: {inm}");
        assert_eq!(r.body, token);
    }
    // After an update the old ETag no longer matches.
    let newer = fixtures::account_jwt_at(&key, "etag-2", jwt::now_unix() + 1);
    assert_eq!(post(&url, newer.clone()).await.0, 200);
    let r = send(http().get(&url).header("if-none-match", &etag)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, newer);
}

/// Cache-Control is never negative: non-expiring tokens get the configured max-age, expiring
/// ones the time left (capped), expired ones no caching at all.
#[tokio::test]
async fn cache_control_is_never_negative_and_follows_the_configured_max_age() {
    let server = TestServer::start_with(|s| {
        s.http.maxage = nats_account_server::config::Dur(std::time::Duration::from_secs(123))
    })
    .await;
    let (key, _) = store_new(&server, "forever").await;
    let r = send(http().get(account_url(&server, &key))).await;
    assert_eq!(max_age(r.header("cache-control")), 123);

    // Expires in 30 s: max-age is the time left, not the cap.
    let soon = KeyPair::new_account().public_key();
    let exp = jwt::now_unix() + 30;
    assert_eq!(
        post(
            &account_url(&server, &soon),
            account_with(&soon, json!({ "exp": exp }))
        )
        .await
        .0,
        200
    );
    let r = send(http().get(account_url(&server, &soon))).await;
    let age = max_age(r.header("cache-control"));
    assert!(
        age > 0 && age <= exp - jwt::now_unix() + 1,
        "max-age {age} for exp in 30s"
    );

    // Far future: capped at the configured max-age.
    let ten = fixtures::vector("post/ok_expires_in_ten_years.jwt");
    let ten_key = jwt::parse_unverified(&ten).unwrap().sub;
    assert_eq!(post(&account_url(&server, &ten_key), ten).await.0, 200);
    let r = send(http().get(account_url(&server, &ten_key))).await;
    assert_eq!(max_age(r.header("cache-control")), 123);

    // Already expired (stored directly; POST refuses it): never a negative max-age.
    let gone = KeyPair::new_account().public_key();
    inject(
        &server,
        &gone,
        &account_with(&gone, json!({ "exp": jwt::now_unix() - 100 })),
    )
    .await;
    let r = send(http().get(account_url(&server, &gone))).await;
    assert_eq!(r.status, 200);
    let cc = r.header("cache-control");
    assert!(
        !cc.is_empty(),
        "an expired token still says how to cache it"
    );
    if cc.contains("max-age") {
        assert_eq!(max_age(cc), 0, "an expired token must not be cached: {cc}");
    } else {
        assert!(cc.contains("no-cache"), "{cc}");
    }
}

/// `?text=true` serves the JWT as text/plain (flag compared case-insensitively), also when
/// `decode=true` is given too; a repeated parameter counts once, with its first value.
#[tokio::test]
async fn text_option_serves_text_plain() {
    let server = TestServer::primary().await;
    let (key, token) = store_new(&server, "text").await;
    for q in ["text=true", "text=TRUE", "text=True"] {
        let r = send(http().get(format!("{}?{q}", account_url(&server, &key)))).await;
        assert_eq!(r.status, 200, "{q}");
        assert!(r.header("content-type").starts_with("text/plain"), "{q}");
        assert_eq!(r.body, token, "{q}");
    }
    let r = send(http().get(format!("{}?text=false", account_url(&server, &key)))).await;
    assert_eq!(r.header("content-type"), "application/jwt");
    // Asked for both, the text wins, as in the Go server (which answered `text` first).
    for q in ["text=true&decode=true", "decode=true&text=true"] {
        let r = send(http().get(format!("{}?{q}", account_url(&server, &key)))).await;
        assert_eq!((r.status, r.body.as_str()), (200, token.as_str()), "{q}");
    }
    // A parameter given twice counts with its first value (Go's `Query().Get`); others are
    // ignored.
    for (q, content_type) in [
        ("text=true&text=false", "text/plain; charset=utf-8"),
        ("text=false&text=true", "application/jwt"),
        ("notify=true&notify=true&other=1&other=2", "application/jwt"),
    ] {
        let r = send(http().get(format!("{}?{q}", account_url(&server, &key)))).await;
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, content_type),
            "{q}"
        );
        assert_eq!(r.body, token, "{q}");
    }
}

/// `?decode=true` is header JSON, `\r\n`, claims JSON (with `iat_rfc3339`), `\r\n`, signature.
#[tokio::test]
async fn decode_option_renders_header_claims_and_signature() {
    let server = TestServer::primary().await;
    let (key, token) = store_new(&server, "decoded").await;
    let r = send(http().get(format!("{}?decode=true", account_url(&server, &key)))).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/plain"));
    let (header, claims, sig) = split_decoded(&r.body);
    assert_eq!(header["alg"], "ed25519-nkey");
    assert_eq!(claims["sub"], key.as_str());
    assert_eq!(claims["name"], "decoded");
    let iat = claims["iat"].as_i64().expect("iat stays a number");
    assert_eq!(
        claims["iat_rfc3339"].as_str().expect("iat is annotated"),
        jwt::unix_to_rfc3339(iat)
    );
    assert!(claims["iat_rfc3339"].as_str().unwrap().ends_with('Z'));
    assert_eq!(sig, token.rsplit('.').next().unwrap());
}

/// `?decode=true` expands an activation token found in an import, without HTML escaping.
#[tokio::test]
async fn decode_expands_a_nested_activation_token() {
    let server = TestServer::primary().await;
    let a = fixtures::account_a();
    let b = fixtures::account_b();
    let subject = "svc.aak2sy.>";
    let activation = encode::activation(&a, &b.public_key(), subject, "service");
    let importer = fixtures::account_jwt(
        &b.public_key(),
        "importer",
        json!({ "imports": [{ "name": "svc", "subject": subject, "account": a.public_key(),
                              "token": activation, "type": "service" }] }),
    );
    let url = account_url(&server, &b.public_key());
    assert_eq!(post(&url, importer).await.0, 200);

    let r = send(http().get(format!("{url}?decode=true"))).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("svc.aak2sy.>"),
        "`>` must not be escaped: {}",
        r.body
    );
    let (_, claims, _) = split_decoded(&r.body);
    let import = &claims["nats"]["imports"][0];
    assert_eq!(import["token"], activation.as_str(), "the raw token stays");
    let nested = &import["token_claims"];
    assert_eq!(nested["iss"], a.public_key().as_str(), "{import}");
    assert_eq!(nested["sub"], b.public_key().as_str());
    assert_eq!(nested["nats"]["subject"], subject);
    assert_eq!(nested["nats"]["type"], "activation");
    assert!(
        nested["iat_rfc3339"].is_string(),
        "nested dates annotated: {nested}"
    );
}

/// `?check=true` serves a valid token and answers 404 for an expired one.
#[tokio::test]
async fn check_option_is_404_only_for_expired_tokens() {
    let server = TestServer::primary().await;
    let (key, token) = store_new(&server, "valid").await;
    assert_eq!(
        get(&format!("{}?check=true", account_url(&server, &key))).await,
        (200, token)
    );
    let gone = KeyPair::new_account().public_key();
    let expired = account_with(&gone, json!({ "exp": jwt::now_unix() - 5 }));
    inject(&server, &gone, &expired).await;
    let url = account_url(&server, &gone);
    let (status, body) = get(&format!("{url}?check=true")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("expired"), "{body}");
    assert_eq!(get(&url).await, (200, expired));
}

/// `?notify=true` without NATS configured still serves the JWT with 200.
#[tokio::test]
async fn notify_option_without_nats_still_answers_200() {
    let server = TestServer::primary().await;
    let (key, token) = store_new(&server, "notify").await;
    let r = send(http().get(format!("{}?notify=true", account_url(&server, &key)))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, token);
    assert_eq!(r.header("content-type"), "application/jwt");
}

/// An unknown (well-formed) account key is 404, with every option (the Go server said 500).
#[tokio::test]
async fn unknown_account_is_404() {
    let server = TestServer::primary().await;
    store_new(&server, "someone-else").await;
    let key = KeyPair::new_account().public_key();
    for q in [
        "",
        "?text=true",
        "?decode=true",
        "?check=true",
        "?notify=true",
    ] {
        let (status, body) = get(&format!("{}{q}", account_url(&server, &key))).await;
        assert_eq!(status, 404, "{q}: {body}");
        assert!(body.contains(&key), "{q}: the body names the key: {body}");
    }
}

/// Malformed keys (case, prefix, checksum, length, traversal, unicode) are 400 for GET and POST,
/// and nothing is stored.
#[tokio::test]
async fn malformed_keys_are_400() {
    let server = TestServer::primary().await;
    let (kp, token) = fixtures::new_account("victim");
    let good = kp.public_key();
    let flip = |s: &str, i: usize| {
        let mut c: Vec<char> = s.chars().collect();
        c[i] = if c[i] == 'A' { 'B' } else { 'A' };
        c.into_iter().collect::<String>()
    };
    let bad_keys = [
        ("lowercase", good.to_lowercase()),
        ("user key", KeyPair::new_user().public_key()),
        ("operator key", fixtures::operator_key().public_key()),
        ("server key", KeyPair::new_server().public_key()),
        ("bad checksum (last char)", flip(&good, 55)),
        ("bad checksum (key body)", flip(&good, 20)),
        ("57 chars", format!("{good}A")),
        ("55 chars", good[..55].to_string()),
        ("account seed", kp.seed().unwrap()),
        ("path traversal", "..%2F..%2Fetc%2Fpasswd".to_string()),
        ("encoded dots", "%2e%2e%2f%2e%2e%2fetc%2fpasswd".to_string()),
        ("with .jwt", format!("{good}.jwt")),
        ("unicode", format!("Ä{}", &good[1..])),
        ("cyrillic A", format!("А{}", &good[1..])),
        ("emoji", "🙂".repeat(14)),
        ("space", format!("{} ", &good[..55])),
        ("NUL", format!("{}%00", &good[..55])),
    ];
    for (what, key) in &bad_keys {
        let url = account_url(&server, key);
        let (status, body) = get(&url).await;
        assert_eq!(status, 400, "GET {what} ({key}): {body}");
        let (status, body) = post(&url, token.clone()).await;
        assert_eq!(status, 400, "POST {what} ({key}): {body}");
    }
    assert_eq!(server.running().state().store.head(), 0, "nothing stored");
    // The well-formed key itself is fine.
    assert_eq!(post(&account_url(&server, &good), token).await.0, 200);
}

/// A POST whose JWT subject differs from the path key is 400 and stores nothing.
#[tokio::test]
async fn post_with_path_subject_mismatch_is_400() {
    let server = TestServer::primary().await;
    let (_, token) = fixtures::new_account("mine");
    let other = KeyPair::new_account().public_key();
    let (status, body) = post(&account_url(&server, &other), token).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(&other), "{body}");
    assert_eq!(get(&account_url(&server, &other)).await.0, 404);
    assert_eq!(server.running().state().store.head(), 0);
}

/// A JWT failing several checks is refused for the first in the contract's order: subject is
/// an account key, subject equals the path key, issuer is trusted, then claims and expiry.
#[tokio::test]
async fn validation_reports_the_first_failure_in_contract_order() {
    let server = TestServer::primary().await;
    let (kp, _) = fixtures::new_account("multi");
    let key = kp.public_key();
    let elsewhere = KeyPair::new_account().public_key();
    let rogue = KeyPair::new_operator();
    let expired = account_with(&key, json!({ "exp": jwt::now_unix() - 60 }));
    let rogue_expired = encode::sign(
        json!({ "name": "r", "sub": key, "exp": jwt::now_unix() - 60,
                "nats": { "type": "account", "version": 2 } }),
        &rogue,
    );
    let self_signed = encode::account(&kp, &key, "self", json!({}));
    let user = KeyPair::new_user().public_key();
    let user_sub_rogue = encode::account(&rogue, &user, "u", json!({}));
    let cases = [
        (
            "expired, for another path",
            &elsewhere,
            &expired,
            "does not match",
        ),
        ("untrusted and expired", &key, &rogue_expired, "untrusted"),
        (
            "untrusted and expired, another path",
            &elsewhere,
            &rogue_expired,
            "does not match",
        ),
        (
            "self-signed, for another path",
            &elsewhere,
            &self_signed,
            "does not match",
        ),
        ("self-signed", &key, &self_signed, "untrusted"),
        (
            "user subject, untrusted",
            &key,
            &user_sub_rogue,
            "not an account",
        ),
        ("expired", &key, &expired, "expired"),
    ];
    for (what, path, token, reason) in cases {
        let (status, body) = post(&account_url(&server, path), token.clone()).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(
            body.contains(reason),
            "{what}: expected {reason:?} in {body:?}"
        );
    }
    assert_eq!(server.running().state().store.head(), 0);

    // The stored version is compared before the claims' validity and expiry: an expired token
    // older than the stored one is stale (409), one issued later is refused for its expiry.
    let now = jwt::now_unix();
    let stored = fixtures::account_jwt_at(&key, "stored", now - 30);
    post_accepted(&server.url, &key, &stored).await;
    for (iat, status, reason) in [(now - 90, 409, "newer"), (now - 10, 400, "expired")] {
        let token = account_with(&key, json!({ "iat": iat, "exp": now - 5 }));
        let (got, body) = post(&account_url(&server, &key), token).await;
        assert_eq!(got, status, "issued at {iat}: {body}");
        assert!(body.contains(reason), "issued at {iat}: {body}");
    }
    assert_eq!(server.running().state().store.head(), 1);
}

/// A raw HTTP/1.1 POST with a chunked body of `total` bytes; returns the status code.
async fn chunked_post(server: &TestServer, path: &str, total: usize) -> u16 {
    let stream = tokio::net::TcpStream::connect(server.running().addr())
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/jwt\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 1024];
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            wr.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            wr.write_all(&chunk[..n]).await?;
            wr.write_all(b"\r\n").await?;
            sent += n;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        std::io::Result::Ok(wr)
    });
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = rd.read(&mut tmp).await.expect("read response");
        assert!(n > 0, "connection closed without a response");
        buf.extend_from_slice(&tmp[..n]);
    }
    drop(writer);
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"))
}

/// Bodies over the limit are 413: 1 MiB by default, `http.maxbodybytes` when configured, also
/// when the body is chunked (no Content-Length).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413() {
    let server = TestServer::primary().await;
    let key = KeyPair::new_account().public_key();
    let url = account_url(&server, &key);
    let (status, body) = post(&url, "x".repeat(1024 * 1024 + 1)).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("1048576"),
        "the message names the limit: {body}"
    );
    // Exactly at the limit it is read, and refused for what it is.
    assert_eq!(post(&url, "x".repeat(1024 * 1024)).await.0, 400);

    // A valid JWT of ~4 KiB: fine by default, too large for a 2 KiB limit.
    let big = account_with(&key, json!({ "description": "d".repeat(4000) }));
    assert!(big.len() > 4096);
    let small = TestServer::start_with(|s| s.http.maxbodybytes = 2048).await;
    let small_url = account_url(&small, &key);
    let (status, body) = post(&small_url, big.clone()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("2048"), "{body}");
    assert_eq!(
        chunked_post(&small, &format!("/jwt/v1/accounts/{key}"), 64 * 1024).await,
        413
    );
    assert_eq!(get(&small_url).await.0, 404, "nothing stored");
    let (_, normal) = fixtures::new_account("small-enough");
    let normal_key = jwt::parse_unverified(&normal).unwrap().sub;
    assert!(normal.len() < 2048);
    assert_eq!(post(&account_url(&small, &normal_key), normal).await.0, 200);

    assert_eq!(post(&url, big.clone()).await.0, 200);
    assert_eq!(get(&url).await, (200, big));
}

/// Empty, whitespace-only and non-UTF-8 bodies are 400 with a reason.
#[tokio::test]
async fn empty_and_non_utf8_bodies_are_400() {
    let server = TestServer::primary().await;
    let key = KeyPair::new_account().public_key();
    let url = account_url(&server, &key);
    for (what, body) in [
        ("empty", Vec::new()),
        ("whitespace", b" \n\t\r\n".to_vec()),
        ("invalid UTF-8", vec![0xff, 0xfe, 0x80, 0x81]),
        (
            "UTF-8 then a bad byte",
            b"eyJ0eXAiOiJKV1Qi\xc3\x28".to_vec(),
        ),
    ] {
        let r = send(http().post(&url).body(body)).await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert!(!r.body.trim().is_empty(), "{what}: a reason is given");
    }
    assert_eq!(server.running().state().store.head(), 0);
}

/// The body is the raw JWT whatever the Content-Type: curl's form encoding, nsc's
/// application/jwt, text/plain, or none.
#[tokio::test]
async fn post_accepts_form_encoded_and_application_jwt() {
    let server = TestServer::primary().await;
    for ct in [
        Some("application/x-www-form-urlencoded"),
        Some("application/jwt"),
        Some("text/plain"),
        None,
    ] {
        let (kp, token) = fixtures::new_account("content-type");
        let url = account_url(&server, &kp.public_key());
        let mut req = http().post(&url).body(format!("{token}\n"));
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = send(req).await;
        assert_eq!(r.status, 200, "Content-Type {ct:?}: {}", r.body);
        assert_eq!(get(&url).await, (200, token), "Content-Type {ct:?}");
    }
}

/// POST to a read-only memory store is 405 with a message that says why.
#[tokio::test]
async fn post_to_read_only_store_is_405() {
    let server = TestServer::start_with(|s| {
        s.store.memory = true;
        s.store.readonly = true;
        s.store.data = None;
    })
    .await;
    let (kp, token) = fixtures::new_account("ro");
    let url = account_url(&server, &kp.public_key());
    let r = send(http().post(&url).body(token)).await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert!(r.body.contains("read-only"), "clear message: {}", r.body);
    assert!(
        r.header("allow").contains("GET"),
        "Allow header: {:?}",
        r.headers
    );
    assert_eq!(get(&url).await.0, 404);
    assert_eq!(get(&server.at("/jwt/v1/accounts/")).await.0, 200);
}

/// POST without an operator configured is 405 and the message names the operator.
#[tokio::test]
async fn post_without_operator_is_405_naming_the_operator() {
    let server = TestServer::start_with(|s| s.operatorjwtpath = None).await;
    let (kp, token) = fixtures::new_account("no-op");
    let url = account_url(&server, &kp.public_key());
    let (status, body) = post(&url, token).await;
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("operator"), "{body}");
    assert_eq!(get(&url).await.0, 404);
    assert_eq!(server.running().state().store.head(), 0);
}

/// Methods a route does not take are 405 (httprouter's behaviour in the Go server).
#[tokio::test]
async fn wrong_methods_are_405() {
    let server = TestServer::primary().await;
    let (key, token) = store_new(&server, "methods").await;
    let url = account_url(&server, &key);
    for (method, url) in [
        (reqwest::Method::PUT, url.clone()),
        (reqwest::Method::DELETE, url.clone()),
        (reqwest::Method::PATCH, url.clone()),
        (reqwest::Method::DELETE, server.at("/jwt/v1/accounts/")),
        (reqwest::Method::POST, server.at("/jwt/v1/pack")),
        (reqwest::Method::POST, server.at("/jwt/v1/operator")),
    ] {
        let r = send(http().request(method.clone(), &url).body(token.clone())).await;
        assert_eq!(r.status, 405, "{method} {url}");
    }
    assert_eq!(get(&url).await, (200, token), "DELETE did not remove it");
}

/// `GET /jwt/v1/operator` serves the operator JWT raw, as text and decoded.
#[tokio::test]
async fn operator_route_serves_raw_text_and_decoded() {
    let server = TestServer::primary().await;
    let operator = fixtures::vector("operator.jwt");
    let r = send(http().get(server.at("/jwt/v1/operator"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, operator);
    assert_eq!(r.header("content-type"), "application/jwt");

    let r = send(http().get(server.at("/jwt/v1/operator?text=true"))).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/plain"));
    assert_eq!(r.body, operator);

    let r = send(http().get(server.at("/jwt/v1/operator?decode=true"))).await;
    assert_eq!(r.status, 200);
    let (header, claims, sig) = split_decoded(&r.body);
    assert_eq!(header["typ"], "JWT");
    assert_eq!(claims["name"], "TESTOP");
    assert_eq!(
        claims["sub"],
        fixtures::operator_key().public_key().as_str()
    );
    assert!(claims["iat_rfc3339"].is_string());
    assert_eq!(sig, operator.rsplit('.').next().unwrap());
}

/// Without a configured operator, `GET /jwt/v1/operator` is 404.
#[tokio::test]
async fn operator_route_is_404_without_an_operator() {
    let server = TestServer::start_with(|s| s.operatorjwtpath = None).await;
    let (status, body) = get(&server.at("/jwt/v1/operator")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("operator"), "{body}");
}

/// The pack is `key|jwt` lines joined by `\n` without a trailing newline; `max` limits it and
/// a bad `max` is 400.
#[tokio::test]
async fn pack_lists_key_jwt_lines() {
    let server = TestServer::primary().await;
    assert_eq!(get(&server.at("/jwt/v1/pack")).await, (200, String::new()));
    let mut stored = Vec::new();
    for i in 0..3 {
        stored.push(store_new(&server, &format!("pack-{i}")).await);
    }
    let expected: Vec<String> = stored.iter().map(|(k, j)| format!("{k}|{j}")).collect();

    let r = send(http().get(server.at("/jwt/v1/pack"))).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/plain"));
    assert!(!r.body.ends_with('\n'), "no trailing newline");
    assert_eq!(r.body, expected.join("\n"));

    for (q, n) in [
        ("max=2", 2),
        ("max=1", 1),
        ("max=0", 0),
        ("max=-1", 3),
        ("max=99", 3),
    ] {
        let (status, body) = get(&server.at(&format!("/jwt/v1/pack?{q}"))).await;
        assert_eq!(status, 200, "{q}");
        assert_eq!(body, expected[..n].join("\n"), "{q}");
    }
    for q in ["max=bad", "max=1.5", "max=%20"] {
        let (status, body) = get(&server.at(&format!("/jwt/v1/pack?{q}"))).await;
        assert_eq!(status, 400, "{q}: {body}");
    }
}

/// `/jwt/v1/help` is plain text describing the API; `/healthz` and `/readyz` are 200 on a primary.
#[tokio::test]
async fn help_health_and_readiness() {
    let server = TestServer::primary().await;
    let r = send(http().get(server.at("/jwt/v1/help"))).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/plain"));
    for route in [
        "/jwt/v1/accounts/<pubkey>",
        "/jwt/v1/operator",
        "/jwt/v1/pack",
        "If-None-Match",
    ] {
        assert!(r.body.contains(route), "help mentions {route}");
    }

    assert_eq!(get(&server.at("/healthz")).await.0, 200);
    let (status, body) = get(&server.at("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).expect("readyz detail is JSON");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["role"], "primary");
}

/// Sum of `nas_http_requests_total` for one route.
fn requests_for(metrics: &str, route: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("nas_http_requests_total{"))
        .filter(|l| l.contains(&format!("route=\"{route}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// `/metrics` is Prometheus text with `nas_http_requests_total`, which counts requests.
#[tokio::test]
async fn metrics_count_requests() {
    let server = TestServer::primary().await;
    let (key, _) = store_new(&server, "metered").await;
    let r = send(http().get(server.at("/metrics"))).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/plain"));
    assert!(
        r.body.contains("# TYPE nas_http_requests_total counter"),
        "{}",
        r.body
    );
    let route = "/jwt/v1/accounts/{key}";
    let before = requests_for(&r.body, route);
    assert!(before >= 1.0, "the POST was counted: {}", r.body);

    get(&account_url(&server, &key)).await;
    get(&account_url(&server, &key)).await;
    get(&account_url(&server, &KeyPair::new_account().public_key())).await;
    let after = get(&server.at("/metrics")).await.1;
    assert_eq!(requests_for(&after, route), before + 3.0, "{after}");
    assert!(after.contains("status=\"404\""), "{after}");
    assert!(!after.contains(&key), "metrics never carry account keys");
}

/// The status page at `/` shows the role and the number of accounts. It is static HTML (no
/// script, no external asset), so what a browser renders is this text: these assertions are
/// what a headless browser would check (`tests/manual/status-screenshot.sh` shows it to a
/// person).
#[tokio::test]
async fn status_page_shows_role_and_account_count() {
    let server = TestServer::primary().await;
    store_new(&server, "one").await;
    store_new(&server, "two").await;
    let r = send(http().get(server.at("/"))).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(
        r.body.contains("<td id=\"role\">primary</td>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<td id=\"accounts\">2</td>"), "{}", r.body);
    assert!(
        !r.body.contains("http://") && !r.body.contains("https://"),
        "no external assets"
    );
    assert!(
        !r.body.to_ascii_lowercase().contains("<script"),
        "no script: the served HTML is the rendered page"
    );
}

/// With `systemaccountjwtpath`, the system account is served although the store is empty.
#[tokio::test]
async fn system_account_falls_back_to_the_configured_file() {
    let server = TestServer::start_with(|s| {
        s.systemaccountjwtpath = Some(vectors().join("sys.jwt"));
    })
    .await;
    let sys = fixtures::vector("sys.jwt");
    let key = fixtures::vector("system_account.pub");
    let r = send(http().get(account_url(&server, &key))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, sys);
    assert_eq!(r.header("content-type"), "application/jwt");
    assert!(r.header("etag").starts_with('"'));
    assert_eq!(
        server.running().state().store.head(),
        0,
        "the store stays empty"
    );
    assert_eq!(get(&server.at("/jwt/v1/pack")).await, (200, String::new()));
    // Another account is still unknown.
    assert_eq!(
        get(&account_url(&server, &KeyPair::new_account().public_key()))
            .await
            .0,
        404
    );
}

/// `claims` with `iss` set to `signer` unless it names an issuer already.
fn issued(claims: &Value, signer: &KeyPair) -> Value {
    let mut c = claims.clone();
    if let Some(obj) = c.as_object_mut() {
        obj.entry("iss").or_insert(json!(signer.public_key()));
    }
    c
}

/// [`fixtures::raw_token`] with `iss` defaulting to the signer.
fn issued_token(header: &Value, claims: &Value, signer: &KeyPair) -> String {
    fixtures::raw_token(header, &issued(claims, signer), signer)
}

/// Like [`issued_token`], signed over the payload segment alone (how v1 tokens were signed).
fn payload_signed(header: &Value, claims: &Value, signer: &KeyPair) -> String {
    fixtures::raw_token_v1(header, &issued(claims, signer), signer)
}

/// About 40 kinds of hostile or wrong input each get their 4xx, and afterwards the store's
/// observable state (pack, change feed, head) is exactly what it was; GET still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_batch_leaves_the_store_unchanged() {
    let server = TestServer::primary().await;
    let (a_key, a_jwt) = store_new(&server, "target").await;
    let (b_key, _) = store_new(&server, "bystander").await;
    let (a, b) = (a_key.as_str(), b_key.as_str());
    // A key whose account exists nowhere.
    let a_kp = KeyPair::new_account();
    let a_self = a_kp.public_key();
    let before = feed::observable(&server).await;
    assert_eq!(before.head, 2);

    let signer = fixtures::signing_key();
    let now = jwt::now_unix();
    let v2 = json!({ "typ": "JWT", "alg": "ed25519-nkey" });
    let claims_for = |sub: &str| {
        json!({ "jti": "X", "iat": now, "name": "bad", "sub": sub,
                "nats": { "type": "account", "version": 2 } })
    };
    let valid = account_with(a, json!({ "name": "valid-but-replaced" }));
    let segs: Vec<&str> = valid.split('.').collect();
    let other = account_with(a, json!({ "name": "another" }));
    let other_segs: Vec<&str> = other.split('.').collect();
    let with = |patch: Value| {
        let mut c = claims_for(a);
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        issued_token(&v2, &c, &signer)
    };
    let user = KeyPair::new_user();
    let user_jwt = encode::user(&a_kp, &user.public_key(), "u");
    let creds = encode::creds(&user_jwt, &user.seed().unwrap());

    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("garbage", a, b"hello world".to_vec(), 400),
        ("dots only", a, b"..".to_vec(), 400),
        ("a.b.c", a, b"a.b.c".to_vec(), 400),
        (
            "truncated JWT",
            a,
            valid.as_bytes()[..valid.len() / 2].to_vec(),
            400,
        ),
        (
            "no signature segment",
            a,
            format!("{}.{}", segs[0], segs[1]).into_bytes(),
            400,
        ),
        (
            "empty signature",
            a,
            format!("{}.{}.", segs[0], segs[1]).into_bytes(),
            400,
        ),
        (
            "four segments",
            a,
            format!("{valid}.AAAA").into_bytes(),
            400,
        ),
        ("not base64", a, b"!!!.@@@.###".to_vec(), 400),
        (
            "standard base64",
            a,
            b"eyJ+/a==.eyJ+/b==.c+/d".to_vec(),
            400,
        ),
        (
            "header not JSON",
            a,
            format!(
                "{}.{}.{}",
                BASE64URL_NOPAD.encode(b"hello"),
                segs[1],
                segs[2]
            )
            .into_bytes(),
            400,
        ),
        (
            "payload not JSON",
            a,
            {
                let h = segs[0];
                let p = BASE64URL_NOPAD.encode(b"not json");
                let s = signer.sign(format!("{h}.{p}").as_bytes()).unwrap();
                format!("{h}.{p}.{}", BASE64URL_NOPAD.encode(&s)).into_bytes()
            },
            400,
        ),
        (
            "tampered payload",
            a,
            format!("{}.{}.{}", segs[0], other_segs[1], segs[2]).into_bytes(),
            400,
        ),
        (
            "signature of another token",
            a,
            format!("{}.{}.{}", segs[0], segs[1], other_segs[2]).into_bytes(),
            400,
        ),
        (
            "alg none",
            a,
            format!(
                "{}.{}.",
                BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"none"}"#),
                segs[1]
            )
            .into_bytes(),
            400,
        ),
        (
            "alg HS256",
            a,
            issued_token(&json!({"typ":"JWT","alg":"HS256"}), &claims_for(a), &signer).into_bytes(),
            400,
        ),
        (
            "v2 claims signed over the payload alone",
            a,
            payload_signed(
                &json!({"typ":"JWT","alg":"ed25519"}),
                &claims_for(a),
                &signer,
            )
            .into_bytes(),
            400,
        ),
        (
            "typ JWS",
            a,
            issued_token(
                &json!({"typ":"JWS","alg":"ed25519-nkey"}),
                &claims_for(a),
                &signer,
            )
            .into_bytes(),
            400,
        ),
        (
            "no typ",
            a,
            issued_token(&json!({"alg":"ed25519-nkey"}), &claims_for(a), &signer).into_bytes(),
            400,
        ),
        (
            "claims version 3",
            a,
            with(json!({ "nats": { "type": "account", "version": 3 } })).into_bytes(),
            400,
        ),
        (
            "iat as string",
            a,
            with(json!({ "iat": "yesterday" })).into_bytes(),
            400,
        ),
        (
            "exp as string",
            a,
            with(json!({ "exp": "never" })).into_bytes(),
            400,
        ),
        (
            "exp as float",
            a,
            with(json!({ "exp": 1.5e10 })).into_bytes(),
            400,
        ),
        (
            "sub as number",
            a,
            with(json!({ "sub": 42 })).into_bytes(),
            400,
        ),
        (
            "nats as string",
            a,
            with(json!({ "nats": "account" })).into_bytes(),
            400,
        ),
        (
            "nats missing",
            a,
            with(json!({ "nats": null })).into_bytes(),
            400,
        ),
        (
            "claims an array",
            a,
            issued_token(&v2, &json!([1, 2]), &signer).into_bytes(),
            400,
        ),
        (
            "iss not a key",
            a,
            {
                let mut c = claims_for(a);
                c["iss"] = json!("OOPS");
                let h = BASE64URL_NOPAD.encode(v2.to_string().as_bytes());
                let p = BASE64URL_NOPAD.encode(c.to_string().as_bytes());
                let s = signer.sign(format!("{h}.{p}").as_bytes()).unwrap();
                format!("{h}.{p}.{}", BASE64URL_NOPAD.encode(&s)).into_bytes()
            },
            400,
        ),
        ("user JWT", a, user_jwt.clone().into_bytes(), 400),
        (
            "operator JWT",
            a,
            fixtures::vector("operator.jwt").into_bytes(),
            400,
        ),
        (
            "activation token",
            a,
            fixtures::vector("activations/token.jwt").into_bytes(),
            400,
        ),
        (
            "untrusted operator",
            a,
            encode::account(&KeyPair::new_operator(), a, "rogue", json!({})).into_bytes(),
            400,
        ),
        (
            "self-signed account",
            &a_self,
            encode::account(&a_kp, &a_self, "self", json!({})).into_bytes(),
            400,
        ),
        (
            "signed by a user key",
            a,
            encode::account(&user, a, "u", json!({})).into_bytes(),
            400,
        ),
        (
            // Issued after the stored version: the comparison with it comes first (DESIGN
            // §4), and these are refused for their time window, not as conflicts.
            "expired",
            a,
            account_with(a, json!({ "iat": now + 1, "exp": now - 10 })).into_bytes(),
            400,
        ),
        (
            "future nbf",
            a,
            account_with(a, json!({ "iat": now + 1, "nbf": now + 3600 })).into_bytes(),
            400,
        ),
        (
            "sub is a user key",
            a,
            account_with(&user.public_key(), json!({})).into_bytes(),
            400,
        ),
        (
            "other account's JWT",
            a,
            account_with(b, json!({})).into_bytes(),
            400,
        ),
        (
            "user key as account signing key",
            a,
            fixtures::account_jwt(a, "sk", json!({ "signing_keys": [user.public_key()] }))
                .into_bytes(),
            400,
        ),
        ("invalid UTF-8", a, vec![0xc3, 0x28, 0xa0, 0xa1, 0xff], 400),
        ("empty", a, Vec::new(), 400),
        ("whitespace", a, b"  \r\n\t ".to_vec(), 400),
        ("NUL bytes", a, vec![0; 64], 400),
        (
            "JSON wrapper",
            a,
            json!({ "jwt": valid }).to_string().into_bytes(),
            400,
        ),
        ("form field", a, format!("jwt={valid}").into_bytes(), 400),
        ("creds file", a, creds.into_bytes(), 400),
        (
            "huge claims",
            a,
            account_with(a, json!({ "description": "d".repeat(1536 * 1024) })).into_bytes(),
            413,
        ),
        ("bad path key", "not-a-key", valid.clone().into_bytes(), 400),
    ];
    assert!(cases.len() >= 30);

    let mut failures = Vec::new();
    for (what, key, body, expected) in &cases {
        let r = send(
            http()
                .post(account_url(&server, key))
                .header("content-type", "application/jwt")
                .body(body.clone()),
        )
        .await;
        if r.status != *expected {
            failures.push(format!(
                "{what}: expected {expected}, got {} {:?}",
                r.status, r.body
            ));
        } else if r.body.trim().is_empty() {
            failures.push(format!("{what}: {} without a reason", r.status));
        }
    }
    assert_no_failures(&failures);

    assert_eq!(
        feed::observable(&server).await,
        before,
        "bad input changed the store"
    );
    assert_eq!(get(&account_url(&server, a)).await, (200, a_jwt));
    assert_eq!(get(&server.at("/healthz")).await.0, 200);

    // Control: the builder's token without a flaw is accepted, so each case failed for its flaw.
    // A second after the stored version, which may have been issued in this same second.
    let control = with(json!({ "name": "control", "iat": now + 1 }));
    assert_eq!(
        post(&account_url(&server, a), control.clone()).await,
        (200, String::new())
    );
    assert_eq!(get(&account_url(&server, a)).await, (200, control));
    let metrics = get(&server.at("/metrics")).await.1;
    assert!(
        metrics.contains("nas_validation_rejections_total{reason=\"invalid_jwt\"}"),
        "rejections are counted: {metrics}"
    );
}

/// The content rules nats-server applies when it loads an account (the JWT library's blocking
/// validation): an update whose import carries a broken activation token, or whose export
/// subject is invalid, is refused with the reason, and the stored version stays; an account
/// with a well-formed import and its activation token is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_content_is_validated_like_nats_server_does() {
    let server = TestServer::primary().await;
    let (a, a_jwt) = fixtures::new_account("importer");
    let a_pub = a.public_key();
    let url = server.at(&format!("/jwt/v1/accounts/{a_pub}"));
    assert_eq!(post(&url, a_jwt.clone()).await.0, 200);
    let exporter = KeyPair::new_account();
    let good_token = encode::activation(&exporter, &a_pub, "orders.>", "stream");
    let with = |nats: Value| fixtures::account_jwt(&a_pub, "importer", nats);
    let unlimited = json!({ "imports": -1, "exports": -1, "wildcards": true, "conn": -1 });

    let cases = [
        (
            json!({ "limits": unlimited, "imports": [{ "type": "stream",
                "account": exporter.public_key(), "subject": "orders.>", "token": "not-a-jwt" }] }),
            "activation token",
        ),
        (
            json!({ "limits": unlimited, "exports": [{ "type": "stream", "subject": "bad subject" }] }),
            "subject",
        ),
        (
            // More imports than the operator's limit allows.
            json!({ "limits": { "imports": 0 }, "imports": [{ "type": "stream", "account": exporter.public_key(),
                "subject": "orders.>", "token": good_token }] }),
            "more imports than allowed",
        ),
    ];
    for (nats, reason) in cases {
        let (status, body) = post(&url, with(nats.clone())).await;
        assert_eq!(status, 400, "{nats}: {body}");
        assert!(body.contains(reason), "{nats}: {body}");
        assert_eq!(
            get(&url).await,
            (200, a_jwt.clone()),
            "the stored version stays"
        );
    }

    let good = with(json!({ "limits": unlimited, "imports": [{ "type": "stream",
        "account": exporter.public_key(), "subject": "orders.>", "token": good_token }] }));
    let (status, body) = post(&url, good.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&url).await, (200, good));
}

/// DESIGN §4, "Versions of one key", against our binary: a token is its bytes. Two versions of
/// account A issued in the same second under the same name share a `jti` (the Go library
/// derives it from the standard claims only); the second POST used to answer 200 and be
/// dropped, with the first version's ETag, so a conditional GET answered 304 for a changed
/// token, and re-posting an older same-second version could roll a newer one back. Activations
/// follow the same rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_second_versions_are_told_apart_by_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_primary(dir.path(), "primary", free_port()).await;
    let a = fixtures::vector("account_a.pub");
    let url = format!("{}/jwt/v1/accounts/{a}", server.url);
    let t = jwt::now_unix() - 60;
    // What the Go library makes: same iat, same name, same jti; other content.
    let version = |iat: i64, conn: i64| {
        encode::sign(
            json!({ "jti": "SAME-SECOND-JTI", "iat": iat, "name": "A", "sub": a,
                "nats": { "type": "account", "version": 2, "limits": { "conn": conn } } }),
            &fixtures::signing_key(),
        )
    };
    let (v1, v2, v3) = (version(t, 1), version(t, 2), version(t + 1, 3));
    assert_eq!(
        jwt::parse_unverified(&v1).unwrap().jti,
        jwt::parse_unverified(&v2).unwrap().jti
    );
    let head = || async {
        send(http().get(format!("{}/jwt/v1/changes?since=0", server.url)))
            .await
            .header("x-head-seq")
            .to_string()
    };

    assert_eq!(post(&url, v1.clone()).await.0, 200);
    let first = send(http().get(&url)).await;
    assert_eq!((first.status, first.body.as_str()), (200, v1.as_str()));
    let e1 = first.header("etag").to_string();
    assert_eq!(e1, etag_of(&v1));

    // Same second, other bytes: refused, with what to do about it; the first stays.
    let (status, body) = post(&url, v2.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("same iat") && body.contains("issue it again a second later"),
        "{body}"
    );
    assert_eq!(body.trim_end().lines().count(), 1, "one line: {body:?}");
    assert_eq!(get(&url).await, (200, v1.clone()));
    // The same bytes again: 200, nothing changes.
    assert_eq!(post(&url, v1.clone()).await.0, 200);
    assert_eq!(head().await, "1");

    // A second later: replaces, under another ETag.
    assert_eq!(post(&url, v3.clone()).await.0, 200);
    assert_eq!(head().await, "2");
    let r = send(http().get(&url).header("if-none-match", &e1)).await;
    assert_eq!(
        r.status, 200,
        "the first version's ETag must not match the new token"
    );
    assert_eq!(r.body, v3);
    let e3 = r.header("etag").to_string();
    assert_ne!(e3, e1);
    assert_eq!(e3, etag_of(&v3));
    let r = send(http().get(&url).header("if-none-match", &e3)).await;
    assert_eq!(r.status, 304);

    // Re-posting either older version never rolls the newer one back.
    for old in [&v1, &v2] {
        let (status, body) = post(&url, old.clone()).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(get(&url).await, (200, v3.clone()));
    }
    assert_eq!(head().await, "2");

    // Activations: the same rules under one hash.
    let b = fixtures::account_b().public_key();
    let activation = |iat: i64, name: &str| {
        encode::sign(
            json!({ "jti": "SAME-SECOND-ACT", "iat": iat, "name": name, "sub": b,
                "nats": { "subject": "orders.>", "kind": "stream", "type": "activation",
                          "version": 2 } }),
            &fixtures::account_a(),
        )
    };
    let (t1, t2, t3) = (
        activation(t, "first"),
        activation(t, "second"),
        activation(t + 1, "third"),
    );
    let acts = format!("{}/jwt/v1/activations", server.url);
    let post_act = |token: String| post(&acts, token);
    let (status, hash) = post_act(t1.clone()).await;
    assert_eq!(status, 200, "{hash}");
    let act_url = format!("{}/jwt/v1/activations/{}", server.url, hash.trim());
    let (status, body) = post_act(t2.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("a second later"), "{body}");
    assert_eq!(get(&act_url).await, (200, t1.clone()));
    assert_eq!(post_act(t3.clone()).await.0, 200);
    let r = send(http().get(&act_url).header("if-none-match", etag_of(&t1))).await;
    assert_eq!((r.status, r.body.as_str()), (200, t3.as_str()));
    assert_eq!(post_act(t1).await.0, 409);
    assert_eq!(get(&act_url).await, (200, t3));
}
