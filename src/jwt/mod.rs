//! NATS JWTs: decoding, signature verification, typed claims and claim validation.
//!
//! This module is pure (no I/O). It understands both JWT generations that nats-server accepts:
//! v2 (`alg: ed25519-nkey`, `nats.version: 2`, signature over `header.payload`) and v1
//! (`alg: ed25519`, `type` at the top level, signature over the payload segment only). Like the
//! Go library's `Decode`, the claims' version rather than the header selects the signed input.
//! Keys are nkeys; the issuer's public key is the verification key, so a token is
//! self-describing and verification needs no key store.
//!
//! [`decode`] checks one token; [`decode_many`] checks many with batched signature verification
//! (a replica's sync), giving each token `decode`'s verdict (one caveat, in its doc).
//!
//! What a token *means* for this server (which issuers are trusted, whether it is newer than the
//! stored one) is decided elsewhere: [`trust`] for issuers, `store` for ordering.

mod account_rules;
mod batch;
mod batch_equation;
pub mod delete;
pub mod encode;
pub mod trust;
pub mod view;

pub use account_rules::{check_account_rules, validate_account};
pub use batch::decode_many;

use data_encoding::{BASE32, BASE64URL_NOPAD};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

/// `alg` of JWT v2 tokens (nats-io/jwt v2).
pub const ALG_V2: &str = "ed25519-nkey";
/// `alg` of JWT v1 tokens (nats-io/jwt v1); still accepted, as nats-server does.
pub const ALG_V1: &str = "ed25519";

/// Why a token was refused. Messages are one line and safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url segments of JSON, or missing required claims.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// The header names an algorithm nats does not use.
    #[error("unsupported JWT algorithm {0:?} (expected \"ed25519-nkey\" or \"ed25519\")")]
    UnsupportedAlgorithm(String),
    /// The issuer is not a valid nkey public key.
    #[error("JWT issuer {0:?} is not a valid nkey public key")]
    BadIssuerKey(String),
    /// The signature does not verify against the issuer key.
    #[error("JWT signature does not verify against its issuer {0}")]
    BadSignature(String),
    /// The token is of another kind than the endpoint takes.
    #[error("expected an {expected} JWT, got {got:?}")]
    WrongType {
        /// What the caller needed.
        expected: ClaimType,
        /// The `type` the token declares.
        got: String,
    },
    /// `exp` is in the past.
    #[error("JWT expired at {0}")]
    Expired(String),
    /// `nbf` is in the future.
    #[error("JWT is not valid before {0}")]
    NotYetValid(String),
    /// A claim is structurally wrong for its type (for example a user key as an account subject).
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
}

/// The role a public nkey plays, from its prefix character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `O…`
    Operator,
    /// `A…`
    Account,
    /// `U…`
    User,
    /// `N…`, `C…` and anything else valid but irrelevant here.
    Other,
}

/// Classifies a public key, validating its base32 encoding and CRC.
/// Returns `None` for anything that is not a well-formed nkey public key.
pub fn key_kind(key: &str) -> Option<KeyKind> {
    // Cheap shape checks first: public nkeys are 56 upper-case base32 characters. This also keeps
    // path-like input (`..`, `/`, `%2e`) away from the decoder and any store.
    if key.len() != 56
        || !key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    {
        return None;
    }
    // Base32, CRC and prefix only, as the Go library's `IsValidPublicKey`: building a KeyPair
    // would also decompress the curve point (several µs, on every GET's path key); signature
    // verification does that anyway for the keys that sign.
    nkeys::from_public_key(key).ok()?;
    Some(match key.as_bytes()[0] {
        b'O' => KeyKind::Operator,
        b'A' => KeyKind::Account,
        b'U' => KeyKind::User,
        _ => KeyKind::Other,
    })
}

/// True when `key` is a valid account public key.
pub fn is_account_key(key: &str) -> bool {
    key_kind(key) == Some(KeyKind::Account)
}

/// The `type` of a claim set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimType {
    /// An operator JWT (self-signed, lists signing keys).
    Operator,
    /// An account JWT (signed by the operator or one of its signing keys).
    Account,
    /// An activation token (an account's grant to import a private export).
    Activation,
    /// A user JWT.
    User,
    /// Anything else (generic claims).
    Generic,
}

impl std::fmt::Display for ClaimType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClaimType::Operator => "operator",
            ClaimType::Account => "account",
            ClaimType::Activation => "activation",
            ClaimType::User => "user",
            ClaimType::Generic => "generic",
        })
    }
}

/// A signing key entry: a bare key, or (accounts, v2) a scoped signing key object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SigningKey {
    /// `"O…"` / `"A…"`
    Key(String),
    /// `{"kind": "user_scope", "key": "A…", …}`
    Scoped {
        /// The public key.
        key: String,
    },
}

impl SigningKey {
    /// The public key, whatever the form.
    pub fn key(&self) -> &str {
        match self {
            SigningKey::Key(k) | SigningKey::Scoped { key: k } => k,
        }
    }
}

/// The `nats` section fields this server needs. Everything else stays in the raw token.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NatsClaims {
    /// v2 claim type (`operator`, `account`, `activation`, …).
    #[serde(rename = "type", default)]
    pub claim_type: Option<String>,
    /// Claims version: 2 for v2 tokens, absent or 1 for v1.
    #[serde(default)]
    pub version: Option<i64>,
    /// Operator and account signing keys.
    #[serde(default)]
    pub signing_keys: Vec<SigningKey>,
    /// Activation: the import subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Activation (v2): the account that issued it when signed by a signing key.
    #[serde(default)]
    pub issuer_account: Option<String>,
    /// Operator: the system account public key.
    #[serde(default)]
    pub system_account: Option<String>,
    /// Operator: the account server URL nsc pushes to.
    #[serde(default)]
    pub account_server_url: Option<String>,
}

/// The registered claims plus the parts of `nats` this server uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// Unique id of this token; the ETag.
    #[serde(default)]
    pub jti: String,
    /// Issued-at, seconds since the epoch; orders versions of the same account.
    #[serde(default)]
    pub iat: i64,
    /// Issuer public key (the signer).
    pub iss: String,
    /// Subject public key (the account, operator, or for activations the importing account).
    pub sub: String,
    /// Expiry, seconds since the epoch; 0 or absent means never.
    #[serde(default)]
    pub exp: Option<i64>,
    /// Not-before, seconds since the epoch.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Friendly name.
    #[serde(default)]
    pub name: Option<String>,
    /// v1 tokens carry the type at the top level.
    #[serde(rename = "type", default)]
    pub v1_type: Option<String>,
    /// The nats-specific section.
    #[serde(default)]
    pub nats: NatsClaims,
}

impl Claims {
    /// The declared claim type, from `nats.type` (v2) or the top-level `type` (v1).
    pub fn claim_type(&self) -> ClaimType {
        match self.type_str() {
            "operator" => ClaimType::Operator,
            "account" => ClaimType::Account,
            "activation" => ClaimType::Activation,
            "user" => ClaimType::User,
            _ => ClaimType::Generic,
        }
    }

    fn type_str(&self) -> &str {
        // As the Go library's `identifier.Kind`: a top-level `type` marks a v1 token and wins.
        // In v1 activations `nats.type` is the import's kind (`stream`), not the claim type.
        match self.v1_type.as_deref() {
            Some(t) if !t.is_empty() => t,
            _ => self.nats.claim_type.as_deref().unwrap_or(""),
        }
    }

    /// The claims' format version as the Go library reads it: 1 when `type` sits at the top
    /// level (v1 tokens), otherwise `nats.version` (0 when absent).
    pub fn version(&self) -> i64 {
        if self.v1_type.as_deref().is_some_and(|t| !t.is_empty()) {
            1
        } else {
            self.nats.version.unwrap_or(0)
        }
    }

    /// The account an activation token speaks for: `issuer_account` when it was signed with
    /// one of that account's signing keys, otherwise the issuer itself.
    pub fn issuing_account(&self) -> &str {
        self.nats
            .issuer_account
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.iss)
    }

    /// `exp` as an `Option`, treating 0 as "never" like the Go library.
    pub fn expires(&self) -> Option<i64> {
        self.exp.filter(|e| *e > 0)
    }

    /// Time checks as the Go library's `Validate` does them: `exp` passed, `nbf` not reached.
    ///
    /// # Errors
    /// [`JwtError::Expired`] or [`JwtError::NotYetValid`].
    pub fn check_time(&self, now: i64) -> Result<(), JwtError> {
        if let Some(exp) = self.expires() {
            if exp < now {
                return Err(JwtError::Expired(unix_to_rfc3339(exp)));
            }
        }
        if let Some(nbf) = self.nbf.filter(|n| *n > 0) {
            if nbf > now {
                return Err(JwtError::NotYetValid(unix_to_rfc3339(nbf)));
            }
        }
        Ok(())
    }

    /// Fails unless the token is of type `expected`.
    ///
    /// # Errors
    /// [`JwtError::WrongType`].
    pub fn expect_type(&self, expected: ClaimType) -> Result<(), JwtError> {
        if self.claim_type() == expected {
            Ok(())
        } else {
            Err(JwtError::WrongType {
                expected,
                got: self.type_str().to_string(),
            })
        }
    }
}

/// A decoded token whose signature has been verified against its `iss`.
#[derive(Debug, Clone)]
pub struct Jwt {
    /// The token text exactly as received (no surrounding whitespace).
    pub raw: String,
    /// The `alg` from the header.
    pub alg: String,
    /// The typed claims.
    pub claims: Claims,
}

/// Decodes `token` and verifies its signature with the issuer's key.
///
/// Surrounding whitespace is ignored (files and `curl --data @file` often add a newline).
/// For many tokens at once, [`decode_many`] gives the same verdicts for a little over half the
/// CPU.
///
/// # Errors
/// Any [`JwtError`] that says why the token is not a well-formed, correctly signed NATS JWT.
pub fn decode(token: &str) -> Result<Jwt, JwtError> {
    let parsed = parse(token)?;
    with_issuer_key(&parsed.claims.iss, |key| parsed.verify_with(&key.key))??;
    Ok(parsed.into_jwt())
}

/// A token that parsed, holding everything its signature check needs. Split from the check so
/// that [`decode_many`] can parse every token first and verify the signatures in batches.
struct Parsed<'a> {
    /// The token without surrounding whitespace.
    token: &'a str,
    /// The header's `alg`, as written.
    alg: String,
    claims: Claims,
    /// The bytes of `token` the signature covers: `header.payload` (v2) or `payload` (v1).
    signed: Range<usize>,
    /// The decoded signature segment, of any length: a wrong length is a bad signature, not a
    /// malformed token, as nkeys reports it.
    sig: Vec<u8>,
}

impl<'a> Parsed<'a> {
    fn signed(&self) -> &'a [u8] {
        &self.token.as_bytes()[self.signed.clone()]
    }

    /// The signature, or `None` when the segment is not 64 bytes.
    fn signature(&self) -> Option<Signature> {
        let bytes: &[u8; 64] = self.sig.as_slice().try_into().ok()?;
        Some(Signature::from_bytes(bytes))
    }

    fn bad_signature(&self) -> JwtError {
        JwtError::BadSignature(self.claims.iss.clone())
    }

    /// Single verification, exactly what `nkeys::KeyPair::verify` does (it is the verifier the
    /// server used before keys were cached as [`VerifyingKey`]s): ed25519-dalek's `verify`,
    /// which rejects a non-canonical `s` or `R` but accepts weak keys.
    fn verify_with(&self, key: &VerifyingKey) -> Result<(), JwtError> {
        let sig = self.signature().ok_or_else(|| self.bad_signature())?;
        key.verify(self.signed(), &sig)
            .map_err(|_| self.bad_signature())
    }

    fn into_jwt(self) -> Jwt {
        Jwt {
            raw: self.token.to_string(),
            alg: self.alg,
            claims: self.claims,
        }
    }
}

/// [`decode`] up to the signature check: everything but cryptography.
fn parse(token: &str) -> Result<Parsed<'_>, JwtError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed(
            "expected three '.'-separated segments".into(),
        ));
    };
    let header = b64(h64, "header")?;
    check_json(&header, "header")?;
    let header: Header = serde_json::from_slice(&header)
        .map_err(|e| JwtError::Malformed(format!("header is not valid JSON: {e}")))?;
    // The Go library's `Header.Valid`: `typ` is JWT and `alg` an nkey algorithm, in any case.
    if !header.typ.eq_ignore_ascii_case("JWT") {
        return Err(JwtError::Malformed(format!(
            "unsupported token type {:?} (expected \"JWT\")",
            header.typ
        )));
    }
    let alg = header.alg.to_ascii_lowercase();
    if alg != ALG_V2 && alg != ALG_V1 {
        return Err(JwtError::UnsupportedAlgorithm(header.alg));
    }
    let payload = b64(p64, "payload")?;
    check_json(&payload, "payload")?;
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|e| JwtError::Malformed(format!("claims are not valid: {e}")))?;
    let version = claims.version();
    if version > 2 {
        return Err(JwtError::Malformed(format!(
            "claims version {version} is newer than this server understands (2)"
        )));
    }
    let sig = b64(s64, "signature")?;

    // As in the Go library's `Decode` (what nats-server runs), the claims' version decides what
    // was signed, not the header: v1 signed the payload segment alone, v2 "header.payload".
    let payload_start = h64.len() + 1;
    let signed = if version <= 1 {
        payload_start..payload_start + p64.len()
    } else {
        0..payload_start + p64.len()
    };
    Ok(Parsed {
        token,
        alg: header.alg,
        claims,
        signed,
        sig,
    })
}

/// An issuer's decoded public key.
#[derive(Clone, Copy)]
struct IssuerKey {
    key: VerifyingKey,
    /// A small-order ("weak") key: [`decode_many`] verifies its tokens singly, because batch
    /// verification can accept signatures under such a key that single verification refuses,
    /// and a weak key has no secret, so anyone could make them.
    weak: bool,
}

impl IssuerKey {
    /// Decodes an nkey public key as `nkeys::KeyPair::from_public_key` does (base32, CRC,
    /// prefix, then the curve point), refusing the same keys with [`JwtError::BadIssuerKey`].
    fn decode(iss: &str) -> Result<IssuerKey, JwtError> {
        let bad = || JwtError::BadIssuerKey(iss.to_string());
        let (_prefix, bytes) = nkeys::from_public_key(iss).map_err(|_| bad())?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        Ok(IssuerKey {
            key,
            weak: key.is_weak(),
        })
    }
}

/// Runs `f` with the issuer's public key. Decoding a key decompresses a curve point, about a
/// fifth of the cost of a verification, and nearly every token is signed by one of a handful of
/// keys (the operator and its signing keys), so each thread keeps the last few it decoded.
fn with_issuer_key<T>(iss: &str, f: impl FnOnce(&IssuerKey) -> T) -> Result<T, JwtError> {
    const KEEP: usize = 8;
    thread_local! {
        static RECENT: std::cell::RefCell<Vec<(String, IssuerKey)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        if let Some(i) = recent.iter().position(|(k, _)| k == iss) {
            return Ok(f(&recent[i].1));
        }
        let key = IssuerKey::decode(iss)?;
        let out = f(&key);
        if recent.len() == KEEP {
            recent.remove(0);
        }
        recent.push((iss.to_string(), key));
        Ok(out)
    })
}

/// Parses the claims of a token without verifying the signature. Only for tokens that were
/// verified before they were stored.
///
/// # Errors
/// [`JwtError::Malformed`].
pub fn parse_unverified(token: &str) -> Result<Claims, JwtError> {
    let p64 = token
        .trim()
        .split('.')
        .nth(1)
        .ok_or_else(|| JwtError::Malformed("expected three '.'-separated segments".into()))?;
    // Lenient about `=` padding, which earlier versions accepted: a store written by them must
    // still load.
    serde_json::from_slice(&b64(p64.trim_end_matches('='), "payload")?)
        .map_err(|e| JwtError::Malformed(format!("claims are not valid: {e}")))
}

/// The `iat` and the expiry ([`Claims::expires`]) of a token, not verified: what loading a
/// stored token needs (it was verified when it was written). [`parse_unverified`] builds every
/// claim, a handful of allocations a token, which a start that loads a million tokens pays
/// for in time and in freed memory the allocator keeps; this decodes the payload into a
/// per-thread buffer and reads only the two numbers. Lenient about `=` padding, as
/// [`parse_unverified`] is.
///
/// # Errors
/// [`JwtError::Malformed`] when the token has no payload segment, it is not base64url, or it
/// is not a JSON object whose `iat` and `exp`, where present, are integers.
pub fn parse_times(token: &str) -> Result<(i64, Option<i64>), JwtError> {
    #[derive(Deserialize)]
    struct Times {
        #[serde(default)]
        iat: i64,
        #[serde(default)]
        exp: Option<i64>,
    }
    thread_local! {
        static PAYLOAD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let p64 = token
        .trim()
        .split('.')
        .nth(1)
        .ok_or_else(|| JwtError::Malformed("expected three '.'-separated segments".into()))?
        .trim_end_matches('=');
    let bad = || JwtError::Malformed("payload is not unpadded base64url".into());
    PAYLOAD.with_borrow_mut(|buf| {
        let len = BASE64URL_NOPAD.decode_len(p64.len()).map_err(|_| bad())?;
        buf.resize(len, 0);
        let len = BASE64URL_NOPAD
            .decode_mut(p64.as_bytes(), buf)
            .map_err(|_| bad())?;
        let t: Times = serde_json::from_slice(&buf[..len])
            .map_err(|e| JwtError::Malformed(format!("claims are not valid: {e}")))?;
        Ok((t.iat, t.exp.filter(|e| *e > 0)))
    })
}

/// Decodes and verifies an account JWT and checks what the claims alone can tell: the type, that
/// `sub` is an account key and `iss` an operator key, the time window, and the content rules
/// nats-server applies when it loads an account ([`check_account_rules`]).
///
/// Whether the issuer is *trusted* is [`trust::Operator::check_issuer`]'s job.
///
/// # Errors
/// Any [`JwtError`].
pub fn decode_account(token: &str, now: i64) -> Result<Jwt, JwtError> {
    let jwt = decode(token)?;
    check_account_subject(&jwt.claims)?;
    check_account_claims(&jwt.claims, now)?;
    check_account_rules(&jwt)?;
    Ok(jwt)
}

/// The first half of [`decode_account`]'s checks: an account JWT whose subject is an account
/// key. Split from [`check_account_claims`] so the write path can check the path key and the
/// issuer's trust in between, in the order the API documents.
///
/// # Errors
/// [`JwtError::WrongType`] or [`JwtError::InvalidClaims`].
pub fn check_account_subject(c: &Claims) -> Result<(), JwtError> {
    c.expect_type(ClaimType::Account)?;
    if !is_account_key(&c.sub) {
        return Err(JwtError::InvalidClaims(format!(
            "subject {:?} is not an account public key",
            c.sub
        )));
    }
    Ok(())
}

/// The second half of [`decode_account`]'s checks: an operator-key issuer, account signing
/// keys, and the time window.
///
/// # Errors
/// [`JwtError::InvalidClaims`], [`JwtError::Expired`] or [`JwtError::NotYetValid`].
pub fn check_account_claims(c: &Claims, now: i64) -> Result<(), JwtError> {
    if key_kind(&c.iss) != Some(KeyKind::Operator) {
        return Err(JwtError::InvalidClaims(format!(
            "issuer {} is not an operator key (account JWTs are signed by the operator or one of its signing keys)",
            c.iss
        )));
    }
    for sk in &c.nats.signing_keys {
        if !is_account_key(sk.key()) {
            return Err(JwtError::InvalidClaims(format!(
                "signing key {:?} is not an account public key",
                sk.key()
            )));
        }
    }
    c.check_time(now)
}

/// Decodes and verifies an activation token and checks its shape: issued by an account (or an
/// operator), for an account subject, with an import subject, within its time window.
///
/// # Errors
/// Any [`JwtError`].
pub fn decode_activation(token: &str, now: i64) -> Result<Jwt, JwtError> {
    let jwt = decode(token)?;
    let c = &jwt.claims;
    c.expect_type(ClaimType::Activation)?;
    if !matches!(key_kind(&c.iss), Some(KeyKind::Account | KeyKind::Operator)) {
        return Err(JwtError::InvalidClaims(format!(
            "issuer {} is not an account or operator key",
            c.iss
        )));
    }
    if !is_account_key(&c.sub) {
        return Err(JwtError::InvalidClaims(format!(
            "subject {:?} is not an account public key",
            c.sub
        )));
    }
    if let Some(ia) = c.nats.issuer_account.as_deref().filter(|s| !s.is_empty()) {
        if !is_account_key(ia) {
            return Err(JwtError::InvalidClaims(format!(
                "issuer_account {ia:?} is not an account public key"
            )));
        }
    }
    if c.nats.subject.as_deref().unwrap_or("").is_empty() {
        return Err(JwtError::InvalidClaims(
            "activation has no import subject".into(),
        ));
    }
    c.check_time(now)?;
    Ok(jwt)
}

/// The official `ActivationClaims.HashID()`: padded base32 of sha256 of
/// `iss.sub.<import subject cut before its first wildcard token>` (`_` when the subject starts
/// with a wildcard). It is the key activations are stored and served under.
///
/// # Errors
/// [`JwtError::InvalidClaims`] when issuer, subject or import subject is empty.
pub fn activation_hash(claims: &Claims) -> Result<String, JwtError> {
    let subject = claims.nats.subject.as_deref().unwrap_or("");
    if claims.iss.is_empty() || claims.sub.is_empty() || subject.is_empty() {
        return Err(JwtError::InvalidClaims(
            "not enough data in the activation claims to create a hash".into(),
        ));
    }
    let base = format!("{}.{}.{}", claims.iss, claims.sub, clean_subject(subject));
    Ok(BASE32.encode(&Sha256::digest(base.as_bytes())))
}

/// Cuts a subject before its first `*` or `>` token, as the Go library's `cleanSubject` does.
fn clean_subject(subject: &str) -> String {
    let tokens: Vec<&str> = subject.split('.').collect();
    match tokens.iter().position(|t| *t == "*" || *t == ">") {
        Some(0) => "_".to_string(),
        Some(i) => tokens[..i].join("."),
        None => subject.to_string(),
    }
}

/// True when `s` has the shape of an activation hash (56 base32 characters, `=` padded to 56).
pub fn is_activation_hash(s: &str) -> bool {
    s.len() == 56 && BASE32.decode(s.as_bytes()).is_ok_and(|d| d.len() == 32)
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    typ: String,
    #[serde(default)]
    alg: String,
}

fn b64(seg: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    // Unpadded and canonical only, as the Go library decodes (`RawURLEncoding`): tolerating
    // `=` let anyone append padding to the signature of a valid token and have that variant
    // verify, be stored, and be served to nats-server, which refuses it.
    BASE64URL_NOPAD
        .decode(seg.as_bytes())
        .map_err(|_| JwtError::Malformed(format!("{what} is not unpadded base64url")))
}

/// How deep a token's JSON may nest. serde skips unknown fields without any depth limit, so
/// without this a correctly signed token could carry megabytes of `[[[[…` that the `decode`
/// view refuses; real tokens nest a handful of levels.
const MAX_JSON_DEPTH: usize = 128;

/// Fails unless `json` is a JSON object (serde would also fill a struct from an array, which
/// the Go library refuses) nesting arrays and objects no deeper than [`MAX_JSON_DEPTH`]. A
/// linear scan that skips strings; the JSON parser reports every other problem.
fn check_json(json: &[u8], what: &str) -> Result<(), JwtError> {
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(JwtError::Malformed(format!("{what} is not a JSON object")));
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(JwtError::Malformed(format!(
                        "{what} nests JSON more than {MAX_JSON_DEPTH} levels deep"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC rendering of a Unix time; negative or absurd values fall back to the number.
pub fn unix_to_rfc3339(t: i64) -> String {
    u64::try_from(t)
        .ok()
        .and_then(|s| UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)))
        .filter(|st| {
            st.duration_since(UNIX_EPOCH)
                .is_ok_and(|d| d.as_secs() < 253_402_300_800)
        })
        .map(|st| humantime::format_rfc3339_seconds(st).to_string())
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v1 activation names its claim type at the top level and the import kind in
    /// `nats.type`; the top-level one decides, as in the Go library.
    #[test]
    fn v1_claim_type_wins_over_the_nats_section() {
        let account = nkeys::KeyPair::new_account();
        let importer = nkeys::KeyPair::new_account().public_key();
        let v1 = encode::sign(
            serde_json::json!({ "sub": importer, "type": "activation",
                "nats": { "type": "stream", "subject": "orders.>" } }),
            &account,
        );
        let claims = parse_unverified(&v1).unwrap();
        assert_eq!(claims.claim_type(), ClaimType::Activation);
        assert_eq!(claims.version(), 1);
        let v2 = encode::activation(&account, &importer, "orders.>", "stream");
        assert_eq!(
            parse_unverified(&v2).unwrap().claim_type(),
            ClaimType::Activation
        );
    }
}
