//! What every handler can reach: cheap handles, created once in `server.rs`, cloned into each
//! worker. Nothing here is a lock the handlers share; the trust anchor is a `watch` receiver so
//! a SIGHUP reload swaps it without blocking readers.

use crate::metrics::Metrics;
use crate::nats::{NatsHandle, Notifier};
use crate::replica::ReplicaHandle;
use crate::role::NodeRole;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use crate::trust::Trust;

/// HTTP behaviour knobs from the settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `Cache-Control: max-age` for non-expiring tokens, and the cap for expiring ones.
    pub max_age: Duration,
    /// Request body limit in bytes.
    pub max_body: usize,
    /// Operator-signed account deletions are taken (`store.allowdelete`).
    pub allow_delete: bool,
}

/// Shared application state (all fields are handles).
#[derive(Clone)]
pub struct AppState {
    /// The JWT store.
    pub store: Store,
    /// Trust anchor; `borrow()` for the current one.
    pub trust: watch::Receiver<Arc<Trust>>,
    /// Publishes claims updates.
    pub notifier: Notifier,
    /// The NATS connection (for status).
    pub nats: NatsHandle,
    /// HTTP options.
    pub http: HttpOptions,
    /// Present on replicas and cluster nodes (which follow whenever they do not lead); use
    /// [`AppState::follower`] to know whether it is in charge now.
    pub replica: Option<ReplicaHandle>,
    /// Present on cluster nodes (`--cluster`).
    pub cluster: Option<crate::cluster::ClusterHandle>,
    /// This instance's metrics.
    pub metrics: Metrics,
    /// Caps and caches against hostile load.
    pub limits: Arc<crate::limits::Limits>,
    /// Cancelled when the server starts shutting down, so long polls return at once instead
    /// of holding the graceful stop for their whole wait.
    pub draining: tokio_util::sync::CancellationToken,
}

impl AppState {
    /// A primary's state without NATS or background tasks, for driving [`crate::http::app`]
    /// directly (benchmarks, in-process tests without a socket). The trust anchor is fixed.
    pub fn standalone(store: Store, trust: Trust, http: HttpOptions) -> AppState {
        let metrics = Metrics::new();
        let nats = NatsHandle::disabled();
        let notifier = Notifier::disabled(metrics.clone());
        let (_fixed, trust) = watch::channel(Arc::new(trust));
        AppState {
            store,
            trust,
            notifier,
            nats,
            http,
            replica: None,
            cluster: None,
            metrics,
            limits: Arc::default(),
            draining: Default::default(),
        }
    }

    /// The current trust anchor.
    pub fn trust(&self) -> Arc<Trust> {
        self.trust.borrow().clone()
    }

    /// The replica machinery when this server follows another now: a replica always, a
    /// cluster node while it is not the leader. `None` on a primary and on the cluster leader,
    /// which take writes themselves.
    pub fn follower(&self) -> Option<&ReplicaHandle> {
        self.replica.as_ref().filter(|r| r.following())
    }

    /// What this server is now: primary, replica, or a cluster node in its current role.
    pub fn role(&self) -> NodeRole {
        match (&self.cluster, &self.replica) {
            (Some(c), _) => NodeRole::Cluster(c.role()),
            (None, Some(_)) => NodeRole::Replica,
            (None, None) => NodeRole::Primary,
        }
    }
}
