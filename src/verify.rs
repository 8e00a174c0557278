//! Verification of tokens before they may reach a store, in one place for every way they
//! arrive, so that a token one path refuses cannot get in by another.
//!
//! The policy here is the POST's (DESIGN §4): what the primary's write path applies to a
//! posted account or activation, and what a replica applies to a NATS hint and `import` to
//! every token it files, because those must refuse whatever a POST would refuse.
//!
//! Validation of an account JWT, in order (nothing that fails touches the store): it decodes;
//! the signature verifies; `sub` is an account key equal to the path key; `iss` is the operator
//! identity key or one of its signing keys; the claims are valid and not expired; the account's
//! content passes the JWT library's blocking validation (imports and their activation tokens,
//! exports, limits, permissions, mappings, signing keys: what nats-server checks when it loads
//! the account). The write path compares with the stored version between the cheap part
//! ([`account_claims`]) and the content rules, so a re-post costs only its decoding.
//!
//! This module knows no transport: its refusals are [`Invalid`], which the write path's error
//! carries and each adapter maps.

use crate::jwt::trust::Operator;
use crate::jwt::{self, Jwt, JwtError};
use crate::store::{Kind, Store};
use crate::trust::Trust;

/// Why a token is refused.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// The body is not token text (not UTF-8, or empty).
    #[error("{0}")]
    Body(String),
    /// The token does not decode, verify or pass the claim checks.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// The token's subject is not the key it was sent for.
    #[error("JWT subject {sub} does not match the account in the path {path}")]
    KeyMismatch {
        /// The key it was sent for (the path key of a POST).
        path: String,
        /// `sub` from the token.
        sub: String,
    },
    /// The issuing account of an activation is unknown, or its signer is not one of that
    /// account's signing keys.
    #[error("{0}")]
    UnknownIssuer(String),
    /// No operator is configured (or learned yet), so no account can be verified.
    #[error(
        "no operator JWT is configured (--operator), so account JWTs cannot be verified and \
         are not accepted"
    )]
    NoOperator,
}

impl Invalid {
    /// The stable machine code of the refusal (`X-Error-Code`, metric labels).
    pub fn code(&self) -> &'static str {
        match self {
            Invalid::Body(_) => "bad_request",
            Invalid::Jwt(_) => "invalid_jwt",
            Invalid::KeyMismatch { .. } => "key_mismatch",
            Invalid::UnknownIssuer(_) => "unknown_issuer",
            // Without an operator a server takes no writes at all: the same code as a
            // read-only store.
            Invalid::NoOperator => "writes_disabled",
        }
    }
}

/// Checks a posted account token against the path key and the trust anchor.
///
/// # Errors
/// [`Invalid::NoOperator`] without an operator; otherwise the validation failure.
pub fn validate_account(trust: &Trust, path_key: &str, body: &[u8]) -> Result<Jwt, Invalid> {
    validate_account_for(operator_of(trust)?, path_key, body)
}

/// The operator to verify accounts with.
///
/// # Errors
/// [`Invalid::NoOperator`].
pub fn operator_of(trust: &Trust) -> Result<&Operator, Invalid> {
    trust.operator.as_ref().ok_or(Invalid::NoOperator)
}

/// [`validate_account`] against a given operator: every check a POST applies before it
/// compares with the stored version. The replica's NATS listener and `import` call it too, so
/// nothing reaches a store by another way that a POST would refuse.
///
/// # Errors
/// The validation failure.
pub fn validate_account_for(
    operator: &Operator,
    path_key: &str,
    body: &[u8],
) -> Result<Jwt, Invalid> {
    let jwt = account_claims(operator, path_key, body)?;
    // Last, after trust: nats-server refuses to load an account that breaks these (so would
    // every user of it), and import tokens cost a signature check each.
    jwt::check_account_rules(&jwt)?;
    Ok(jwt)
}

/// The cheap part of [`validate_account_for`]: everything but the account's content rules
/// (the write path compares with the stored version before it pays for those).
///
/// # Errors
/// The validation failure.
pub fn account_claims(operator: &Operator, path_key: &str, body: &[u8]) -> Result<Jwt, Invalid> {
    let token = token_text(body)?;
    // The documented order, so a token failing several checks gets the first reason.
    let jwt = jwt::decode(token)?;
    jwt::check_account_subject(&jwt.claims)?;
    if jwt.claims.sub != path_key {
        return Err(Invalid::KeyMismatch {
            path: path_key.to_string(),
            sub: jwt.claims.sub.clone(),
        });
    }
    operator.check_issuer(&jwt.claims.iss)?;
    jwt::check_account_claims(&jwt.claims, jwt::now_unix())?;
    Ok(jwt)
}

/// Checks a posted activation token: well-formed, signed, not expired, and issued by an account
/// `store` holds (or by a signing key that account lists); returns its hash. The replica's NATS
/// listener and `import` call it too, with their own store.
///
/// # Errors
/// The validation failure.
pub fn validate_activation(store: &Store, body: &[u8]) -> Result<(String, Jwt), Invalid> {
    let token = token_text(body)?;
    let jwt = jwt::decode_activation(token, jwt::now_unix())?;
    let c = &jwt.claims;
    let account = c.issuing_account();
    let Some(stored) = store.get(Kind::Account, account) else {
        return Err(Invalid::UnknownIssuer(format!(
            "the issuing account {account} is not known to this server; post its account JWT first"
        )));
    };
    if account != c.iss {
        let claims = jwt::parse_unverified(stored.jwt_str())?;
        if !claims.nats.signing_keys.iter().any(|k| k.key() == c.iss) {
            return Err(Invalid::UnknownIssuer(format!(
                "activation signer {} is not a signing key of account {account}",
                c.iss
            )));
        }
    }
    let hash = jwt::activation_hash(c)?;
    Ok((hash, jwt))
}

/// A request body as token text: UTF-8, surrounding whitespace removed, not empty.
///
/// # Errors
/// [`Invalid::Body`].
pub fn token_text(body: &[u8]) -> Result<&str, Invalid> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Invalid::Body("request body is not UTF-8 text".into()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Invalid::Body(
            "request body is empty; send the raw JWT".into(),
        ));
    }
    Ok(text)
}
