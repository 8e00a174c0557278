//! Bulk reads for replicas and migration: the Go-compatible pack, the change feed, and the
//! content digest replicas compare for anti-entropy. The pack and the feed are streamed
//! (`stream`), bounded by `http.maxbulk`, `http.maxlongpolls` and `http.writetimeout`.

use super::error::ApiError;
use super::stream::Lines;
use crate::state::AppState;
use crate::store::{Entry, DIGEST_BUCKETS};
use crate::wire::{self, header};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// `?max=N` of the pack.
#[derive(Debug, Deserialize)]
pub struct PackOpts {
    max: Option<String>,
}

/// `GET /jwt/v1/pack?max=N`: `key|jwt` lines joined by `\n` (no trailing newline), as the Go
/// server wrote them; accounts and activations in change-log order. Streamed from a snapshot
/// ([`Lines`]); a large pack takes a bulk permit (`http.maxbulk`).
pub async fn pack(
    state: web::Data<AppState>,
    opts: web::Query<PackOpts>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let max = match opts.max.as_deref() {
        None | Some("") => usize::MAX,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 0 => usize::MAX,
            Ok(n) => n as usize,
            Err(_) => return Err(ApiError::BadRequest(format!("max={s:?} is not an integer"))),
        },
    };
    // The permit comes before the snapshot, so a refused request costs nothing.
    let (accounts, activations) = state.store.counts();
    let permit = if max.min(accounts + activations) > BULK_ENTRIES {
        Some(state.limits.bulk(&state.metrics)?)
    } else {
        None
    };
    // Deleted accounts are left out: the pack is what a Go replica or `nsc pull` should hold.
    let entries = state.store.live_snapshot();
    let end = max.min(entries.len());
    let permit = bulk_permit(&state, permit, &entries[..end])?;
    Ok(Lines::new(entries, end, pack_line, permit)
        .watched(&req, state.limits.write_timeout, &state.metrics)
        .respond(HttpResponse::Ok()))
}

/// The bulk permit an answer over `entries` needs: `held` if one was taken before the
/// snapshot (by count), else one taken now if the tokens are over [`BULK_BYTES`].
///
/// # Errors
/// [`crate::limits::Busy`] at `http.maxbulk`.
fn bulk_permit(
    state: &AppState,
    held: Option<OwnedSemaphorePermit>,
    entries: &[Arc<Entry>],
) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    if held.is_some() || entries.iter().map(|e| e.jwt.len()).sum::<usize>() <= BULK_BYTES {
        return Ok(held);
    }
    Ok(Some(state.limits.bulk(&state.metrics)?))
}

/// One pack line ([`wire::pack`]).
fn pack_line(e: &Entry, first: bool, out: &mut BytesMut) {
    wire::pack::write_line(&e.key, &e.jwt, first, out);
}

/// One change-feed line ([`wire::feed`]).
fn feed_line(e: &Entry, _first: bool, out: &mut BytesMut) {
    wire::feed::write_change(e, out);
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
/// Answers of more entries than this, or of more token bytes than [`BULK_BYTES`], are bulk:
/// they take a permit of `http.maxbulk`.
const BULK_ENTRIES: usize = 1000;
const BULK_BYTES: usize = 1024 * 1024;

/// `GET /jwt/v1/changes?since=S&limit=N&wait=W`: lines `seq|kind|key|jwt\n` in sequence order,
/// with `X-Store-Id` (lineage), `X-Head-Seq`, `X-Compacted-Seq` (tombstones at or below it
/// were dropped: a replica whose cursor is below it may have missed a deletion) and, on a page
/// that is not full, `X-Complete-To` (the page holds every change up to that sequence).
/// Streamed from a snapshot; pages of more than [`BULK_ENTRIES`] changes take a bulk permit,
/// and a long poll parks only within the long-poll caps, and never with `since` beyond the head.
pub async fn changes(
    state: web::Data<AppState>,
    opts: web::Query<ChangesOpts>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let term = match &state.cluster {
        // Only the leader's feed is followed; its term lets followers refuse a deposed one.
        Some(c) => {
            if c.role() != crate::cluster::Role::Leader {
                return Err(crate::cluster::ClusterError::NotLeader.into());
            }
            let header_value = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
            if let (Some(node), Some(lineage)) = (
                header_value(header::CLUSTER_NODE),
                header_value(header::CLUSTER_LINEAGE),
            ) {
                c.ack(node, lineage, opts.since);
            }
            Some(c.term())
        }
        None => None,
    };
    let limit = opts.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    // At most `head - since` entries follow `since` (each key is logged once).
    let most = limit
        .min(usize::try_from(state.store.head().saturating_sub(opts.since)).unwrap_or(usize::MAX));
    let mut permit = if most > BULK_ENTRIES {
        Some(state.limits.bulk(&state.metrics)?)
    } else {
        None
    };
    let (mut entries, mut snapshot_head) = state.store.changes_and_head(opts.since, limit);
    // A cursor beyond the head (this store was restored from an older copy, or is another
    // one behind the same address) is answered at once, never parked: the replica must learn
    // now that it has to resync, and a write here would get a sequence it believes it has.
    if entries.is_empty() && opts.since <= snapshot_head {
        if let Some(wait) = opts.wait.filter(|w| *w > 0.0) {
            // Nothing to send while parked: the permit goes back for others.
            permit = None;
            let wait = Duration::from_secs_f64(wait.min(MAX_WAIT));
            let client = req.peer_addr().map(|a| a.ip());
            let _parked = state.limits.park(client, &state.metrics)?;
            tokio::select! {
                _ = state.store.wait_for_change(opts.since, wait) => {}
                _ = state.draining.cancelled() => {}
            }
            (entries, snapshot_head) = state.store.changes_and_head(opts.since, limit);
        }
    }
    let permit = bulk_permit(&state, permit, &entries)?;
    let head = state.store.head().max(entries.last().map_or(0, |e| e.seq));
    // A page that is not full holds every change up to the head of its snapshot, also when
    // the newest changes were removals (compacted deletions) that left no entry to send.
    let complete_to = (entries.len() < limit).then_some(snapshot_head);
    let mut res = HttpResponse::Ok();
    res.insert_header((header::STORE_ID, state.store.lineage()))
        .insert_header((header::HEAD_SEQ, head.to_string()))
        .insert_header((header::COMPACTED_SEQ, state.store.compacted().to_string()))
        .insert_header((
            header::COMPLETE_TO,
            complete_to.map_or_else(String::new, |h| h.to_string()),
        ));
    if let Some(term) = term {
        res.insert_header((header::CLUSTER_TERM, term.to_string()));
    }
    let end = entries.len();
    Ok(Lines::new(Arc::new(entries), end, feed_line, permit)
        .watched(&req, state.limits.write_timeout, &state.metrics)
        .respond(res))
}

/// `?buckets=` of the digest.
#[derive(Debug, Deserialize)]
pub struct DigestOpts {
    /// Comma-separated bucket numbers whose entries to list.
    buckets: Option<String>,
}

/// `GET /jwt/v1/digest`: the store's content digest for replicas' anti-entropy. Without
/// options, JSON `{store_id, head, compacted_iat, digest, buckets}` (hex; the head and the digest of the same
/// moment). With `?buckets=3,17`, the entries of those buckets as `kind|key|iat|sha256` lines,
/// so a replica whose digest differs finds the keys that differ without a full resync
/// (a deletion: `delete|key|iat|hash|request`).
pub async fn digest(
    state: web::Data<AppState>,
    opts: web::Query<DigestOpts>,
) -> Result<HttpResponse, ApiError> {
    let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
    let Some(list) = opts.buckets.as_deref() else {
        let (head, digest) = state.store.digest();
        let body = serde_json::json!({
            "store_id": state.store.lineage(),
            "head": head,
            "compacted_iat": state.store.compacted_iat(),
            "digest": hex(&digest.total()),
            "buckets": digest.buckets.iter().map(|b| hex(b)).collect::<Vec<_>>(),
        });
        return Ok(HttpResponse::Ok().json(body));
    };
    let mut wanted = [false; DIGEST_BUCKETS];
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.trim().parse::<usize>() {
            Ok(b) if b < DIGEST_BUCKETS => wanted[b] = true,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "buckets: {part:?} is not a bucket number (0-{})",
                    DIGEST_BUCKETS - 1
                )))
            }
        }
    }
    let head = state.store.head();
    let entries = state.store.in_buckets(&wanted);
    let mut body = String::with_capacity(entries.len() * 140);
    for e in &entries {
        wire::feed::write_digest_line(e, &mut body);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::STORE_ID, state.store.lineage()))
        .insert_header((header::HEAD_SEQ, head.to_string()))
        .body(body))
}
