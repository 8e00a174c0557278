//! The NATS side: one connection to the system account, made in the background.
//!
//! The HTTP server never waits for NATS: nats-server needs our HTTP resolver to start, so
//! blocking on NATS at start would deadlock a fresh cluster (the Go server's issue #53). The
//! connection is retried forever; its state is visible through [`NatsHandle::state`].
//!
//! The connection can be replaced at runtime (SIGHUP with new NATS settings): the handle holds
//! a `watch` of the current [`Connection`], and the notifier, the replica listener and the
//! resolver responder ([`resolver`]) follow it.

pub mod notify;
pub mod resolver;

use crate::config::NatsSettings;
use async_nats::connection::State;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use notify::Notifier;

/// One NATS connection (or none) and the settings it was made from.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// The client; `None` when NATS is not configured.
    pub client: Option<async_nats::Client>,
    /// Flips with the connection's `Connected`/`Disconnected` events; the notifier re-sends
    /// what it could not deliver when this turns true.
    pub connected: Option<watch::Receiver<bool>>,
    /// Which update subjects notifications go to.
    pub subjects: notify::UpdateSubjects,
    /// What it was made from (to tell whether a reload changes anything).
    settings: Option<NatsSettings>,
}

/// The current NATS connection, which may not be established (yet) and may be replaced.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct NatsHandle {
    current: Arc<watch::Sender<Connection>>,
}

/// Why the NATS settings cannot be used (bad creds file, bad seed).
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// A file named in the settings could not be read or parsed.
    #[error("nats.{key}: {message}")]
    Settings {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The client refused the options.
    #[error("nats: {0}")]
    Connect(String),
}

impl NatsHandle {
    /// No NATS configured.
    pub fn disabled() -> NatsHandle {
        NatsHandle {
            current: Arc::new(watch::channel(Connection::default()).0),
        }
    }

    /// Starts connecting to `settings.servers` in the background; returns at once.
    /// Returns a disabled handle when no servers are configured.
    ///
    /// # Errors
    /// [`NatsError`] for unreadable credentials or invalid URLs; unreachable servers are not an
    /// error (the client keeps retrying).
    pub async fn connect(settings: &NatsSettings) -> Result<NatsHandle, NatsError> {
        let conn = Connection::connect(settings).await?;
        Ok(NatsHandle {
            current: Arc::new(watch::channel(conn).0),
        })
    }

    /// Replaces the connection when `settings` differ from the current one's (SIGHUP): the new
    /// connection is made first, then swapped in, then the old one is drained. Returns whether
    /// anything changed.
    ///
    /// # Errors
    /// [`NatsError`]; the current connection then stays.
    pub async fn reconfigure(&self, settings: &NatsSettings) -> Result<bool, NatsError> {
        let unchanged = self.current.borrow().settings.as_ref() == Some(settings)
            || (settings.servers.0.is_empty() && self.current.borrow().client.is_none());
        if unchanged {
            return Ok(false);
        }
        let conn = Connection::connect(settings).await?;
        let old = self.current.send_replace(conn);
        tracing::info!(servers = ?settings.servers.0, "NATS settings changed; switched to a new connection");
        old.close().await;
        Ok(true)
    }

    /// A receiver that sees every replacement of the connection.
    pub fn watch(&self) -> watch::Receiver<Connection> {
        self.current.subscribe()
    }

    /// Runs `serve` with the current client, and again with each client that replaces it
    /// (SIGHUP), until `cancel` fires; only on connections whose settings `wanted` accepts.
    /// `serve` subscribes and handles messages; when it returns (its subscriptions ended) the
    /// next connection is awaited.
    pub async fn follow<F, Fut>(
        &self,
        cancel: CancellationToken,
        wanted: impl Fn(&NatsSettings) -> bool,
        mut serve: F,
    ) where
        F: FnMut(async_nats::Client) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut conns = self.watch();
        loop {
            let client = {
                let conn = conns.borrow_and_update();
                conn.client
                    .clone()
                    .filter(|_| conn.settings.as_ref().is_some_and(&wanted))
            };
            if let Some(nc) = client {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    changed = conns.changed() => if changed.is_err() { return } else { continue },
                    () = serve(nc) => {}
                }
            }
            // No connection, or its subscriptions ended: wait for a new one.
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = conns.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Which update subjects the current connection's settings name (`nats.updatesubjects`):
    /// where a primary publishes, and so where its replicas listen.
    pub fn update_subjects(&self) -> notify::UpdateSubjects {
        self.current.borrow().subjects
    }

    /// The current client, when NATS is configured.
    pub fn client(&self) -> Option<async_nats::Client> {
        self.current.borrow().client.clone()
    }

    /// `disabled`, `connecting`, `connected` or `disconnected`.
    pub fn state(&self) -> &'static str {
        self.current.borrow().state()
    }

    /// Flushes and drains the connection at shutdown (bounded by the caller).
    pub async fn close(&self) {
        let conn = self.current.borrow().clone();
        conn.close().await;
    }
}

impl Connection {
    async fn connect(settings: &NatsSettings) -> Result<Connection, NatsError> {
        if settings.servers.0.is_empty() {
            return Ok(Connection {
                subjects: settings.updatesubjects,
                settings: Some(settings.clone()),
                ..Connection::default()
            });
        }
        let wait = settings.reconnectwait.0.max(Duration::from_millis(10));
        let (connected_tx, connected) = watch::channel(false);
        let connected_tx = Arc::new(connected_tx);
        let mut opts = async_nats::ConnectOptions::new()
            .name("nats-account-server")
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(settings.connecttimeout.0)
            // First attempt at once (attempts counts from 1 here); then the configured wait.
            .reconnect_delay_callback(
                move |attempts| if attempts <= 1 { Duration::ZERO } else { wait },
            )
            .event_callback(move |event| {
                let connected_tx = connected_tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("connected to NATS");
                            connected_tx.send_replace(true);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("disconnected from NATS; reconnecting");
                            connected_tx.send_replace(false);
                        }
                        other => tracing::info!(event = %other, "NATS event"),
                    }
                }
            });
        if let Some(path) = &settings.usercredentials {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| NatsError::Settings {
                    key: "usercredentials",
                    message: format!("{}: {e}", path.display()),
                })?;
        }
        if let Some(path) = &settings.nkey {
            let seed = std::fs::read_to_string(path).map_err(|e| NatsError::Settings {
                key: "nkey",
                message: format!("{}: {e}", path.display()),
            })?;
            let seed = seed
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("SU"))
                .ok_or_else(|| NatsError::Settings {
                    key: "nkey",
                    message: format!("{}: no user nkey seed (SU…) found", path.display()),
                })?;
            opts = opts.nkey(seed.to_string());
        }
        if let Some(tls) = &settings.tls {
            opts = opts.require_tls(true);
            if let Some(root) = &tls.root {
                opts = opts.add_root_certificates(root.clone());
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                opts = opts.add_client_certificate(cert.clone(), key.clone());
            }
        }
        let addrs: Vec<async_nats::ServerAddr> = settings
            .servers
            .0
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|e| NatsError::Connect(format!("server URL {s:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let client = opts
            .connect(addrs)
            .await
            .map_err(|e| NatsError::Connect(e.to_string()))?;
        Ok(Connection {
            connected: Some(connected),
            client: Some(client),
            subjects: settings.updatesubjects,
            settings: Some(settings.clone()),
        })
    }

    /// `disabled`, `connecting`, `connected` or `disconnected`.
    pub fn state(&self) -> &'static str {
        match self.client.as_ref().map(|c| c.connection_state()) {
            None => "disabled",
            Some(State::Pending) => "connecting",
            Some(State::Connected) => "connected",
            Some(State::Disconnected) => "disconnected",
        }
    }

    /// Flushes and drains the connection (bounded by the caller).
    async fn close(&self) {
        if let Some(c) = &self.client {
            if c.connection_state() == State::Connected {
                let _ = c.flush().await;
                let _ = c.drain().await;
            }
        }
    }
}
