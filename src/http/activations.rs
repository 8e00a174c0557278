//! `/jwt/v1/activations[/<hash>]`: activation tokens, keyed by the official `HashID()`.

use super::accounts::truncate;
use super::error::ApiError;
use super::read_body;
use super::render::{self, ReadOpts};
use crate::jwt;
use crate::service;
use crate::state::AppState;
use crate::store::Kind;
use actix_web::{web, HttpRequest, HttpResponse};

/// `GET /jwt/v1/activations/<hash>`
pub async fn get(
    state: web::Data<AppState>,
    hash: web::Path<String>,
    opts: ReadOpts,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !jwt::is_activation_hash(&hash) {
        return Err(ApiError::BadKey(format!(
            "{:?} is not an activation hash",
            truncate(&hash)
        )));
    }
    let entry = service::lookup(&state, Kind::Activation, &hash).await?;
    render::respond(&entry, &opts, &req, &state).await
}

/// `POST /jwt/v1/activations`: the body is the raw activation token. Answers with its hash,
/// the key to fetch it under.
pub async fn post(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, state.http.max_body).await?;
    let (hash, stamp) = service::post_activation(&state, &body).await?;
    Ok(super::stamped(HttpResponse::Ok(), stamp.as_ref())
        .content_type("text/plain; charset=utf-8")
        .body(hash))
}
