//! Bulk reads for replicas and migration: the Go-compatible pack and the change feed.

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use std::fmt::Write;
use std::time::Duration;

/// `?max=N` of the pack.
#[derive(Debug, Deserialize)]
pub struct PackOpts {
    max: Option<String>,
}

/// `GET /jwt/v1/pack?max=N`: `key|jwt` lines joined by `\n` (no trailing newline), as the Go
/// server wrote them; accounts and activations in change-log order.
pub async fn pack(
    state: web::Data<AppState>,
    opts: web::Query<PackOpts>,
) -> Result<HttpResponse, ApiError> {
    let max = match opts.max.as_deref() {
        None | Some("") => usize::MAX,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 0 => usize::MAX,
            Ok(n) => n as usize,
            Err(_) => return Err(ApiError::BadRequest(format!("max={s:?} is not an integer"))),
        },
    };
    let entries = state.store.changes_since(0, max);
    let mut body =
        String::with_capacity(entries.iter().map(|e| e.jwt.len() + e.key.len() + 2).sum());
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            body.push('\n');
        }
        body.push_str(&e.key);
        body.push('|');
        body.push_str(e.jwt_str());
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(body))
}

/// Change-feed parameters.
#[derive(Debug, Deserialize)]
pub struct ChangesOpts {
    /// Return changes after this sequence (0: everything).
    #[serde(default)]
    since: u64,
    /// Most changes to return.
    limit: Option<usize>,
    /// Long-poll: hold the request up to this many seconds until a change exists.
    wait: Option<f64>,
}

/// Default and ceiling of `limit`.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;
/// Ceiling of `wait`, below common proxy read timeouts (nginx: 60 s).
const MAX_WAIT: f64 = 55.0;

/// `GET /jwt/v1/changes?since=S&limit=N&wait=W`: lines `seq|kind|key|jwt\n` in sequence order,
/// with `X-Store-Id` (lineage) and `X-Head-Seq`.
pub async fn changes(
    state: web::Data<AppState>,
    opts: web::Query<ChangesOpts>,
) -> Result<HttpResponse, ApiError> {
    let limit = opts.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let mut entries = state.store.changes_since(opts.since, limit);
    if entries.is_empty() {
        if let Some(wait) = opts.wait.filter(|w| *w > 0.0) {
            let wait = Duration::from_secs_f64(wait.min(MAX_WAIT));
            let _parked = state.metrics.long_poll();
            tokio::select! {
                _ = state.store.wait_for_change(opts.since, wait) => {}
                _ = state.draining.cancelled() => {}
            }
            entries = state.store.changes_since(opts.since, limit);
        }
    }
    let head = state.store.head().max(entries.last().map_or(0, |e| e.seq));
    let mut body =
        String::with_capacity(entries.iter().map(|e| e.jwt.len() + e.key.len() + 32).sum());
    for e in &entries {
        let _ = writeln!(
            body,
            "{}|{}|{}|{}",
            e.seq,
            e.kind.as_str(),
            e.key,
            e.jwt_str()
        );
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("X-Store-Id", state.store.lineage()))
        .insert_header(("X-Head-Seq", head.to_string()))
        .body(body))
}
