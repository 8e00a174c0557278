//! The election task: holds, renews and takes the lease in the JetStream key-value bucket
//! `nas_<cluster>`, publishes this node's progress there, and publishes the [`View`].
//!
//! The bucket holds `lease` (a [`Lease`]) and `node.<id>` (each node's [`Progress`]). The rules:
//! - The leader renews `lease` with compare-and-set on its last revision every third of
//!   `leasettl`. It accepts writes until `leasettl` minus a margin after it *sent* its last
//!   successful renewal; past that it steps down.
//! - The others watch the lease's revision. One that has not changed for a whole `leasettl`
//!   (timed on the watcher's clock from when it first saw it) has expired.
//! - On expiry every node publishes its progress at once. A node takes the lease only when it
//!   has seen a publication after its own from every other live node, and none of them has
//!   applied more of the current lineage than it has (ties: the smaller node id). Since the
//!   old leader stopped accepting writes before anyone could see its lease expire, the
//!   progress published after expiry is final: the node that takes over holds every write
//!   the old leader acknowledged to its semi-synchronous followers.
//! - Taking is a compare-and-set on the expired revision (or a create when there is none), so
//!   of two nodes that both believe they may, one wins. The winning revision is the term.
//!
//! Clocks are never compared between nodes: only revisions (ordered by the bucket) and each
//! node's own monotonic clock.

use super::{ClusterHandle, FollowerProgress, Lease, Peer, Progress, Role, View};
use crate::nats::NatsHandle;
use crate::store::Store;
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const LEASE_KEY: &str = "lease";
const NODE_PREFIX: &str = "node.";

/// The lease as read from the bucket.
#[derive(Debug, Clone)]
struct Observed {
    revision: u64,
    lease: Lease,
    /// When this node first saw this revision.
    since: Instant,
}

/// Another node's progress as read from the bucket.
#[derive(Debug, Clone)]
struct Seen {
    revision: u64,
    progress: Progress,
    /// When its revision last changed, on this node's clock.
    changed: Instant,
}

/// A lease expiry this node is acting on.
#[derive(Debug, Clone)]
struct Expiry {
    /// The expired lease's revision (None: there was no lease at all).
    revision: Option<u64>,
    /// Its holder, who is not a candidate.
    holder: Option<String>,
    /// The revision of this node's progress published when it saw the expiry: publications
    /// after it are final.
    mark: u64,
    since: Instant,
}

/// The election's state; [`Election::run`] drives it.
pub struct Election {
    handle: ClusterHandle,
    view: watch::Sender<View>,
    nats: NatsHandle,
    store: Store,
    /// This node's replication, for the progress it publishes while it follows.
    replica: Box<dyn FollowerProgress>,
    kv: Option<kv::Store>,
    /// Leader: the revision of its last successful write of the lease.
    held: Option<u64>,
    /// A leader fenced for want of the bucket (not deposed): the revision and term of its
    /// lease. If the lease still has that revision when the bucket answers again, nobody took
    /// it meanwhile, and a compare-and-set on it resumes the same term.
    reclaim: Option<(u64, u64)>,
    observed: Option<Observed>,
    expiry: Option<Expiry>,
    peers: HashMap<String, Seen>,
    next_publish: Instant,
    next_sample: Instant,
    /// The last bucket error logged, so a lasting outage is one line, not one per tick.
    said: Option<String>,
    /// A bucket of one replica in a JetStream cluster was reported (once per process).
    said_single_replica: bool,
}

impl Election {
    /// The election for `handle`, publishing into `view`.
    pub fn new(
        handle: ClusterHandle,
        view: watch::Sender<View>,
        nats: NatsHandle,
        store: Store,
        replica: Box<dyn FollowerProgress>,
    ) -> Election {
        Election {
            handle,
            view,
            nats,
            store,
            replica,
            kv: None,
            held: None,
            reclaim: None,
            observed: None,
            expiry: None,
            peers: HashMap::new(),
            next_publish: Instant::now(),
            next_sample: Instant::now(),
            said: None,
            said_single_replica: false,
        }
    }

    fn ttl(&self) -> Duration {
        self.handle.lease_ttl()
    }

    /// How much earlier than the others' expiry the leader stops accepting writes: covers the
    /// time between sending a renewal and the bucket storing it, and clock-rate differences.
    fn margin(&self) -> Duration {
        (self.ttl() / 5).max(Duration::from_millis(200))
    }

    /// Runs until `cancel` fires; a leader then gives up its lease's remaining time by
    /// stepping down (the others still wait for it to expire: a stopped leader cannot prove
    /// it stopped writing).
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let ok = self.tick().await;
            let look_often =
                (self.ttl() / 10).clamp(Duration::from_millis(50), Duration::from_millis(500));
            let pause = match self.view.borrow().role {
                // A leader whose renewal failed tries again soon: the bucket may be back (a
                // NATS server lost, a stream leader re-elected) well before the fence.
                Role::Leader if ok => self.ttl() / 3,
                // Candidates (an election under way: nobody takes writes) go round fastest,
                // since each decision waits for the others' next publication. A leader fenced
                // for want of the bucket retries as fast: when the bucket answers again, it
                // resumes its term in one round, before the followers (who need two, a fifth
                // of `look_often` apart) can elect another leader for nothing.
                Role::Candidate if ok || self.reclaim.is_some() => look_often / 5,
                // Followers look often, so a failover and a new leader are noticed promptly.
                _ => look_often,
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        if self.view.borrow().role == Role::Leader {
            self.step_down("shutting down");
        }
    }

    /// One round; false when the bucket did not answer.
    async fn tick(&mut self) -> bool {
        let ok = match self.round().await {
            Ok(()) => true,
            Err(e) => {
                self.kv_failed(e);
                false
            }
        };
        self.check_fence();
        self.publish_view();
        ok
    }

    /// One round against the bucket.
    async fn round(&mut self) -> Result<(), String> {
        let kv = self.bucket().await?;
        let role = self.view.borrow().role;
        if role == Role::Leader {
            self.renew(&kv).await?;
        } else {
            self.watch_lease(&kv).await?;
        }
        if Instant::now() >= self.next_publish {
            self.publish_progress(&kv).await?;
            self.read_peers(&kv).await?;
        }
        if self.said.take().is_some() {
            tracing::info!(cluster = %self.handle.name(), "the cluster's lease bucket answers again");
        }
        self.view.send_modify(|v| {
            v.kv_up = true;
            v.kv_error = None;
        });
        Ok(())
    }

    /// The bucket, opened (and made, when missing) on first use and after failures.
    async fn bucket(&mut self) -> Result<kv::Store, String> {
        if let Some(kv) = &self.kv {
            return Ok(kv.clone());
        }
        let Some(client) = self.nats.client() else {
            return Err("no NATS connection is configured for the election".into());
        };
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err("not connected to NATS".into());
        }
        let clustered = client.server_info().cluster.is_some();
        let mut js = async_nats::jetstream::new(client);
        js.set_timeout(self.request_timeout());
        let bucket = format!("nas_{}", self.handle.name());
        let kv = match js.get_key_value(&bucket).await {
            // An existing bucket: one made by an earlier version may keep one replica.
            Ok(kv) => {
                if clustered && !self.said_single_replica {
                    self.warn_if_single_replica(&js, &bucket).await;
                }
                kv
            }
            Err(_) => create_bucket(&js, &bucket).await?,
        };
        self.kv = Some(kv.clone());
        Ok(kv)
    }

    /// Says so when the bucket keeps one replica although nats-server runs as a cluster (made
    /// by an earlier version while the JetStream cluster was forming): losing that one server
    /// stops the cluster's writes. Not changed here: a bucket's replicas are the operator's to
    /// change (`nats stream edit`), and deleting it while nodes run would lose the lease.
    async fn warn_if_single_replica(&mut self, js: &async_nats::jetstream::Context, bucket: &str) {
        let Ok(stream) = js.get_stream(format!("KV_{bucket}")).await else {
            return;
        };
        if stream.cached_info().config.num_replicas == 1 {
            tracing::warn!(cluster = %self.handle.name(), %bucket,
                "the cluster's lease bucket keeps one replica although nats-server runs as a cluster: losing the server that holds it stops all writes; give it three (nats stream edit KV_{bucket} --replicas 3)");
            self.said_single_replica = true;
        }
    }

    /// Requests to the bucket time out well within a renewal period.
    fn request_timeout(&self) -> Duration {
        (self.ttl() / 3).max(Duration::from_millis(200))
    }

    fn kv_failed(&mut self, e: String) {
        // Reopen the bucket next time: the connection or the stream may have been replaced.
        self.kv = None;
        if self.said.as_deref() != Some(e.as_str()) {
            tracing::warn!(cluster = %self.handle.name(), cause = %e, "the cluster's lease bucket (NATS JetStream) does not answer");
            self.said = Some(e.clone());
        }
        self.handle.inner.metrics.cluster_kv_up(false);
        self.view.send_modify(|v| {
            v.kv_up = false;
            v.kv_error = Some(e);
        });
    }

    /// Leader: renews the lease (compare-and-set on the revision it last wrote).
    async fn renew(&mut self, kv: &kv::Store) -> Result<(), String> {
        let (term, held) = {
            let v = self.view.borrow();
            (v.term, self.held.unwrap_or(0))
        };
        let lease = self.my_lease(term);
        let sent = Instant::now();
        let put = tokio::time::timeout(
            self.request_timeout(),
            kv.update(LEASE_KEY, encode(&lease), held),
        )
        .await;
        match put {
            Ok(Ok(revision)) => {
                self.held = Some(revision);
                let until = sent + self.ttl() - self.margin();
                self.view.send_modify(|v| {
                    v.renewed_at = Some(sent);
                    v.writable_until = Some(until);
                });
                Ok(())
            }
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // Either another node took the lease, or an earlier renewal of ours was stored
                // but its answer lost. Only the second keeps this node leader.
                match read_lease(kv).await? {
                    Some((revision, l)) if l.node == self.handle.node() && l.term == term => {
                        self.held = Some(revision);
                        Ok(())
                    }
                    other => {
                        let by = other.map(|(_, l)| l.node).unwrap_or_default();
                        self.step_down(&format!("the lease was taken by node {by:?}"));
                        Ok(())
                    }
                }
            }
            Ok(Err(e)) => Err(format!("renewing the lease: {e}")),
            Err(_) => Err("renewing the lease: timed out".into()),
        }
    }

    /// Past the fence the leader stops accepting writes and steps down, whatever the reason
    /// it could not renew.
    fn check_fence(&mut self) {
        let fenced = {
            let v = self.view.borrow();
            v.role == Role::Leader && v.writable_until.is_none_or(|t| Instant::now() >= t)
        };
        if fenced {
            let reclaim = self.held.zip(Some(self.view.borrow().term));
            self.step_down("could not renew the lease in time");
            self.reclaim = reclaim;
        }
    }

    fn step_down(&mut self, why: &str) {
        let term = self.view.borrow().term;
        tracing::warn!(cluster = %self.handle.name(), term, cause = why, "stepping down as cluster leader: writes are refused here from now on");
        self.held = None;
        self.reclaim = None;
        // Whatever lease is read next is new to this node: wait a whole lease time for it.
        self.observed = None;
        self.expiry = None;
        self.next_publish = Instant::now();
        self.view.send_modify(|v| {
            v.role = Role::Candidate;
            v.leader = None;
            v.writable_until = None;
        });
        self.handle.inner.metrics.cluster_leader_change();
    }

    /// Follower or candidate: reads the lease, follows its holder, and acts on its expiry.
    async fn watch_lease(&mut self, kv: &kv::Store) -> Result<(), String> {
        let now = Instant::now();
        let current = read_lease(kv).await?;
        if let Some((revision, term)) = self.reclaim.take() {
            if current.as_ref().is_some_and(|(r, _)| *r == revision) {
                return self.resume(kv, revision, term).await;
            }
        }
        match current {
            None => self.expired(kv, None, None).await,
            Some((revision, lease)) => {
                let new = self
                    .observed
                    .as_ref()
                    .is_none_or(|o| o.revision != revision);
                if new {
                    let term = if lease.term == 0 {
                        revision
                    } else {
                        lease.term
                    };
                    if lease.node == self.handle.node() {
                        // This node's id holds it: an earlier run of this node (the data
                        // directory is locked, so not a live one). It cannot know what that
                        // run promised; it waits out the lease like everyone else.
                        tracing::info!(term, "the lease names this node from an earlier run; waiting for it to expire");
                    } else {
                        self.follow(&lease, term);
                    }
                    self.observed = Some(Observed {
                        revision,
                        lease,
                        since: now,
                    });
                    self.expiry = None;
                    return Ok(());
                }
                let o = self.observed.clone().expect("observed above");
                if now.duration_since(o.since) >= self.ttl() {
                    self.expired(kv, Some(o.revision), Some(o.lease.node)).await
                } else {
                    Ok(())
                }
            }
        }
    }

    fn follow(&mut self, lease: &Lease, term: u64) {
        let changed = {
            let v = self.view.borrow();
            v.leader.as_ref().map(|l| (&l.node, &l.url)) != Some((&lease.node, &lease.url))
                || v.term != term
        };
        let mut lease = lease.clone();
        lease.term = term;
        if changed {
            tracing::info!(cluster = %self.handle.name(), leader = %lease.node, url = %lease.url, term, "following the cluster leader");
            self.handle.inner.metrics.cluster_leader_change();
        }
        let now = Instant::now();
        self.view.send_modify(|v| {
            v.role = Role::Follower;
            v.term = v.term.max(term);
            v.leader = Some(lease);
            v.renewed_at = Some(now);
            v.writable_until = None;
        });
    }

    /// The lease expired (or there is none): publish progress, wait until the other live
    /// nodes have published after it, then take the lease if this node is the best candidate.
    async fn expired(
        &mut self,
        kv: &kv::Store,
        revision: Option<u64>,
        holder: Option<String>,
    ) -> Result<(), String> {
        let same = self.expiry.as_ref().is_some_and(|e| e.revision == revision);
        if !same {
            if revision.is_some() {
                tracing::warn!(cluster = %self.handle.name(), holder = ?holder, "the cluster leader's lease expired; electing a new leader");
            }
            self.view.send_modify(|v| {
                if v.role != Role::Candidate {
                    v.role = Role::Candidate;
                    v.leader = None;
                }
            });
            let mark = self.publish_progress(kv).await?;
            tracing::debug!(
                mark,
                "published progress on expiry; waiting for the other nodes' next"
            );
            self.expiry = Some(Expiry {
                revision,
                holder,
                mark,
                since: Instant::now(),
            });
            return Ok(());
        }
        // Publish again every round while electing: a peer that saw the expiry after this
        // node did waits for a publication after its own mark, and should not wait for the
        // periodic one (a third of the lease).
        self.publish_progress(kv).await?;
        self.read_peers(kv).await?;
        let e = self.expiry.clone().expect("expiry set above");
        let lineage = self
            .observed
            .as_ref()
            .map(|o| o.lease.lineage.clone())
            .unwrap_or_default();
        let me = self.progress();
        let now = Instant::now();
        let mut best = (rank(&me, &lineage), me.node.clone());
        for (node, seen) in &self.peers {
            if *node == me.node || Some(node) == e.holder.as_ref() {
                continue;
            }
            let alive = now.duration_since(seen.changed) < self.ttl();
            if !alive {
                continue;
            }
            if seen.revision <= e.mark {
                if now.duration_since(e.since) < self.ttl() {
                    // Its progress may still change: wait for its next publication.
                    tracing::debug!(peer = %node, revision = seen.revision, mark = e.mark, "waiting for a peer's progress after the mark");
                    return Ok(());
                }
                continue;
            }
            let candidate = (rank(&seen.progress, &lineage), node.clone());
            if better(&candidate, &best) {
                best = candidate;
            }
        }
        if best.1 != me.node {
            tracing::debug!(best = %best.1, "another node is the better candidate");
            return Ok(());
        }
        self.take(kv, revision).await
    }

    async fn take(&mut self, kv: &kv::Store, revision: Option<u64>) -> Result<(), String> {
        let lease = self.my_lease(0);
        let sent = Instant::now();
        let taken = match revision {
            None => kv
                .create(LEASE_KEY, encode(&lease))
                .await
                .map_err(|e| e.to_string()),
            Some(r) => kv
                .update(LEASE_KEY, encode(&lease), r)
                .await
                .map_err(|e| e.to_string()),
        };
        let term = match taken {
            Ok(term) => term,
            Err(e) => {
                tracing::debug!(cause = %e, "another node took the lease first");
                self.expiry = None;
                return Ok(());
            }
        };
        tracing::warn!(cluster = %self.handle.name(), term, node = %self.handle.node(), "this node is now the cluster leader: taking writes");
        self.lead(term, term, sent);
        // The first renewal writes the term into the value, for everyone who reads it.
        self.renew(kv).await
    }

    /// A fenced leader whose lease nobody took: renews it (compare-and-set on the revision it
    /// wrote last) and leads again in the same term. Nothing was accepted in between: it was
    /// fenced, and any other leader would have had to write the lease first.
    async fn resume(&mut self, kv: &kv::Store, revision: u64, term: u64) -> Result<(), String> {
        let sent = Instant::now();
        let Ok(new) = kv
            .update(LEASE_KEY, encode(&self.my_lease(term)), revision)
            .await
        else {
            return Ok(());
        };
        tracing::warn!(cluster = %self.handle.name(), term, "the lease bucket answers again and nobody took the lease: leading again in the same term");
        self.lead(term, new, sent);
        Ok(())
    }

    /// Becomes leader of `term`, holding the lease at `revision` written at `sent`: writes are
    /// accepted until a lease time minus the margin after `sent`.
    fn lead(&mut self, term: u64, revision: u64, sent: Instant) {
        self.held = Some(revision);
        self.observed = None;
        self.expiry = None;
        self.next_publish = Instant::now();
        self.handle.inner.metrics.cluster_leader_change();
        let until = sent + self.ttl() - self.margin();
        let lease = self.my_lease(term);
        self.view.send_modify(|v| {
            v.role = Role::Leader;
            v.term = term;
            v.leader = Some(lease);
            v.renewed_at = Some(sent);
            v.writable_until = Some(until);
        });
    }

    fn my_lease(&self, term: u64) -> Lease {
        Lease {
            node: self.handle.node().to_string(),
            url: self.handle.advertise().to_string(),
            lineage: self.store.lineage().to_string(),
            term,
        }
    }

    /// What this node publishes about itself.
    fn progress(&self) -> Progress {
        let v = self.view.borrow();
        let (lineage, applied, lag) = if v.role == Role::Leader {
            (self.store.lineage().to_string(), self.store.head(), 0.0)
        } else {
            let (lineage, applied) = self.replica.applied();
            (lineage, applied, self.replica.lag_seconds())
        };
        Progress {
            node: self.handle.node().to_string(),
            url: self.handle.advertise().to_string(),
            role: v.role.as_str().to_string(),
            term: v.term,
            lineage,
            applied,
            lag_seconds: lag,
            accounts: self.store.counts().0,
            at_ms: crate::jwt::now_unix() * 1000,
        }
    }

    /// Publishes this node's progress; returns the revision it got.
    async fn publish_progress(&mut self, kv: &kv::Store) -> Result<u64, String> {
        let p = self.progress();
        let key = format!("{NODE_PREFIX}{}", p.node);
        let body = Bytes::from(serde_json::to_vec(&p).expect("progress serializes"));
        let revision = tokio::time::timeout(self.request_timeout(), kv.put(key, body))
            .await
            .map_err(|_| "publishing progress: timed out".to_string())?
            .map_err(|e| format!("publishing progress: {e}"))?;
        self.next_publish = Instant::now() + self.ttl() / 3;
        Ok(revision)
    }

    /// Reads every node's progress.
    async fn read_peers(&mut self, kv: &kv::Store) -> Result<(), String> {
        let timeout = self.request_timeout();
        let keys: Vec<String> = tokio::time::timeout(timeout, async {
            let mut keys = kv.keys().await.map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            while let Some(k) = keys.next().await {
                out.push(k.map_err(|e| e.to_string())?);
            }
            Ok::<_, String>(out)
        })
        .await
        .map_err(|_| "listing nodes: timed out".to_string())??;
        // All at once: with distant NATS servers, one round trip per node in turn would make
        // every election round as slow as the cluster is large.
        let reads = keys
            .iter()
            .filter(|k| k.starts_with(NODE_PREFIX))
            .map(|key| kv.entry(key.as_str()));
        let entries = tokio::time::timeout(timeout, futures_util::future::join_all(reads))
            .await
            .map_err(|_| "reading node progress: timed out".to_string())?;
        let now = Instant::now();
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                continue;
            };
            let Ok(progress) = serde_json::from_slice::<Progress>(&entry.value) else {
                continue;
            };
            let node = progress.node.clone();
            match self.peers.get_mut(&node) {
                Some(seen) if seen.revision == entry.revision => {}
                Some(seen) => {
                    seen.revision = entry.revision;
                    seen.progress = progress;
                    seen.changed = now;
                }
                None => {
                    self.peers.insert(
                        node,
                        Seen {
                            revision: entry.revision,
                            progress,
                            changed: now,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Publishes the view: peers, metrics, and a lag sample now and then.
    fn publish_view(&mut self) {
        let me = self.progress();
        let mut peers: Vec<Peer> = self
            .peers
            .values()
            .filter(|s| s.progress.node != me.node)
            .map(|s| Peer {
                progress: s.progress.clone(),
                seen: s.changed,
            })
            .collect();
        peers.push(Peer {
            progress: me.clone(),
            seen: Instant::now(),
        });
        peers.sort_by(|a, b| a.progress.node.cmp(&b.progress.node));
        let sample = Instant::now() >= self.next_sample;
        if sample {
            self.next_sample = Instant::now() + self.ttl() / 3;
        }
        let ttl = self.ttl();
        self.view.send_modify(|v| {
            if sample {
                let lags = peers
                    .iter()
                    // Nodes not heard of for a while are gone, not lagging.
                    .filter(|p| p.seen.elapsed() < 3 * ttl)
                    .map(|p| (p.progress.node.clone(), p.progress.lag_seconds))
                    .collect();
                v.lag_history =
                    std::sync::Arc::new(v.lag_history.with(crate::jwt::now_unix(), lags));
            }
            v.peers = peers;
        });
        let v = self.view.borrow();
        let m = &self.handle.inner.metrics;
        m.cluster_state(
            v.role,
            v.term,
            v.lease_age().map_or(0.0, |d| d.as_secs_f64()),
        );
        m.cluster_kv_up(v.kv_up);
    }
}

/// Reads the lease; `None` when there is none (never taken, deleted or purged).
async fn read_lease(kv: &kv::Store) -> Result<Option<(u64, Lease)>, String> {
    let entry = kv
        .entry(LEASE_KEY)
        .await
        .map_err(|e| format!("reading the lease: {e}"))?;
    let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
        return Ok(None);
    };
    let lease: Lease = serde_json::from_slice(&entry.value)
        .map_err(|e| format!("the lease in the bucket is not one of ours: {e}"))?;
    Ok(Some((entry.revision, lease)))
}

/// The stream behind the cluster's lease bucket `bucket`, with `replicas` replicas: shaped as
/// a key-value bucket is (one message per key, rollups, direct get). Made directly rather than
/// with async-nats' `create_key_value`, which first asks for the account information, whose
/// answer from nats-server 2.9 it cannot parse.
pub fn bucket_stream(bucket: &str, replicas: usize) -> async_nats::jetstream::stream::Config {
    use async_nats::jetstream::stream;
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("nats-account-server cluster: leader lease and node progress".into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Makes the bucket ([`bucket_stream`]): three replicas in a JetStream cluster, one on a
/// single server (which refuses more, and says so with its own error code). Any other refusal
/// is returned, and the election retries: a JetStream cluster that is still forming (no meta
/// leader yet, peers not all known) refuses three replicas for a moment, and a bucket made
/// with one then would stay on one server for good, so losing that server would stop the
/// cluster's writes (DESIGN §6: R3 in a JetStream cluster).
async fn create_bucket(
    js: &async_nats::jetstream::Context,
    bucket: &str,
) -> Result<kv::Store, String> {
    use async_nats::jetstream::context::CreateStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    let config = |replicas| bucket_stream(bucket, replicas);
    let made = match js.create_stream(config(3)).await {
        Ok(_) => 3,
        Err(e)
            if matches!(e.kind(), CreateStreamErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED) =>
        {
            js.create_stream(config(1)).await.map_err(|e| {
                format!("making the bucket {bucket} on a single nats-server: {e}; is JetStream enabled for this NATS account?")
            })?;
            1
        }
        Err(e) => {
            return Err(format!(
                "making the bucket {bucket} with 3 replicas: {e} (a JetStream cluster needs 3 servers with JetStream, and a meta leader; is JetStream enabled for this NATS account?)"
            ))
        }
    };
    tracing::info!(%bucket, replicas = made, "made the cluster's lease bucket");
    js.get_key_value(bucket)
        .await
        .map_err(|e| format!("opening the bucket {bucket}: {e}"))
}

fn encode(lease: &Lease) -> Bytes {
    Bytes::from(serde_json::to_vec(lease).expect("lease serializes"))
}

/// How much of `lineage` a node holds: its applied sequence when it counts in that lineage,
/// nothing otherwise (a node that was resyncing from another store holds no comparable
/// position). With no known lineage (a new cluster), everyone ranks by what they hold.
fn rank(p: &Progress, lineage: &str) -> u64 {
    if lineage.is_empty() || p.lineage == lineage {
        p.applied
    } else {
        0
    }
}

/// Higher rank wins; ties go to the smaller node id.
fn better(a: &(u64, String), b: &(u64, String)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(node: &str, lineage: &str, applied: u64) -> Progress {
        Progress {
            node: node.into(),
            url: String::new(),
            role: "follower".into(),
            term: 1,
            lineage: lineage.into(),
            applied,
            lag_seconds: 0.0,
            accounts: 0,
            at_ms: 0,
        }
    }

    #[test]
    fn the_most_caught_up_node_of_the_current_lineage_ranks_first() {
        assert_eq!(rank(&p("a", "L", 7), "L"), 7);
        // Far ahead in another store's numbering: holds nothing comparable.
        assert_eq!(rank(&p("b", "OTHER", 90), "L"), 0);
        assert_eq!(rank(&p("b", "OTHER", 90), ""), 90);
        assert!(better(&(8, "z".into()), &(7, "a".into())));
        assert!(better(&(7, "a".into()), &(7, "b".into())));
        assert!(!better(&(7, "b".into()), &(7, "a".into())));
    }
}
