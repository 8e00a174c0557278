//! The official test vectors (`tests/data/vectors`, made by the nats-io Go libraries): our JWT
//! code must decode, verify and hash exactly as the reference does, and a primary must give
//! every `post/*.jwt` the verdict the vectors' README table lists.

use crate::common::fixtures::{self, vectors};
use crate::common::{etag_of, eventually, get, http, max_age, post, TestServer};
use nats_account_server::jwt::{self, encode, JwtError};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// What `POST /jwt/v1/accounts/<sub>` must answer for one `post/` vector on an empty primary.
struct Verdict {
    file: &'static str,
    status: u16,
    /// For 400s, a word the one-line reason must contain (case-insensitive).
    reason: &'static str,
}

/// The README's table. Every file in `post/` must be listed here, so a new vector cannot go
/// untested.
const VERDICTS: &[Verdict] = &[
    Verdict {
        file: "ok_operator_signed.jwt",
        status: 200,
        reason: "",
    },
    Verdict {
        file: "ok_signing_key_signed.jwt",
        status: 200,
        reason: "",
    },
    Verdict {
        file: "ok_v1_format.jwt",
        status: 200,
        reason: "",
    },
    Verdict {
        file: "ok_expires_in_ten_years.jwt",
        status: 200,
        reason: "",
    },
    Verdict {
        file: "bad_untrusted_issuer.jwt",
        status: 400,
        reason: "untrusted",
    },
    Verdict {
        file: "bad_self_signed.jwt",
        status: 400,
        reason: "issuer",
    },
    Verdict {
        file: "bad_signature.jwt",
        status: 400,
        reason: "signature",
    },
    Verdict {
        file: "bad_expired.jwt",
        status: 400,
        reason: "expired",
    },
    // Alone on an empty store, both ordering vectors are plain valid accounts.
    Verdict {
        file: "seq_1_older.jwt",
        status: 200,
        reason: "",
    },
    Verdict {
        file: "seq_2_newer.jwt",
        status: 200,
        reason: "",
    },
];

/// Files in `dir` with extension `ext`, sorted, as (file name, path).
fn files(dir: &Path, ext: &str) -> Vec<(String, std::path::PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    out
}

/// The `sub` of a token, read without verifying it (bad vectors must still be posted to their
/// own account's path).
fn subject(token: &str) -> String {
    jwt::parse_unverified(token)
        .expect("vector has parseable claims")
        .sub
}

/// Every `post/*.jwt` gets the README's verdict: ok → 200 and GET serves exactly that token;
/// bad → 400 with a one-line reason and nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_vectors_get_the_readme_verdicts() {
    let posted = files(&vectors().join("post"), "jwt");
    assert!(!posted.is_empty(), "no vectors in post/");
    for (name, path) in &posted {
        let verdict = VERDICTS
            .iter()
            .find(|v| v.file == name)
            .unwrap_or_else(|| panic!("post/{name} is not in the README table of this test"));
        // The file as written, trailing newline included (curl --data-binary @file sends it).
        let raw = std::fs::read_to_string(path).unwrap();
        let token = raw.trim();
        let key = subject(token);
        let server = TestServer::primary().await;
        let url = server.at(&format!("/jwt/v1/accounts/{key}"));

        let (status, body) = post(&url, raw.clone()).await;
        assert_eq!(status, verdict.status, "POST post/{name}: {body}");
        if status == 200 {
            let resp = http().get(&url).send().await.unwrap();
            assert_eq!(resp.status(), 200, "GET after POST post/{name}");
            assert_eq!(
                resp.headers()["content-type"],
                "application/jwt",
                "post/{name}"
            );
            assert_eq!(resp.headers()["etag"], etag_of(token).as_str());
            assert_eq!(
                resp.text().await.unwrap(),
                token,
                "GET must return post/{name} exactly"
            );
            assert_eq!(server.running().state().store.head(), 1);
        } else {
            assert_eq!(
                body.trim_end().lines().count(),
                1,
                "post/{name}: the reason is one line: {body:?}"
            );
            assert!(
                body.to_lowercase().contains(verdict.reason),
                "post/{name}: reason {body:?} should mention {:?}",
                verdict.reason
            );
            let (status, _) = get(&url).await;
            assert_eq!(
                status, 404,
                "post/{name} was rejected but something is stored"
            );
            assert_eq!(
                server.running().state().store.head(),
                0,
                "post/{name}: a rejected POST moved the store head"
            );
        }
    }
}

/// Posting `seq_2_newer` then `seq_1_older`: the older one gets 409 and the newer stays.
#[tokio::test]
async fn older_iat_does_not_replace_newer() {
    let server = TestServer::primary().await;
    let newer = fixtures::vector("post/seq_2_newer.jwt");
    let older = fixtures::vector("post/seq_1_older.jwt");
    let key = subject(&newer);
    assert_eq!(key, subject(&older), "both vectors are for account A");
    let url = server.at(&format!("/jwt/v1/accounts/{key}"));

    assert_eq!(post(&url, newer.clone()).await.0, 200);
    let (status, body) = post(&url, older.clone()).await;
    assert_eq!(status, 409, "older JWT over a newer one: {body}");
    assert!(body.contains("newer"), "{body}");
    assert_eq!(get(&url).await, (200, newer.clone()));

    // The other order is an ordinary upgrade.
    let server = TestServer::primary().await;
    let url = server.at(&format!("/jwt/v1/accounts/{key}"));
    assert_eq!(post(&url, older).await.0, 200);
    assert_eq!(post(&url, newer.clone()).await.0, 200);
    assert_eq!(get(&url).await, (200, newer));
}

/// The README's rule for the `seq_*` pair, at equal `iat` (DESIGN §4): a different JWT with the
/// stored `iat` is refused with 409 and the stored one stays (this used to replace it: equal
/// `iat` with another `jti` won, which let a re-post of an older same-second version roll the
/// newer one back); the same bytes again are a no-op 200; strictly older still loses.
#[tokio::test]
async fn equal_iat_with_other_bytes_is_refused_and_same_bytes_is_a_no_op() {
    let server = TestServer::primary().await;
    let key = fixtures::vector("account_a.pub");
    let iat = jwt::now_unix() - 60;
    let first = fixtures::account_jwt_at(&key, "first", iat);
    let second = fixtures::account_jwt_at(&key, "second", iat);
    assert_ne!(first, second);
    let url = server.at(&format!("/jwt/v1/accounts/{key}"));
    let head = || server.running().state().store.head();

    assert_eq!(post(&url, first.clone()).await.0, 200);
    assert_eq!(head(), 1);
    let (status, body) = post(&url, second.clone()).await;
    assert_eq!(status, 409, "equal iat, other bytes: {body}");
    assert!(body.contains("a second later"), "{body}");
    assert_eq!(get(&url).await, (200, first.clone()), "the first stays");
    assert_eq!(head(), 1);

    // Re-posting what is stored changes nothing, not even the sequence.
    assert_eq!(post(&url, first.clone()).await.0, 200);
    assert_eq!(head(), 1, "the same bytes must be a no-op");
    assert_eq!(get(&url).await, (200, first));

    // Strictly older still loses against it.
    let older = fixtures::account_jwt_at(&key, "older", iat - 1);
    assert_eq!(post(&url, older).await.0, 409);
    assert_eq!(head(), 1);
}

/// The token file a `decoded/<name>.json` describes.
fn token_for(name: &str) -> String {
    let v = vectors();
    for candidate in [
        v.join("post").join(format!("{name}.jwt")),
        v.join("activations").join(format!("{name}.jwt")),
        v.join(format!("{name}.jwt")),
    ] {
        if candidate.is_file() {
            return std::fs::read_to_string(candidate)
                .unwrap()
                .trim()
                .to_string();
        }
    }
    panic!("no token for decoded/{name}.json");
}

/// `jwt::decode` agrees with the official decoder on every vector: it refuses what the Go
/// library refuses, and parses jti, iat, iss, sub, name and exp to the same values.
#[test]
fn decode_matches_the_official_decoder() {
    let decoded = files(&vectors().join("decoded"), "json");
    assert!(decoded.len() >= 10, "expected the decoded/ vectors");
    let mut checked_ok = 0;
    let mut checked_err = 0;
    for (file, path) in decoded {
        let name = file.trim_end_matches(".json");
        let official: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
            .unwrap_or_else(|e| panic!("decoded/{file}: {e}"));
        let token = token_for(name);
        let ours = jwt::decode(&token);
        if official.get("error").is_some() {
            let err = ours.err().unwrap_or_else(|| {
                panic!("{name}: the official decoder refuses it but jwt::decode accepted it")
            });
            if name == "bad_signature" {
                assert!(matches!(err, JwtError::BadSignature(_)), "{name}: {err}");
            }
            checked_err += 1;
            continue;
        }
        let ours = ours.unwrap_or_else(|e| panic!("{name}: official decode works, ours: {e}"));
        let c = &ours.claims;
        let ctx = format!("decoded/{file}");
        assert_eq!(c.jti, official["jti"].as_str().unwrap(), "{ctx}: jti");
        assert_eq!(c.iat, official["iat"].as_i64().unwrap(), "{ctx}: iat");
        assert_eq!(c.iss, official["iss"].as_str().unwrap(), "{ctx}: iss");
        assert_eq!(c.sub, official["sub"].as_str().unwrap(), "{ctx}: sub");
        assert_eq!(c.name.as_deref(), official["name"].as_str(), "{ctx}: name");
        assert_eq!(c.expires(), official["exp"].as_i64(), "{ctx}: exp");
        assert_eq!(
            Some(c.claim_type().to_string().as_str()),
            official["nats"]["type"].as_str(),
            "{ctx}: type"
        );
        checked_ok += 1;
    }
    assert!(
        checked_ok >= 10 && checked_err >= 1,
        "{checked_ok} ok, {checked_err} refused"
    );
}

/// `jwt::activation_hash` equals the official `HashID()` for every `activations/*.jwt`,
/// including a subject that starts with a wildcard.
#[test]
fn activation_hashes_match_the_official_hash_id() {
    let tokens = files(&vectors().join("activations"), "jwt");
    assert!(tokens.len() >= 2);
    for (file, path) in tokens {
        let token = std::fs::read_to_string(&path).unwrap();
        let expected = std::fs::read_to_string(path.with_extension("hash"))
            .unwrap_or_else(|e| panic!("{file}: no .hash beside it: {e}"));
        let jwt = jwt::decode(&token).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            jwt::activation_hash(&jwt.claims).unwrap(),
            expected.trim(),
            "activations/{file}"
        );
        assert!(jwt::is_activation_hash(expected.trim()));
    }
}

/// `ok_expires_in_ten_years`: Cache-Control max-age is positive and at most the time to `exp`.
#[tokio::test]
async fn expiring_token_cache_control_is_bounded_by_exp() {
    let server = TestServer::primary().await;
    let token = fixtures::vector("post/ok_expires_in_ten_years.jwt");
    let claims = jwt::parse_unverified(&token).unwrap();
    let exp = claims.expires().expect("the vector expires");
    let url = server.at(&format!("/jwt/v1/accounts/{}", claims.sub));
    assert_eq!(post(&url, token).await.0, 200);

    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cc = resp.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_string();
    let age = max_age(&cc);
    assert!(age > 0, "max-age must be positive: {cc}");
    assert!(age <= exp - jwt::now_unix(), "max-age beyond exp: {cc}");

    // The decoded view annotates the expiry date next to the number.
    let (status, view) = get(&format!("{url}?decode=true")).await;
    assert_eq!(status, 200);
    let claims: Value = serde_json::from_str(view.split("\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(claims["exp"], exp);
    assert_eq!(claims["exp_rfc3339"], jwt::unix_to_rfc3339(exp).as_str());
    assert!(claims["exp_rfc3339"].as_str().unwrap().starts_with("2036-"));
}

/// `?check=true` answers 404 once the stored JWT has expired, while a plain GET still serves it;
/// before expiry both serve it.
#[tokio::test]
async fn check_true_is_404_once_the_stored_jwt_expires() {
    let server = TestServer::primary().await;
    let (kp, _) = fixtures::new_account("short-lived");
    let key = kp.public_key();
    let exp = jwt::now_unix() + 2;
    let token = encode::sign(
        json!({ "name": "short-lived", "sub": key, "exp": exp,
                "nats": { "type": "account", "version": 2, "limits": { "conn": -1 } } }),
        &fixtures::signing_key(),
    );
    let url = server.at(&format!("/jwt/v1/accounts/{key}"));
    let checked = format!("{url}?check=true");
    assert_eq!(post(&url, token.clone()).await.0, 200);
    assert_eq!(get(&checked).await, (200, token.clone()), "not expired yet");

    eventually(
        Duration::from_secs(10),
        "check=true answers 404",
        || async { get(&checked).await.0 == 404 },
    )
    .await;
    assert!(jwt::now_unix() > exp);
    assert_eq!(get(&url).await, (200, token), "a plain GET still serves it");
    // An expired token must not be cached either.
    let resp = http().get(&url).send().await.unwrap();
    let cc = resp.headers()["cache-control"].to_str().unwrap();
    assert!(!cc.contains("max-age=-"), "negative max-age: {cc}");

    // And an expired token cannot be posted again (bad_expired's verdict, freshly minted).
    let again = encode::sign(
        json!({ "name": "again", "sub": key, "exp": jwt::now_unix() - 10,
                "nats": { "type": "account", "version": 2 } }),
        &fixtures::signing_key(),
    );
    let (status, body) = post(&url, again).await;
    assert_eq!(status, 400, "{body}");
}

/// A token from arbitrary header and claims JSON, issued and signed by `signer`, over
/// `header.payload` (v2) or over the payload segment alone (v1).
fn token_with(header: Value, claims: Value, signer: &nkeys::KeyPair, v1_signing: bool) -> String {
    let mut claims = claims;
    claims["iss"] = json!(signer.public_key());
    if v1_signing {
        fixtures::raw_token_v1(&header, &claims, signer)
    } else {
        fixtures::raw_token(&header, &claims, signer)
    }
}

/// `jwt::decode` applies the Go library's header and version rules (v2 `Decode`): `typ` must
/// be JWT in any case, `alg` either nkey algorithm in any case, the claims' version (not the
/// header) decides what was signed, and versions above 2 are refused.
#[test]
fn decode_follows_the_go_header_and_version_rules() {
    let signer = fixtures::signing_key();
    let sub = fixtures::vector("account_a.pub");
    let v2 = json!({ "name": "x", "sub": sub, "iat": 1,
                     "nats": { "type": "account", "version": 2 } });
    // v1 claims: the type at the top level (the Go library's marker of a v1 token).
    let v1 = json!({ "name": "x", "sub": sub, "iat": 1, "type": "account", "nats": {} });
    let unversioned = json!({ "name": "x", "sub": sub, "iat": 1, "nats": { "type": "account" } });
    let v3 = json!({ "name": "x", "sub": sub, "iat": 1,
                     "nats": { "type": "account", "version": 3 } });
    let hdr = |typ: Option<&str>, alg: &str| match typ {
        Some(t) => json!({ "typ": t, "alg": alg }),
        None => json!({ "alg": alg }),
    };
    let accepted = [
        (
            "v2 baseline",
            token_with(hdr(Some("JWT"), "ed25519-nkey"), v2.clone(), &signer, false),
        ),
        (
            "typ in lower case",
            token_with(hdr(Some("jwt"), "ed25519-nkey"), v2.clone(), &signer, false),
        ),
        (
            "alg in upper case",
            token_with(hdr(Some("JWT"), "ED25519-NKEY"), v2.clone(), &signer, false),
        ),
        (
            "v1 claims, v1 header",
            token_with(hdr(Some("jwt"), "ed25519"), v1.clone(), &signer, true),
        ),
        (
            "v2 claims under a v1 header",
            token_with(hdr(Some("JWT"), "ed25519"), v2.clone(), &signer, false),
        ),
        (
            "unversioned claims sign the payload",
            token_with(hdr(Some("JWT"), "ed25519-nkey"), unversioned, &signer, true),
        ),
    ];
    for (what, token) in &accepted {
        let jwt =
            jwt::decode(token).unwrap_or_else(|e| panic!("{what}: the Go library accepts it: {e}"));
        assert_eq!(jwt.claims.sub, sub, "{what}");
    }
    let refused = [
        (
            "typ JWS",
            token_with(hdr(Some("JWS"), "ed25519-nkey"), v2.clone(), &signer, false),
        ),
        (
            "typ missing",
            token_with(hdr(None, "ed25519-nkey"), v2.clone(), &signer, false),
        ),
        (
            "alg with a suffix",
            token_with(
                hdr(Some("JWT"), "ed25519-nkey-x"),
                v2.clone(),
                &signer,
                false,
            ),
        ),
        (
            "v2 claims signed as v1",
            token_with(hdr(Some("JWT"), "ed25519"), v2.clone(), &signer, true),
        ),
        (
            "v1 claims signed as v2",
            token_with(hdr(Some("JWT"), "ed25519-nkey"), v1, &signer, false),
        ),
        (
            "version 3",
            token_with(hdr(Some("JWT"), "ed25519-nkey"), v3, &signer, false),
        ),
    ];
    for (what, token) in &refused {
        assert!(
            jwt::decode(token).is_err(),
            "{what}: the Go library refuses it"
        );
    }
}
