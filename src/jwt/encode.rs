//! Signing NATS JWTs (v2 format). The server itself never signs; this exists so tests, the demo
//! key set in `deploy/` and the benchmarks can mint operators, accounts, users and activations
//! with the same code path the verifier checks.

use super::{now_unix, ALG_V2};
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use nkeys::KeyPair;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Signs `claims` with `signer` as a v2 JWT.
///
/// `iss` is set to the signer's public key; `iat` defaults to now and `jti` to a hash of the
/// claims, as the Go library does, so two different claim sets never share a `jti`.
///
/// # Panics
/// If `claims` is not a JSON object or the key pair has no seed (both are programming errors).
pub fn sign(mut claims: Value, signer: &KeyPair) -> String {
    let obj = claims
        .as_object_mut()
        .expect("claims must be a JSON object");
    obj.insert("iss".into(), Value::String(signer.public_key()));
    obj.entry("iat").or_insert_with(|| json!(now_unix()));
    if !obj.contains_key("jti") {
        let digest = Sha256::digest(serde_json::to_vec(&claims).expect("serializable"));
        claims["jti"] = Value::String(BASE32_NOPAD.encode(&digest));
    }
    let header = BASE64URL_NOPAD.encode(format!(r#"{{"typ":"JWT","alg":"{ALG_V2}"}}"#).as_bytes());
    let payload = BASE64URL_NOPAD.encode(&serde_json::to_vec(&claims).expect("serializable"));
    let signing_input = format!("{header}.{payload}");
    let sig = signer
        .sign(signing_input.as_bytes())
        .expect("key pair has a seed");
    format!("{signing_input}.{}", BASE64URL_NOPAD.encode(&sig))
}

/// Operator claims: self-signed by `identity`, with optional signing keys and system account.
pub fn operator(
    identity: &KeyPair,
    name: &str,
    signing_keys: &[String],
    system_account: Option<&str>,
) -> String {
    let mut nats = json!({ "type": "operator", "version": 2, "signing_keys": signing_keys });
    if let Some(sys) = system_account {
        nats["system_account"] = json!(sys);
    }
    sign(
        json!({ "name": name, "sub": identity.public_key(), "nats": nats }),
        identity,
    )
}

/// Account claims for `account` signed by `signer`; `nats` fields are merged over the defaults
/// (unlimited limits), so a caller can add e.g. `{"limits": {"conn": 1}}`.
pub fn account(signer: &KeyPair, account: &str, name: &str, nats: Value) -> String {
    account_at(signer, account, name, nats, now_unix())
}

/// [`account`] issued at `iat`. Versions of an account are ordered by `iat`, in whole seconds,
/// so a caller minting successive versions within one second must set it.
pub fn account_at(signer: &KeyPair, account: &str, name: &str, nats: Value, iat: i64) -> String {
    let mut section = json!({
        "limits": { "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1 },
        "default_permissions": { "pub": {}, "sub": {} },
        "type": "account",
        "version": 2
    });
    merge(&mut section, nats);
    sign(
        json!({ "name": name, "sub": account, "iat": iat, "nats": section }),
        signer,
    )
}

/// User claims for `user` signed by its account key `signer`.
pub fn user(signer: &KeyPair, user: &str, name: &str) -> String {
    sign(
        json!({ "name": name, "sub": user, "nats": {
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2 } }),
        signer,
    )
}

/// Activation token from `issuer` (an account) granting `subject_account` the import `subject`.
pub fn activation(issuer: &KeyPair, subject_account: &str, subject: &str, kind: &str) -> String {
    sign(
        json!({ "sub": subject_account, "nats": {
            "subject": subject, "kind": kind, "type": "activation", "version": 2 } }),
        issuer,
    )
}

/// A decorated `.creds` file for a user, as nsc writes them.
pub fn creds(user_jwt: &str, user_seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}
