//! Hostile HTTP against a live server: raw requests client libraries would never send (wrong
//! methods, path traversal, 10 KB paths, oversized and too many headers, invalid UTF-8, framing
//! attacks, garbage), slow-loris clients, and bodies near the 1 MiB limit or with JSON type
//! confusion inside the claims. Each gets its 4xx, the server stays up, and the store is
//! unchanged. (tests/accounts.rs has the body-level corpus: bad tokens, malformed keys, 413s,
//! empty and non-UTF-8 bodies, the common wrong methods; tests/hostile_load.rs the load caps.)
//!
//! The only sleeps are the pauses of the slow-loris writers, which are what that test is about.

use crate::common::feed;
use crate::common::fixtures::{self, raw_token, token_of_text};
use crate::common::{
    account, assert_no_failures, get, post, post_new_account, raw_http, TestServer,
};
use nats_account_server::config::Dur;
use nats_account_server::jwt::{self, encode};
use nkeys::KeyPair;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let before = feed::observable(&server).await;
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
        let (status, text) = raw_http(addr, request, Duration::from_secs(10)).await;
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
        let (status, text) = raw_http(addr, request.into_bytes(), Duration::from_secs(10)).await;
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
    let (status, text) = raw_http(addr, r, Duration::from_secs(10)).await;
    if status != Some(200) || !text.ends_with(&token) {
        failures.push(format!("non-UTF-8 header values: {status:?} {text:.200}"));
    }

    assert_no_failures(&failures);
    assert_eq!(
        feed::observable(&server).await,
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
    let before = feed::observable(&server).await;
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
    let after = feed::read(&server.url).await.changes;
    assert_eq!(
        after.len(),
        before.feed.changes.len() + normal_writes,
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
    let before = feed::observable(&server).await;

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
        feed::observable(&server).await,
        before,
        "bad claims changed the store"
    );
    assert_eq!(get(&url).await, (200, huge));
}
