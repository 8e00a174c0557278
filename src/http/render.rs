//! Token responses: the body, `ETag`, `If-None-Match` → 304, `Cache-Control`, and the `text`,
//! `decode` and `check` options. Shared by accounts, activations and the operator.

use super::error::ApiError;
use super::flag;
use crate::jwt::{self, view};
use crate::state::AppState;
use crate::store::Entry;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

/// Query options of token GETs.
#[derive(Debug, Default)]
pub struct ReadOpts {
    /// Serve as `text/plain`.
    pub text: Option<String>,
    /// Serve the decoded view.
    pub decode: Option<String>,
    /// 404 when expired.
    pub check: Option<String>,
    /// Re-send the NATS notification.
    pub notify: Option<String>,
}

impl ReadOpts {
    /// The options of the query string `query`. As the Go server read them (`Query().Get`): a
    /// parameter given twice counts with its first value, and other parameters are ignored.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] when the query string is not URL-encoded pairs.
    pub fn from_query(query: &str) -> Result<ReadOpts, ApiError> {
        let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|e| ApiError::BadRequest(format!("bad query: {e}")))?;
        let mut opts = ReadOpts::default();
        for (name, value) in pairs.into_inner() {
            let slot = match name.as_str() {
                "text" => &mut opts.text,
                "decode" => &mut opts.decode,
                "check" => &mut opts.check,
                "notify" => &mut opts.notify,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        Ok(opts)
    }

    /// The decoded view is asked for, and not the text one: `text=true` wins over
    /// `decode=true`, as in the Go server (it answered `text` first).
    pub fn wants_decoded(&self) -> bool {
        flag(&self.decode) && !flag(&self.text)
    }
}

impl actix_web::FromRequest for ReadOpts {
    type Error = ApiError;
    type Future = std::future::Ready<Result<ReadOpts, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(ReadOpts::from_query(req.query_string()))
    }
}

/// `Cache-Control` for a token: never a negative max-age (the Go server's bug). A token that
/// does not expire gets `max_age`; one that does gets the time left, capped at `max_age`; an
/// expired one must not be cached.
pub fn cache_control(exp: Option<i64>, now: i64, max_age: Duration) -> String {
    let cap = max_age.as_secs() as i64;
    let age = match exp {
        None => cap,
        Some(exp) if exp <= now => return "no-cache".to_string(),
        Some(exp) => (exp - now).min(cap),
    };
    format!("max-age={age}, stale-while-revalidate=3600, stale-if-error=3600")
}

/// Answers a GET of `entry` according to `opts` ([`render`]); with `?notify=true` an answer of
/// the token (200) also re-sends its NATS notification. As in the Go server, a 304 (the client
/// has it) or the 404 of `check=true` on an expired token re-sends nothing.
///
/// # Errors
/// As [`token`].
pub async fn respond(
    entry: &Arc<Entry>,
    opts: &ReadOpts,
    req: &HttpRequest,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let res = render(entry, opts, req, state).await?;
    if flag(&opts.notify) && res.status() == actix_web::http::StatusCode::OK {
        state.notifier.resend(entry.clone());
    }
    Ok(res)
}

/// Renders `entry` according to `opts` for a handler: [`token`], with `?decode=true` views
/// taken from the per-version cache ([`crate::limits::DecodeCache`]). A view is rendered at
/// most once per version while it stays cached, on the heavy-work thread
/// ([`crate::limits::heavy`]: nested activation tokens are verified one by one, a thousand
/// take tens of milliseconds).
async fn render(
    entry: &Entry,
    opts: &ReadOpts,
    req: &HttpRequest,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    if !opts.wants_decoded() || expired_check(entry, opts).is_err() {
        return token(entry, opts, req, state.http.max_age);
    }
    let cache = &state.limits.decode;
    let tag = entry.etag();
    let view = match cache.get(&tag) {
        Some(view) => {
            state.metrics.decode_cache(true);
            view
        }
        None => {
            state.metrics.decode_cache(false);
            let jwt = entry.jwt.clone();
            let view = state
                .limits
                .heavy
                .run(&state.metrics, move || {
                    view::render(std::str::from_utf8(&jwt).unwrap_or(""))
                })
                .await??;
            let view = bytes::Bytes::from(view);
            cache.insert(tag, view.clone());
            view
        }
    };
    // Over its address's share, the view waits for it (a timer, not a worker).
    let client = req.peer_addr().map(|a| a.ip());
    let wait = state
        .limits
        .decode_view(client, view.len(), &state.metrics)?;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let mut res = HttpResponse::Ok();
    res.content_type("text/plain; charset=utf-8");
    Ok(super::stream::in_turns(view, res))
}

/// `check=true` on an expired token: 404.
fn expired_check(entry: &Entry, opts: &ReadOpts) -> Result<(), ApiError> {
    if flag(&opts.check) && entry.exp.is_some_and(|e| e < jwt::now_unix()) {
        return Err(ApiError::NotFound(format!(
            "{} (the stored JWT has expired)",
            entry.key
        )));
    }
    Ok(())
}

/// Renders `entry` according to `opts`.
///
/// # Errors
/// [`ApiError::NotFound`] for `check=true` on an expired token.
pub fn token(
    entry: &Entry,
    opts: &ReadOpts,
    req: &HttpRequest,
    max_age: Duration,
) -> Result<HttpResponse, ApiError> {
    let now = jwt::now_unix();
    expired_check(entry, opts)?;
    if opts.wants_decoded() {
        let view = view::render(entry.jwt_str())?;
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(view));
    }
    if flag(&opts.text) {
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(entry.jwt.clone()));
    }
    let cc = cache_control_value(entry.exp, now, max_age);
    // The ETag is a quoted hex digest of the token's bytes (`store::etag`), so it is always a
    // valid header value; a failure would only drop the header, never the token.
    let tag = entry.etag();
    let etag = HeaderValue::from_maybe_shared(tag.clone()).ok();
    let not_modified =
        etag.is_some() && if_none_match(req, std::str::from_utf8(&tag).unwrap_or(""));
    let mut res = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    if let Some(etag) = etag {
        res.insert_header((header::ETAG, etag));
    }
    res.insert_header((header::CACHE_CONTROL, cc));
    if not_modified {
        return Ok(res.finish());
    }
    Ok(res
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwt"),
        ))
        .body(entry.jwt.clone()))
}

/// [`cache_control`] as a header value. Most tokens never expire, and then the value depends on
/// `max_age` alone: it is built once per worker thread and cloned (a reference count), which
/// keeps a `format!` and a copy off every GET.
fn cache_control_value(exp: Option<i64>, now: i64, max_age: Duration) -> HeaderValue {
    thread_local! {
        static NO_EXP: RefCell<Option<(Duration, HeaderValue)>> = const { RefCell::new(None) };
    }
    let build = |exp| {
        HeaderValue::from_str(&cache_control(exp, now, max_age)).expect("Cache-Control is ASCII")
    };
    if exp.is_some() {
        return build(exp);
    }
    NO_EXP.with(|cell| {
        let mut cell = cell.borrow_mut();
        match &*cell {
            Some((cached_for, v)) if *cached_for == max_age => v.clone(),
            _ => {
                let v = build(None);
                *cell = Some((max_age, v.clone()));
                v
            }
        }
    })
}

/// True when `If-None-Match` lists `etag` (or `*`).
fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers().get_all(header::IF_NONE_MATCH).any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        })
    })
}
