//! Answers nats-server's own resolver protocol over NATS, so that nats-servers configured with
//! `resolver { type: cache }` or `resolver { type: full }` can use this server the way they use
//! a full-resolver peer (the Go server's v1.0 did the same):
//!
//! - `$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`, sent by full and cache resolvers for an account
//!   they do not hold: answered with the raw account JWT. An unknown key gets **no** answer:
//!   nats-server 2.9.10 would store an empty reply as the account, and from 2.9.17 an empty
//!   reply means "not found" from a server that is counted, so silence is right for both.
//! - `$SYS.REQ.CLAIMS.PACK`, sent every `interval` by full resolvers to sync their directory,
//!   in queue group `responder` (one of the responders answers): the payload is the requester's
//!   store hash (XOR of the sha256 of every JWT); a match is answered with one empty message,
//!   anything else with one `<key>|<jwt>` message per unexpired account, then an empty one.
//!
//! Updates need nothing here: every change is already published on the update subjects
//! ([`super::notify`]), which full and cache resolvers apply.

use super::NatsHandle;
use crate::metrics::Metrics;
use crate::state::Trust;
use crate::store::{Entry, Kind, Store};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What a responder reads.
#[derive(Clone)]
pub struct Responder {
    /// The tokens to answer with.
    pub store: Store,
    /// For the system-account fallback (served like the HTTP GET serves it).
    pub trust: watch::Receiver<Arc<Trust>>,
    /// Counts requests.
    pub metrics: Metrics,
}

const LOOKUP: &str = "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP";
const PACK: &str = "$SYS.REQ.CLAIMS.PACK";
/// nats-server's full resolvers answer PACK in this queue group; joining it means one of
/// them (or us) answers each request, not all.
const PACK_QUEUE: &str = "responder";

/// Runs until `cancel` fires, following connection replacements.
pub async fn run(responder: Responder, nats: NatsHandle, cancel: CancellationToken) {
    nats.follow(cancel, |nc| {
        let responder = responder.clone();
        async move { serve(&responder, &nc).await }
    })
    .await;
}

/// Subscribes on `nc` and answers until the subscriptions end.
async fn serve(responder: &Responder, nc: &async_nats::Client) {
    let lookups = match nc.subscribe(LOOKUP).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(subject = LOOKUP, cause = %e, "cannot subscribe; nats-server resolver lookups will not be answered");
            return;
        }
    };
    let packs = match nc.queue_subscribe(PACK, PACK_QUEUE.into()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(subject = PACK, cause = %e, "cannot subscribe; nats-server resolver syncs will not be answered");
            return;
        }
    };
    let mut messages = futures_util::stream::select(lookups, packs);
    while let Some(msg) = messages.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        if msg.subject.as_str() == PACK {
            // A pack can be 100,000 messages: answered on its own task, so lookups go on.
            let (responder, nc) = (responder.clone(), nc.clone());
            tokio::spawn(async move { pack(&responder, &nc, reply, &msg.payload).await });
        } else {
            lookup(responder, nc, msg.subject.as_str(), reply).await;
        }
    }
}

async fn lookup(
    responder: &Responder,
    nc: &async_nats::Client,
    subject: &str,
    reply: async_nats::Subject,
) {
    let key = subject.split('.').nth(3).unwrap_or_default();
    let found = crate::jwt::is_account_key(key)
        .then(|| {
            responder.store.get(Kind::Account, key).or_else(|| {
                responder
                    .trust
                    .borrow()
                    .system_account
                    .clone()
                    .filter(|e| &*e.key == key)
            })
        })
        .flatten();
    let Some(entry) = found else {
        responder.metrics.resolver_request("lookup", "unknown");
        tracing::debug!(%key, "resolver lookup of an unknown account; not answered");
        return;
    };
    match nc.publish(reply, entry.jwt.clone()).await {
        Ok(()) => responder.metrics.resolver_request("lookup", "found"),
        Err(e) => {
            responder.metrics.resolver_request("lookup", "failed");
            tracing::warn!(%key, cause = %e, "could not answer a resolver lookup");
        }
    }
}

async fn pack(
    responder: &Responder,
    nc: &async_nats::Client,
    reply: async_nats::Subject,
    their_hash: &[u8],
) {
    let accounts = responder.store.all(Kind::Account, usize::MAX);
    let now = crate::jwt::now_unix();
    let live: Vec<Arc<Entry>> = accounts
        .into_iter()
        .filter(|e| e.exp.is_none_or(|exp| exp > now))
        .collect();
    // 100,000 sha256s: off the async workers.
    let (live, ours) = match tokio::task::spawn_blocking(move || {
        let hash = store_hash(&live);
        (live, hash)
    })
    .await
    {
        Ok(done) => done,
        Err(_) => return,
    };
    let mut sent = 0usize;
    if their_hash != ours.as_slice() {
        for e in &live {
            let mut line = Vec::with_capacity(e.key.len() + 1 + e.jwt.len());
            line.extend_from_slice(e.key.as_bytes());
            line.push(b'|');
            line.extend_from_slice(&e.jwt);
            if let Err(e) = nc.publish(reply.clone(), line.into()).await {
                responder.metrics.resolver_request("pack", "failed");
                tracing::warn!(cause = %e, "could not answer a resolver pack request");
                return;
            }
            sent += 1;
        }
    }
    // The empty message ends the stream (and alone means "you have what I have").
    if let Err(e) = nc.publish(reply, Bytes::new()).await {
        responder.metrics.resolver_request("pack", "failed");
        tracing::warn!(cause = %e, "could not answer a resolver pack request");
        return;
    }
    let result = if sent == 0 { "in_sync" } else { "sent" };
    responder.metrics.resolver_request("pack", result);
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
