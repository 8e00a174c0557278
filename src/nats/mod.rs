//! The NATS side: one connection to the system account, made in the background.
//!
//! The HTTP server never waits for NATS: nats-server needs our HTTP resolver to start, so
//! blocking on NATS at start would deadlock a fresh cluster (the Go server's issue #53). The
//! connection is retried forever (a configured `maxreconnects` is ignored, with a warning); its
//! state is visible through [`NatsHandle::state`].
//!
//! The connection can be replaced at runtime (SIGHUP with new NATS settings): the handle holds
//! a `watch` of the current [`Connection`], and the notifier, the replica listener and the
//! resolver responder ([`crate::resolver`]) follow it.

pub mod notify;

use crate::config::{NatsSettings, UpdateSubjects};
use crate::link::{self, LinkState, Note};
use crate::tls::PemKind;
use async_nats::connection::State;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
    pub subjects: UpdateSubjects,
    /// What it was made from (to tell whether a reload changes anything).
    settings: Option<NatsSettings>,
}

/// The state of the NATS connection, as `/healthz`, `/readyz` and the status page show it
/// ([`ConnectionState::as_str`]: those strings are the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// NATS is not configured.
    Disabled,
    /// Not connected yet (the first connection is being made).
    Connecting,
    /// Connected.
    Connected,
    /// Connected before, reconnecting now.
    Disconnected,
}

impl ConnectionState {
    /// `disabled`, `connecting`, `connected` or `disconnected`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Disabled => "disabled",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Disconnected => "disconnected",
        }
    }
}

impl std::fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ConnectionState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
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
    #[error("nats.{key} {path}: {message}")]
    File {
        /// The setting.
        key: &'static str,
        /// The file.
        path: String,
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
    pub fn update_subjects(&self) -> UpdateSubjects {
        self.current.borrow().subjects
    }

    /// The current client, when NATS is configured.
    pub fn client(&self) -> Option<async_nats::Client> {
        self.current.borrow().client.clone()
    }

    /// The current connection's state.
    pub fn state(&self) -> ConnectionState {
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
        let (connected_tx, connected) = watch::channel(false);
        let connected_tx = Arc::new(connected_tx);
        let addrs = server_addrs(settings)?;
        let events = Arc::new(LinkEvents::new(
            &addrs,
            settings.connecttimeout.0,
            reconnect_wait(settings),
        ));
        if let Some(limit) = ignored_maxreconnects(settings) {
            tracing::warn!(nats = %events.shown, maxreconnects = limit, "{MAXRECONNECTS_IGNORED}");
        }
        let opts = connect_options(settings).event_callback(move |event| {
            let events = events.clone();
            let connected_tx = connected_tx.clone();
            async move {
                match &event {
                    async_nats::Event::Connected => {
                        connected_tx.send_replace(true);
                    }
                    async_nats::Event::Disconnected => {
                        connected_tx.send_replace(false);
                    }
                    _ => {}
                }
                events.log(event).await;
            }
        });
        let opts = auth_options(opts, settings)?;
        let client = opts
            .connect(addrs)
            .await
            .map_err(|e| NatsError::Connect(link::error_chain(&e)))?;
        Ok(Connection {
            connected: Some(connected),
            client: Some(client),
            subjects: settings.updatesubjects,
            settings: Some(settings.clone()),
        })
    }

    fn state(&self) -> ConnectionState {
        match self.client.as_ref().map(|c| c.connection_state()) {
            None => ConnectionState::Disabled,
            Some(State::Pending) => ConnectionState::Connecting,
            Some(State::Connected) => ConnectionState::Connected,
            Some(State::Disconnected) => ConnectionState::Disconnected,
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

/// The wait between reconnect attempts (`nats.reconnectwait`), at least 10 ms so that a zero
/// does not spin.
fn reconnect_wait(settings: &NatsSettings) -> Duration {
    settings.reconnectwait.0.max(Duration::from_millis(10))
}

/// The options of every connection apart from its credentials and event handling: retried
/// from the start and forever, the first attempt at once, then every `nats.reconnectwait`.
/// `nats.maxreconnects` is deliberately not applied ([`ignored_maxreconnects`]).
fn connect_options(settings: &NatsSettings) -> async_nats::ConnectOptions {
    let wait = reconnect_wait(settings);
    async_nats::ConnectOptions::new()
        .name("nats-account-server")
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(settings.connecttimeout.0)
        // First attempt at once (attempts counts from 1 here); then the configured wait.
        .reconnect_delay_callback(move |attempts| if attempts <= 1 { Duration::ZERO } else { wait })
}

/// Logged at every connect (start, and SIGHUP with new settings) whose settings set
/// `maxreconnects` ([`ignored_maxreconnects`]).
const MAXRECONNECTS_IGNORED: &str = "the NATS setting maxreconnects is ignored: the connection is \
    retried forever, because a client that gave up would leave this server without NATS \
    (no claims-update notifications, resolver answers, replica updates or cluster election) \
    until it is restarted, while it goes on serving HTTP";

/// The `maxreconnects` limit the settings ask for and that is not applied, if any.
///
/// Why not applied: after that many failed attempts async-nats closes the client for good,
/// and nothing makes a new one (a SIGHUP only does when the settings change). The Go server
/// exited at that point; this one keeps serving HTTP while NATS is down (nats-server needs
/// our resolver to start), so giving up would silently leave it without NATS. A negative
/// value meant "forever" in Go, which is what happens anyway, so it is not reported.
fn ignored_maxreconnects(settings: &NatsSettings) -> Option<i64> {
    settings.maxreconnects.filter(|limit| *limit >= 0)
}

/// The configured servers, parsed.
fn server_addrs(settings: &NatsSettings) -> Result<Vec<async_nats::ServerAddr>, NatsError> {
    settings
        .servers
        .0
        .iter()
        .map(|s| {
            s.parse().map_err(|e| {
                NatsError::Connect(format!("server URL {:?}: {e}", link::display_url(s)))
            })
        })
        .collect()
}

/// Adds the credentials and TLS files of `settings` to `opts`, reading each one now, so that a
/// missing or unusable file fails the start (and `check-config`) naming its key, instead of
/// failing every connection attempt later.
fn auth_options(
    mut opts: async_nats::ConnectOptions,
    settings: &NatsSettings,
) -> Result<async_nats::ConnectOptions, NatsError> {
    let file_err =
        |key: &'static str, path: &std::path::Path, e: &dyn std::fmt::Display| NatsError::File {
            key,
            path: path.display().to_string(),
            message: e.to_string(),
        };
    if let Some(path) = &settings.usercredentials {
        // Read here rather than with `credentials_file`, whose error names the path again.
        let creds =
            std::fs::read_to_string(path).map_err(|e| file_err("usercredentials", path, &e))?;
        opts = opts
            .credentials(&creds)
            .map_err(|e| file_err("usercredentials", path, &e))?;
    }
    if let Some(path) = &settings.nkey {
        let seed = std::fs::read_to_string(path).map_err(|e| file_err("nkey", path, &e))?;
        let seed = seed
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("SU"))
            .ok_or_else(|| file_err("nkey", path, &"no user nkey seed (SU…) found"))?;
        opts = opts.nkey(seed.to_string());
    }
    if let Some(tls) = &settings.tls {
        // async-nats reads these files only when it connects; read them now as well.
        let check = |key, path: &std::path::Path, kind| {
            crate::tls::check_pem(path, kind).map_err(|e| file_err(key, path, &e))
        };
        opts = opts.require_tls(true);
        if let Some(root) = &tls.root {
            check("tls.root", root, PemKind::Certificates)?;
            opts = opts.add_root_certificates(root.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            check("tls.cert", cert, PemKind::Certificates)?;
            check("tls.key", key, PemKind::PrivateKey)?;
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
    }
    Ok(opts)
}

/// Reads and checks every file and URL the NATS settings name, as a start would, without
/// connecting (`check-config`). Nothing to check when no servers are configured: the server
/// then reads none of these files either.
///
/// # Errors
/// [`NatsError`] naming the key and the problem.
pub fn check_settings(settings: &NatsSettings) -> Result<(), NatsError> {
    if settings.servers.0.is_empty() {
        return Ok(());
    }
    server_addrs(settings)?;
    auth_options(async_nats::ConnectOptions::new(), settings)?;
    Ok(())
}

/// How often a NATS link that stays down with the same cause is mentioned again.
const REMIND_EVERY: Duration = Duration::from_secs(60);

/// Turns the client's connection events into the log lines an operator needs: one warning with
/// the servers and the cause when the link goes down (or the cause changes), a reminder every
/// [`REMIND_EVERY`] while it stays down, one line when it is back; not one line per retry.
struct LinkEvents {
    /// The configured servers as logged (without user-info).
    shown: String,
    /// `(shown URL, host, port)` of each server, to find the cause of a failed attempt.
    targets: Vec<(String, String, u16)>,
    probe_timeout: Duration,
    retry_every: Duration,
    /// A std `Mutex`: held for one state update, never across an `.await`.
    state: Mutex<LinkState>,
}

impl LinkEvents {
    fn new(
        addrs: &[async_nats::ServerAddr],
        probe_timeout: Duration,
        retry_every: Duration,
    ) -> Self {
        let targets: Vec<(String, String, u16)> = addrs
            .iter()
            .map(|a| {
                let shown = link::display_url(a.as_url_str());
                (shown, a.host().to_string(), a.port())
            })
            .collect();
        LinkEvents {
            shown: targets
                .iter()
                .map(|t| t.0.as_str())
                .collect::<Vec<_>>()
                .join(","),
            targets,
            probe_timeout,
            retry_every,
            state: Mutex::new(LinkState::new(REMIND_EVERY)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn log(&self, event: async_nats::Event) {
        use async_nats::Event;
        let nats = self.shown.as_str();
        let now = Instant::now();
        match event {
            Event::Connected => match self.state().connected(now) {
                Note::Back { after } => {
                    tracing::info!(nats = %nats, "connected to NATS again after {}", secs(after))
                }
                _ => tracing::info!(nats = %nats, "connected to NATS"),
            },
            Event::Disconnected => {
                self.state().disconnected(now);
                tracing::warn!(nats = %nats, "disconnected from NATS; reconnecting");
            }
            Event::ClientError(e) => {
                let kind = e.to_string();
                let Some(note) = self.state().failed(&kind, now) else {
                    return;
                };
                let cause = self.cause(&kind).await;
                let every = secs(self.retry_every);
                match note {
                    Note::StillDown { for_ } => tracing::warn!(
                        nats = %nats,
                        %cause,
                        "still cannot connect to NATS after {}; retrying every {every}",
                        secs(for_)
                    ),
                    _ => {
                        tracing::warn!(nats = %nats, %cause, "cannot connect to NATS; retrying every {every}")
                    }
                }
            }
            Event::ServerError(e) => {
                tracing::warn!(nats = %nats, cause = %e, "NATS server reported an error")
            }
            Event::LameDuckMode => {
                tracing::warn!(nats = %nats, "NATS server is shutting down (lame duck mode); will reconnect")
            }
            Event::SlowConsumer(sid) => {
                tracing::warn!(nats = %nats, sid, "NATS subscription is too slow; messages were dropped")
            }
            other => tracing::debug!(nats = %nats, event = %other, "NATS event"),
        }
    }

    /// The cause of a failed connection attempt. async-nats reports only its kind ("IO error",
    /// "timed out") and drops the socket's error, so each server is dialled once to recover
    /// it ("Connection refused"). When every server accepts TCP, the failure lies past the
    /// socket (TLS, authorization) and the client's own words are the cause. Called only when
    /// a line is logged, so at most once per [`REMIND_EVERY`] while the link stays down.
    async fn cause(&self, kind: &str) -> String {
        let mut causes = Vec::new();
        for (shown, host, port) in &self.targets {
            let dial = tokio::net::TcpStream::connect((host.as_str(), *port));
            let cause = match tokio::time::timeout(self.probe_timeout, dial).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {}", secs(self.probe_timeout)),
            };
            causes.push(if self.targets.len() == 1 {
                cause
            } else {
                format!("{shown}: {cause}")
            });
        }
        if causes.is_empty() {
            kind.strip_prefix("nats: ").unwrap_or(kind).to_string()
        } else {
            causes.join("; ")
        }
    }
}

/// A duration for a log line: whole seconds, or milliseconds under a second.
fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_limit(limit: Option<i64>) -> NatsSettings {
        NatsSettings {
            maxreconnects: limit,
            ..NatsSettings::default()
        }
    }

    /// A limit of 0 or more is reported as ignored; none, or a negative one (Go's "forever"),
    /// is what happens anyway and is not.
    #[test]
    fn a_maxreconnects_limit_is_reported_as_ignored() {
        assert_eq!(ignored_maxreconnects(&with_limit(Some(5))), Some(5));
        assert_eq!(ignored_maxreconnects(&with_limit(Some(0))), Some(0));
        assert_eq!(ignored_maxreconnects(&with_limit(Some(-1))), None);
        assert_eq!(ignored_maxreconnects(&with_limit(None)), None);
    }

    /// Whatever `maxreconnects` says, the client is told never to give up, from the first
    /// attempt on. (async-nats shows its options only through `Debug`; its version is pinned.)
    #[test]
    fn the_client_retries_forever_whatever_maxreconnects_says() {
        for limit in [None, Some(-1), Some(0), Some(3)] {
            let opts = format!("{:?}", connect_options(&with_limit(limit)));
            assert!(
                opts.contains("\"max_reconnects\": None"),
                "{limit:?}: {opts}"
            );
            assert!(
                opts.contains("\"retry_on_initial_connect\": true"),
                "{limit:?}: {opts}"
            );
        }
    }
}
