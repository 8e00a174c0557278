//! Claims-update notifications to nats-server.
//!
//! nats-server's URL resolver has no cache expiry: a loaded account is only updated when a
//! claims-update message arrives. So after every accepted change we publish the raw JWT on
//! `$SYS.ACCOUNT.<pub>.CLAIMS.UPDATE` (every 2.x server listens there) and/or the newer
//! `$SYS.REQ.ACCOUNT.<pub>.CLAIMS.UPDATE`. Activations go to
//! `$SYS.ACCOUNT.<issuer>.CLAIMS.ACTIVATE.<hash>` (only our replicas listen there).
//!
//! One task owns publishing, fed by a bounded queue: notifications keep their order, and a
//! write never waits for NATS. While NATS is down, undelivered notifications are remembered
//! (the latest per key) and re-sent once the connection is back, so a running nats-server does
//! not keep an outdated account after an outage; only a full queue drops one (counted).
//!
//! Re-sends asked for with `?notify=true` (by anyone) do not share that queue: they wait in a
//! per-key set, published only while no real change is queued ([`Notifier::resend`]).

use super::{Connection, NatsHandle};
use crate::metrics::Metrics;
use crate::store::{Entry, Kind};
use crate::wire::subject;
use async_nats::connection::State;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::UpdateSubjects;

/// The subjects an entry is published on.
pub fn subjects(entry: &Entry, which: UpdateSubjects) -> Vec<String> {
    if entry.deleted {
        // The operator-signed delete request itself, as `nsc push --prune` sends it: full and
        // cache resolvers check it and delete their copy (no reply is asked for).
        return vec![subject::DELETE.to_string()];
    }
    match entry.kind {
        Kind::Account => {
            let old = subject::account_update(&entry.key);
            let new = subject::account_update_request(&entry.key);
            match which {
                UpdateSubjects::Old => vec![old],
                UpdateSubjects::New => vec![new],
                UpdateSubjects::Both => vec![old, new],
            }
        }
        Kind::Activation => {
            // The index does not keep issuers (memory); the token was verified when stored,
            // so reading its claims back is enough, and activations are rare.
            let iss = crate::jwt::parse_unverified(entry.jwt_str())
                .map(|c| c.iss)
                .unwrap_or_default();
            vec![subject::activation_update(&iss, &entry.key)]
        }
    }
}

/// Handle to the notification task. Cheap to clone; a disabled notifier does nothing.
#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Arc<Entry>>>,
    resends: Option<Arc<Resends>>,
    metrics: Metrics,
}

/// Queue length; beyond it notifications are dropped (and counted) rather than delaying writes.
const QUEUE: usize = 4096;

/// Most distinct keys waiting for a re-send (`?notify=true`); further keys are refused.
const MAX_RESENDS: usize = 4096;

/// Re-sends asked for with `?notify=true`, apart from real changes: anyone may ask, so they
/// are coalesced per key (a flood of asks for one key is one message) and published only
/// while no real change is waiting, so they can never crowd a real change out of the queue.
#[derive(Default)]
struct Resends {
    queue: std::sync::Mutex<ResendQueue>,
    wake: tokio::sync::Notify,
}

/// Keys in the order first asked, and the entry to send for each.
#[derive(Default)]
struct ResendQueue {
    order: VecDeque<(Kind, Arc<str>)>,
    latest: HashMap<(Kind, Arc<str>), Arc<Entry>>,
}

impl Resends {
    fn lock(&self) -> std::sync::MutexGuard<'_, ResendQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next re-send, oldest ask first.
    fn pop(&self) -> Option<Arc<Entry>> {
        let mut q = self.lock();
        let id = q.order.pop_front()?;
        q.latest.remove(&id)
    }

    /// Waits until a re-send is queued.
    async fn ready(&self) {
        loop {
            let woken = self.wake.notified();
            if !self.lock().order.is_empty() {
                return;
            }
            woken.await;
        }
    }

    /// A real change of `entry`'s key was published: a queued re-send of it (no newer) is moot.
    fn published(&self, entry: &Entry) {
        let mut q = self.lock();
        let id = (entry.kind, entry.key.clone());
        if q.latest.get(&id).is_some_and(|held| held.seq <= entry.seq) {
            q.latest.remove(&id);
            q.order.retain(|k| k != &id);
        }
    }
}

impl Notifier {
    /// A notifier that never publishes (no NATS, no task: usable outside a runtime).
    pub fn disabled(metrics: Metrics) -> Notifier {
        Notifier {
            tx: None,
            resends: None,
            metrics,
        }
    }

    /// Starts the publishing task following `nats` (and any connection that replaces it).
    /// The publishing task runs on `tasks`; when `cancel` fires (a graceful stop) it publishes
    /// what is still queued and ends, before the NATS connection is drained.
    pub fn start(
        nats: &NatsHandle,
        metrics: Metrics,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) -> Notifier {
        let (tx, rx) = mpsc::channel::<Arc<Entry>>(QUEUE);
        let resends = Arc::new(Resends::default());
        tasks.spawn(run(
            nats.watch(),
            rx,
            resends.clone(),
            metrics.clone(),
            cancel,
        ));
        Notifier {
            tx: Some(tx),
            resends: Some(resends),
            metrics,
        }
    }

    /// Queues a notification for `entry`, a real change. Never blocks.
    pub fn changed(&self, entry: Arc<Entry>) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(entry).is_err() {
            self.metrics.notification("dropped");
            tracing::warn!("notification queue full; notification dropped");
        }
    }

    /// Asks for `entry`'s notification to be sent again (`?notify=true`). Coalesced per key:
    /// a key already waiting is not queued twice (counted as `coalesced`). Never blocks.
    pub fn resend(&self, entry: Arc<Entry>) {
        let Some(resends) = &self.resends else { return };
        let mut q = resends.lock();
        let id = (entry.kind, entry.key.clone());
        if let Some(held) = q.latest.get_mut(&id) {
            if entry.seq > held.seq {
                *held = entry;
            }
            drop(q);
            self.metrics.notification("coalesced");
            return;
        }
        if q.latest.len() >= MAX_RESENDS {
            drop(q);
            self.metrics.refused("notify_queue_full");
            return;
        }
        q.latest.insert(id.clone(), entry);
        q.order.push_back(id);
        drop(q);
        resends.wake.notify_one();
    }
}

/// Most undelivered changes remembered for re-sending after a reconnect (latest per key).
const MAX_PENDING: usize = 100_000;

/// The publishing task: publishes in order; what cannot be delivered while NATS is down is
/// remembered (latest version per key) and re-sent once the connection is back (or replaced by
/// a reload), so a running nats-server does not keep an outdated account after an outage.
async fn run(
    mut conns: watch::Receiver<Connection>,
    mut rx: mpsc::Receiver<Arc<Entry>>,
    resends: Arc<Resends>,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let mut pending: HashMap<(Kind, Arc<str>), Arc<Entry>> = HashMap::new();
    let mut conn = conns.borrow_and_update().clone();
    loop {
        let reconnected = async {
            match conn.connected.as_mut() {
                Some(c) => c.changed().await.map(|()| *c.borrow()).map_err(drop),
                None => std::future::pending().await,
            }
        };
        // Biased: real changes first; a `?notify=true` re-send only when none is waiting.
        tokio::select! {
            biased;
            entry = rx.recv() => {
                let Some(entry) = entry else { break };
                resends.published(&entry);
                // Without NATS configured there is nobody to tell, and nothing to re-send.
                let Some(client) = &conn.client else { continue };
                let id = (entry.kind, entry.key.clone());
                if publish(client, &entry, conn.subjects, &metrics).await {
                    pending.remove(&id);
                } else if pending.len() < MAX_PENDING || pending.contains_key(&id) {
                    pending.insert(id, entry);
                }
            }
            _ = cancel.cancelled() => {
                // Graceful stop: a write answered 200 just before it still gets its
                // notification out (the connection is drained after this task ends).
                rx.close();
                while let Some(entry) = rx.recv().await {
                    if let Some(client) = &conn.client {
                        publish(client, &entry, conn.subjects, &metrics).await;
                    }
                }
                break;
            }
            state = reconnected => match state {
                // The connection watch is gone (client closed): stop waiting on it.
                Err(()) => conn.connected = None,
                Ok(false) => {}
                Ok(true) => resend(&conn, &mut pending, &metrics).await,
            },
            swapped = conns.changed() => {
                if swapped.is_err() {
                    // The handle is gone: keep the last connection.
                    std::future::pending::<()>().await;
                }
                conn = conns.borrow_and_update().clone();
                resend(&conn, &mut pending, &metrics).await;
            }
            () = resends.ready() => {
                let Some(entry) = resends.pop() else { continue };
                let Some(client) = &conn.client else { continue };
                // Asked for while NATS is down: nats-server fetches over HTTP when it next
                // loads the account, so nothing is remembered for later.
                publish(client, &entry, conn.subjects, &metrics).await;
            }
        }
    }
}

/// Re-sends what could not be delivered, oldest change first.
async fn resend(
    conn: &Connection,
    pending: &mut HashMap<(Kind, Arc<str>), Arc<Entry>>,
    metrics: &Metrics,
) {
    let Some(client) = &conn.client else { return };
    if pending.is_empty() || client.connection_state() != State::Connected {
        return;
    }
    tracing::info!(
        count = pending.len(),
        "re-sending notifications missed while NATS was down"
    );
    let mut missed: Vec<Arc<Entry>> = pending.drain().map(|(_, e)| e).collect();
    missed.sort_by_key(|e| e.seq);
    for entry in missed {
        if !publish(client, &entry, conn.subjects, metrics).await {
            pending.insert((entry.kind, entry.key.clone()), entry);
        }
    }
}

/// Publishes one change; true when every subject was handed to the client.
async fn publish(
    client: &async_nats::Client,
    entry: &Entry,
    which: UpdateSubjects,
    metrics: &Metrics,
) -> bool {
    if client.connection_state() != State::Connected {
        metrics.notification("failed");
        tracing::warn!(key = %entry.key, "NATS is not connected; the notification will be re-sent on reconnect");
        return false;
    }
    let mut delivered = true;
    for subject in subjects(entry, which) {
        // publish only enqueues into the client; a timeout guards against a full client buffer
        // while the connection is being lost.
        let sent = tokio::time::timeout(
            Duration::from_secs(2),
            client.publish(subject.clone(), entry.jwt.clone()),
        )
        .await;
        match sent {
            Ok(Ok(())) => {
                metrics.notification("sent");
                tracing::debug!(%subject, "notification published");
            }
            Ok(Err(e)) => {
                metrics.notification("failed");
                tracing::warn!(%subject, cause = %e, "notification failed");
                delivered = false;
            }
            Err(_) => {
                metrics.notification("failed");
                tracing::warn!(%subject, "notification timed out");
                delivered = false;
            }
        }
    }
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, seq: u64) -> Arc<Entry> {
        Arc::new(Entry {
            kind: Kind::Account,
            key: key.into(),
            jwt: bytes::Bytes::from(format!("jwt-{key}-{seq}")),
            tag: [0; 16],
            iat: seq as i64,
            exp: None,
            seq,
            deleted: false,
        })
    }

    #[test]
    fn resends_are_coalesced_per_key_bounded_and_dropped_after_a_real_change() {
        let metrics = Metrics::new();
        let resends = Arc::new(Resends::default());
        let notifier = Notifier {
            tx: None,
            resends: Some(resends.clone()),
            metrics: metrics.clone(),
        };
        for _ in 0..100 {
            notifier.resend(entry("A", 1));
        }
        notifier.resend(entry("B", 2));
        // A newer version asked for later replaces the waiting one, in its place.
        notifier.resend(entry("A", 3));
        let text = metrics.render(0, 0, 0, false);
        assert!(
            text.contains("nas_notifications_total{result=\"coalesced\"} 100"),
            "{text}"
        );
        // A real change of B at a later sequence makes B's re-send moot.
        resends.published(&entry("B", 4));
        assert_eq!(resends.pop().map(|e| e.seq), Some(3));
        assert!(resends.pop().is_none());

        for i in 0..MAX_RESENDS + 10 {
            notifier.resend(entry(&format!("K{i}"), 1));
        }
        let text = metrics.render(0, 0, 0, false);
        assert!(
            text.contains("nas_refused_total{reason=\"notify_queue_full\"} 10"),
            "{text}"
        );
        assert_eq!(resends.lock().latest.len(), MAX_RESENDS);
    }
}
