//! Property tests (proptest, 256 cases each unless noted, no regression files): the JWT
//! decoder, claim validation and the account content rules never panic on anything, a mutated
//! token never verifies, and the nats-server config parser never panics and reads back what it
//! is given.

use crate::common::fixtures;
use crate::common::untrusted::decode_everything;
use data_encoding::BASE64URL_NOPAD;
use nats_account_server::config::{natsconf, Settings};
use nats_account_server::jwt::{self, encode, view, ClaimType, KeyKind};
use nkeys::KeyPair;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Number, Value};
use std::sync::OnceLock;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// JWT decoding and claim validation
// ---------------------------------------------------------------------------------------------

/// Valid tokens of every kind the server handles: `(token, is_v1)`.
fn valid_tokens() -> &'static [(String, bool)] {
    static TOKENS: OnceLock<Vec<(String, bool)>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let a = fixtures::account_a();
        let b = fixtures::account_b();
        vec![
            (
                fixtures::account_jwt(&a.public_key(), "a", json!({})),
                false,
            ),
            (fixtures::vector("operator.jwt"), false),
            (fixtures::vector("post/ok_operator_signed.jwt"), false),
            (fixtures::vector("post/ok_v1_format.jwt"), true),
            (
                encode::activation(&a, &b.public_key(), "svc.>", "service"),
                false,
            ),
        ]
    })
}

/// One edit of a token's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    /// Replaces the last character of segment `n` with another base64url character (its
    /// unused low bits make this the classic malleability of unpadded base64).
    LastChar(usize, u8),
    /// Appends `=` padding to segment `n`.
    Pad(usize, usize),
    /// Swaps two segments.
    Swap(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (0usize..3, 0u8..64).prop_map(|(s, c)| Mutation::LastChar(s, c)),
        (0usize..3, 1usize..3).prop_map(|(s, n)| Mutation::Pad(s, n)),
        (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::Swap(a, b)),
    ]
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    let segments = |b: &[u8]| -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, c) in b.iter().enumerate() {
            if *c == b'.' {
                out.push((start, i));
                start = i + 1;
            }
        }
        out.push((start, b.len()));
        out
    };
    match *m {
        Mutation::FlipBit(i, bit) if len > 0 => bytes[i % len] ^= 1 << bit,
        Mutation::Replace(i, b) if len > 0 => bytes[i % len] = b,
        Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
        Mutation::Delete(i) if len > 0 => {
            bytes.remove(i % len);
        }
        Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
        Mutation::LastChar(s, c) => {
            if let Some(&(start, end)) = segments(bytes).get(s) {
                if end > start {
                    bytes[end - 1] = B64URL[c as usize];
                }
            }
        }
        Mutation::Pad(s, n) => {
            if let Some(&(_, end)) = segments(bytes).get(s) {
                for _ in 0..n {
                    bytes.insert(end, b'=');
                }
            }
        }
        Mutation::Swap(a, b) => {
            let segs = segments(bytes);
            if a < segs.len() && b < segs.len() {
                let mut parts: Vec<Vec<u8>> =
                    segs.iter().map(|&(s, e)| bytes[s..e].to_vec()).collect();
                parts.swap(a, b);
                *bytes = parts.join(&b'.');
            }
        }
        _ => {}
    }
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A key of some kind, or junk.
fn any_key() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(fixtures::account_a().public_key())),
        Just(json!(fixtures::account_b().public_key())),
        Just(json!(KeyPair::new_user().public_key())),
        Just(json!(fixtures::operator_key().public_key())),
        any_json(),
    ]
}

/// A time claim: plausible, extreme, or the wrong type.
fn any_time() -> impl Strategy<Value = Value> {
    let now = jwt::now_unix();
    prop_oneof![
        ((now - 1_000_000)..(now + 1_000_000)).prop_map(|t| json!(t)),
        any::<i64>().prop_map(|t| json!(t)),
        Just(json!(0)),
        any_json(),
    ]
}

/// Claims that are sometimes valid account or activation claims and often subtly not.
fn claims() -> impl Strategy<Value = Value> {
    let nats = prop_oneof![
        (
            prop_oneof![
                Just(json!("account")),
                Just(json!("activation")),
                Just(json!("user")),
                any_json()
            ],
            prop_oneof![Just(json!(2)), Just(json!(1)), any_json()],
            prop::collection::vec(any_key(), 0..3),
            prop_oneof![
                Just(json!("svc.>")),
                Just(json!("*.x")),
                Just(json!("")),
                any_json()
            ],
            prop::option::of(any_key()),
        )
            .prop_map(|(t, v, sk, subject, ia)| {
                let mut n =
                    json!({ "type": t, "version": v, "signing_keys": sk, "subject": subject });
                if let Some(ia) = ia {
                    n["issuer_account"] = ia;
                }
                n
            }),
        any_json(),
    ];
    (
        any_key(),
        prop::option::of(any_time()),
        prop::option::of(any_time()),
        prop::option::of(any_time()),
        prop::option::of(any_json()),
        nats,
    )
        .prop_map(|(sub, iat, exp, nbf, jti, nats)| {
            let mut c = json!({ "sub": sub, "nats": nats, "name": "prop" });
            for (k, v) in [("iat", iat), ("exp", exp), ("nbf", nbf), ("jti", jti)] {
                if let Some(v) = v {
                    c[k] = v;
                }
            }
            c
        })
}

fn sign_claims(claims: &Value, signer: &KeyPair) -> String {
    let h = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let p = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let sig = signer.sign(format!("{h}.{p}").as_bytes()).unwrap();
    format!("{h}.{p}.{}", BASE64URL_NOPAD.encode(&sig))
}

/// A string shaped like what account content holds: subjects (with wildcards, `$n`
/// references, spaces), URLs, keys, or junk.
fn content_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "foo",
            "foo.*",
            "foo.>",
            ">",
            "*",
            "*.>",
            "foo.$1",
            "$1",
            "bar.*.baz",
            "a b",
            "",
            "..",
            "foo.",
            "http://example.com/x",
            "https://[::1]:80/",
            "%zz",
            "http://a b",
            "Singleton",
            "Stream",
            "Chunked",
            "headers",
            "stream",
            "service",
            "user_scope",
        ])
        .prop_map(|s| json!(s)),
        "[a-z*>$.0-9 ]{0,12}".prop_map(Value::String),
        any_key(),
    ]
}

/// A JSON field name as Go's decoder may see it: exact, upper case or mixed case.
fn go_name(name: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(name.to_string()),
        Just(name.to_ascii_uppercase()),
        Just(format!("{}{}", name[..1].to_ascii_uppercase(), &name[1..])),
    ]
}

/// An object with a random subset of `fields`, each a `value()`.
fn some_of(
    fields: &'static [&'static str],
    value: impl Strategy<Value = Value> + 'static,
) -> BoxedStrategy<Value> {
    prop::collection::vec(
        (
            prop::sample::select(fields.to_vec()).prop_flat_map(go_name),
            value,
        ),
        0..fields.len().min(6),
    )
    .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
    .boxed()
}

/// Account `nats` sections built from the JWT library's field names, with plausible and
/// implausible values: what the content rules parse.
fn account_content() -> impl Strategy<Value = Value> {
    let token = {
        let a = fixtures::account_a();
        let b = fixtures::account_b().public_key();
        prop_oneof![
            Just(json!(encode::activation(&a, &b, "foo.>", "stream"))),
            Just(json!(encode::activation(&a, &b, "svc.*", "service"))),
            content_string(),
        ]
    };
    let scalar = prop_oneof![
        content_string(),
        any::<i64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![-1i64, 0, 1, 50, 100, 101, 255, 256]).prop_map(|n| json!(n)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    let fields: &'static [&'static str] = &[
        "type",
        "account",
        "subject",
        "to",
        "local_subject",
        "token",
        "share",
        "name",
        "response_type",
        "response_threshold",
        "token_req",
        "account_token_position",
        "sampling",
        "results",
        "description",
        "info_url",
        "weight",
        "cluster",
        "kind",
        "key",
        "role",
        "imports",
        "exports",
        "wildcards",
        "conn",
        "leaf",
        "subs",
        "data",
        "payload",
        "allow",
        "deny",
        "max",
        "ttl",
        "mem_storage",
        "disk_storage",
        "streams",
        "consumer",
    ];
    let element = prop_oneof![
        scalar.clone(),
        token.clone(),
        some_of(fields, prop_oneof![scalar.clone(), token.clone()]),
    ];
    let nested = some_of(
        fields,
        prop_oneof![
            element.clone(),
            prop::collection::vec(element.clone(), 0..3).prop_map(Value::Array),
            some_of(fields, element.clone()),
        ],
    );
    let list = prop::collection::vec(prop_oneof![nested.clone(), scalar.clone()], 0..4)
        .prop_map(Value::Array);
    some_of(
        &[
            "imports",
            "exports",
            "limits",
            "signing_keys",
            "mappings",
            "default_permissions",
            "description",
            "info_url",
            "tiered_limits",
            "revocations",
        ],
        prop_oneof![list, nested.clone(), scalar],
    )
    .prop_map(|mut nats| {
        nats["type"] = json!("account");
        nats["version"] = json!(2);
        nats
    })
}

proptest! {
    #![proptest_config(cases(256))]

    /// The account content rules (a port of the Go library's validation) never panic on
    /// content built from its own vocabulary, and give the same verdict twice.
    #[test]
    fn account_content_rules_never_panic(nats in account_content()) {
        let payload = json!({
            "sub": fixtures::account_b().public_key(),
            "iss": fixtures::operator_key().public_key(),
            "iat": 1, "jti": "J", "name": "prop", "nats": nats,
        });
        let first = jwt::validate_account(&payload);
        prop_assert_eq!(first, jwt::validate_account(&payload));
    }

    /// Arbitrary text never panics anything that reads tokens.
    #[test]
    fn decoding_arbitrary_text_never_panics(text in any::<String>()) {
        decode_everything(&text);
    }

    /// Token-shaped text (base64url segments of arbitrary bytes) gets past the first checks
    /// and still never panics.
    #[test]
    fn decoding_token_shaped_junk_never_panics(
        h in prop::collection::vec(any::<u8>(), 0..64),
        p in prop::collection::vec(any::<u8>(), 0..256),
        s in prop::collection::vec(any::<u8>(), 0..80),
        json_payload in any_json(),
        use_json in any::<bool>(),
    ) {
        let payload = if use_json { json_payload.to_string().into_bytes() } else { p };
        let token = format!(
            "{}.{}.{}",
            BASE64URL_NOPAD.encode(&h),
            BASE64URL_NOPAD.encode(&payload),
            BASE64URL_NOPAD.encode(&s)
        );
        decode_everything(&token);
        prop_assert!(jwt::decode(&token).is_err(), "random bytes verified: {token}");
    }

    /// Byte mutations of valid tokens never panic, and a mutated token never verifies unless it
    /// is unchanged (surrounding whitespace aside). JWT v1 signs only the payload segment, so a
    /// v1 token's header can change without breaking its signature (the Go library agrees);
    /// for v1 only the payload and signature must be untouched.
    #[test]
    fn mutated_tokens_never_verify(
        which in 0usize..5,
        edits in prop::collection::vec(mutation(), 1..4),
    ) {
        let (original, v1) = &valid_tokens()[which];
        let mut bytes = original.clone().into_bytes();
        for m in &edits {
            apply(&mut bytes, m);
        }
        let Ok(text) = String::from_utf8(bytes.clone()) else {
            // The server refuses non-UTF-8 bodies before decoding.
            return Ok(());
        };
        decode_everything(&text);
        if let Ok(decoded) = jwt::decode(&text) {
            let unchanged = text.trim() == original;
            let same_signed_part = *v1
                && text.trim().split_once('.').map(|t| t.1) == original.split_once('.').map(|t| t.1);
            prop_assert!(
                unchanged || same_signed_part,
                "mutated token verifies after {edits:?}:\n{text}\noriginal:\n{original}"
            );
            prop_assert_eq!(&decoded.raw, text.trim());
        }
    }

    /// Correctly signed tokens with arbitrary claims: validation never panics, and what it
    /// accepts meets every rule it promises.
    #[test]
    fn claim_validation_of_arbitrary_signed_claims(
        claims in claims(),
        by_account in any::<bool>(),
    ) {
        let signer = if by_account { fixtures::account_a() } else { fixtures::signing_key() };
        let token = sign_claims(&claims, &signer);
        decode_everything(&token);
        let now = jwt::now_unix();
        if let Ok(a) = jwt::decode_account(&token, now) {
            let c = &a.claims;
            prop_assert_eq!(c.claim_type(), ClaimType::Account);
            prop_assert!(jwt::is_account_key(&c.sub));
            prop_assert_eq!(jwt::key_kind(&c.iss), Some(KeyKind::Operator));
            prop_assert!(c.nats.signing_keys.iter().all(|k| jwt::is_account_key(k.key())));
            prop_assert!(c.check_time(now).is_ok());
        }
        if let Ok(act) = jwt::decode_activation(&token, now) {
            let c = &act.claims;
            prop_assert_eq!(c.claim_type(), ClaimType::Activation);
            prop_assert!(jwt::is_account_key(&c.sub));
            prop_assert!(!c.nats.subject.as_deref().unwrap_or("").is_empty());
            let hash = jwt::activation_hash(c).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(jwt::is_activation_hash(&hash), "{}", hash);
        }
        if let Ok(text) = view::render(&token) {
            let claims_part = text.split("\r\n").nth(1).unwrap_or("");
            prop_assert!(serde_json::from_str::<Value>(claims_part).is_ok(), "{}", text);
        }
    }

    /// Dates render for every i64.
    #[test]
    fn any_unix_time_renders(t in any::<i64>()) {
        prop_assert!(!jwt::unix_to_rfc3339(t).is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// The nats-server config syntax
// ---------------------------------------------------------------------------------------------

/// Text made mostly of the syntax's own characters. No `v`, `o`, `r` or `s`: a generated
/// `include` can never name a device such as `/dev/zero`.
const SYNTAX: &str =
    "[{}\\[\\]:=,;#/\"'\\\\$ \t\n\r0-9.+\\-abcdeiklmnpuxKMGB_\u{e9}\u{feff}]{0,200}";

/// A value of the generated configs, with the JSON the parser must produce for it.
#[derive(Debug, Clone)]
enum Conf {
    Int(i64),
    Bool(bool, usize),
    Quoted(String),
    Single(String),
    Bare(String),
    Float(i32, String),
    Sized(i64, usize),
    Array(Vec<Conf>, usize),
    Block(Vec<(String, Conf)>, usize),
}

const BOOLS: [(&str, bool); 6] = [
    ("true", true),
    ("False", false),
    ("YES", true),
    ("no", false),
    ("On", true),
    ("off", false),
];
const SUFFIXES: [(&str, i64); 8] = [
    ("k", 1000),
    ("kb", 1024),
    ("M", 1_000_000),
    ("MiB", 1 << 20),
    ("g", 1_000_000_000),
    ("GB", 1 << 30),
    ("Ki", 1024),
    ("", 1),
];
const ITEM_SEPARATORS: [&str; 4] = ["\n", ", ", "; ", ",\n  "];
/// Array elements take commas and newlines, not semicolons.
const ELEMENT_SEPARATORS: [&str; 4] = ["\n", ", ", " , ", ",\n  "];
const KEY_SEPARATORS: [&str; 5] = [": ", " = ", " ", ":", "="];

fn conf_key() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,8}".prop_filter("include is a directive", |k| {
        !k.eq_ignore_ascii_case("include")
    })
}

fn conf_value() -> impl Strategy<Value = Conf> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Conf::Int),
        (0usize..6).prop_map(|i| Conf::Bool(BOOLS[i].1, i)),
        any::<String>().prop_map(Conf::Quoted),
        "[^']{0,16}".prop_map(Conf::Single),
        "[a-zA-Z][a-zA-Z0-9_./:-]{0,12}"
            .prop_filter("booleans are not strings", |s| {
                !BOOLS.iter().any(|(b, _)| s.eq_ignore_ascii_case(b))
            })
            .prop_map(Conf::Bare),
        (-1000i32..1000, "[0-9]{1,6}").prop_map(|(i, f)| Conf::Float(i, f)),
        (0i64..100_000, 0usize..8).prop_map(|(n, s)| Conf::Sized(n, s)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..4), 0usize..4)
                .prop_map(|(items, sep)| Conf::Array(items, sep)),
            (prop::collection::vec((conf_key(), inner), 0..4), 0usize..4)
                .prop_map(|(entries, sep)| Conf::Block(entries, sep)),
        ]
    })
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Conf {
    fn render(&self, out: &mut String, key_sep: usize) {
        match self {
            Conf::Int(n) => out.push_str(&n.to_string()),
            Conf::Bool(_, i) => out.push_str(BOOLS[*i].0),
            Conf::Quoted(s) => out.push_str(&quote(s)),
            Conf::Single(s) => out.push_str(&format!("'{s}'")),
            Conf::Bare(s) => out.push_str(s),
            Conf::Float(i, f) => out.push_str(&format!("{i}.{f}")),
            Conf::Sized(n, s) => out.push_str(&format!("{n}{}", SUFFIXES[*s].0)),
            Conf::Array(items, sep) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(ELEMENT_SEPARATORS[*sep]);
                    }
                    item.render(out, key_sep);
                }
                out.push(']');
            }
            Conf::Block(entries, sep) => {
                out.push_str("{\n");
                render_entries(entries, *sep, key_sep, out);
                out.push_str("\n}");
            }
        }
    }

    fn expected(&self) -> Value {
        match self {
            Conf::Int(n) => json!(n),
            Conf::Bool(b, _) => json!(b),
            Conf::Quoted(s) | Conf::Single(s) | Conf::Bare(s) => json!(s),
            Conf::Float(i, f) => {
                let v: f64 = format!("{i}.{f}").parse().unwrap();
                Value::Number(Number::from_f64(v).unwrap())
            }
            Conf::Sized(n, s) => json!(n * SUFFIXES[*s].1),
            Conf::Array(items, _) => Value::Array(items.iter().map(Conf::expected).collect()),
            Conf::Block(entries, _) => Value::Object(expected_map(entries)),
        }
    }
}

fn render_entries(entries: &[(String, Conf)], sep: usize, key_sep: usize, out: &mut String) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(ITEM_SEPARATORS[sep]);
        }
        if i % 3 == 2 {
            out.push_str("# a comment, with: separators; {and} [brackets]\n// another\n");
        }
        out.push_str(k);
        // A bare key directly before `{` or `[` needs no separator; with one it is the same.
        out.push_str(KEY_SEPARATORS[(key_sep + i) % KEY_SEPARATORS.len()]);
        v.render(out, key_sep + 1);
    }
}

/// Keys are lowercased and the last of a repeated key wins.
fn expected_map(entries: &[(String, Conf)]) -> Map<String, Value> {
    let mut map = Map::new();
    for (k, v) in entries {
        map.insert(k.to_lowercase(), v.expected());
    }
    map
}

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary text never panics the parser.
    #[test]
    fn natsconf_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = natsconf::parse(&text);
    }

    /// Text dense in the syntax's own characters never panics it either.
    #[test]
    fn natsconf_never_panics_on_syntax_soup(text in SYNTAX) {
        let _ = natsconf::parse(&text);
    }

    /// Generated configs of every value form, separator and block style parse back to exactly
    /// the values they were written from.
    #[test]
    fn natsconf_reads_back_generated_configs(
        entries in prop::collection::vec((conf_key(), conf_value()), 0..8),
        sep in 0usize..4,
        key_sep in 0usize..5,
        braces in any::<bool>(),
    ) {
        let mut text = String::new();
        render_entries(&entries, sep, key_sep, &mut text);
        if braces {
            text = format!("{{\n{text}\n}}");
        }
        let parsed = natsconf::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n--- text ---\n{text}")))?;
        prop_assert_eq!(Value::Object(parsed), Value::Object(expected_map(&entries)), "text:\n{}", text);
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// A Go-era config file with generated values and key spellings loads through the real
    /// loader into exactly those settings.
    #[test]
    fn go_config_files_load_into_the_settings_they_say(
        port in 1u16..,
        readtimeout_ms in 1u32..600_000,
        host in prop_oneof![Just("127.0.0.1"), Just("0.0.0.0"), Just("::1"), Just("localhost")],
        debug in any::<bool>(),
        body_kib in 1usize..4096,
        primaries in prop::collection::vec("[a-z]{1,8}", 0..3),
        upper in any::<bool>(),
    ) {
        let k = |s: &str| if upper { s.to_uppercase() } else { s.to_string() };
        let primary = primaries
            .iter()
            .enumerate()
            .map(|(i, h)| format!("\"http://{h}:{}\"", 9000 + i))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "# generated\n{}: [{primary}]\nhttp {{\n  {}: \"{host}\"\n  {} = {port}\n  {}: {readtimeout_ms}\n  maxbodybytes: {body_kib}kb\n}}\nlogging {{ {}: {debug} }}\n",
            k("primary"), k("host"), k("port"), k("ReadTimeout"), k("debug"),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.conf");
        std::fs::write(&path, &text).unwrap();
        let (s, _) = Settings::load(Some(&path), std::iter::empty::<(String, String)>(), &[])
            .map_err(|e| TestCaseError::fail(format!("{e}\n--- text ---\n{text}")))?;
        prop_assert_eq!(s.http.host.as_str(), host);
        prop_assert_eq!(s.http.port, port);
        prop_assert_eq!(s.http.readtimeout.0, std::time::Duration::from_millis(readtimeout_ms.into()));
        prop_assert_eq!(s.http.maxbodybytes, body_kib * 1024);
        prop_assert_eq!(s.logging.debug, debug);
        let want: Vec<String> = primaries
            .iter()
            .enumerate()
            .map(|(i, h)| format!("http://{h}:{}", 9000 + i))
            .collect();
        prop_assert_eq!(s.primary.0, want);
    }
}

/// Nesting far deeper than any real file is an error, not a stack overflow (which would abort
/// the whole process).
#[test]
fn natsconf_deep_nesting_is_an_error_not_a_crash() {
    for text in [
        "a {".repeat(100_000),
        format!("a: {}", "[".repeat(100_000)),
        format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("{}{}", "{".repeat(50_000), "}".repeat(50_000)),
        "a: [{b: ".repeat(50_000),
    ] {
        assert!(natsconf::parse(&text).is_err(), "{:.40}…", text);
    }
    // Reasonable nesting still parses.
    let ok = format!("a: {}1{}", "[".repeat(32), "]".repeat(32));
    assert!(natsconf::parse(&ok).is_ok());
}
