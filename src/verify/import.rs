//! The import policy (`nats-account-server import`): a server serves whatever its store holds,
//! so every imported token passes what a POST would ([`super::post`]), against the operator the
//! import trusts, and is filed under its own key (a directory or a pack could file it under
//! another).

use super::{post, Invalid};
use crate::jwt::trust::Operator;
use crate::jwt::Jwt;

/// Checks an imported account filed under `key`.
///
/// # Errors
/// The first failing check.
pub fn account(operator: &Operator, key: &str, text: &str) -> Result<Jwt, Invalid> {
    post::account(Some(operator), key, text.as_bytes())
}

/// Checks an imported activation filed under `key`; `issuing_account` gives the target store's
/// account JWTs (accounts are imported first).
///
/// # Errors
/// The first failing check, or [`Invalid::HashMismatch`].
pub fn activation(
    key: &str,
    text: &str,
    issuing_account: impl FnOnce(&str) -> Option<String>,
) -> Result<Jwt, Invalid> {
    let (hash, jwt) = post::activation(text.as_bytes(), issuing_account)?;
    if hash != key {
        return Err(Invalid::HashMismatch { hash });
    }
    Ok(jwt)
}
