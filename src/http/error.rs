//! Errors at the HTTP edge. Every failure a handler can return is an [`ApiError`], and this file
//! is the one place that maps them to status codes, headers and bodies: the request's own
//! problems (path key, query, body size and time, head size) here, and every [`ServiceError`]
//! by its code and status.
//!
//! Bodies are one line of plain text: `nsc push` shows the body verbatim as the server's
//! message, and `curl` users read it directly. 5xx bodies never carry internal error text;
//! the cause is logged instead.

use crate::jwt::JwtError;
use crate::limits::Busy;
use crate::service::ServiceError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

/// A request failure, with the status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The path key is not a valid account public key (or activation hash).
    #[error("{0}")]
    BadKey(String),
    /// A bad query parameter, path or body stream.
    #[error("{0}")]
    BadRequest(String),
    /// No such route, or nothing to serve there.
    #[error("no JWT stored for {0}")]
    NotFound(String),
    /// The body exceeds the configured limit.
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The request body did not arrive within `http.readtimeout`.
    #[error("the request body was not received within {0:?} (http.readtimeout)")]
    RequestTimeout(std::time::Duration),
    /// The request head is larger than `http.maxheaderbytes`.
    #[error("the request headers are larger than the limit of {0} bytes (http.maxheaderbytes)")]
    HeaderTooLarge(usize),
    /// What the service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<Busy> for ApiError {
    fn from(e: Busy) -> Self {
        ApiError::Service(e.into())
    }
}

impl From<JwtError> for ApiError {
    fn from(e: JwtError) -> Self {
        ApiError::Service(e.into())
    }
}

impl From<crate::cluster::ClusterError> for ApiError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        ApiError::Service(e.into())
    }
}

impl ApiError {
    /// A stable machine-readable code, sent as `X-Error-Code` and used as a metrics label.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadKey(_) => "bad_key",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::HeaderTooLarge(_) => "header_too_large",
            ApiError::Service(e) => e.code(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadKey(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeaderTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            // `status` keeps relayed statuses within what a status line can carry.
            ApiError::Service(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY)
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Service(ServiceError::Storage(cause)) = self {
            tracing::error!(cause = %cause, "storage failure");
        }
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .insert_header((crate::wire::header::ERROR_CODE, self.code()));
        match self {
            ApiError::Service(ServiceError::PrimaryUnavailable(_)) => {
                resp.insert_header((header::RETRY_AFTER, "5"));
            }
            // An election takes about one lease time; come back soon.
            ApiError::Service(ServiceError::Cluster(_)) => {
                resp.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::Service(e) if e.writes_disabled() => {
                resp.insert_header((header::ALLOW, "GET, HEAD"));
            }
            // Closing the connection gives its descriptor back at once: a refused client
            // holding idle keep-alive connections is what the limit protects against.
            ApiError::Service(ServiceError::Busy(busy)) => {
                resp.insert_header((header::RETRY_AFTER, busy.retry_after.to_string()))
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
    use crate::cluster::ClusterError;
    use crate::jwt::delete::{DeleteError, Refused};
    use crate::service::CODES;
    use crate::store::StoreError;
    use crate::verify::Invalid;

    /// One of each variant that a replica relays: each code is listed in [`CODES`] (which is
    /// what lets a replica relay it), and every listed code is produced by one of them.
    #[test]
    fn every_code_is_listed() {
        let s = String::new;
        let service = [
            ServiceError::Invalid(Invalid::Jwt(JwtError::Malformed(s()))),
            ServiceError::Invalid(Invalid::KeyMismatch {
                path: s(),
                sub: s(),
            }),
            ServiceError::Invalid(Invalid::UnknownIssuer(s())),
            ServiceError::Invalid(Invalid::Body(s())),
            ServiceError::Invalid(Invalid::NoOperator),
            ServiceError::Stale {
                stored_iat: 2,
                posted_iat: 1,
            },
            ServiceError::NotFound(s()),
            ServiceError::WritesDisabled(s()),
            ServiceError::BadRequest(s()),
            ServiceError::PrimaryUnavailable(s()),
            ServiceError::Storage(StoreError::Closed),
            ServiceError::upstream(400, None, s()),
            ServiceError::DeleteConflict(s()),
            ServiceError::Cluster(ClusterError::NoLeader),
            ServiceError::Cluster(ClusterError::LostLease { term: 1 }),
        ]
        .into_iter()
        .chain(
            [
                DeleteError::Disabled,
                DeleteError::NotTrusted,
                DeleteError::Malformed,
            ]
            .map(|reason| {
                ServiceError::DeleteRefused(Refused {
                    subject: s(),
                    reason,
                })
            }),
        );
        let all: Vec<ApiError> = service
            .map(ApiError::Service)
            .chain([
                ApiError::BadKey(s()),
                ApiError::BadRequest(s()),
                ApiError::NotFound(s()),
                ApiError::PayloadTooLarge(1),
                ApiError::RequestTimeout(std::time::Duration::ZERO),
            ])
            .collect();
        for e in &all {
            assert!(CODES.contains(&e.code()), "{}", e.code());
        }
        let produced: std::collections::HashSet<&str> = all.iter().map(ApiError::code).collect();
        let listed: std::collections::HashSet<&str> = CODES.iter().copied().collect();
        assert_eq!(
            produced, listed,
            "every listed code is produced by some variant"
        );
    }

    /// What a relayed refusal becomes: the primary's status, code and body.
    #[test]
    fn relayed_refusals_keep_the_primarys_answer() {
        let e = ApiError::Service(ServiceError::upstream(409, Some("stale"), "newer".into()));
        assert_eq!(e.status_code(), StatusCode::CONFLICT);
        assert_eq!(e.code(), "stale");
        let weird = ApiError::Service(ServiceError::upstream(42, None, String::new()));
        assert_eq!(weird.status_code(), StatusCode::BAD_GATEWAY);
    }
}
