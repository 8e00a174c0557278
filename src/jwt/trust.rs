//! The trust anchor: the operator JWT. Account JWTs are accepted only when signed by the
//! operator's identity key or one of its signing keys, which is also what nats-server checks
//! when it loads an account (`verifyAccountClaims`), so we never store what it would refuse.

use super::{decode, ClaimType, Jwt, JwtError, KeyKind};
use std::collections::HashSet;

/// A verified operator JWT and the set of keys it trusts.
#[derive(Debug, Clone)]
pub struct Operator {
    jwt: Jwt,
    trusted: HashSet<String>,
}

/// Why an operator JWT cannot serve as the trust anchor. The message carries the cause (no
/// `source` as well, so it is printed once).
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The token itself is bad.
    #[error("{0}")]
    Jwt(JwtError),
    /// It decodes but is not a self-signed operator.
    #[error("{0}")]
    NotOperator(String),
}

impl From<JwtError> for OperatorError {
    fn from(e: JwtError) -> Self {
        OperatorError::Jwt(e)
    }
}

impl Operator {
    /// Parses and verifies an operator JWT (self-signed by its identity key, or by one of its
    /// own signing keys).
    ///
    /// # Errors
    /// [`OperatorError`] naming the problem.
    pub fn from_jwt(token: &str) -> Result<Self, OperatorError> {
        let jwt = decode(token)?;
        let c = &jwt.claims;
        c.expect_type(ClaimType::Operator)?;
        if super::key_kind(&c.sub) != Some(KeyKind::Operator) {
            return Err(OperatorError::NotOperator(format!(
                "subject {} is not an operator key",
                c.sub
            )));
        }
        let mut trusted: HashSet<String> = c
            .nats
            .signing_keys
            .iter()
            .map(|k| k.key().to_string())
            .collect();
        if let Some(bad) = trusted
            .iter()
            .find(|k| super::key_kind(k) != Some(KeyKind::Operator))
        {
            return Err(OperatorError::NotOperator(format!(
                "signing key {bad} is not an operator key"
            )));
        }
        trusted.insert(c.sub.clone());
        if !trusted.contains(&c.iss) {
            return Err(OperatorError::NotOperator(format!(
                "issuer {} is neither the operator {} nor one of its signing keys",
                c.iss, c.sub
            )));
        }
        Ok(Operator { jwt, trusted })
    }

    /// The operator's identity public key.
    pub fn public_key(&self) -> &str {
        &self.jwt.claims.sub
    }

    /// Issued-at of this operator JWT: orders versions of the same operator.
    pub fn iat(&self) -> i64 {
        self.jwt.claims.iat
    }

    /// The raw operator JWT, for `GET /jwt/v1/operator`.
    pub fn jwt(&self) -> &Jwt {
        &self.jwt
    }

    /// The system account named by the operator, if any.
    pub fn system_account(&self) -> Option<&str> {
        self.jwt
            .claims
            .nats
            .system_account
            .as_deref()
            .filter(|s| !s.is_empty())
    }

    /// Accepts `issuer` when it is the identity key or a signing key of this operator.
    ///
    /// # Errors
    /// [`JwtError::InvalidClaims`] with a message naming the issuer and the operator.
    pub fn check_issuer(&self, issuer: &str) -> Result<(), JwtError> {
        if self.trusted.contains(issuer) {
            Ok(())
        } else {
            Err(JwtError::InvalidClaims(format!(
                "untrusted issuer {issuer}: not operator {} or one of its signing keys",
                self.public_key()
            )))
        }
    }
}
