//! Unit tests of the account content rules: each Go decoding quirk and each validation rule,
//! against tokens built here and the vectors made by the official Go library
//! (`tests/data/vectors`).

use super::go_fmt::{go_quote, q};
use super::go_json::key_matches;
use super::validate::{go_atoi, has_wildcards, is_contained_in, to_subject, MAX_INFO_LENGTH};
use super::*;
use crate::jwt::decode;
use crate::jwt::{decode_account, encode, now_unix};
use data_encoding::BASE64URL_NOPAD;
use nkeys::KeyPair;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The issues of an account JWT for `account`, signed by a fresh operator, whose `nats`
/// section is `nats` merged over `encode::account`'s defaults (everything unlimited).
fn issues_for(account: &str, nats: Value) -> Vec<String> {
    let token = encode::account(&KeyPair::new_operator(), account, "test", nats);
    let jwt = decode(&token).expect("the test token decodes");
    validate_account(&payload_json(&jwt.raw).expect("payload"))
}

fn issues(nats: Value) -> Vec<String> {
    issues_for(&KeyPair::new_account().public_key(), nats)
}

/// The issues of a raw payload: for shapes `encode::account` does not produce.
fn payload_issues(nats: Value) -> Vec<String> {
    validate_account(&json!({
        "iss": KeyPair::new_operator().public_key(),
        "sub": KeyPair::new_account().public_key(),
        "nats": nats,
    }))
}

#[track_caller]
fn assert_issue(issues: &[String], expected: &str) {
    assert!(
        issues.iter().any(|i| i == expected),
        "expected {expected:?} among {issues:#?}"
    );
}

#[track_caller]
fn assert_issue_starting(issues: &[String], prefix: &str) {
    assert!(
        issues.iter().any(|i| i.starts_with(prefix)),
        "expected an issue starting {prefix:?} among {issues:#?}"
    );
}

#[track_caller]
fn assert_clean(issues: &[String]) {
    assert!(issues.is_empty(), "unexpected issues: {issues:#?}");
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors")
}

fn vector(name: &str) -> String {
    let path = vectors().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// A v1 token (`alg: ed25519`, signature over the payload segment alone).
fn v1_token(mut claims: Value, signer: &KeyPair) -> String {
    claims["iss"] = json!(signer.public_key());
    let h = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519"}"#);
    let p = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let sig = signer.sign(p.as_bytes()).expect("seed");
    format!("{h}.{p}.{}", BASE64URL_NOPAD.encode(&sig))
}

/// An activation from `issuer` for `importer` with arbitrary `nats` fields.
fn activation_with(issuer: &KeyPair, importer: &str, nats: Value) -> String {
    let mut section = json!({ "type": "activation", "version": 2 });
    for (k, v) in nats.as_object().expect("object") {
        section[k] = v.clone();
    }
    encode::sign(json!({ "sub": importer, "nats": section }), issuer)
}

#[test]
fn a_rich_valid_account_has_no_issues() {
    let (a, b) = (KeyPair::new_account(), KeyPair::new_account());
    let (a_pub, b_pub) = (a.public_key(), b.public_key());
    let a_signing = KeyPair::new_account();
    let scoped = KeyPair::new_account();
    let stream_token = encode::activation(&a, &b_pub, "feed.*", "stream");
    // Issued by one of A's signing keys on A's behalf, and long expired: expiry of an
    // import's token is not the account's problem.
    let service_token = encode::sign(
        json!({ "sub": b_pub, "exp": now_unix() - 3600, "nats": {
                "subject": "svc.>", "kind": "service", "issuer_account": a_pub,
                "type": "activation", "version": 2 } }),
        &a_signing,
    );
    let nats = json!({
        "imports": [
            { "name": "feed", "subject": "feed.one", "account": a_pub, "token": stream_token,
              "local_subject": "mine.one", "type": "stream" },
            { "name": "svc", "subject": "svc.>", "account": a_pub, "token": service_token,
              "local_subject": "remote.svc.>", "type": "service", "share": true },
            { "name": "time", "subject": "time.*.now", "account": a_pub,
              "local_subject": "clock.$1", "type": "service" },
            { "name": "old style", "subject": "legacy", "account": a_pub, "to": "old.legacy",
              "type": "service" },
        ],
        "exports": [
            { "name": "events", "subject": "events.>", "type": "stream", "revocations": { b_pub.clone(): 1 } },
            { "name": "metrics", "subject": "metrics", "type": "stream", "advertise": true },
            { "name": "api", "subject": "api.*.get", "type": "service", "token_req": true,
              "response_type": "Stream", "response_threshold": 1_000_000_000u64,
              "service_latency": { "sampling": "headers", "results": "latency.api" },
              "account_token_position": 2, "description": "the API",
              "info_url": "https://example.com/docs?x=1#top" },
            { "name": "health", "subject": "api.health", "type": "service",
              "response_type": "Chunked", "service_latency": { "sampling": 50, "results": "latency.health" } },
            { "subject": "events.>", "type": "service", "response_type": "Singleton" },
        ],
        "limits": { "subs": 100, "data": -1, "payload": 1024, "imports": 4, "exports": 5,
                    "wildcards": true, "conn": 10, "leaf": 0, "disallow_bearer": true,
                    "mem_storage": 1024, "tiered_limits": {
                        "R1": { "mem_storage": 1024, "disk_storage": 4096, "streams": 3, "consumer": -1 },
                        "R3": { "disk_storage": -1, "max_bytes_required": true } } },
        "signing_keys": [
            a_signing.public_key(),
            { "kind": "user_scope", "key": scoped.public_key(), "role": "service",
              "template": { "pub": { "allow": ["a.>"] }, "sub": { "allow": ["b.> workers"] },
                            "subs": -1, "data": -1, "payload": -1, "src": "10.0.0.0/8,192.168.0.1/32",
                            "times": [{ "start": "08:00:00", "end": "17:00:00" }],
                            "times_location": "UTC", "bearer_token": true,
                            "allowed_connection_types": ["STANDARD", "WEBSOCKET"] } },
        ],
        "revocations": { "*": 1_600_000_000 },
        "default_permissions": { "pub": { "allow": ["x.>"], "deny": ["y"] },
                                 "sub": { "allow": ["z.* workers"] },
                                 "resp": { "max": 1, "ttl": 1_000_000 } },
        "mappings": {
            "orders": [{ "subject": "orders.v1", "weight": 50 },
                       { "subject": "orders.v2", "weight": 50, "cluster": "east" }],
            "ping": [{ "subject": "pong" }],
        },
        "description": "a rich account",
        "info_url": "https://[::1]:8443/about",
        "tags": ["prod", "eu"],
    });
    assert_clean(&issues_for(&b_pub, nats));
}

/// Activation tokens made by the Go library, imported as nsc would import them.
#[test]
fn imports_with_the_official_activation_vectors_are_valid() {
    let a = vector("account_a.pub");
    let b = vector("account_b.pub");
    let nats = json!({ "imports": [
            { "subject": "svc.aak2sy.>", "account": a, "token": vector("activations/token.jwt"),
              "type": "service" },
            { "subject": "*.x", "account": a, "token": vector("activations/wildcard_first.jwt"),
              "type": "service" },
        ] });
    assert_clean(&issues_for(&b, nats.clone()));
    // The same imports in another account: the tokens were issued to B.
    let elsewhere = issues(nats);
    assert_issue(
        &elsewhere,
        r#"activation token doesn't match account it is being included in, "svc.aak2sy.>""#,
    );
}

/// Every official vector the README says a POST accepts passes the rules, and so do the
/// refused ones: their defects (time, trust, signer) are other checks' business.
#[test]
fn the_official_vectors_pass_the_rules() {
    let mut checked = 0;
    for sub in ["accounts", "post"] {
        for entry in std::fs::read_dir(vectors().join(sub)).expect("vector dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.ends_with(".jwt") || name == "bad_signature.jwt" {
                continue;
            }
            let token = std::fs::read_to_string(&path).expect("vector");
            let jwt = decode(&token).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(check_account_rules(&jwt), Ok(()), "{name}");
            if sub == "accounts" || name.starts_with("ok_") || name.starts_with("seq_") {
                decode_account(&token, now_unix()).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            checked += 1;
        }
    }
    let sys = decode(&vector("sys.jwt")).expect("sys.jwt");
    assert_eq!(check_account_rules(&sys), Ok(()));
    assert!(checked >= 12, "only {checked} vectors");
}

#[test]
fn import_rules() {
    let a = KeyPair::new_account().public_key();
    let one = |import: Value| issues(json!({ "imports": [import] }));

    let i = one(json!({ "subject": "foo", "type": "stream" }));
    assert_eq!(i, ["account to import from is not specified"]);
    let i = one(json!({ "subject": "foo", "account": a }));
    assert_eq!(i, [r#"invalid import type: "unknown""#]);
    let i = one(
        json!({ "subject": "foo", "account": a, "type": "stream", "to": "bar",
                            "local_subject": "baz" }),
    );
    assert_eq!(i, ["Local Subject replaces To"]);
    let i = one(json!({ "subject": "foo", "account": a, "type": "stream", "share": true }));
    assert_eq!(
        i,
        [r#"sharing information (for latency tracking) is only valid for services: "foo""#]
    );
    assert_clean(&one(
        json!({ "subject": "foo", "account": a, "type": "service", "share": true }),
    ));
    let i = one(json!({ "subject": "foo bar", "account": a, "type": "stream" }));
    assert_eq!(i, [r#"subject "foo bar" cannot have spaces"#]);
    let i = one(json!({ "subject": "", "account": a, "type": "stream" }));
    assert_eq!(i, ["subject cannot be empty"]);

    // local_subject renaming rules.
    let i = one(json!({ "subject": "foo.>", "account": a, "type": "stream",
                            "local_subject": "bar" }));
    assert_eq!(
        i,
        ["both, renaming subject and subject, need to end or not end in >"]
    );
    let i = one(json!({ "subject": "foo.*", "account": a, "type": "stream",
                            "local_subject": "bar.$2" }));
    assert_eq!(
        i,
        [
            r#"Reference $2 in "bar.$2" reference * in "foo.*" that do not exist"#,
            "subject does not contain enough * or reference wildcards $[0-9]"
        ]
    );
    let i = one(
        json!({ "subject": "foo.*.*", "account": a, "type": "stream",
                            "local_subject": "bar.*" }),
    );
    assert_eq!(
        i,
        ["subject does not contain enough * or reference wildcards $[0-9]"]
    );
    // The library's own variants, all valid.
    assert_clean(&issues(json!({ "imports": [
            { "subject": "foo.*.bar.*.>", "account": a, "local_subject": "my.$2.$1.>", "type": "stream" },
            { "subject": "baz.*.bar.*.>", "account": a, "local_subject": "bar.*.*.>", "type": "service" },
            { "subject": "baz.*", "account": a, "local_subject": "my.$1", "type": "stream" },
            { "subject": "bar.*", "account": a, "local_subject": "baz.*", "type": "service" },
            { "subject": "biz.*.*.*", "account": a, "local_subject": "buz.*.*.*", "type": "service" },
        ] })));
}

#[test]
fn service_imports_may_not_overlap() {
    let a = KeyPair::new_account().public_key();
    let i = issues(json!({ "imports": [
            { "subject": "x", "local_subject": "foo", "type": "service", "account": a },
            { "subject": "z.*", "local_subject": "*", "type": "service", "account": a },
            { "subject": "y.>", "local_subject": ">", "type": "service", "account": a },
        ] }));
    assert_eq!(
        i,
        [
            r#"overlapping subject namespace for "*" and "foo""#,
            r#"overlapping subject namespace for ">" and "foo""#,
            r#"overlapping subject namespace for ">" and "*""#,
        ]
    );
    let i = issues(json!({ "imports": [
            { "subject": "one.two", "to": "foo.bar", "type": "service", "account": a },
            { "subject": "two.three", "to": "foo.bar", "type": "service", "account": a },
        ] }));
    assert_eq!(
        i,
        [
            r#"overlapping subject namespace for "foo.bar" and "foo.bar""#,
            r#"overlapping subject namespace for "foo.bar""#,
        ]
    );
    // Streams and services never collide; neither do streams among themselves.
    assert_clean(&issues(json!({ "imports": [
            { "subject": "foo", "local_subject": "bar", "type": "stream", "account": a },
            { "subject": "foo", "local_subject": "bar", "type": "service", "account": a },
            { "subject": "foo", "local_subject": "bar", "type": "stream", "account": a },
        ] })));
}

#[test]
fn import_token_rules() {
    let (a, b, c) = (
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
    );
    let (a_pub, b_pub) = (a.public_key(), b.public_key());
    let with_token = |subject: &str, kind: &str, token: String| {
        issues_for(
            &b_pub,
            json!({ "imports": [{ "subject": subject, "account": a_pub, "type": kind,
                                      "token": token }] }),
        )
    };
    let invalid = r#"import "foo" contains an invalid activation token"#;

    assert_clean(&with_token(
        "foo",
        "stream",
        encode::activation(&a, &b_pub, "foo", "stream"),
    ));
    // A token ending in a newline (as a file read whole gives it) is still a token to Go.
    let mut newline = encode::activation(&a, &b_pub, "foo", "stream");
    newline.push('\n');
    assert_clean(&with_token("foo", "stream", newline));

    let i = with_token("foo", "stream", "bad token".into());
    assert_issue_starting(&i, invalid);
    let i = with_token("foo", "stream", "https://example.com/activation".into());
    assert_eq!(
        i,
        [format!(
            "{invalid}: activation tokens given as URLs are not supported by JWT v2"
        )]
    );
    let i = with_token(
        "foo",
        "stream",
        format!(" {}", encode::activation(&a, &b_pub, "foo", "stream")),
    );
    assert_issue_starting(&i, invalid);
    let mut bad_sig = encode::activation(&a, &b_pub, "foo", "stream");
    bad_sig.replace_range(bad_sig.len() - 3.., "AAA");
    assert_issue_starting(&with_token("foo", "stream", bad_sig), invalid);
    // Not an activation: an account JWT, and a token signed by a user key.
    let account_jwt = encode::account(&KeyPair::new_operator(), &a_pub, "x", json!({}));
    let i = with_token("foo", "stream", account_jwt);
    assert_eq!(i, [format!("{invalid}: not an activation JWT")]);
    let user = KeyPair::new_user();
    let i = with_token(
        "foo",
        "stream",
        encode::activation(&user, &b_pub, "foo", "stream"),
    );
    assert_eq!(
        i,
        [format!(
            "{invalid}: issuer {} is not an account or operator key",
            user.public_key()
        )]
    );
    // Kinds the library cannot decode.
    let i = with_token(
        "foo",
        "stream",
        activation_with(&a, &b_pub, json!({ "subject": "foo", "kind": "feed" })),
    );
    assert_eq!(
        i,
        [format!(
            r#"{invalid}: claims cannot be decoded: nats.kind: unknown export type "feed""#
        )]
    );

    let i = with_token(
        "foo",
        "stream",
        encode::activation(&c, &b_pub, "foo", "stream"),
    );
    assert_eq!(
        i,
        [r#"activation token doesn't match account for import "foo""#]
    );
    let other = KeyPair::new_account().public_key();
    let i = with_token(
        "foo",
        "stream",
        encode::activation(&a, &other, "foo", "stream"),
    );
    assert_eq!(
        i,
        [r#"activation token doesn't match account it is being included in, "foo""#]
    );
    let i = with_token(
        "foo",
        "stream",
        encode::activation(&a, &b_pub, "foo", "service"),
    );
    assert_eq!(
        i,
        ["mismatch between token import type service and type of import stream"]
    );
    let i = with_token(
        "one.two",
        "stream",
        encode::activation(&a, &b_pub, "two", "stream"),
    );
    assert_eq!(
        i,
        [r#"activation token import subject "two" doesn't match import "one.two""#]
    );
    assert_clean(&with_token(
        "one.two",
        "stream",
        encode::activation(&a, &b_pub, "one.*", "stream"),
    ));
    assert_clean(&with_token(
        "one.two",
        "stream",
        encode::activation(&a, &b_pub, ">", "stream"),
    ));
    // The token's own claims.
    let i = with_token(
        "foo",
        "stream",
        activation_with(&a, &b_pub, json!({ "subject": "foo" })),
    );
    assert_eq!(
        i,
        [
            "mismatch between token import type unknown and type of import stream",
            r#"invalid import type: "unknown""#
        ]
    );
    let i = with_token(
        "foo",
        "stream",
        activation_with(
            &a,
            &b_pub,
            json!({ "subject": "foo", "kind": "stream", "issuer_account": "ANOTAKEY" }),
        ),
    );
    assert_eq!(i, ["account_id is not an account public key"]);

    // A service import checks the token against `to` when it has one.
    let i = issues_for(
        &b_pub,
        json!({ "imports": [{ "subject": "svc.x", "to": "local.x", "account": a_pub,
                                  "type": "service",
                                  "token": encode::activation(&a, &b_pub, "svc.x", "service") }] }),
    );
    assert_eq!(
        i,
        [r#"activation token import subject "svc.x" doesn't match import "svc.x""#]
    );
}

/// A v1 activation keeps the import kind in `nats.type` and the claim type at the top
/// level; the library reads it as an activation.
#[test]
fn v1_activation_tokens_are_read_as_v1() {
    let (a, b) = (KeyPair::new_account(), KeyPair::new_account());
    let (a_pub, b_pub) = (a.public_key(), b.public_key());
    let token = v1_token(
        json!({ "jti": "J", "iat": now_unix(), "sub": b_pub, "type": "activation",
                    "nats": { "subject": "feed.>", "type": "stream", "max": -1 } }),
        &a,
    );
    let nats = json!({ "imports": [{ "subject": "feed.a", "account": a_pub, "type": "stream",
                                         "token": token }] });
    assert_clean(&issues_for(&b_pub, nats));
}

#[test]
fn export_rules() {
    let one = |export: Value| issues(json!({ "exports": [export] }));
    assert_eq!(
        one(json!({ "subject": "foo" })),
        [r#"invalid export type: "unknown""#]
    );
    assert_eq!(
        one(json!({ "subject": "foo", "type": "service", "response_type": "bad" })),
        [r#"invalid response type for service: "bad""#]
    );
    assert_eq!(
        one(json!({ "subject": "foo", "type": "stream", "response_type": "Singleton" })),
        [r#"invalid response type for stream: "Singleton""#]
    );
    let latency = |kind: &str, sampling: Value, results: &str| {
        one(json!({ "subject": "foo", "type": kind,
                        "service_latency": { "sampling": sampling, "results": results } }))
    };
    assert_clean(&latency("service", json!(100), "results"));
    assert_clean(&latency("service", json!("HEADERS"), "results"));
    assert_clean(&latency("service", Value::Null, "results"));
    assert_eq!(
        latency("stream", json!(100), "results"),
        ["latency tracking only permitted for services"]
    );
    for bad in [json!(-1), json!(122)] {
        assert_eq!(
            latency("service", bad, "results"),
            ["sampling percentage needs to be between 1-100"]
        );
    }
    assert_eq!(
        latency("service", json!(22), "results.*"),
        ["results subject can not contain wildcards"]
    );
    assert_eq!(
        latency("service", json!(22), ""),
        ["subject cannot be empty"]
    );
    assert_eq!(
        one(json!({ "subject": "x", "type": "service", "response_threshold": -1_000_000_000i64 })),
        ["negative response threshold is invalid"]
    );
    assert_eq!(
        one(json!({ "subject": "x", "type": "stream", "response_threshold": 1_000_000_000 })),
        ["response threshold only valid for services"]
    );
    assert_eq!(
        one(json!({ "subject": "foo", "type": "stream", "info_url": "/bad" })),
        ["error parsing info url: no hostname or scheme"]
    );
}

#[test]
fn exports_of_one_kind_may_not_cover_each_other() {
    let i = issues(json!({ "exports": [
            { "subject": "bar.foo", "type": "stream" }, { "subject": "bar.*", "type": "stream" } ] }));
    assert_eq!(
        i,
        [r#"stream export subject "bar.*" already exports "bar.foo""#]
    );
    let i = issues(json!({ "exports": [
            { "subject": "bar", "type": "service" }, { "subject": "bar", "type": "service" } ] }));
    assert_eq!(i, [r#"service export subject "bar" already exports "bar""#]);
    // An export of unknown type is counted with the streams, as the library does.
    let i = issues(json!({ "exports": [
            { "subject": "a.>" }, { "subject": "a.b", "type": "stream" } ] }));
    assert_eq!(
        i,
        [
            r#"invalid export type: "unknown""#,
            r#"stream export subject "a.>" already exports "a.b""#
        ]
    );
    assert_clean(&issues(json!({ "exports": [
            { "subject": "bar.foo", "type": "service" }, { "subject": "bar.*", "type": "stream" },
            { "subject": "bar", "type": "service" }, { "subject": "bar", "type": "stream" } ] })));
}

/// The library's tables for `account_token_position`.
#[test]
fn account_token_position_rules() {
    let with_position = |subject: &str, position: u64| {
        issues(json!({ "exports": [{ "subject": subject, "type": "stream",
                                         "account_token_position": position }] }))
    };
    for (subject, position) in [
        ("*", 1),
        ("foo.*", 2),
        ("foo.*.bar.*", 2),
        ("foo.*.bar.>", 2),
        ("*.*.*.>", 2),
        ("*.*.>", 1),
    ] {
        assert_clean(&with_position(subject, position));
    }
    for (subject, position) in [
        (">", 5),
        ("foo.>", 2),
        ("bar.>", 1),
        ("*", 5),
        ("*.*", 5),
        ("bar", 1),
        ("foo.bar", 2),
        ("foo.*.bar", 3),
        ("*.>", 3),
        ("*.*.>", 3),
        ("foo.*x.bar", 2),
        ("foo.x*.bar", 2),
    ] {
        assert_eq!(
            with_position(subject, position).len(),
            1,
            "{subject} {position}"
        );
    }
    assert_eq!(
        with_position("bar", 1),
        ["Account Token Position can only be used with wildcard subjects: bar"]
    );
    assert_eq!(
        with_position("*.*", 5),
        ["Account Token Position 5 exceeds length of subject '*.*'"]
    );
    assert_eq!(
        with_position("foo.*.bar", 3),
        ["Account Token Position 3 matches 'bar' but must match a * in: foo.*.bar"]
    );
    assert_eq!(
        with_position("*", u64::MAX),
        [format!(
            "Account Token Position {} exceeds length of subject '*'",
            u64::MAX
        )]
    );
}

#[test]
fn limit_rules() {
    let a = KeyPair::new_account().public_key();
    let import = |subject: &str| json!({ "subject": subject, "account": a, "type": "stream" });
    let too_many_imports = "the account contains more imports than allowed by the operator";
    let i = issues(json!({ "limits": { "imports": 1 }, "imports": [import("a"), import("b")] }));
    assert_eq!(i, [too_many_imports]);
    let i = issues(json!({ "limits": { "exports": 1 }, "exports": [
            { "subject": "a", "type": "stream" }, { "subject": "b", "type": "stream" } ] }));
    assert_eq!(
        i,
        ["the account contains more exports than allowed by the operator"]
    );
    let wildcard_export = json!([{ "subject": "foo", "type": "stream" },
                                     { "subject": "bar.*", "type": "stream" }]);
    let i = issues(json!({ "limits": { "exports": 10, "wildcards": false },
                               "exports": wildcard_export }));
    assert_eq!(
        i,
        ["the account contains wildcard exports that are not allowed by the operator"]
    );
    // The library checks wildcards only when the number of exports is limited.
    assert_clean(&issues(
        json!({ "limits": { "exports": -1, "wildcards": false }, "exports": wildcard_export }),
    ));
    // Absent limits are 0 in Go, not unlimited: such an account may neither import nor
    // export.
    let i = issues(json!({ "limits": null, "imports": [import("a")],
                               "exports": [{ "subject": "x", "type": "stream" }] }));
    assert_eq!(
        i,
        [
            too_many_imports,
            "the account contains more exports than allowed by the operator"
        ]
    );
    assert_clean(&issues(json!({ "limits": null })));
    let i = issues(json!({ "limits": { "tiered_limits": { "": { "mem_storage": 1 } } } }));
    assert_eq!(
        i,
        [r#"Tiered JetStream Limits can not contain a blank "" tier name"#]
    );
    // Plain and tiered JetStream limits together: the library's loader drops the plain
    // ones, so its "mutually exclusive" rule never fires on a decoded token.
    assert_clean(&issues(json!({ "limits": { "disk_storage": 5,
            "tiered_limits": { "R1": { "disk_storage": 5 } } } })));
}

#[test]
fn default_permission_rules() {
    let perms = |pub_allow: Value, sub_allow: Value| {
        issues(
            json!({ "default_permissions": { "pub": { "allow": pub_allow },
                                                    "sub": { "deny": sub_allow } } }),
        )
    };
    assert_clean(&perms(json!(["foo.>"]), json!(["foo.* workers"])));
    assert_eq!(
        perms(json!(["foo q"]), json!([])),
        [r#"Permission Subject "foo q" is not allowed to contain queue"#]
    );
    assert_eq!(
        perms(json!([]), json!(["a b c"])),
        [r#"Permission Subject "a b c" contains too many spaces"#]
    );
    assert_eq!(
        perms(json!([""]), json!(["a "])),
        ["subject cannot be empty"]
    );
    assert_eq!(perms(json!([null]), json!([])), ["subject cannot be empty"]);
}

#[test]
fn mapping_rules() {
    let mapping = |targets: Value| issues(json!({ "mappings": { "foo": targets } }));
    assert_clean(&mapping(json!([{ "subject": "to" }])));
    assert_clean(&mapping(
        json!([{ "subject": "to1", "weight": 50 }, { "subject": "to2", "weight": 50 }]),
    ));
    let exceeds = r#"Mapping "foo" exceeds 100% among all of it's weighted to mappings"#;
    assert_eq!(
        mapping(json!([{ "subject": "to1", "weight": 50 }, { "subject": "to2", "weight": 51 }])),
        [exceeds]
    );
    // No weight means 100.
    assert_eq!(
        mapping(json!([{ "subject": "to1" }, { "subject": "to2", "weight": 1 }])),
        [exceeds]
    );
    assert_eq!(
        mapping(json!([{ "subject": "to.*" }])),
        [r#"Subject "to.*" in weighted mapping "foo" is not allowed to contains wildcard"#]
    );
    assert_eq!(
        mapping(json!([{ "subject": "" }, null])),
        ["subject cannot be empty", exceeds]
    );
    // The library sums weights in a uint8, which wraps: 300 % 256 = 44 passes there.
    assert_clean(&mapping(
        json!([{ "subject": "a" }, { "subject": "b" }, { "subject": "c" }]),
    ));
    let i = issues(json!({ "mappings": { "a b": [{ "subject": "c" }] } }));
    assert_eq!(i, [r#"subject "a b" cannot have spaces"#]);
}

#[test]
fn signing_key_rules() {
    let user = KeyPair::new_user().public_key();
    let i = payload_issues(json!({ "type": "account", "version": 2, "limits": null,
                                       "signing_keys": [user] }));
    assert_eq!(
        i,
        [format!("{} is not a valid account signing key", q(&user))]
    );
    let i = payload_issues(json!({ "type": "account", "version": 2, "limits": null,
            "signing_keys": [{ "kind": "user_scope", "key": user, "role": "r" }] }));
    assert_eq!(i, [format!("{user} is not an account public key")]);
    let i = payload_issues(json!({ "type": "account", "version": 2, "limits": null,
            "signing_keys": [{ "kind": "user_scope" }] }));
    assert_eq!(i, [" is not an account public key"]);
    // Elements that are neither strings nor objects are skipped by the library's reader.
    assert_clean(&payload_issues(
        json!({ "type": "account", "version": 2, "limits": null,
            "signing_keys": [5, null, true] }),
    ));
    let i = payload_issues(json!({ "type": "account", "version": 2, "limits": null,
            "signing_keys": [{ "kind": "operator_scope", "key": user }] }));
    assert_eq!(
        i,
        [
            r#"claims cannot be decoded: nats.signing_keys[0]: unknown signing key scope (kind "operator_scope")"#
        ]
    );
    // A scope object goes through interface{} and back in the library: a whole float is an
    // integer there, a fraction is not.
    let scoped = |template: Value| {
        payload_issues(json!({ "type": "account", "version": 2, "limits": null,
                "signing_keys": [{ "kind": "user_scope", "key": KeyPair::new_account().public_key(),
                                   "template": template }] }))
    };
    assert_clean(&scoped(json!({ "subs": 1e3, "src": ["10.0.0.0/8"] })));
    assert_eq!(
            scoped(json!({ "subs": 1.5 })),
            ["claims cannot be decoded: nats.signing_keys[0].template.subs: 1.5 is not a 64-bit integer"]
        );
    assert_eq!(
            scoped(json!({ "src": [1] })),
            ["claims cannot be decoded: nats.signing_keys[0].template.src: expected an array of strings or a comma-separated string"]
        );
}

#[test]
fn info_rules() {
    let url = |u: &str| issues(json!({ "info_url": u }));
    for ok in [
        "https://nats.io/docs",
        "HTTP://example.com",
        "https://user:pass@example.com:8080/a b?q=%zz#frag",
        "https://[fe80::1%25en0]:4222/",
        "http://localhost/foo/bar",
    ] {
        assert_clean(&url(ok));
    }
    let no_host = "error parsing info url: no hostname or scheme";
    for bad in [
        "/bad",
        "example.com",
        "mailto:me@example.com",
        "http://:80/",
        "*",
        "http:",
    ] {
        assert_eq!(url(bad), [no_host], "{bad}");
    }
    assert_eq!(
        url("http://host:port/"),
        [r#"error parsing info url: parse "http://host:port/": invalid port ":port" after host"#]
    );
    assert_eq!(
        url("http://ex ample.com/"),
        [
            r#"error parsing info url: parse "http://ex ample.com/": invalid character " " in host name"#
        ]
    );
    assert_eq!(
        url("https://example.com/a%zz"),
        [r#"error parsing info url: parse "https://example.com/a%zz": invalid URL escape "%zz""#]
    );
    assert_eq!(
        url("https://example.com/#%"),
        [r#"error parsing info url: parse "https://example.com/#%": invalid URL escape "%""#]
    );
    assert_eq!(
        url("http://exa\tmple.com"),
        [
            r#"error parsing info url: parse "http://exa\tmple.com": net/url: invalid control character in URL"#
        ]
    );
    assert_eq!(
        url(":foo"),
        [r#"error parsing info url: parse ":foo": missing protocol scheme"#]
    );
    assert_eq!(url("a:b/c"), [no_host]);
    assert_eq!(
        url("1a:b/c"),
        [
            r#"error parsing info url: parse "1a:b/c": first path segment in URL cannot contain colon"#
        ]
    );
    assert_eq!(
        url("http://a b@example.com"),
        [r#"error parsing info url: parse "http://a b@example.com": net/url: invalid userinfo"#]
    );
    assert_eq!(
        url("http://[::1/"),
        [r#"error parsing info url: parse "http://[::1/": missing ']' in host"#]
    );
    let long = format!("https://example.com/{}", "a".repeat(MAX_INFO_LENGTH));
    assert_eq!(url(&long), ["Info URL is too long"]);

    assert_clean(&issues(
        json!({ "description": "d".repeat(MAX_INFO_LENGTH) }),
    ));
    assert_eq!(
        issues(json!({ "description": "d".repeat(MAX_INFO_LENGTH + 1) })),
        ["Description is too long"]
    );
}

/// What Go's `encoding/json` refuses fails the whole token; what it ignores is ignored.
#[test]
fn decoding_follows_go() {
    let decode_issue = |nats: Value| issues(nats).join("; ");
    assert_eq!(
        decode_issue(json!({ "exports": [{ "subject": "foo", "type": "foo" }] })),
        r#"claims cannot be decoded: nats.exports[0].type: unknown export type "foo""#
    );
    assert_eq!(
        decode_issue(json!({ "imports": [{ "subject": "foo", "type": null }] })),
        r#"claims cannot be decoded: nats.imports[0].type: unknown export type """#
    );
    assert_eq!(
        decode_issue(json!({ "limits": { "conn": "ten" } })),
        "claims cannot be decoded: nats.limits.conn: expected an integer, got a string"
    );
    assert_eq!(
        decode_issue(json!({ "limits": { "conn": 1.0 } })),
        "claims cannot be decoded: nats.limits.conn: 1.0 is not a 64-bit integer"
    );
    assert_eq!(
        decode_issue(json!({ "imports": {} })),
        "claims cannot be decoded: nats.imports: expected an array, got an object"
    );
    assert_eq!(
        decode_issue(json!({ "mappings": { "a": [{ "subject": "b", "weight": 256 }] } })),
        "claims cannot be decoded: nats.mappings.a[0].weight: 256 is not an integer from 0 to 255"
    );
    assert_eq!(
            decode_issue(json!({ "exports": [{ "subject": "a.*", "type": "stream",
                                               "account_token_position": -1 }] })),
            "claims cannot be decoded: nats.exports[0].account_token_position: -1 is not an integer from 0 to 18446744073709551615"
        );
    assert_eq!(
            decode_issue(json!({ "exports": [{ "subject": "a", "type": "service",
                "service_latency": { "sampling": "some", "results": "r" } }] })),
            "claims cannot be decoded: nats.exports[0].service_latency.sampling: expected an integer, got a string"
        );
    // Keys match fields ignoring case, so this import is seen and checked.
    assert_eq!(
        issues(json!({ "IMPORTS": [{ "Subject": "foo", "TYPE": "stream" }] })),
        ["account to import from is not specified"]
    );
    // Fields v2.3.0 does not know (later versions' `authorization`) are ignored.
    assert_clean(&issues(
        json!({ "authorization": { "auth_users": ["nope"] },
                                     "exports": [{ "subject": "x", "type": "stream", "future": 1 }] }),
    ));
    // Without nats.version (and without a v1 top-level type) the library cannot load it.
    let i = payload_issues(json!({ "type": "account" }));
    assert_eq!(
            i,
            ["claims cannot be decoded: claims version 0 is not supported (a v2 token needs nats.version 2, a v1 token a top-level type)"]
        );
}

#[test]
fn v1_accounts_are_read_with_the_v1_loader() {
    let v1 = |nats: Value| {
        validate_account(&json!({ "iss": KeyPair::new_operator().public_key(),
                "sub": KeyPair::new_account().public_key(), "type": "account", "nats": nats }))
    };
    let limits = json!({ "subs": -1, "conn": -1, "imports": -1, "exports": -1,
                             "wildcards": true, "data": -1, "payload": -1, "leaf": -1 });
    // v1 had no permissions, mappings or info; the v1 loader ignores those keys.
    assert_clean(&v1(json!({ "limits": limits,
            "default_permissions": { "pub": { "allow": ["a q"] } },
            "mappings": { "a": [{ "subject": "b.*" }] }, "info_url": "/bad",
            "exports": [{ "subject": "svc.>", "type": "service" }] })));
    assert_eq!(
        v1(json!({ "limits": limits, "imports": [{ "subject": "a", "type": "stream" }] })),
        ["account to import from is not specified"]
    );
    assert_eq!(
        v1(json!({ "limits": limits, "signing_keys": [{ "kind": "user_scope" }] })).join(";"),
        "claims cannot be decoded: nats.signing_keys[0]: expected a string, got an object"
    );
}

/// The integration point: one `InvalidClaims` line listing every issue.
#[test]
fn decode_account_refuses_with_every_issue_in_one_line() {
    let account = KeyPair::new_account().public_key();
    let token = encode::account(
        &KeyPair::new_operator(),
        &account,
        "broken",
        json!({ "exports": [{ "subject": "a b", "type": "stream" },
                                { "subject": "x", "type": "stream", "response_type": "Stream" }] }),
    );
    let err = decode_account(&token, now_unix()).expect_err("refused");
    assert_eq!(
            err,
            JwtError::InvalidClaims(
                r#"account JWT has validation issues: subject "a b" cannot have spaces; invalid response type for stream: "Stream""#
                    .into()
            )
        );
    assert_eq!(
        err.to_string(),
        r#"invalid claims: account JWT has validation issues: subject "a b" cannot have spaces; invalid response type for stream: "Stream""#
    );
    let fine = encode::account(&KeyPair::new_operator(), &account, "fine", json!({}));
    decode_account(&fine, now_unix()).expect("accepted");
}

#[test]
fn the_error_stays_one_bounded_line() {
    let exports: Vec<Value> = (0..30)
            .map(|i| json!({ "subject": format!("s{i}"), "type": "stream", "response_type": format!("R\n{i}") }))
            .collect();
    let token = encode::account(
        &KeyPair::new_operator(),
        &KeyPair::new_account().public_key(),
        "many",
        json!({ "exports": exports, "default_permissions": { "pub": { "allow": ["a\tb c"] } } }),
    );
    let message = check_account_rules(&decode(&token).expect("decodes"))
        .expect_err("refused")
        .to_string();
    assert!(!message.contains(char::is_control), "{message}");
    assert!(
        message.ends_with(&format!("; and {} more", 31 - MAX_LISTED_ISSUES)),
        "{message}"
    );
    assert!(message.contains(r#"invalid response type for stream: "R\n0""#));
    let i = issues(json!({ "default_permissions": { "pub": { "allow": ["a\tb c"] } } }));
    assert_eq!(
        i,
        [r#"Permission Subject "a\tb c" is not allowed to contain queue"#]
    );
}

#[test]
fn subject_helpers_match_the_library() {
    assert!(is_contained_in("foo.bar", "foo.*"));
    assert!(is_contained_in("foo.bar.baz", "foo.>"));
    assert!(is_contained_in("foo", ">"));
    assert!(!is_contained_in("foo", "foo.>"));
    assert!(!is_contained_in("foo.*", "foo.bar"));
    assert!(is_contained_in("*", "*"));
    assert!(has_wildcards("a.*.b") && has_wildcards("*") && has_wildcards("a.>"));
    assert!(!has_wildcards("a*.b") && !has_wildcards("a.b>"));
    assert_eq!(to_subject("my.$2.$1.>"), "my.*.*.>");
    assert_eq!(to_subject("my.$x.$"), "my.$x.$");
    assert_eq!(go_atoi("+1"), Some(1));
    assert_eq!(go_atoi("-0"), Some(0));
    assert_eq!(go_atoi("1a"), None);
    assert_eq!(go_atoi("99999999999999999999"), None);
    assert!(key_matches("Imports", "imports"));
    assert!(key_matches("\u{17F}ubs", "subs"));
    assert!(key_matches("\u{212A}ey", "key"));
    assert!(!key_matches("import", "imports"));
    assert!(!key_matches("imports_", "imports"));
    assert_eq!(q("a\"b\\\n\u{0}é\u{a0}"), r#""a\"b\\\n\x00é\u00a0""#);
    assert_eq!(go_quote(b"%\xff"), r#""%\xff""#);
}
