//! Verification of tokens before they may reach a store, in one place with one named policy per
//! way a token arrives, so that the differences between them are deliberate and visible here
//! rather than spread over copies.
//!
//! | check | [`post`] | [`mirror`] | [`import`] | [`watched_file`] | [`configured_account`] |
//! | --- | --- | --- | --- | --- | --- |
//! | signature | yes | yes | yes | yes | yes |
//! | type and key | yes | yes | yes, own key | from the claims | account |
//! | trusted issuer (accounts) | yes | yes | yes | no | with an operator |
//! | time window | yes | no | yes | no | no |
//! | content rules | accounts | no | accounts | no | no |
//! | activation's issuing account known | yes | no | yes | no | n/a |
//!
//! - [`post`]: the write path (HTTP POST, NATS update requests) and a replica's NATS hints.
//! - [`mirror`]: a replica copying from its primary (feed, misses, forwarded writes,
//!   anti-entropy, a Go primary's pack).
//! - [`import`]: `nats-account-server import`.
//! - [`watched_file`]: a file a watched directory or nsc store sees change.
//! - [`configured_account`]: `systemaccountjwtpath`, `cluster.accountjwtpath` (the system
//!   account file must also be the operator's system account).
//! - The operator file itself: [`load_operator`] (server start, SIGHUP, `import`).
//!
//! Why they differ: a POST is new content from anyone, so everything nats-server would check is
//! checked. A replica mirrors what its primary already accepted (the primary checked it when
//! it was posted): it must not serve anything its trusted operator did not issue, but it must
//! also hold what the primary holds even after a token expired (serving honours `exp` and
//! `check=true`). A watched file is the directory owner's, as nats-server's own directory
//! resolver trusts its files; only its signature is checked, so a file caught mid-write is
//! read again later instead of being stored half-written. Deletions have a post and a mirror
//! policy too ([`post::delete`], [`mirror::delete`]).
//!
//! Whether a token replaces the stored version (newer `iat`, same bytes, same second) is not
//! verification: the store and the write path decide it.
//!
//! This module knows no transport and no store: refusals are [`Invalid`] (or the JWT layer's
//! errors), and what a policy needs from a store is passed in.

pub mod import;
pub mod mirror;
pub mod post;

use crate::jwt::trust::{Operator, OperatorError};
use crate::jwt::{self, Jwt, JwtError, KeyKind};
use std::path::Path;

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
    /// An activation filed under another key than its hash ([`import`]).
    #[error("the activation's hash is {hash}")]
    HashMismatch {
        /// Its hash.
        hash: String,
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
            Invalid::KeyMismatch { .. } | Invalid::HashMismatch { .. } => "key_mismatch",
            Invalid::UnknownIssuer(_) => "unknown_issuer",
            // Without an operator a server takes no writes at all: the same code as a
            // read-only store.
            Invalid::NoOperator => "writes_disabled",
        }
    }
}

/// The operator JWT file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OperatorFileError {
    /// It could not be read.
    #[error("operatorjwtpath {path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// It is not a usable operator JWT.
    #[error("operatorjwtpath {path}: {cause}")]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        cause: OperatorError,
    },
}

/// Loads the operator JWT file (`operatorjwtpath`, `--operator`): the trust anchor of the
/// server (at start and on SIGHUP) and of `import`.
///
/// # Errors
/// [`OperatorFileError`] naming the file and the problem.
pub fn load_operator(path: &Path) -> Result<Operator, OperatorFileError> {
    let shown = || path.display().to_string();
    let token = std::fs::read_to_string(path).map_err(|cause| OperatorFileError::Read {
        path: shown(),
        cause,
    })?;
    Operator::from_jwt(token.trim()).map_err(|cause| OperatorFileError::Invalid {
        path: shown(),
        cause,
    })
}

/// The watched-file policy: a token file that a watched directory or nsc store sees change is
/// stored when its signature verifies. What it is and its key come from its claims (the store
/// reads them); its issuer is the directory owner's business.
///
/// # Errors
/// The [`JwtError`] of a token that does not verify (often a file caught mid-write).
pub fn watched_file(text: &str) -> Result<Jwt, JwtError> {
    jwt::decode(text)
}

/// The configured-account policy: an account JWT file served as a fallback
/// (`systemaccountjwtpath`, `cluster.accountjwtpath`) must verify, be an account, and, when an
/// operator is configured, be issued by it (and be its system account, for `system`).
///
/// # Errors
/// Why it is refused, for the start-up error naming the file.
pub fn configured_account(
    text: &str,
    operator: Option<&Operator>,
    system: bool,
) -> Result<Jwt, String> {
    let jwt = jwt::decode(text).map_err(|e| e.to_string())?;
    if jwt::key_kind(&jwt.claims.sub) != Some(KeyKind::Account) {
        return Err("subject is not an account key".into());
    }
    if let Some(op) = operator {
        op.check_issuer(&jwt.claims.iss)
            .map_err(|e| e.to_string())?;
        if let Some(sys) = op
            .system_account()
            .filter(|s| system && *s != jwt.claims.sub)
        {
            return Err(format!(
                "account {} is not the operator's system account {sys}",
                jwt.claims.sub
            ));
        }
    }
    Ok(jwt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::encode;
    use nkeys::KeyPair;
    use serde_json::json;

    struct Fixture {
        operator: Operator,
        signer: KeyPair,
        account: KeyPair,
    }

    fn fixture() -> Fixture {
        let signer = KeyPair::new_operator();
        let operator = Operator::from_jwt(&encode::operator(&signer, "op", &[], None)).unwrap();
        Fixture {
            operator,
            signer,
            account: KeyPair::new_account(),
        }
    }

    /// An account token that expired ten seconds ago.
    fn expired(f: &Fixture) -> String {
        let now = jwt::now_unix();
        encode::sign(
            json!({ "name": "old", "sub": f.account.public_key(), "iat": now - 100,
                    "exp": now - 10, "nats": { "type": "account", "version": 2 } }),
            &f.signer,
        )
    }

    /// A POST refuses an expired account; a replica mirrors it (its primary holds it, and
    /// serving honours `exp`).
    #[test]
    fn expired_accounts_are_refused_posted_and_mirrored() {
        let f = fixture();
        let key = f.account.public_key();
        let token = expired(&f);
        assert!(matches!(
            post::account(Some(&f.operator), &key, token.as_bytes()),
            Err(Invalid::Jwt(JwtError::Expired(_)))
        ));
        let decoded = jwt::decode(&token).unwrap();
        assert!(mirror::account(Some(&f.operator), &key, &decoded).is_ok());
    }

    /// Another operator's account: refused by every policy that checks the issuer, stored by
    /// the watched-file policy (the directory owner's).
    #[test]
    fn untrusted_issuers_are_refused_where_trust_is_checked() {
        let f = fixture();
        let key = f.account.public_key();
        let stranger = KeyPair::new_operator();
        let token = encode::account(&stranger, &key, "a", json!({}));
        let decoded = jwt::decode(&token).unwrap();
        assert!(post::account(Some(&f.operator), &key, token.as_bytes()).is_err());
        assert!(import::account(&f.operator, &key, &token).is_err());
        assert!(mirror::account(Some(&f.operator), &key, &decoded).is_err());
        assert!(configured_account(&token, Some(&f.operator), false).is_err());
        assert!(watched_file(&token).is_ok());
        // Without an operator, nothing is posted or mirrored.
        assert!(matches!(
            post::account(None, &key, token.as_bytes()),
            Err(Invalid::NoOperator)
        ));
        assert!(mirror::account(None, &key, &decoded).is_err());
    }

    #[test]
    fn tokens_are_filed_under_their_own_key() {
        let f = fixture();
        let key = f.account.public_key();
        let token = encode::account(&f.signer, &key, "a", json!({}));
        let other = KeyPair::new_account().public_key();
        assert!(post::account(Some(&f.operator), &key, token.as_bytes()).is_ok());
        assert!(matches!(
            post::account(Some(&f.operator), &other, token.as_bytes()),
            Err(Invalid::KeyMismatch { .. })
        ));
        let decoded = jwt::decode(&token).unwrap();
        assert!(mirror::account(Some(&f.operator), &other, &decoded).is_err());
        // An activation imported under another key than its hash.
        let activation = encode::activation(&f.account, &other, "a.b", "stream");
        let issuer_jwt = Some(token.clone());
        assert!(matches!(
            import::activation("NOTTHEHASH", &activation, |_| issuer_jwt),
            Err(Invalid::HashMismatch { .. })
        ));
    }

    #[test]
    fn operator_files_are_named_in_their_errors() {
        let missing = Path::new("/nonexistent/operator.jwt");
        let e = load_operator(missing).unwrap_err();
        assert!(matches!(e, OperatorFileError::Read { .. }));
        assert!(e
            .to_string()
            .starts_with("operatorjwtpath /nonexistent/operator.jwt: "));
    }
}
