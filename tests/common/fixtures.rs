//! Fixtures: the official vectors (`tests/data/vectors`, made by the Go JWT library) and helpers
//! that mint more tokens with the same operator and account keys.

use data_encoding::BASE64URL_NOPAD;
use nats_account_server::jwt::encode;
use nkeys::KeyPair;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// The vectors folder, part of the repository (`tests/data/vectors`).
pub fn vectors() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors");
    assert!(p.is_dir(), "test vectors not found at {}", p.display());
    p
}

/// A vector file's text, trimmed.
pub fn vector(name: &str) -> String {
    std::fs::read_to_string(vectors().join(name))
        .unwrap_or_else(|e| panic!("reading vector {name}: {e}"))
        .trim()
        .to_string()
}

fn keys() -> Value {
    serde_json::from_str(&vector("keys.json")).expect("keys.json")
}

/// The vectors' operator identity key pair.
pub fn operator_key() -> KeyPair {
    KeyPair::from_seed(keys()["operator_seed"].as_str().unwrap()).unwrap()
}

/// The vectors' operator signing key pair.
pub fn signing_key() -> KeyPair {
    KeyPair::from_seed(keys()["signing_seed"].as_str().unwrap()).unwrap()
}

/// Account A (`account_a.pub`) key pair.
pub fn account_a() -> KeyPair {
    account(&vector("account_a.pub"))
}

/// Account B (`account_b.pub`) key pair.
pub fn account_b() -> KeyPair {
    account(&vector("account_b.pub"))
}

/// The key pair of one of the vectors' accounts, by public key.
pub fn account(public: &str) -> KeyPair {
    KeyPair::from_seed(
        keys()["accounts"][public]
            .as_str()
            .unwrap_or_else(|| panic!("no seed for {public}")),
    )
    .unwrap()
}

/// An account JWT for `account` signed by the operator's signing key, with extra `nats` fields.
///
/// Each call is a new version: its `iat` is now, or one second past the last one this helper
/// minted for `account` in this test process when that is later. Versions are ordered by `iat`
/// in whole seconds, and a different JWT with the stored `iat` is refused (DESIGN §4), so a
/// test that posts successive versions gets them a second apart without waiting a second.
pub fn account_jwt(account: &str, name: &str, nats: Value) -> String {
    encode::account_at(&signing_key(), account, name, nats, next_iat(account))
}

/// `iat` for the next version of `account` minted here (see [`account_jwt`]).
pub fn next_iat(account: &str) -> i64 {
    static LAST: Mutex<Option<HashMap<String, i64>>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let last = last.get_or_insert_with(HashMap::new);
    let now = nats_account_server::jwt::now_unix();
    let iat = last.get(account).map_or(now, |prev| now.max(prev + 1));
    last.insert(account.to_string(), iat);
    iat
}

/// An account JWT with an explicit `iat` (ordering tests), signed by the signing key.
pub fn account_jwt_at(account: &str, name: &str, iat: i64) -> String {
    account_signed_at(&signing_key(), account, name, iat)
}

/// [`account_jwt_at`] signed by `signer` (another operator's key, a rotated-out key).
pub fn account_signed_at(signer: &KeyPair, account: &str, name: &str, iat: i64) -> String {
    encode::sign(
        serde_json::json!({ "name": name, "sub": account, "iat": iat,
            "nats": { "type": "account", "version": 2, "limits": { "conn": -1 } } }),
        signer,
    )
}

/// A fresh account key pair and its JWT (signed by the signing key).
pub fn new_account(name: &str) -> (KeyPair, String) {
    let kp = KeyPair::new_account();
    let jwt = account_jwt(&kp.public_key(), name, serde_json::json!({}));
    (kp, jwt)
}

/// A creds file text for a new user of `account`.
pub fn user_creds(account: &KeyPair, name: &str) -> String {
    let user = KeyPair::new_user();
    let jwt = encode::user(account, &user.public_key(), name);
    encode::creds(&jwt, &user.seed().unwrap())
}

/// `header.payload.signature` of two already-encoded segments, signed over `header.payload`
/// (v2) or over the payload segment alone (how v1 tokens were signed).
fn signed(h: String, p: String, signer: &KeyPair, v1_signing: bool) -> String {
    let input = if v1_signing {
        p.clone()
    } else {
        format!("{h}.{p}")
    };
    let sig = signer.sign(input.as_bytes()).unwrap();
    format!("{h}.{p}.{}", BASE64URL_NOPAD.encode(&sig))
}

fn segment(json: &Value) -> String {
    BASE64URL_NOPAD.encode(json.to_string().as_bytes())
}

/// A JWT from arbitrary header and claims JSON, signed over `header.payload` (for tokens the
/// encoder would refuse to make).
pub fn raw_token(header: &Value, claims: &Value, signer: &KeyPair) -> String {
    signed(segment(header), segment(claims), signer, false)
}

/// [`raw_token`] signed over the payload segment alone, as v1 tokens were.
pub fn raw_token_v1(header: &Value, claims: &Value, signer: &KeyPair) -> String {
    signed(segment(header), segment(claims), signer, true)
}

/// A v2 JWT whose claims are exactly `claims` (text, so it can hold what JSON values cannot
/// express: duplicate keys, integers beyond i64), signed by `signer`.
pub fn token_of_text(claims: &str, signer: &KeyPair) -> String {
    let h = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    signed(h, BASE64URL_NOPAD.encode(claims.as_bytes()), signer, false)
}

/// The `iat` of a token (parsed, not verified).
pub fn iat(token: &str) -> i64 {
    nats_account_server::jwt::parse_unverified(token)
        .expect("token claims parse")
        .iat
}
