//! Why the service refused or failed a request, independent of the transport it came by.
//!
//! [`ServiceError`] is what the write path, lookups and deletions return. Each adapter maps it
//! in its own module: `http::error` to a status, headers and a one-line body; `resolver` to
//! nats-server's JSON reply. What both need is here: the stable machine code
//! ([`ServiceError::code`], sent as `X-Error-Code` and used as a metric label) and the status
//! number ([`ServiceError::status`]). The number is an HTTP status because that is the
//! vocabulary both protocols share: nats-server's resolver replies carry HTTP status numbers
//! as their `code`.

use crate::cluster::ClusterError;
use crate::jwt::delete::{DeleteError, Refused};
use crate::jwt::JwtError;
use crate::limits::Busy;
use crate::replica::ReplicaError;
use crate::store::StoreError;
use crate::verify::Invalid;

/// A request the service did not carry out.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The token (or the body carrying it) is refused by verification.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The stored token is newer than the posted one.
    #[error(
        "a newer JWT is stored (iat {stored_iat} > {posted_iat}); the posted JWT was not stored"
    )]
    Stale {
        /// `iat` of the stored token.
        stored_iat: i64,
        /// `iat` of the rejected token.
        posted_iat: i64,
    },
    /// The account was deleted (an operator-signed delete request of `iat` `deleted_at`, kept
    /// as a tombstone) and the posted JWT was not issued after that request. No JWT is
    /// stored, so [`ServiceError::Stale`]'s "a newer JWT is stored" would send the operator
    /// looking for one; the code stays `stale` (clients and replicas branch on it).
    #[error(
        "the account was deleted by a delete request issued at {deleted_at} and the posted JWT \
         was issued at {posted_iat}; only a JWT issued after the deletion brings the account \
         back: the posted JWT was not stored"
    )]
    Deleted {
        /// `iat` of the delete request the tombstone carries.
        deleted_at: i64,
        /// `iat` of the rejected token.
        posted_iat: i64,
    },
    /// Another version with the same `iat` is stored. Versions are ordered by `iat`, which has
    /// a resolution of one second, and the first accepted version of a second stays (so every
    /// node ends with the same one whatever order they arrive in).
    #[error(
        "a different JWT with the same iat ({iat}) is already stored, and versions of a JWT are \
         ordered by their iat in whole seconds; the posted JWT was not stored: issue it again \
         a second later"
    )]
    SameSecond {
        /// The `iat` both versions share.
        iat: i64,
    },
    /// Nothing stored under the key.
    #[error("no JWT stored for {0}")]
    NotFound(String),
    /// Writes are not possible on this server (a read-only store).
    #[error("{0}")]
    WritesDisabled(String),
    /// A request that cannot be carried out as sent.
    #[error("{0}")]
    BadRequest(String),
    /// A limit on concurrent work is reached; come back after its `retry_after`.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// A replica could not reach its primary for a write or a miss.
    #[error("the primary account server is unreachable: {0}")]
    PrimaryUnavailable(String),
    /// The store failed; adapters log the cause and do not return it.
    #[error("the JWT could not be stored; see the server log")]
    Storage(#[source] StoreError),
    /// The account was issued after the delete request: it stays.
    #[error("{0}; the account was not deleted")]
    DeleteConflict(String),
    /// A deletion request was refused (nats-server's reasons).
    #[error("{0}")]
    DeleteRefused(#[from] Refused),
    /// A cluster node that cannot take a write: no leader is elected, or it lost its lease.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A refusal from the primary, passed through unchanged (replica write forwarding).
    #[error("{body}")]
    Upstream {
        /// The primary's status.
        status: u16,
        /// The primary's code, when it is one of [`CODES`]; otherwise `upstream`.
        code: &'static str,
        /// The primary's body.
        body: String,
    },
}

/// Every code a node of ours sends as `X-Error-Code` that a replica relays as it is (the
/// transport's own codes, such as `bad_key`, included): clients of a replica see the same code
/// as clients of the primary. `http::error` checks that its codes are all listed.
pub const CODES: &[&str] = &[
    "delete_disabled",
    "delete_not_trusted",
    "delete_malformed",
    "bad_key",
    "invalid_jwt",
    "key_mismatch",
    "unknown_issuer",
    "stale",
    "not_found",
    "writes_disabled",
    "payload_too_large",
    "request_timeout",
    "bad_request",
    "primary_unavailable",
    "storage",
    "no_leader",
    "not_leader",
    "upstream",
];

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ReadOnly => ServiceError::WritesDisabled(
                "this server's store is read-only; post JWTs to a writable primary instead".into(),
            ),
            other => ServiceError::Storage(other),
        }
    }
}

impl From<JwtError> for ServiceError {
    fn from(e: JwtError) -> Self {
        ServiceError::Invalid(Invalid::Jwt(e))
    }
}

impl From<ReplicaError> for ServiceError {
    fn from(e: ReplicaError) -> Self {
        match e {
            ReplicaError::Unavailable(why) => ServiceError::PrimaryUnavailable(why),
            ReplicaError::NoLeader => ServiceError::Cluster(ClusterError::NoLeader),
            ReplicaError::Refused { status, code, body } => {
                ServiceError::upstream(status, code.as_deref(), body)
            }
        }
    }
}

impl ServiceError {
    /// A refusal relayed from the primary, keeping its code (`header`) when it is one of
    /// [`CODES`]. Anything else becomes `upstream`, so no text from the network reaches a
    /// header or a metric label.
    pub fn upstream(status: u16, header: Option<&str>, body: String) -> ServiceError {
        let code = header
            .and_then(|h| CODES.iter().find(|c| **c == h))
            .copied()
            .unwrap_or("upstream");
        ServiceError::Upstream { status, code, body }
    }

    /// The stable machine-readable code: `X-Error-Code`, a metric label, relayed by replicas.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Invalid(i) => i.code(),
            ServiceError::Stale { .. } | ServiceError::Deleted { .. } => "stale",
            ServiceError::SameSecond { .. } => "same_iat",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::WritesDisabled(_) => "writes_disabled",
            ServiceError::BadRequest(_) => "bad_request",
            ServiceError::Busy(_) => "busy",
            ServiceError::PrimaryUnavailable(_) => "primary_unavailable",
            ServiceError::Storage(_) => "storage",
            ServiceError::DeleteConflict(_) => "stale",
            ServiceError::DeleteRefused(r) => match r.reason {
                DeleteError::Disabled => "delete_disabled",
                DeleteError::NotTrusted | DeleteError::NotSelfSigned => "delete_not_trusted",
                _ => "delete_malformed",
            },
            ServiceError::Cluster(ClusterError::NoLeader) => "no_leader",
            ServiceError::Cluster(ClusterError::LostLease { .. } | ClusterError::NotLeader) => {
                "not_leader"
            }
            ServiceError::Upstream { code, .. } => code,
        }
    }

    /// The status number of the answer (an HTTP status; nats-server's resolver replies use the
    /// same numbers). A relayed status outside 100–999 is 502.
    pub fn status(&self) -> u16 {
        match self {
            ServiceError::Invalid(Invalid::NoOperator) => 405,
            ServiceError::Invalid(_) | ServiceError::BadRequest(_) => 400,
            ServiceError::Stale { .. }
            | ServiceError::Deleted { .. }
            | ServiceError::SameSecond { .. }
            | ServiceError::DeleteConflict(_) => 409,
            ServiceError::NotFound(_) => 404,
            ServiceError::WritesDisabled(_) => 405,
            ServiceError::Busy(_)
            | ServiceError::PrimaryUnavailable(_)
            | ServiceError::Cluster(_) => 503,
            ServiceError::Storage(_) => 500,
            ServiceError::DeleteRefused(r) => match r.reason {
                DeleteError::Disabled => 405,
                DeleteError::NotTrusted | DeleteError::NotSelfSigned => 403,
                _ => 400,
            },
            ServiceError::Upstream { status, .. } if (100..1000).contains(status) => *status,
            ServiceError::Upstream { .. } => 502,
        }
    }

    /// Whether the server takes no writes at all (a read-only store, no operator): the HTTP
    /// edge says which methods remain.
    pub fn writes_disabled(&self) -> bool {
        matches!(
            self,
            ServiceError::WritesDisabled(_) | ServiceError::Invalid(Invalid::NoOperator)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes a replica relays: ours, and nothing from the network.
    #[test]
    fn relayed_codes_are_ours_or_upstream() {
        let up = |h| ServiceError::upstream(409, h, String::new()).code();
        assert_eq!(up(Some("stale")), "stale");
        assert_eq!(up(Some("made up\r\nSet-Cookie: x")), "upstream");
        assert_eq!(up(None), "upstream");
    }

    #[test]
    fn relayed_statuses_outside_the_range_are_bad_gateway() {
        assert_eq!(
            ServiceError::upstream(418, None, String::new()).status(),
            418
        );
        assert_eq!(
            ServiceError::upstream(42, None, String::new()).status(),
            502
        );
        assert_eq!(
            ServiceError::upstream(1000, None, String::new()).status(),
            502
        );
    }
}
