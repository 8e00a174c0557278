//! The mirror policy: what a replica checks before it stores a token its primary holds (the
//! change feed, read misses, forwarded writes, anti-entropy repairs, a Go primary's pack).
//!
//! The primary checked everything a POST checks when the token was posted; the replica's own
//! job is that nothing reaches its store that its trusted operator did not issue, whatever the
//! link or the primary says. So: the signature, the type, the key the token is filed under
//! and, for accounts, the operator's trust. Time checks are not applied: a replica mirrors
//! what the primary holds, expired tokens included, and serving honours `exp` and
//! `check=true`. Content rules are not applied either: they were the primary's to apply, and a
//! replica that refused what its primary holds would stall behind it forever.

use crate::jwt::delete::DeleteRequest;
use crate::jwt::trust::Operator;
use crate::jwt::{self, ClaimType, Jwt, JwtError};

/// Checks a decoded account token filed under `key`: an account, for `key`, issued by the
/// operator or one of its signing keys.
///
/// # Errors
/// The [`JwtError`] that disqualifies it; without an operator nothing verifies.
pub fn account(operator: Option<&Operator>, key: &str, jwt: &Jwt) -> Result<(), JwtError> {
    let c = &jwt.claims;
    c.expect_type(ClaimType::Account)?;
    if c.sub != key {
        return Err(JwtError::InvalidClaims(format!(
            "subject {} is not the key {key}",
            c.sub
        )));
    }
    match operator {
        Some(op) => op.check_issuer(&c.iss),
        // Nothing is stored unverified: the sync task installs the primary's operator before
        // it applies anything, and until then NATS updates are refused.
        None => Err(JwtError::InvalidClaims(
            "no operator known to verify against".into(),
        )),
    }
}

/// Checks a decoded activation token filed under `key`: an activation whose hash is `key`.
///
/// # Errors
/// The [`JwtError`] that disqualifies it.
pub fn activation(key: &str, jwt: &Jwt) -> Result<(), JwtError> {
    let c = &jwt.claims;
    c.expect_type(ClaimType::Activation)?;
    let hash = jwt::activation_hash(c)?;
    if hash != key {
        return Err(JwtError::InvalidClaims(format!(
            "activation hash {hash} is not the key {key}"
        )));
    }
    Ok(())
}

/// Checks the delete request of a deletion of account `key`: validly signed by the operator
/// (or one of its signing keys), self-signed, and listing `key`. Whether deletion is enabled is
/// the primary's decision, not the replica's.
///
/// # Errors
/// Why it does not verify.
pub fn delete(
    operator: Option<&Operator>,
    key: &str,
    request: &str,
) -> Result<DeleteRequest, String> {
    let checked = DeleteRequest::check(request, true, operator, None).map_err(|e| e.to_string())?;
    if !checked.accounts.iter().any(|a| a == key) {
        return Err(format!("the delete request does not list account {key}"));
    }
    Ok(checked)
}
