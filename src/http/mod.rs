//! The HTTP API: one route table ([`configure`]) used by the server and by tests, plus the
//! middleware every response passes (metrics, CORS as the Go server allowed, request logs).
//!
//! Handlers extract, call `service`/`store`, and map; rendering of token responses (ETag, 304,
//! Cache-Control, `?text`/`?decode`) lives in [`render`].

mod accounts;
mod activations;
pub mod error;
mod lag_plot;
mod operator;
mod ops;
pub mod render;
mod replication;
pub mod stream;

use crate::state::AppState;
use crate::wire::header;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::web;
use error::ApiError;
use futures_util::future::Either;
use futures_util::StreamExt;
use std::time::Instant;

/// Registers every route and the extractor error handlers.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::BadRequest(format!("bad query: {err}")).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::BadRequest(format!("bad path: {err}")).into()),
    )
    // CORS preflight for every path, first, as the Go server allowed any origin to GET and
    // POST; the guard lets every other method fall through to the routes below.
    // (An empty-prefix scope is a plain prefix match; a `/{any:.*}` resource here ran a regex
    // on the path of every request before its guard turned all but OPTIONS away.)
    .service(
        web::scope("")
            .guard(actix_web::guard::Options())
            .default_service(web::to(preflight)),
    )
    .service(
        web::resource(["/jwt/v1/accounts", "/jwt/v1/accounts/"])
            .name("accounts_probe")
            .route(web::get().to(accounts::probe))
            .route(web::head().to(accounts::probe)),
    )
    .service(
        web::resource(ACCOUNT_PATTERN)
            .route(web::get().to(accounts::get))
            .route(web::head().to(accounts::get))
            .route(web::post().to(accounts::post))
            .route(web::delete().to(accounts::delete)),
    )
    .service(web::resource("/jwt/v1/activations").route(web::post().to(activations::post)))
    .service(
        web::resource("/jwt/v1/activations/{hash}")
            .route(web::get().to(activations::get))
            .route(web::head().to(activations::get)),
    )
    .service(web::resource("/jwt/v1/operator").route(web::get().to(operator::get)))
    .service(web::resource("/jwt/v1/pack").route(web::get().to(replication::pack)))
    .service(web::resource("/jwt/v1/changes").route(web::get().to(replication::changes)))
    .service(web::resource("/jwt/v1/digest").route(web::get().to(replication::digest)))
    .service(web::resource("/jwt/v1/help").route(web::get().to(ops::help)))
    .service(web::resource("/healthz").route(web::get().to(ops::healthz)))
    .service(web::resource("/readyz").route(web::get().to(ops::readyz)))
    .service(web::resource("/metrics").route(web::get().to(ops::metrics)))
    .service(web::resource("/").route(web::get().to(ops::status_page)));
}

/// Builds the whole application for `state`: routes plus middleware.
pub fn app(
    state: AppState,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = state.metrics.clone();
    let max_header_bytes = state.limits.max_header_bytes;
    actix_web::App::new()
        .app_data(web::Data::new(state))
        .configure(configure)
        .default_service(web::route().to(not_found))
        .wrap(
            CORS_HEADERS
                .iter()
                .fold(actix_web::middleware::DefaultHeaders::new(), |d, h| d.add(*h)),
        )
        .wrap_fn(move |req, srv| {
            let start = Instant::now();
            let metrics = metrics.clone();
            // First, before any routing: a head over `http.maxheaderbytes` is refused. (actix
            // itself refuses only heads over its 128 KiB buffer.)
            let (fut, fast) = if head_bytes(req.request()) > max_header_bytes {
                metrics.refused("header_too_large");
                let (http_req, _) = req.into_parts();
                let res = actix_web::HttpResponse::from_error(ApiError::HeaderTooLarge(
                    max_header_bytes,
                ));
                let res = ServiceResponse::new(http_req, res);
                (Either::Left(Either::Right(std::future::ready(Ok(res)))), false)
            } else {
                match account_get_fast(req) {
                    Ok(fut) => (Either::Left(Either::Left(fut)), true),
                    Err(req) => (Either::Right(srv.call(req)), false),
                }
            };
            async move {
                let res = fut.await?;
                let req = res.request();
                // Unmatched paths share one label so scanners cannot blow up cardinality.
                // (Preflights are answered by the empty-prefix scope's default service, which
                // has no pattern either.)
                let route = if fast {
                    ACCOUNT_PATTERN.to_string()
                } else {
                    match req.match_pattern() {
                        Some(p) => p,
                        None if req.method() == actix_web::http::Method::OPTIONS => "preflight".into(),
                        None => "unmatched".into(),
                    }
                };
                let status = res.status().as_u16();
                metrics.request(&route, req.method().as_str(), status, start.elapsed().as_secs_f64());
                if let Some(err) = res.response().error() {
                    if let Some(api) = err.as_error::<ApiError>() {
                        if matches!(req.method().as_str(), "POST") {
                            metrics.rejection(api.code());
                        }
                    }
                }
                tracing::debug!(method = %req.method(), path = %req.path(), status, micros = start.elapsed().as_micros() as u64, "request");
                Ok(res)
            }
        })
}

/// The size of a request's head as sent: the request line and every header line.
fn head_bytes(req: &actix_web::HttpRequest) -> usize {
    let uri = req.uri();
    let line = req.method().as_str().len()
        + uri.path().len()
        + uri.query().map_or(0, |q| q.len() + 1)
        + 12;
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + line
}

/// The route of one account; GETs of it normally bypass the router ([`account_get_fast`]).
const ACCOUNT_PATTERN: &str = "/jwt/v1/accounts/{key}";

/// Headers every response carries (CORS as the Go server allowed).
const CORS_HEADERS: [(&str, &str); 2] = [
    ("access-control-allow-origin", "*"),
    (
        "access-control-expose-headers",
        "ETag, X-Store-Id, X-Head-Seq, X-Error-Code",
    ),
];

/// The resolver's hot path, `GET`/`HEAD /jwt/v1/accounts/<key>`, handed straight to
/// [`accounts::get`] with the extractors it would get from the router: routing it (a regex
/// per request for `{key}`), the extractor machinery and the headers middleware cost about a
/// tenth of a GET (`benches/BENCHMARKS.md`). Anything else, or anything unusual here
/// (percent-encoding, another path segment, a query that does not parse), is given back to go
/// through the router as before. Middleware wrapped inside the metrics one does not see these
/// requests: what it adds (today the CORS headers) must be added here too.
fn account_get_fast(
    req: actix_web::dev::ServiceRequest,
) -> Result<
    impl std::future::Future<Output = Result<ServiceResponse, actix_web::Error>>,
    actix_web::dev::ServiceRequest,
> {
    use actix_web::http::Method;
    let fast = matches!(*req.method(), Method::GET | Method::HEAD)
        && req
            .path()
            .strip_prefix("/jwt/v1/accounts/")
            .is_some_and(|k| !k.is_empty() && !k.contains(['/', '%']));
    if !fast {
        return Err(req);
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(req);
    };
    let Ok(opts) = render::ReadOpts::from_query(req.query_string()) else {
        return Err(req);
    };
    let key = req.path()["/jwt/v1/accounts/".len()..].to_string();
    let (http_req, _) = req.into_parts();
    Ok(async move {
        let res = accounts::get(state, web::Path::from(key), opts, http_req.clone())
            .await
            .unwrap_or_else(actix_web::HttpResponse::from_error);
        let mut res = ServiceResponse::new(http_req, res);
        for (name, value) in CORS_HEADERS {
            let name = actix_web::http::header::HeaderName::from_static(name);
            if !res.headers().contains_key(&name) {
                res.headers_mut().insert(
                    name,
                    actix_web::http::header::HeaderValue::from_static(value),
                );
            }
        }
        Ok(res)
    })
}

async fn preflight() -> actix_web::HttpResponse {
    actix_web::HttpResponse::NoContent()
        .insert_header(("Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE"))
        .insert_header(("Access-Control-Allow-Headers", "*"))
        .insert_header(("Access-Control-Max-Age", "86400"))
        .finish()
}

async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "route {} (see /jwt/v1/help)",
        accounts::truncate(req.path())
    )))
}

/// How long a handler waits for a request body: `http.readtimeout`, installed as app data by
/// the server. (actix's own request timeout covers only the head, so without this a client
/// trickling its body a byte at a time holds a connection and a handler for as long as it
/// likes.) Absent when [`app`] is driven directly: no limit.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub std::time::Duration);

/// Reads a request body up to `limit` bytes; larger bodies are refused as soon as they are
/// known to be larger (from `Content-Length`, or while streaming), and bodies that take longer
/// than [`BodyReadTimeout`] are cut off.
///
/// # Errors
/// [`ApiError::PayloadTooLarge`], [`ApiError::RequestTimeout`], or [`ApiError::BadRequest`]
/// when the stream breaks.
pub async fn read_body(
    req: &actix_web::HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = web::BytesMut::new();
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("reading request body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match req.app_data::<BodyReadTimeout>() {
        Some(&BodyReadTimeout(within)) => tokio::time::timeout(within, read)
            .await
            .map_err(|_| ApiError::RequestTimeout(within))??,
        None => read.await?,
    }
    Ok(body)
}

/// `true`/`1` (case-insensitive), as the Go server compared query flags.
pub fn flag(v: &Option<String>) -> bool {
    v.as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Adds `X-Cluster-Term` and `X-Cluster-Leader` to a write's answer, in cluster mode: the term
/// the write was accepted in and the node that accepted it.
pub fn stamped(
    mut res: actix_web::HttpResponseBuilder,
    stamp: Option<&crate::cluster::Stamp>,
) -> actix_web::HttpResponseBuilder {
    if let Some(s) = stamp {
        res.insert_header((header::CLUSTER_TERM, s.term.to_string()))
            .insert_header((header::CLUSTER_LEADER, s.leader.as_str()));
    }
    res
}

/// Text for HTML: `&`, `<`, `>` and `"` escaped.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
