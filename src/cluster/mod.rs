//! Automatic failover (`--cluster NAME`, DESIGN §6.2): every node is started the same way; one
//! is elected leader through a NATS JetStream key-value bucket and takes the writes, the others
//! follow it like replicas (change feed, NATS hints, misses) and forward writes to it.
//!
//! There is no consensus code here. JetStream's compare-and-set on one key is the only
//! arbiter ([`election`]); what this module adds is what makes that safe to build writes on:
//! - **Fencing**: the leader accepts a write only while its lease is certainly still its own:
//!   `leasettl` minus a margin after it *sent* its last successful renewal, while the others
//!   wait a whole `leasettl` after they *saw* that renewal before taking over. A leader that
//!   cannot renew in time stops accepting writes before anyone else may start.
//! - **Terms**: the term is the bucket revision at which a lease was taken; every write answer
//!   carries it (`X-Cluster-Term`) and the accepting node (`X-Cluster-Leader`), and followers
//!   refuse a change feed whose term is older than the newest they have seen.
//! - **Semi-synchronous writes** ([`acks`]): with `syncreplicas = N` a write is answered only
//!   after N followers have applied it durably; together with the election rule (only the most
//!   caught-up node may take the lease) a failover then loses no acknowledged write.
//!
//! Ownership: the election task owns the [`View`] (published through a `watch`) and the
//! lease; [`ClusterHandle`] is the cheap handle the write path, the feed and the status page use.

mod acks;
pub mod election;
pub mod lag_history;

use crate::config::Settings;
use crate::metrics::Metrics;
pub use crate::role::Role;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The leader a lease names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Node id of the holder.
    pub node: String,
    /// Its advertise URL.
    pub url: String,
    /// Its store's lineage id: the sequence numbers its followers' cursors refer to.
    pub lineage: String,
    /// The term; 0 in the write that takes the lease, whose revision *is* the term (the value
    /// is written before its revision is known), and set by every renewal.
    #[serde(default)]
    pub term: u64,
}

/// What each node publishes about itself in the bucket (`node.<id>`), every third of the
/// lease: the election reads `lineage` and `applied`, the status page all of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Node id.
    pub node: String,
    /// Advertise URL.
    pub url: String,
    /// `leader`, `follower` or `candidate`.
    pub role: String,
    /// The newest term the node has seen.
    pub term: u64,
    /// The lineage `applied` counts in: a leader's own store, a follower's leader's.
    pub lineage: String,
    /// A leader's head sequence; a follower's last applied sequence of its leader.
    pub applied: u64,
    /// Seconds since the node last knew it held everything its leader had (0 on the leader).
    pub lag_seconds: f64,
    /// Accounts stored.
    pub accounts: usize,
    /// Wall clock of the publication, Unix milliseconds (for people; the election compares
    /// bucket revisions, never clocks).
    pub at_ms: i64,
}

/// Another node, as this one last saw it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// What it published last.
    pub progress: Progress,
    /// When its publication last changed, on this node's clock.
    pub seen: Instant,
}

/// The cluster as this node sees it. Published by the election task.
#[derive(Debug, Clone)]
pub struct View {
    /// This node's role.
    pub role: Role,
    /// The newest term seen.
    pub term: u64,
    /// The current lease holder, when one is known (this node too, when leader).
    pub leader: Option<Lease>,
    /// When the lease was last renewed: on the leader, when its last successful renewal was
    /// sent; elsewhere, when this node first saw that renewal.
    pub renewed_at: Option<Instant>,
    /// Leader only: writes are accepted until then (fencing).
    pub writable_until: Option<Instant>,
    /// The bucket answered the last request.
    pub kv_up: bool,
    /// Why it did not, while it does not.
    pub kv_error: Option<String>,
    /// Every node that published progress, this one included, by node id.
    pub peers: Vec<Peer>,
    /// Replication lag of each node over the last minutes, for the status page.
    pub lag_history: Arc<lag_history::History>,
}

impl View {
    fn initial() -> View {
        View {
            role: Role::Candidate,
            term: 0,
            leader: None,
            renewed_at: None,
            writable_until: None,
            kv_up: false,
            kv_error: None,
            peers: Vec::new(),
            lag_history: Arc::default(),
        }
    }

    /// Seconds since the lease was last renewed.
    pub fn lease_age(&self) -> Option<Duration> {
        self.renewed_at.map(|t| t.elapsed())
    }
}

/// What the election needs from this node's replication while it follows: the progress it
/// publishes, so that only the most caught-up node may take the lease. Implemented by
/// `replica::ReplicaHandle`; the trait lets the replica use this module's handle without this
/// module depending on the replica.
pub trait FollowerProgress: Send + Sync + 'static {
    /// The lineage of the leader's store this node has applied changes of, and the leader's
    /// sequence it has applied up to (its persisted cursor).
    fn applied(&self) -> (String, u64);
    /// Seconds since this node last held everything its leader had.
    fn lag_seconds(&self) -> f64;
}

/// What a write accepted by the leader is stamped with (`X-Cluster-Term`, `X-Cluster-Leader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The term it was accepted in.
    pub term: u64,
    /// The node id of the leader that accepted it.
    pub leader: String,
}

/// Why a cluster node does not take a write itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// No leader is known (an election is under way, or the bucket cannot be reached).
    #[error("no cluster leader is elected at the moment (election under way or NATS JetStream unreachable); the write was not stored, retry shortly")]
    NoLeader,
    /// This node is not the leader (its change feed is not to be followed).
    #[error("this node is not the cluster leader; follow the node the lease names")]
    NotLeader,
    /// This node lost its lease (it could not renew it in time, or another node took it).
    #[error("this node is no longer the cluster leader (term {term}); the write may not have been stored, retry")]
    LostLease {
        /// The term it led.
        term: u64,
    },
}

/// Handle to this node's cluster membership. Cheap to clone.
#[derive(Clone)]
pub struct ClusterHandle {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    name: String,
    advertise: String,
    lease_ttl: Duration,
    sync_replicas: usize,
    sync_timeout: Duration,
    view: watch::Receiver<View>,
    acks: acks::Acks,
    metrics: Metrics,
}

/// Store metadata key holding this node's id (chosen once, at the first start).
pub const META_NODE: &str = "cluster.node";

impl ClusterHandle {
    /// A handle and the election state that [`election::Election::spawn`] runs. `node`: this
    /// node's id; `lineage`: its store's.
    pub fn new(
        settings: &Settings,
        node: String,
        lineage: &str,
        metrics: Metrics,
    ) -> (ClusterHandle, watch::Sender<View>) {
        let (tx, view) = watch::channel(View::initial());
        let c = &settings.cluster;
        let handle = ClusterHandle {
            inner: Arc::new(Inner {
                node,
                name: c.name.clone(),
                advertise: c.advertise.trim_end_matches('/').to_string(),
                lease_ttl: c.leasettl.0,
                sync_replicas: c.syncreplicas,
                sync_timeout: c.synctimeout.0,
                view,
                acks: acks::Acks::new(lineage),
                metrics,
            }),
        };
        (handle, tx)
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This node's advertise URL.
    pub fn advertise(&self) -> &str {
        &self.inner.advertise
    }

    /// The lease time-to-live.
    pub fn lease_ttl(&self) -> Duration {
        self.inner.lease_ttl
    }

    /// `syncreplicas`.
    pub fn sync_replicas(&self) -> usize {
        self.inner.sync_replicas
    }

    /// A copy of the current view.
    pub fn view(&self) -> View {
        self.inner.view.borrow().clone()
    }

    /// A receiver that sees every change of the view (the replica's sync task follows the
    /// leader with it).
    pub fn subscribe(&self) -> watch::Receiver<View> {
        self.inner.view.clone()
    }

    /// This node's role now.
    pub fn role(&self) -> Role {
        self.inner.view.borrow().role
    }

    /// The leader to follow: its lease, unless this node is the leader or none is known.
    pub fn leader_to_follow(&self) -> Option<Lease> {
        let v = self.inner.view.borrow();
        match v.role {
            Role::Follower => v.leader.clone(),
            _ => None,
        }
    }

    /// The newest term this node has seen.
    pub fn term(&self) -> u64 {
        self.inner.view.borrow().term
    }

    /// Whether this node may accept a write now: it is the leader and its lease is certainly
    /// still its own. Returns the stamp to answer with.
    ///
    /// # Errors
    /// [`ClusterError`] when it is not (counted in `nas_cluster_fenced_total`).
    pub fn permit(&self) -> Result<Stamp, ClusterError> {
        let v = self.inner.view.borrow();
        let valid = v.role == Role::Leader && v.writable_until.is_some_and(|t| Instant::now() < t);
        if valid {
            return Ok(Stamp {
                term: v.term,
                leader: self.inner.node.clone(),
            });
        }
        self.inner.metrics.cluster_fenced();
        Err(if v.role == Role::Leader {
            ClusterError::LostLease { term: v.term }
        } else {
            ClusterError::NoLeader
        })
    }

    /// Completes a write stored at `seq` under `stamp`: waits (semi-synchronous replication)
    /// until `syncreplicas` followers have applied it or `synctimeout` passes, then checks
    /// that the lease of `stamp`'s term is still held, so no write is answered 200 in a term
    /// a newer one may have replaced.
    ///
    /// # Errors
    /// [`ClusterError::LostLease`]: the write is stored here, but this node may no longer be
    /// the leader; the client should retry (the same JWT again is harmless).
    pub async fn committed(&self, seq: u64, stamp: Stamp) -> Result<Stamp, ClusterError> {
        let n = self.inner.sync_replicas;
        if n > 0 {
            let started = Instant::now();
            match self.inner.acks.wait(seq, n, self.inner.sync_timeout).await {
                acks::Waited::Acked => self
                    .inner
                    .metrics
                    .cluster_semisync_wait(started.elapsed().as_secs_f64()),
                acks::Waited::TimedOut => {
                    self.inner.metrics.cluster_semisync_fallback();
                    tracing::warn!(seq, syncreplicas = n, timeout = ?self.inner.sync_timeout,
                        "semi-synchronous replication timed out: answering writes without waiting for followers until enough of them catch up");
                }
                acks::Waited::Degraded => self.inner.metrics.cluster_semisync_fallback(),
            }
        }
        let now = self
            .permit()
            .map_err(|_| ClusterError::LostLease { term: stamp.term })?;
        if now.term != stamp.term {
            return Err(ClusterError::LostLease { term: stamp.term });
        }
        Ok(stamp)
    }

    /// Records a follower's acknowledgement: its feed request asked for changes after
    /// `since` in store `lineage`, so everything up to `since` is durable there.
    pub fn ack(&self, node: &str, lineage: &str, since: u64) {
        if node != self.inner.node {
            self.inner.acks.ack(node, lineage, since);
        }
    }

    /// Whether a change feed answered in `term` may be applied: not older than the newest
    /// term this node has seen (a deposed leader's feed is refused).
    pub fn current_term(&self, term: u64) -> bool {
        term >= self.inner.view.borrow().term
    }
}

/// A fresh node id: 8 random bytes, hex.
pub fn new_node_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
