//! Errors at the HTTP edge. Every failure a handler can return is an [`ApiError`] variant, and
//! this file is the one place that maps them to status codes and bodies.
//!
//! Bodies are one line of plain text: `nsc push` shows the body verbatim as the server's
//! message, and `curl` users read it directly. 5xx bodies never carry internal error text;
//! the cause is logged instead.

use crate::jwt::delete::DeleteError;
use crate::jwt::JwtError;
use crate::store::StoreError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

/// A request failure, with the status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The path key is not a valid account public key (or activation hash).
    #[error("{0}")]
    BadKey(String),
    /// The posted token failed validation.
    #[error(transparent)]
    InvalidJwt(#[from] JwtError),
    /// The posted token's subject is not the path key.
    #[error("JWT subject {sub} does not match the account in the path {path}")]
    KeyMismatch {
        /// Key from the URL.
        path: String,
        /// `sub` from the token.
        sub: String,
    },
    /// The issuing account of an activation is unknown.
    #[error("{0}")]
    UnknownIssuer(String),
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
    /// Writes are not possible on this server (read-only store, or no operator to verify with).
    #[error("{0}")]
    WritesDisabled(String),
    /// The body exceeds the configured limit.
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The request body did not arrive within `http.readtimeout`.
    #[error("the request body was not received within {0:?} (http.readtimeout)")]
    RequestTimeout(std::time::Duration),
    /// The request head is larger than `http.maxheaderbytes`.
    #[error("the request headers are larger than the limit of {0} bytes (http.maxheaderbytes)")]
    HeaderTooLarge(usize),
    /// A limit on concurrent work is reached (bulk answers, parked long polls); the client
    /// should come back after `retry_after` seconds.
    #[error("{what} (limit {limit}: {setting}); retry in {retry_after} s")]
    Busy {
        /// What is busy, for people.
        what: &'static str,
        /// The setting holding the limit.
        setting: &'static str,
        /// Its value.
        limit: usize,
        /// Seconds for `Retry-After`.
        retry_after: u64,
    },
    /// A bad query parameter or body encoding.
    #[error("{0}")]
    BadRequest(String),
    /// A replica could not reach its primary for a write or a miss.
    #[error("the primary account server is unreachable: {0}")]
    PrimaryUnavailable(String),
    /// The store failed; details are logged, not returned.
    #[error("the JWT could not be stored; see the server log")]
    Storage(#[source] StoreError),
    /// The account was issued after the delete request: it stays.
    #[error("{0}; the account was not deleted")]
    DeleteConflict(String),
    /// A deletion request was refused (nats-server's reasons).
    #[error("{0}")]
    DeleteRefused(#[from] crate::jwt::delete::Refused),
    /// A cluster node that cannot take a write: no leader is elected, or it lost its lease.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A response from the primary, passed through unchanged (replica write forwarding).
    #[error("{body}")]
    Upstream {
        /// The primary's status.
        status: StatusCode,
        /// The primary's `X-Error-Code`, when it is one of [`ApiError::CODES`]; otherwise
        /// `upstream`.
        code: &'static str,
        /// The primary's body.
        body: String,
    },
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ReadOnly => ApiError::WritesDisabled(
                "this server's store is read-only; post JWTs to a writable primary instead".into(),
            ),
            other => ApiError::Storage(other),
        }
    }
}

impl ApiError {
    /// Every code [`ApiError::code`] can return.
    pub const CODES: &'static [&'static str] = &[
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

    /// A refusal relayed from the primary, keeping its `X-Error-Code` (`header`) when it is
    /// one of ours: clients of a replica see the same code as clients of the primary. Anything
    /// else becomes `upstream`, so no text from the network reaches a header or a metric label.
    pub fn upstream(status: StatusCode, header: Option<&str>, body: String) -> ApiError {
        let code = header
            .and_then(|h| Self::CODES.iter().find(|c| **c == h))
            .copied()
            .unwrap_or("upstream");
        ApiError::Upstream { status, code, body }
    }

    /// A stable machine-readable code, sent as `X-Error-Code` and used as a metrics label.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadKey(_) => "bad_key",
            ApiError::InvalidJwt(_) => "invalid_jwt",
            ApiError::KeyMismatch { .. } => "key_mismatch",
            ApiError::UnknownIssuer(_) => "unknown_issuer",
            ApiError::Stale { .. } => "stale",
            ApiError::SameSecond { .. } => "same_iat",
            ApiError::NotFound(_) => "not_found",
            ApiError::WritesDisabled(_) => "writes_disabled",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::HeaderTooLarge(_) => "header_too_large",
            ApiError::Busy { .. } => "busy",
            ApiError::PrimaryUnavailable(_) => "primary_unavailable",
            ApiError::Storage(_) => "storage",
            ApiError::DeleteConflict(_) => "stale",
            ApiError::DeleteRefused(r) => match r.reason {
                DeleteError::Disabled => "delete_disabled",
                DeleteError::NotTrusted | DeleteError::NotSelfSigned => "delete_not_trusted",
                _ => "delete_malformed",
            },
            ApiError::Cluster(crate::cluster::ClusterError::NoLeader) => "no_leader",
            ApiError::Cluster(
                crate::cluster::ClusterError::LostLease { .. }
                | crate::cluster::ClusterError::NotLeader,
            ) => "not_leader",
            ApiError::Upstream { code, .. } => code,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadKey(_)
            | ApiError::InvalidJwt(_)
            | ApiError::KeyMismatch { .. }
            | ApiError::UnknownIssuer(_)
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Stale { .. } | ApiError::SameSecond { .. } | ApiError::DeleteConflict(_) => {
                StatusCode::CONFLICT
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::WritesDisabled(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeaderTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::PrimaryUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Cluster(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::DeleteRefused(r) => match r.reason {
                DeleteError::Disabled => StatusCode::METHOD_NOT_ALLOWED,
                DeleteError::NotTrusted | DeleteError::NotSelfSigned => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            },
            ApiError::Upstream { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Storage(cause) = self {
            tracing::error!(cause = %cause, "storage failure");
        }
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .insert_header(("X-Error-Code", self.code()));
        match self {
            ApiError::PrimaryUnavailable(_) => {
                resp.insert_header((header::RETRY_AFTER, "5"));
            }
            // An election takes about one lease time; come back soon.
            ApiError::Cluster(_) => {
                resp.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::WritesDisabled(_) => {
                resp.insert_header((header::ALLOW, "GET, HEAD"));
            }
            // Closing the connection gives its descriptor back at once: a refused client
            // holding idle keep-alive connections is what the limit protects against.
            ApiError::Busy { retry_after, .. } => {
                resp.insert_header((header::RETRY_AFTER, retry_after.to_string()))
                    .force_close();
            }
            // The rest of an oversized head may still be arriving: do not read it as the next
            // request.
            ApiError::HeaderTooLarge(_) => {
                resp.force_close();
            }
            _ => {}
        }
        let mut body = self.to_string();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        resp.body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each variant: each code is listed in [`ApiError::CODES`], which is what lets a
    /// replica relay it.
    #[test]
    fn every_code_is_listed() {
        let s = String::new;
        let all = [
            ApiError::BadKey(s()),
            ApiError::InvalidJwt(JwtError::Malformed(s())),
            ApiError::KeyMismatch {
                path: s(),
                sub: s(),
            },
            ApiError::UnknownIssuer(s()),
            ApiError::Stale {
                stored_iat: 2,
                posted_iat: 1,
            },
            ApiError::NotFound(s()),
            ApiError::WritesDisabled(s()),
            ApiError::PayloadTooLarge(1),
            ApiError::RequestTimeout(std::time::Duration::ZERO),
            ApiError::BadRequest(s()),
            ApiError::PrimaryUnavailable(s()),
            ApiError::Storage(StoreError::Closed),
            ApiError::upstream(StatusCode::BAD_REQUEST, None, s()),
            ApiError::DeleteConflict(s()),
            ApiError::Cluster(crate::cluster::ClusterError::NoLeader),
            ApiError::Cluster(crate::cluster::ClusterError::LostLease { term: 1 }),
        ];
        let refused = |reason| {
            ApiError::DeleteRefused(crate::jwt::delete::Refused {
                subject: s(),
                reason,
            })
        };
        let all: Vec<ApiError> = all
            .into_iter()
            .chain([
                refused(DeleteError::Disabled),
                refused(DeleteError::NotTrusted),
                refused(DeleteError::Malformed),
            ])
            .collect();
        for e in &all {
            assert!(ApiError::CODES.contains(&e.code()), "{}", e.code());
        }
        let produced: std::collections::HashSet<&str> = all.iter().map(ApiError::code).collect();
        let listed: std::collections::HashSet<&str> = ApiError::CODES.iter().copied().collect();
        assert_eq!(
            produced, listed,
            "every listed code is produced by some variant"
        );
    }

    #[test]
    fn relayed_codes_are_ours_or_upstream() {
        let up = |h| ApiError::upstream(StatusCode::CONFLICT, h, String::new()).code();
        assert_eq!(up(Some("stale")), "stale");
        assert_eq!(up(Some("made up\r\nSet-Cookie: x")), "upstream");
        assert_eq!(up(None), "upstream");
    }
}
