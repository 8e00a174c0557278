//! The POST policy: what the primary's write path applies to a posted account or activation (and
//! to an update request over NATS), and what a replica applies to a NATS hint, because a hint
//! comes from an untrusted channel and must pass whatever a POST would pass.
//!
//! An account, in the documented order (DESIGN §4; a token failing several checks gets the first
//! reason): it decodes; the signature verifies; `sub` is an account key equal to the path key;
//! `iss` is the operator identity key or one of its signing keys; the claims are valid and not
//! expired; the account's content passes the JWT library's blocking validation (imports and
//! their activation tokens, exports, limits, permissions, mappings, signing keys: what
//! nats-server checks when it loads the account). The write path compares with the stored
//! version between the cheap part ([`account_claims`]) and the rest ([`account_rules`]), as
//! DESIGN §4 orders it: a re-post costs only its decoding, and an expired token older than the
//! stored one is stale (409), not refused for its expiry.
//!
//! An activation: well-formed, signed, not expired, and issued by an account the store holds
//! (or by a signing key that account lists).

use super::Invalid;
use crate::jwt::delete::{DeleteRequest, Refused};
use crate::jwt::trust::Operator;
use crate::jwt::{self, Jwt};

/// Checks a posted account token against the path key and the operator.
///
/// # Errors
/// [`Invalid::NoOperator`] without an operator; otherwise the first failing check.
pub fn account(operator: Option<&Operator>, path_key: &str, body: &[u8]) -> Result<Jwt, Invalid> {
    let jwt = account_claims(operator, path_key, body)?;
    account_rules(&jwt)?;
    Ok(jwt)
}

/// The cheap part of [`account`], which says whose token it is: it decodes, its signature
/// verifies, its subject is the path key and its issuer is trusted.
///
/// # Errors
/// [`Invalid::NoOperator`] without an operator; otherwise the first failing check.
pub fn account_claims(
    operator: Option<&Operator>,
    path_key: &str,
    body: &[u8],
) -> Result<Jwt, Invalid> {
    let operator = operator.ok_or(Invalid::NoOperator)?;
    let token = token_text(body)?;
    let jwt = jwt::decode(token)?;
    jwt::check_account_subject(&jwt.claims)?;
    if jwt.claims.sub != path_key {
        return Err(Invalid::KeyMismatch {
            path: path_key.to_string(),
            sub: jwt.claims.sub.clone(),
        });
    }
    operator.check_issuer(&jwt.claims.iss)?;
    Ok(jwt)
}

/// The rest of [`account`], after trust (and, on the write path, after the comparison with the
/// stored version): the claims are valid and not expired, then the content rules. nats-server
/// refuses to load an account that breaks these (so would every user of it), and import
/// tokens cost a signature check each.
///
/// # Errors
/// [`Invalid::Jwt`].
pub fn account_rules(jwt: &Jwt) -> Result<(), Invalid> {
    jwt::check_account_claims(&jwt.claims, jwt::now_unix())?;
    Ok(jwt::check_account_rules(jwt)?)
}

/// Checks a posted activation token; returns its hash. `issuing_account` gives the stored JWT
/// of an account, by key (the store the token is for).
///
/// # Errors
/// The first failing check.
pub fn activation(
    body: &[u8],
    issuing_account: impl FnOnce(&str) -> Option<String>,
) -> Result<(String, Jwt), Invalid> {
    let token = token_text(body)?;
    let jwt = jwt::decode_activation(token, jwt::now_unix())?;
    let c = &jwt.claims;
    let account = c.issuing_account();
    let Some(stored) = issuing_account(account) else {
        return Err(Invalid::UnknownIssuer(format!(
            "the issuing account {account} is not known to this server; post its account JWT first"
        )));
    };
    if account != c.iss {
        let claims = jwt::parse_unverified(&stored)?;
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

/// Checks a posted delete request as nats-server's full resolver does: deletion `allowed`
/// (`store.allowdelete`), self-signed by the operator or one of its signing keys, listing only
/// account keys and never the `system_account`.
///
/// # Errors
/// [`Refused`] with nats-server's reason.
pub fn delete(
    token: &str,
    allowed: bool,
    operator: Option<&Operator>,
    system_account: Option<&str>,
) -> Result<DeleteRequest, Refused> {
    DeleteRequest::check(token, allowed, operator, system_account)
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
