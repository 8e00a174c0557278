//! `GET /jwt/v1/operator`: the configured operator JWT (`text`, `decode`).

use super::error::ApiError;
use super::flag;
use super::render::ReadOpts;
use crate::jwt::view;
use crate::state::AppState;
use actix_web::{web, HttpResponse};

/// `GET /jwt/v1/operator`
pub async fn get(state: web::Data<AppState>, opts: ReadOpts) -> Result<HttpResponse, ApiError> {
    let trust = state.trust();
    let op = trust
        .operator
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("operator (none is configured)".into()))?;
    let raw = op.jwt().raw.clone();
    if opts.wants_decoded() {
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(view::render(&raw)?));
    }
    let ct = if flag(&opts.text) {
        "text/plain; charset=utf-8"
    } else {
        "application/jwt"
    };
    Ok(HttpResponse::Ok().content_type(ct).body(raw))
}
