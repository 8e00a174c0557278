//! `/jwt/v1/accounts[/<pubkey>]`: the resolver probe, account reads and account writes.

use super::error::ApiError;
use super::read_body;
use super::render::{self, ReadOpts};
use crate::jwt;
use crate::service;
use crate::state::AppState;
use crate::store::Kind;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

/// nats-server's startup probe (`GET <resolver URL>`): must be 200 or nats-server will not start.
pub async fn probe() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"))
        .insert_header((header::PRAGMA, "no-cache"))
        .insert_header((header::EXPIRES, "0"))
        .finish()
}

/// The path key, checked to be an account public key before anything else sees it.
fn account_key(key: &str) -> Result<&str, ApiError> {
    if jwt::is_account_key(key) {
        Ok(key)
    } else {
        Err(ApiError::BadKey(format!(
            "{:?} is not an account public key",
            truncate(key)
        )))
    }
}

/// Long hostile paths are not echoed back whole.
pub(super) fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// `GET /jwt/v1/accounts/<pubkey>`
pub async fn get(
    state: web::Data<AppState>,
    key: web::Path<String>,
    opts: ReadOpts,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let key = account_key(&key)?;
    let entry = service::lookup(&state, Kind::Account, key).await?;
    render::respond(&entry, &opts, &req, &state).await
}

/// `POST /jwt/v1/accounts/<pubkey>`: the body is the raw JWT, whatever the Content-Type.
pub async fn post(
    state: web::Data<AppState>,
    key: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = account_key(&key)?;
    let body = read_body(&req, payload, state.http.max_body).await?;
    let stamp = service::post_account(&state, key, &body).await?;
    Ok(super::stamped(HttpResponse::Ok(), stamp.as_ref()).finish())
}

/// `DELETE /jwt/v1/accounts/<pubkey>`: the body is an operator-signed delete request (what
/// `nsc push --prune` sends over NATS) that lists this account.
pub async fn delete(
    state: web::Data<AppState>,
    key: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = account_key(&key)?;
    let body = read_body(&req, payload, state.http.max_body).await?;
    let done = service::delete_accounts(&state, &body, Some(key)).await?;
    Ok(super::stamped(HttpResponse::Ok(), done.stamp.as_ref())
        .content_type("text/plain; charset=utf-8")
        .body(format!("deleted {key}\n")))
}
