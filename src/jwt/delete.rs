//! Account deletion requests, checked exactly as nats-server's full resolver checks them
//! (`handleDeleteRequest`, nats-server 2.9 `server/accounts.go`): a generic JWT whose
//! `nats.accounts` lists the accounts to delete, self-signed (`iss == sub`) by the operator's
//! identity key or one of its signing keys (`nsc push --prune` builds it so), never naming the
//! system account. The error texts are nats-server's, so `nsc` shows the same reasons.

use super::trust::Operator;
use super::{decode, Jwt, JwtError};
use data_encoding::BASE64URL_NOPAD;

/// A verified delete request.
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    /// The request token (stored in each tombstone, so replicas can verify it too).
    pub jwt: Jwt,
    /// The accounts it deletes.
    pub accounts: Vec<String>,
}

/// Why a delete request is refused (nats-server's wording).
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Deletion is not enabled (`store.allowdelete`).
    #[error("delete must be enabled in server config")]
    Disabled,
    /// Not a well-formed, correctly signed JWT.
    #[error("{0}")]
    Invalid(#[from] JwtError),
    /// `iss != sub`.
    #[error("not self signed")]
    NotSelfSigned,
    /// Signed by a key that is neither the operator nor one of its signing keys.
    #[error("not trusted")]
    NotTrusted,
    /// `nats.accounts` missing or not a list of account public keys.
    #[error("malformed request")]
    Malformed,
    /// It names the system account.
    #[error("not allowed to delete system account")]
    SystemAccount,
}

/// A refused request: who signed it (empty when it did not decode) and why. Displays as
/// nats-server's error description.
#[derive(Debug, thiserror::Error)]
#[error("delete accounts request by {subject} failed - {reason}")]
pub struct Refused {
    /// The request's subject.
    pub subject: String,
    /// Why.
    pub reason: DeleteError,
}

impl DeleteRequest {
    /// Checks `token` in nats-server's order. `operator` is the trust anchor (`None`: no key
    /// is trusted); `system_account` the account that may never be deleted.
    ///
    /// # Errors
    /// [`Refused`] with the first failing check.
    pub fn check(
        token: &str,
        allowed: bool,
        operator: Option<&Operator>,
        system_account: Option<&str>,
    ) -> Result<DeleteRequest, Refused> {
        let jwt = decode(token.trim()).map_err(|e| Refused {
            subject: String::new(),
            reason: e.into(),
        })?;
        let refuse = |reason| Refused {
            subject: jwt.claims.sub.clone(),
            reason,
        };
        if !allowed {
            return Err(refuse(DeleteError::Disabled));
        }
        if jwt.claims.sub != jwt.claims.iss {
            return Err(refuse(DeleteError::NotSelfSigned));
        }
        if operator.is_none_or(|op| op.check_issuer(&jwt.claims.iss).is_err()) {
            return Err(refuse(DeleteError::NotTrusted));
        }
        let accounts = accounts_of(&jwt.raw).ok_or_else(|| refuse(DeleteError::Malformed))?;
        if accounts.iter().any(|a| !super::is_account_key(a)) {
            return Err(refuse(DeleteError::Malformed));
        }
        if accounts.iter().any(|a| Some(a.as_str()) == system_account) {
            return Err(refuse(DeleteError::SystemAccount));
        }
        Ok(DeleteRequest { jwt, accounts })
    }
}

/// `nats.accounts` of a token's payload, when it is a list of strings.
fn accounts_of(token: &str) -> Option<Vec<String>> {
    let payload = token.split('.').nth(1)?;
    let json: serde_json::Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(payload.as_bytes()).ok()?).ok()?;
    json.get("nats")?
        .get("accounts")?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::encode;
    use nkeys::KeyPair;
    use serde_json::json;

    fn request(signer: &KeyPair, sub: &str, accounts: serde_json::Value) -> String {
        encode::sign(
            json!({ "sub": sub, "nats": { "type": "generic", "version": 2, "accounts": accounts } }),
            signer,
        )
    }

    #[test]
    fn nats_servers_checks_in_its_order() {
        let op = KeyPair::new_operator();
        let sk = KeyPair::new_operator();
        let sys = KeyPair::new_account().public_key();
        let operator =
            Operator::from_jwt(&encode::operator(&op, "op", &[sk.public_key()], Some(&sys)))
                .unwrap();
        let a = KeyPair::new_account().public_key();
        let check = |t: &str, allowed| {
            DeleteRequest::check(t, allowed, Some(&operator), Some(&sys))
                .map(|r| r.accounts)
                .map_err(|e| e.to_string())
        };
        let by_sk = request(&sk, &sk.public_key(), json!([a]));
        assert_eq!(check(&by_sk, true), Ok(vec![a.clone()]));
        let by_op = request(&op, &op.public_key(), json!([a]));
        assert_eq!(check(&by_op, true), Ok(vec![a.clone()]));
        let who = sk.public_key();
        assert_eq!(
            check(&by_sk, false).unwrap_err(),
            format!(
                "delete accounts request by {who} failed - delete must be enabled in server config"
            )
        );
        let other_sub = request(&sk, &op.public_key(), json!([a]));
        assert!(check(&other_sub, true)
            .unwrap_err()
            .ends_with("- not self signed"));
        let rogue = KeyPair::new_operator();
        let rogue_req = request(&rogue, &rogue.public_key(), json!([a]));
        assert!(check(&rogue_req, true)
            .unwrap_err()
            .ends_with("- not trusted"));
        for bad in [json!("A"), json!([1]), json!(["not-a-key"])] {
            let t = request(&sk, &sk.public_key(), bad);
            assert!(check(&t, true)
                .unwrap_err()
                .ends_with("- malformed request"));
        }
        let no_list = encode::sign(
            json!({ "sub": who, "nats": { "type": "generic", "version": 2 } }),
            &sk,
        );
        let e = check(&no_list, true).unwrap_err();
        assert!(e.ends_with("- malformed request"), "{e}");
        let system = request(&sk, &sk.public_key(), json!([a, sys]));
        assert!(check(&system, true)
            .unwrap_err()
            .ends_with("- not allowed to delete system account"));
        assert!(check("junk", true)
            .unwrap_err()
            .starts_with("delete accounts request by  failed - "));
    }
}
