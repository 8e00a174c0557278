//! The resolver's hot path, `GET`/`HEAD /jwt/v1/accounts/<key>`, skips actix's router, its
//! extractors and the CORS headers middleware (`account_get_fast` in src/http/mod.rs), so it
//! copies by hand what they do. Here every request is sent twice to one server: as is, which
//! the fast path answers, and with the key's first character percent-encoded, which the fast
//! path hands to the router (it takes no path holding `%`) and the router decodes back to the
//! same key. Both must get the same status, headers (`Date` aside) and body.

use crate::common::{etag_of, http, post_new_account, send, Reply, TestServer};
use nkeys::KeyPair;
use reqwest::Method;

/// What is asked and the status expected: (what, method, key, query, headers, status).
type Case<'a> = (
    &'a str,
    Method,
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    u16,
);

/// `key` with its first character percent-encoded (`ABC` → `%41BC`): the same key to the
/// router, a path the fast path does not take.
fn routed(key: &str) -> String {
    let mut chars = key.chars();
    let first = chars.next().expect("a non-empty key");
    assert!(first.is_ascii_alphanumeric(), "{key}");
    format!("%{:02X}{}", first as u32, chars.as_str())
}

/// Status, every header but `Date` (sorted, names lower-case), and body.
fn comparable(r: &Reply) -> (u16, Vec<(String, String)>, String) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_string(), value)
        })
        .collect();
    headers.sort();
    (r.status, headers, r.body.clone())
}

/// The same requests through the fast path and through the router get the same answers: 200
/// (raw, `?text`, `?decode`, `?check`), 304 for a matching `If-None-Match` and 200 for another,
/// 404 for an unknown account, 400 for a bad key, HEAD of each, each with and without an
/// `Origin` header, and the CORS preflight (which no fast path answers; its answer must not
/// depend on the path's spelling either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_answers_exactly_as_the_router() {
    let server = TestServer::primary().await;
    let (key, jwt) = post_new_account(&server.url, "fast").await;
    let unknown = KeyPair::new_account().public_key();
    let etag = etag_of(&jwt);
    let (key, unknown, etag) = (key.as_str(), unknown.as_str(), etag.as_str());
    let origin = ("origin", "http://example.test");

    let cases: Vec<Case> = vec![
        ("GET", Method::GET, key, "", vec![], 200),
        ("GET ?text", Method::GET, key, "?text=true", vec![], 200),
        ("GET ?decode", Method::GET, key, "?decode=true", vec![], 200),
        ("GET ?check", Method::GET, key, "?check=true", vec![], 200),
        (
            "GET, matching If-None-Match",
            Method::GET,
            key,
            "",
            vec![("if-none-match", etag)],
            304,
        ),
        (
            "GET, other If-None-Match",
            Method::GET,
            key,
            "",
            vec![("if-none-match", "\"other\"")],
            200,
        ),
        ("GET unknown", Method::GET, unknown, "", vec![], 404),
        ("GET bad key", Method::GET, "NOTAKEY", "", vec![], 400),
        ("HEAD", Method::HEAD, key, "", vec![], 200),
        (
            "HEAD, matching If-None-Match",
            Method::HEAD,
            key,
            "",
            vec![("if-none-match", etag)],
            304,
        ),
        ("HEAD unknown", Method::HEAD, unknown, "", vec![], 404),
        ("HEAD bad key", Method::HEAD, "NOTAKEY", "", vec![], 400),
        ("GET with Origin", Method::GET, key, "", vec![origin], 200),
        (
            "GET with Origin, matching If-None-Match",
            Method::GET,
            key,
            "",
            vec![origin, ("if-none-match", etag)],
            304,
        ),
        (
            "GET unknown with Origin",
            Method::GET,
            unknown,
            "",
            vec![origin],
            404,
        ),
        (
            "GET bad key with Origin",
            Method::GET,
            "NOTAKEY",
            "",
            vec![origin],
            400,
        ),
        ("HEAD with Origin", Method::HEAD, key, "", vec![origin], 200),
        (
            "OPTIONS preflight",
            Method::OPTIONS,
            key,
            "",
            vec![origin, ("access-control-request-method", "GET")],
            204,
        ),
    ];

    let mut failures = Vec::new();
    for (what, method, key, query, headers, status) in cases {
        let ask = |path_key: String| {
            let mut req = http().request(
                method.clone(),
                server.at(&format!("/jwt/v1/accounts/{path_key}{query}")),
            );
            for (name, value) in &headers {
                req = req.header(*name, *value);
            }
            send(req)
        };
        let fast = comparable(&ask(key.to_string()).await);
        let router = comparable(&ask(routed(key)).await);
        if fast.0 != status {
            failures.push(format!("{what}: expected {status}, got {fast:?}"));
        }
        if fast != router {
            failures.push(format!(
                "{what}:\n  fast path: {fast:?}\n  router:    {router:?}"
            ));
        }
    }
    crate::common::assert_no_failures(&failures);
}
