//! The second adapter beside [`crate::http`]: nats-server's own resolver protocol, answered
//! over NATS, so that nats-servers configured with `resolver { type: cache }` or
//! `resolver { type: full }` can use this server the way they use a full-resolver peer (the Go
//! server's v1.0 did the same). Like the HTTP handlers, it extracts, calls the write path
//! ([`crate::service`]) or the store, and maps the result, here to nats-server's JSON replies
//! (`replies`). It is not part of [`crate::nats`], which owns the connection: that module sits
//! below the write path, and this one above it.
//!
//!
//! - `$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`, sent by full and cache resolvers for an account
//!   they do not hold: answered with the raw account JWT. An unknown key gets **no** answer:
//!   nats-server 2.9.10 would store an empty reply as the account, and from 2.9.17 an empty
//!   reply means "not found" from a server that is counted, so silence is right for both.
//! - `$SYS.REQ.CLAIMS.PACK`, sent every `interval` by full resolvers to sync their directory,
//!   in queue group `responder` (one of the responders answers): the payload is the requester's
//!   store hash (XOR of the sha256 of every JWT); a match is answered with one empty message,
//!   anything else with one `<key>|<jwt>` message per unexpired account, then an empty one.
//!   The answer (account list and hash) is computed once per store state and shared by
//!   concurrent requests ([`Responder`] holds it); at most `nats.maxpackanswers` are streamed
//!   at once, and requests beyond are left unanswered (counted as `pack_busy`).
//! - `$SYS.REQ.CLAIMS.LIST` (`nsc push --diff/--prune` over NATS): the public keys of every
//!   stored account, as nats-server answers it (`{"server":…,"data":["A…",…]}`).
//! - `$SYS.REQ.CLAIMS.UPDATE` and `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` *requests* (with a
//!   reply subject: `nsc push` to a `nats://` URL sends these), on the primary only: the
//!   account goes through the same validation and write path as an HTTP POST, and the answer is
//!   nats-server's JSON (`data` with code 200, or `error` with the HTTP status and the reason).
//!   Replicas receive the change from the primary like any other. Messages without a reply
//!   subject are notifications, ours included, and are left to nats-server and replicas.
//! - `$SYS.REQ.CLAIMS.DELETE` requests (`nsc push --prune`), on the primary only, with
//!   `store.allowdelete`: checked and answered exactly as nats-server's full resolver does
//!   (`deleted N accounts`, or `delete accounts request by <op> failed - <reason>`); each
//!   deleted account becomes a tombstone that replicas follow.

mod replies;

use crate::nats::NatsHandle;
use crate::service::ServiceError;
use crate::state::AppState;
use crate::store::{Entry, Kind};
use crate::wire::{self, subject, subject::Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a responder works with: the handlers' state (store, trust, write path, metrics) and
/// the latest PACK answer. Cheap to clone.
#[derive(Clone)]
pub struct Responder {
    state: AppState,
    /// The latest PACK answer; its lock makes concurrent requests share one computation.
    pack_answer: Arc<tokio::sync::Mutex<Option<Arc<PackAnswer>>>>,
}

/// nats-server's full resolvers answer PACK in this queue group; joining it means one of
/// them (or us) answers each request, not all.
const PACK_QUEUE: &str = "responder";

/// Runs until `cancel` fires, following connection replacements, answering on connections
/// made with `nats.resolverpeer` on. Long answers (a pack, a durable write) run as tasks of
/// `tasks`, so a graceful stop waits for them.
pub async fn run(state: AppState, nats: NatsHandle, cancel: CancellationToken, tasks: TaskTracker) {
    let responder = Responder {
        state,
        pack_answer: Arc::default(),
    };
    // `nats.resolverpeer` is read from the connection's settings, so a SIGHUP that changes it
    // (which makes a new connection) turns the responder on or off.
    nats.follow(
        cancel,
        |s| s.resolverpeer,
        |nc| {
            let (responder, tasks) = (responder.clone(), tasks.clone());
            async move { serve(&responder, &nc, &tasks).await }
        },
    )
    .await;
}

/// Subscribes on `nc` and answers until the subscriptions end.
async fn serve(responder: &Responder, nc: &async_nats::Client, tasks: &TaskTracker) {
    let mut subs = Vec::new();
    let mut subjects = vec![
        (subject::ANY_ACCOUNT_LOOKUP, None),
        (subject::PACK, Some(PACK_QUEUE)),
        (subject::LIST, None),
    ];
    // Writes are the primary's; a cluster node subscribes whatever its role now, and answers
    // them only while it leads (see `leads`).
    if responder.state.replica.is_none() || responder.state.cluster.is_some() {
        subjects.extend([
            (subject::UPDATE, None),
            (subject::ANY_ACCOUNT_UPDATE_REQUEST, None),
            (subject::DELETE, None),
        ]);
    }
    for (subject, queue) in subjects {
        let sub = match queue {
            Some(q) => nc.queue_subscribe(subject, q.into()).await,
            None => nc.subscribe(subject).await,
        };
        match sub {
            Ok(s) => subs.push(s),
            Err(e) => {
                tracing::error!(subject, cause = %e, "cannot subscribe; nats-server resolver requests will not be answered");
                return;
            }
        }
    }
    let mut messages = futures_util::stream::select_all(subs);
    while let Some(msg) = messages.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        match subject::parse(msg.subject.as_str()) {
            Some(Subject::Pack) => {
                // A pack can be 100,000 messages: answered on its own task, so lookups go on.
                let (responder, nc) = (responder.clone(), nc.clone());
                tasks.spawn(async move { pack(&responder, &nc, reply, &msg.payload).await });
            }
            Some(Subject::List) => list(responder, nc, reply).await,
            Some(Subject::Delete) => {
                let (responder, nc) = (responder.clone(), nc.clone());
                tasks.spawn(async move { delete(&responder, &nc, msg).await });
            }
            Some(Subject::Update) => {
                // A durable write: on its own task too. The generic subject leaves the key to
                // the token.
                let (responder, nc) = (responder.clone(), nc.clone());
                tasks.spawn(async move { update(&responder, &nc, None, msg).await });
            }
            Some(Subject::AccountUpdateRequest { key }) => {
                let (responder, nc, key) = (responder.clone(), nc.clone(), key.to_string());
                tasks.spawn(async move { update(&responder, &nc, Some(key), msg).await });
            }
            Some(Subject::AccountLookup { key }) => lookup(responder, nc, key, reply).await,
            // Not a subject subscribed to above.
            Some(_) | None => {}
        }
    }
}

/// Whether this node answers write requests: a primary, and a cluster node while it is the
/// leader (the others stay silent, so the requester gets the leader's answer, not theirs).
fn leads(responder: &Responder) -> bool {
    responder.state.follower().is_none()
}

/// Stores an account sent as an update request and answers as nats-server does. `named`: the
/// account the subject names, if it names one.
async fn update(
    responder: &Responder,
    nc: &async_nats::Client,
    named: Option<String>,
    msg: async_nats::Message,
) {
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    if !leads(responder) {
        return;
    }
    let body = store_update(responder, named, &msg.payload).await;
    if let Err(e) = nc.publish(reply, body.to_string().into()).await {
        tracing::warn!(cause = %e, "could not answer an account update request");
    }
}

/// Stores the account JWT of an update request (`named`: the key its subject names) through
/// the write path, and returns nats-server's reply for the outcome.
async fn store_update(
    responder: &Responder,
    named: Option<String>,
    payload: &[u8],
) -> serde_json::Value {
    let metrics = &responder.state.metrics;
    if payload.trim_ascii().is_empty() {
        metrics.resolver_request("update", "rejected");
        return replies::update_empty(named.as_deref().unwrap_or_default());
    }
    // The per-account subject names the key; the generic one leaves it to the token (whose
    // subject the write path then checks like a POST's path key).
    let key = named.or_else(|| {
        std::str::from_utf8(payload)
            .ok()
            .and_then(|t| crate::jwt::parse_unverified(t.trim()).ok())
            .map(|c| c.sub)
    });
    let result = match &key {
        None => Err(ServiceError::BadRequest(
            "the update is not an account JWT".into(),
        )),
        Some(key) => crate::service::post_account(&responder.state, key, payload)
            .await
            .map(|_stamp| ()),
    };
    let account = key.unwrap_or_default();
    match &result {
        Ok(()) => metrics.resolver_request("update", "stored"),
        Err(e) => {
            metrics.resolver_request("update", "rejected");
            tracing::info!(%account, cause = %e, "refused an account update request from NATS");
        }
    }
    replies::update(&account, &result)
}

/// Deletes the accounts an operator-signed delete request lists and answers as nats-server's
/// `handleDeleteRequest` does (`deleted N accounts`, or the reason it was refused).
async fn delete(responder: &Responder, nc: &async_nats::Client, msg: async_nats::Message) {
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    if !leads(responder) {
        return;
    }
    let result = crate::service::delete_accounts(&responder.state, &msg.payload, None).await;
    match &result {
        Ok(done) if done.failed.is_empty() => {
            responder
                .state
                .metrics
                .resolver_request("delete", "deleted");
        }
        Ok(_) => responder
            .state
            .metrics
            .resolver_request("delete", "partial"),
        Err(e) => {
            responder
                .state
                .metrics
                .resolver_request("delete", "rejected");
            tracing::info!(cause = %e, "refused an account delete request from NATS");
        }
    }
    let body = replies::delete(&result);
    if let Err(e) = nc.publish(reply, body.to_string().into()).await {
        tracing::warn!(cause = %e, "could not answer an account delete request");
    }
}

/// Answers a LIST request with every stored account's public key.
async fn list(responder: &Responder, nc: &async_nats::Client, reply: async_nats::Subject) {
    let keys: Vec<String> = responder
        .state
        .store
        .all(Kind::Account, usize::MAX)
        .iter()
        .map(|e| e.key.to_string())
        .collect();
    let body = replies::list(keys);
    match nc.publish(reply, body.to_string().into()).await {
        Ok(()) => responder.state.metrics.resolver_request("list", "answered"),
        Err(e) => {
            responder.state.metrics.resolver_request("list", "failed");
            tracing::warn!(cause = %e, "could not answer a resolver list request");
        }
    }
}

/// Answers a LOOKUP of account `key` with its JWT; an unknown key gets no answer.
async fn lookup(
    responder: &Responder,
    nc: &async_nats::Client,
    key: &str,
    reply: async_nats::Subject,
) {
    // As a GET (`service::lookup`): the store, then the configured system and election
    // accounts, which no store holds.
    let found = crate::jwt::is_account_key(key)
        .then(|| {
            let state = &responder.state;
            state
                .store
                .get(Kind::Account, key)
                .or_else(|| crate::service::configured_account(&state.trust(), Kind::Account, key))
        })
        .flatten();
    let Some(entry) = found else {
        responder
            .state
            .metrics
            .resolver_request("lookup", "unknown");
        tracing::debug!(%key, "resolver lookup of an unknown account; not answered");
        return;
    };
    match nc.publish(reply, entry.jwt.clone()).await {
        Ok(()) => responder.state.metrics.resolver_request("lookup", "found"),
        Err(e) => {
            responder.state.metrics.resolver_request("lookup", "failed");
            tracing::warn!(%key, cause = %e, "could not answer a resolver lookup");
        }
    }
}

/// The PACK answer of one store state: the unexpired accounts and their hash.
pub struct PackAnswer {
    /// The store state it was computed from: head and entry counts (a removal from a watched
    /// directory store changes the counts, not the head).
    state: (u64, usize, usize),
    /// The earliest expiry among `live`: from then on the answer is outdated.
    valid_until: Option<i64>,
    hash: [u8; 32],
    live: Vec<Arc<Entry>>,
}

/// The PACK answer for the store's current state, computed at most once per state: concurrent
/// requests wait for the one computing it (single flight) and share its result.
async fn pack_answer(responder: &Responder) -> Option<Arc<PackAnswer>> {
    let mut slot = responder.pack_answer.lock().await;
    let store = &responder.state.store;
    let (accounts, activations) = store.counts();
    let state = (store.head(), accounts, activations);
    let now = crate::jwt::now_unix();
    if let Some(answer) = slot
        .as_ref()
        .filter(|a| a.state == state && a.valid_until.is_none_or(|t| now < t))
    {
        return Some(answer.clone());
    }
    let live: Vec<Arc<Entry>> = store
        .all(Kind::Account, usize::MAX)
        .into_iter()
        .filter(|e| e.exp.is_none_or(|exp| exp > now))
        .collect();
    let valid_until = live.iter().filter_map(|e| e.exp).min();
    // Hashing 100,000 tokens runs off the async workers.
    let answer = tokio::task::spawn_blocking(move || PackAnswer {
        state,
        valid_until,
        hash: store_hash(&live),
        live,
    })
    .await
    .ok()?;
    responder.state.metrics.pack_computed();
    let answer = Arc::new(answer);
    *slot = Some(answer.clone());
    Some(answer)
}

async fn pack(
    responder: &Responder,
    nc: &async_nats::Client,
    reply: async_nats::Subject,
    their_hash: &[u8],
) {
    let Some(answer) = pack_answer(responder).await else {
        return;
    };
    // A full resolver sends its store's hash; `nsc pull` sends none, and then there is nothing
    // to compare.
    let in_sync = their_hash.len() == 32 && answer.hash[..] == their_hash[..];
    // Streaming every account is the expensive part: capped. Silence is the refusal (a full
    // resolver asks again next interval, and any other responder may answer).
    let _permit = match (in_sync, responder.state.limits.pack()) {
        (true, _) => None,
        (false, Some(permit)) => Some(permit),
        (false, None) => {
            responder.state.metrics.refused("pack_busy");
            responder.state.metrics.resolver_request("pack", "busy");
            tracing::debug!("resolver pack request left unanswered: nats.maxpackanswers reached");
            return;
        }
    };
    let mut sent = 0usize;
    if !in_sync {
        for e in &answer.live {
            let line = wire::pack::message(&e.key, &e.jwt);
            if let Err(e) = nc.publish(reply.clone(), line).await {
                responder.state.metrics.resolver_request("pack", "failed");
                tracing::warn!(cause = %e, "could not answer a resolver pack request");
                return;
            }
            sent += 1;
        }
    }
    // The empty message ends the stream (and alone means "you have what I have").
    if let Err(e) = nc.publish(reply, Bytes::new()).await {
        responder.state.metrics.resolver_request("pack", "failed");
        tracing::warn!(cause = %e, "could not answer a resolver pack request");
        return;
    }
    let result = if in_sync { "in_sync" } else { "sent" };
    responder.state.metrics.resolver_request("pack", result);
    tracing::debug!(accounts = sent, "answered a resolver pack request");
}

/// nats-server's directory-store hash: the XOR of the sha256 of every JWT's bytes (32 zero
/// bytes for none), order-independent so two stores with the same tokens agree.
pub fn store_hash(entries: &[Arc<Entry>]) -> [u8; 32] {
    let mut hash = [0u8; 32];
    for e in entries {
        for (h, b) in hash.iter_mut().zip(Sha256::digest(&e.jwt)) {
            *h ^= b;
        }
    }
    hash
}
