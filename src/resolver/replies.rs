//! nats-server's JSON replies to resolver requests, and how the write path's outcomes map to
//! them: the one place this adapter turns a [`ServiceError`] into an answer, as
//! `http::error` is for HTTP. The shapes are nats-server's own (`server`, then `data` or
//! `error` with an HTTP status number as `code`), since `nsc` reads them as it reads a
//! nats-server's.

use crate::service::{Deleted, ServiceError};
use serde_json::{json, Value};

/// The `server` object of a reply; `nsc push` requires a non-empty name.
fn server_info() -> Value {
    json!({
        "name": "nats-account-server",
        "ver": env!("CARGO_PKG_VERSION"),
        "time": crate::jwt::unix_to_rfc3339(crate::jwt::now_unix()),
    })
}

/// The answer to an update request (`account`: the key it named, empty when none).
pub fn update(account: &str, result: &Result<(), ServiceError>) -> Value {
    match result {
        Ok(()) => json!({ "server": server_info(), "data": {
            "account": account, "code": 200, "message": "jwt updated" } }),
        Err(e) => json!({ "server": server_info(), "error": {
            "account": account, "code": e.status(),
            "description": format!("jwt update resulted in error - {e}") } }),
    }
}

/// The answer to an update request with an empty body, in nats-server's words (code 400, as
/// our other refusals of what was sent).
pub fn update_empty(account: &str) -> Value {
    json!({ "server": server_info(), "error": {
        "account": account, "code": 400,
        "description": "jwt update error - request body is empty" } })
}

/// The answer to a delete request, as nats-server's `handleDeleteRequest` words it: every
/// listed account counts as deleted when it is gone now (deleted, or absent already).
pub fn delete(result: &Result<Deleted, ServiceError>) -> Value {
    match result {
        Ok(done) if done.failed.is_empty() => {
            let n = done.deleted.len() + done.absent.len();
            json!({ "server": server_info(), "data": {
                "code": 200, "message": format!("deleted {n} accounts") } })
        }
        Ok(done) => {
            let n = done.deleted.len() + done.absent.len();
            let why: Vec<String> = done
                .failed
                .iter()
                .map(|(k, e)| format!("{k}: {e}"))
                .collect();
            json!({ "server": server_info(), "error": { "code": 500, "description": format!(
                "deleted {n} accounts, failed for {} - {}", done.failed.len(), why.join("\n")) } })
        }
        Err(e) => {
            // A refusal carries nats-server's own sentence; anything else gets its prefix.
            let description = match e {
                ServiceError::DeleteRefused(r) => r.to_string(),
                other => format!("delete accounts request failed - {other}"),
            };
            json!({ "server": server_info(), "error": { "code": 500, "description": description } })
        }
    }
}

/// The answer to a LIST request: every stored account's public key.
pub fn list(keys: Vec<String>) -> Value {
    json!({ "server": server_info(), "data": keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_the_status_number_and_reason() {
        let refused = update(
            "AKEY",
            &Err(ServiceError::Stale {
                stored_iat: 2,
                posted_iat: 1,
            }),
        );
        assert_eq!(refused["error"]["code"], 409);
        assert_eq!(refused["error"]["account"], "AKEY");
        assert!(refused["error"]["description"]
            .as_str()
            .unwrap()
            .starts_with("jwt update resulted in error - a newer JWT is stored"));
        assert_eq!(update("AKEY", &Ok(()))["data"]["code"], 200);
        let failed = delete(&Err(ServiceError::BadRequest("x".into())));
        assert_eq!(failed["error"]["code"], 500);
        assert_eq!(
            failed["error"]["description"],
            "delete accounts request failed - x"
        );
    }
}
