//! Wiring and lifecycle: build the state from [`Settings`], serve HTTP on a listener the caller
//! bound, start background tasks, and shut everything down in order.
//!
//! Start order matters: the HTTP listener serves before NATS is connected (nats-server needs
//! our resolver probe to start), and the store is open before the first request.
//! Shutdown order: stop accepting and drain HTTP, cancel background tasks and wait for them
//! (bounded), drain NATS. The store needs no final flush: every acknowledged write was flushed.

use crate::config::{DeleteMode, Settings, StoreChoice};
use crate::jwt::trust::{Operator, OperatorError};
use crate::metrics::Metrics;
use crate::nats::{NatsError, NatsHandle, Notifier};
use crate::replica::ReplicaHandle;
use crate::state::{AppState, HttpOptions};
use crate::store::{Entry, Kind, Store, StoreError};
use crate::tls::{ReloadableCert, TlsError};
use crate::trust::{Trust, TrustAnchor, TrustError};
use crate::verify::{self, OperatorFileError};
use actix_web::HttpServer;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the server could not start. Each message names the setting and carries its cause; no
/// variant exposes the cause as a `source` as well, so a printer of the chain (`main`) shows
/// every cause once.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file named in the settings could not be read.
    #[error("{what} {path}: {cause}")]
    File {
        /// Which setting.
        what: &'static str,
        /// The path.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The operator JWT is unusable.
    #[error("operatorjwtpath {path}: {cause}")]
    Operator {
        /// The file.
        path: String,
        /// Why.
        cause: OperatorError,
    },
    /// An account JWT file (`systemaccountjwtpath`, `cluster.accountjwtpath`) is unusable.
    #[error("{what} {path}: {message}")]
    Account {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// NATS settings are unusable.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// HTTPS files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// HTTP could not start.
    #[error("http: {0}")]
    Http(std::io::Error),
    /// The trust anchor is inconsistent with the store.
    #[error("{0}")]
    Trust(#[from] TrustError),
    /// The link to the primary is misconfigured.
    #[error("{0}")]
    Replication(#[from] crate::replica::client::ClientError),
}

/// A running server: its address, state (for tests and the status page) and stop handle.
pub struct RunningServer {
    addr: SocketAddr,
    state: AppState,
    http: actix_web::dev::ServerHandle,
    http_task: tokio::task::JoinHandle<std::io::Result<()>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    nats: NatsHandle,
    /// The election's own NATS link (`cluster.nats`), when it has one.
    election_nats: Option<NatsHandle>,
    anchor: TrustAnchor,
    tls: Option<Arc<ReloadableCert>>,
}

/// Loads the operator and system-account files into a [`Trust`].
///
/// # Errors
/// [`StartError`] naming the file and the problem.
pub fn load_trust(settings: &Settings) -> Result<Trust, StartError> {
    let operator = match settings.operator_path() {
        None => None,
        Some(path) => Some(verify::load_operator(&path).map_err(|e| match e {
            OperatorFileError::Read { path, cause } => StartError::File {
                what: "operatorjwtpath",
                path,
                cause,
            },
            OperatorFileError::Invalid { path, cause } => StartError::Operator { path, cause },
        })?),
    };
    let system_account = match &settings.systemaccountjwtpath {
        None => None,
        Some(path) => Some(load_account(
            path,
            "systemaccountjwtpath",
            operator.as_ref(),
            true,
        )?),
    };
    let cluster_account = match &settings.cluster.accountjwtpath {
        None => None,
        Some(path) => Some(load_account(
            path,
            "cluster.accountjwtpath",
            operator.as_ref(),
            false,
        )?),
    };
    Ok(Trust {
        operator,
        system_account,
        cluster_account,
    })
}

/// An account JWT file served as a fallback: it must be an account issued by the operator (and
/// be its system account, for `system`).
fn load_account(
    path: &Path,
    what: &'static str,
    operator: Option<&Operator>,
    system: bool,
) -> Result<Arc<Entry>, StartError> {
    let token = read_token(path, what)?;
    let bad = |message: String| StartError::Account {
        what,
        path: path.display().to_string(),
        message,
    };
    let jwt = verify::configured_account(&token, operator, system).map_err(bad)?;
    let key = jwt.claims.sub.clone();
    Ok(Arc::new(Entry::new(Kind::Account, &key, &jwt)))
}

/// Reads and checks every file the settings name, as [`RunningServer::start`] would (operator
/// and system-account JWTs, HTTPS certificate and key, NATS credentials and TLS files), without
/// opening the store or binding anything: `check-config`.
///
/// # Errors
/// [`StartError`] naming the setting and the problem.
pub fn check_files(settings: &Settings) -> Result<(), StartError> {
    load_trust(settings)?;
    if let Some(tls) = &settings.http.tls {
        ReloadableCert::load(tls)?;
    }
    crate::nats::check_settings(&settings.nats)?;
    Ok(())
}

fn read_token(path: &Path, what: &'static str) -> Result<String, StartError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|cause| StartError::File {
            what,
            path: path.display().to_string(),
            cause,
        })
}

/// Opens the store the settings select. A read-only directory store and an nsc folder are
/// opened watched: [`RunningServer::start_with_store`] starts their watcher.
///
/// # Errors
/// [`StartError::Store`] when the store cannot be opened.
pub fn open_store(settings: &Settings) -> Result<Store, StartError> {
    let store = open_store_choice(settings)?;
    crate::heap::trim();
    Ok(store)
}

fn open_store_choice(settings: &Settings) -> Result<Store, StartError> {
    use crate::store::{dir::DirBackend, dirwatch::Source, nsc::NscBackend};
    match settings.store_choice() {
        StoreChoice::Sled(dir) => Ok(Store::open_sled(&dir)?),
        StoreChoice::Memory { readonly } => Ok(Store::memory(!readonly)),
        StoreChoice::Dir {
            path,
            shard,
            readonly: false,
        } => Ok(Store::open(
            Box::new(
                DirBackend::open(&path, shard, true)?
                    .with_hard_delete(settings.store.deletemode == DeleteMode::Hard),
            ),
            true,
        )?),
        StoreChoice::Dir {
            path,
            shard,
            readonly: true,
        } => Ok(Store::open_watched(
            Box::new(DirBackend::open(&path, shard, false)?),
            Source::dir(&path, shard),
        )?),
        StoreChoice::Nsc(path) => Ok(Store::open_watched(
            Box::new(NscBackend::open(&path)?),
            Source::nsc(&path),
        )?),
    }
}

impl RunningServer {
    /// Starts serving `settings` on `listener` (already bound, so tests can bind port 0).
    ///
    /// # Errors
    /// [`StartError`] when the configuration cannot be brought up.
    pub async fn start(
        settings: Settings,
        listener: TcpListener,
    ) -> Result<RunningServer, StartError> {
        let trust = load_trust(&settings)?;
        let replica = settings.is_replica();
        let store = open_store(&settings)?;
        let server = RunningServer::start_with_store(settings, listener, store, trust).await?;
        // After the start succeeded: a failed start prints its error alone. A primary may
        // trust the operator its store recorded (a promoted replica) without a configured one.
        if !replica && server.anchor.current().operator.is_none() {
            tracing::warn!(
                "no operator JWT configured: POSTs will be refused (configure --operator)"
            );
        }
        Ok(server)
    }

    /// [`RunningServer::start`] with an already opened store.
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn start_with_store(
        settings: Settings,
        listener: TcpListener,
        store: Store,
        trust: Trust,
    ) -> Result<RunningServer, StartError> {
        // Everything that can fail on bad settings comes before any task is spawned, so a
        // failed start leaves nothing running.
        let tls = match &settings.http.tls {
            Some(t) => Some(ReloadableCert::load(t)?),
            None => None,
        };
        let tls_config = tls.as_ref().map(|c| c.server_config()).transpose()?;
        listener.set_nonblocking(true).map_err(StartError::Http)?;
        let addr = listener.local_addr().map_err(StartError::Http)?;
        let cluster_mode = settings.is_cluster();
        // A cluster node follows whenever it does not lead: it has the replica's parts.
        let follows = settings.is_replica() || cluster_mode;
        let metrics = Metrics::with_roles(follows, cluster_mode);
        let anchor = if follows {
            TrustAnchor::replica(trust, &store)?
        } else {
            TrustAnchor::primary(trust, &store)?
        };
        let nats = NatsHandle::connect(&settings.nats).await?;
        // The election's link: its own connection when `cluster.nats` is configured.
        let election_nats = match (&settings.cluster.nats, cluster_mode) {
            (Some(n), true) => Some(NatsHandle::connect(n).await?),
            _ => None,
        };
        let cluster = if cluster_mode {
            let node = cluster_node_id(&store).await?;
            tracing::info!(cluster = %settings.cluster.name, %node, advertise = %settings.cluster.advertise, "cluster node");
            Some(crate::cluster::ClusterHandle::new(
                &settings,
                node,
                store.lineage(),
                metrics.clone(),
            ))
        } else {
            None
        };
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let notifier = Notifier::start(&nats, metrics.clone(), cancel.clone(), &tasks);
        // Read-only directory and nsc stores: file edits are loaded and notified like writes.
        let on_file_change = notifier.clone();
        crate::store::dirwatch::spawn(
            &store,
            move |entry| on_file_change.changed(entry),
            cancel.clone(),
            &tasks,
        )?;
        let replica = if follows {
            Some(ReplicaHandle::start(
                &settings,
                store.clone(),
                anchor.clone(),
                nats.clone(),
                metrics.clone(),
                cluster.as_ref().map(|(h, _)| h.clone()),
                cancel.clone(),
                &tasks,
            )?)
        } else {
            None
        };
        let cluster = match (cluster, &replica) {
            (Some((handle, view)), Some(replica)) => {
                let election = crate::cluster::election::Election::new(
                    handle.clone(),
                    view,
                    election_nats.clone().unwrap_or_else(|| nats.clone()),
                    store.clone(),
                    Box::new(replica.clone()),
                );
                tasks.spawn(election.run(cancel.clone()));
                Some(handle)
            }
            _ => None,
        };
        let state = AppState {
            store,
            trust: anchor.subscribe(),
            notifier,
            nats: nats.clone(),
            http: HttpOptions {
                max_age: settings.http.maxage.0,
                max_body: settings.http.maxbodybytes,
                allow_delete: settings.store.allowdelete,
            },
            replica,
            cluster,
            metrics,
            limits: Arc::new(crate::limits::Limits::new(&settings)),
            draining: cancel.child_token(),
        };

        tasks.spawn(crate::resolver::run(
            state.clone(),
            nats.clone(),
            cancel.clone(),
            tasks.clone(),
        ));
        if state.store.writable() {
            tasks.spawn(compact_tombstones(
                state.store.clone(),
                settings.store.tombstonettl.0,
                cancel.clone(),
            ));
        }
        let app_state = state.clone();
        let body_timeout = crate::http::BodyReadTimeout(settings.http.readtimeout.0);
        let http =
            HttpServer::new(move || crate::http::app(app_state.clone()).app_data(body_timeout))
                // Records each connection's socket, so `http.writetimeout` can cut off a client
                // that stops reading a streamed answer (src/http/stream.rs).
                .on_connect(crate::http::stream::on_connect);
        let http = match tls_config {
            Some(config) => http.listen_rustls_0_23(listener, config),
            None => http.listen(listener),
        };
        let mut http = http
            .map_err(StartError::Http)?
            .disable_signals()
            .client_request_timeout(settings.http.readtimeout.0)
            .shutdown_timeout(10);
        if let Some(w) = settings.http.workers {
            http = http.workers(w.max(1));
        }
        let http = http.run();
        let handle = http.handle();
        let http_task = tokio::spawn(http);

        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, scheme, role = state.role().as_str(), store = state.store.backend_name(), "listening");
        tracing::info!(
            "configure nats-server with:  resolver: URL({scheme}://{}/jwt/v1/accounts/)",
            display_addr(addr)
        );
        Ok(RunningServer {
            addr,
            state,
            http: handle,
            http_task,
            cancel,
            tasks,
            nats,
            election_nats,
            anchor,
            tls,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The application state (tests inspect the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Applies re-read operator and system-account files (SIGHUP). A replica keeps what it
    /// learned from its primary.
    ///
    /// # Errors
    /// [`TrustError`] when the files name another operator than the one a replica trusts;
    /// then nothing changes.
    pub fn reload_trust(&self, trust: Trust) -> Result<(), TrustError> {
        self.anchor.reload(trust)
    }

    /// Applies changed NATS settings (SIGHUP): a new connection replaces the current one for
    /// notifications, the replica listener and health. Unchanged settings do nothing.
    ///
    /// # Errors
    /// [`NatsError`] when the new settings are unusable (the current connection stays).
    pub async fn reconfigure_nats(
        &self,
        settings: &crate::config::NatsSettings,
    ) -> Result<bool, NatsError> {
        self.nats.reconfigure(settings).await
    }

    /// Re-reads the HTTPS certificate and key (SIGHUP); a no-op without HTTPS.
    ///
    /// # Errors
    /// [`TlsError`] when the new files are unusable (the old certificate stays).
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.tls.as_ref().map_or(Ok(()), |t| t.reload())
    }

    /// Graceful shutdown: stop HTTP (in-flight requests finish), stop background tasks, drain
    /// NATS, each step bounded.
    pub async fn stop(self) {
        // Wake parked long polls first, or the graceful stop would wait out their timeout.
        self.state.draining.cancel();
        self.http.stop(true).await;
        let _ = self.http_task.await;
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.nats.close()).await;
        if let Some(n) = &self.election_nats {
            let _ = tokio::time::timeout(Duration::from_secs(2), n.close()).await;
        }
        // Last: release the store (and sled's directory lock) so a restart can reopen it.
        self.state.store.close().await;
        tracing::info!("stopped");
    }
}

/// This node's cluster id: chosen at its first start and kept in its store, so a restarted
/// node is the same node to the others.
async fn cluster_node_id(store: &Store) -> Result<String, StartError> {
    use crate::cluster::META_NODE;
    if let Some(id) = store.meta(META_NODE) {
        return Ok(String::from_utf8_lossy(&id).into_owned());
    }
    let id = crate::cluster::new_node_id();
    store
        .put_entries(
            Vec::new(),
            vec![(META_NODE.to_string(), id.clone().into_bytes())],
            crate::store::Policy::NewerWins,
        )
        .await?;
    Ok(id)
}

/// Drops tombstones older than `ttl` (by the delete request's `iat`), checking every quarter
/// of `ttl` (between 1 s and 1 h). Deletions stay visible to replicas for at least `ttl`.
async fn compact_tombstones(store: Store, ttl: Duration, cancel: CancellationToken) {
    let every = (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let before = crate::jwt::now_unix() - i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        match store.compact_tombstones(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                tombstones = n,
                "compacted deletions older than store.tombstonettl"
            ),
            Err(e) => tracing::warn!(cause = %e, "could not compact deletions; retrying"),
        }
    }
}

/// `0.0.0.0` is not something nats-server can connect to; suggest loopback in the hint.
fn display_addr(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}
