//! A real nats-server (the Debian package, installed by `tests/run.sh`) in operator mode whose
//! URL resolver points at one of our servers. Starting it is async: it waits for nats-server's
//! startup probe of that resolver, which our in-process servers answer on the test's runtime.
//! Killed on drop; its log is kept in its temp dir and printed when it fails to start.

use super::child::{self, listening, wait_started};
use super::{eventually, fixtures, get};
use nats_account_server::config::{Dur, Settings, StringList};
use std::future::ready;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// A nats-server child process.
pub struct NatsServer {
    child: Option<Child>,
    /// Client port.
    pub port: u16,
    /// `nats://127.0.0.1:<port>`
    pub url: String,
    dir: TempDir,
    config: PathBuf,
}

/// Where the nats-server binary is.
pub fn nats_server_bin() -> PathBuf {
    super::system_bin("nats-server", "nats-server")
}

/// The system account user's creds file, usable before any nats-server runs (our server is
/// configured before nats-server can start).
pub fn sys_creds_path() -> PathBuf {
    fixtures::vectors().join("sys.creds")
}

impl NatsServer {
    /// Starts nats-server on `port` (0 picks one) trusting the vectors' operator, with its
    /// resolver at `resolver_url` (e.g. `http://127.0.0.1:9090/jwt/v1/accounts/`), and waits
    /// until it is ready (which needs its startup probe of the resolver to pass).
    pub async fn start(port: u16, resolver_url: &str) -> NatsServer {
        NatsServer::start_with(port, resolver_url, "").await
    }

    /// [`NatsServer::start`] resolving accounts from our server at `base` (`http://host:port`).
    pub async fn resolving_from(port: u16, base: &str) -> NatsServer {
        NatsServer::start(port, &format!("{base}/jwt/v1/accounts/")).await
    }

    /// [`NatsServer::start`] with extra configuration lines (e.g. a `resolver_tls` block).
    pub async fn start_with(port: u16, resolver_url: &str, extra: &str) -> NatsServer {
        NatsServer::start_in(
            tempfile::tempdir().expect("temp dir"),
            port,
            &format!("URL({resolver_url})"),
            extra,
        )
        .await
    }

    /// nats-server with a NATS-based resolver, `resolver: { type: <kind>, dir: …, <options> }`
    /// (`kind` is `cache` or `full`; the directory is [`NatsServer::resolver_dir`]); the system
    /// account JWT is preloaded, as such resolvers need.
    pub async fn start_nats_resolver(port: u16, kind: &str, options: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let jwt_dir = dir.path().join("jwt");
        NatsServer::start_nats_resolver_with(dir, port, kind, &jwt_dir, options).await
    }

    /// [`NatsServer::start_nats_resolver`] whose resolver directory is `jwt_dir` (shared with
    /// one of our directory stores); [`NatsServer::resolver_dir`] does not apply.
    pub async fn start_nats_resolver_in(
        port: u16,
        kind: &str,
        jwt_dir: &Path,
        options: &str,
    ) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        NatsServer::start_nats_resolver_with(dir, port, kind, jwt_dir, options).await
    }

    async fn start_nats_resolver_with(
        dir: TempDir,
        port: u16,
        kind: &str,
        jwt_dir: &Path,
        options: &str,
    ) -> NatsServer {
        let resolver = format!(
            "{{ type: {kind}, dir: {:?}, {options} }}",
            jwt_dir.display().to_string()
        );
        let preload = format!(
            "resolver_preload: {{ {}: \"{}\" }}",
            fixtures::vector("system_account.pub"),
            fixtures::vector("sys.jwt")
        );
        NatsServer::start_in(dir, port, &resolver, &preload).await
    }

    /// The directory of a NATS-based resolver ([`NatsServer::start_nats_resolver`]).
    pub fn resolver_dir(&self) -> PathBuf {
        self.dir.path().join("jwt")
    }

    async fn start_in(dir: TempDir, port: u16, resolver: &str, extra: &str) -> NatsServer {
        let port = if port == 0 { super::free_port() } else { port };
        let config = dir.path().join("nats.conf");
        let conf = format!(
            "listen: 127.0.0.1:{port}\n\
             operator: {op}\n\
             system_account: {sys}\n\
             resolver: {resolver}\n{extra}\n",
            op = fixtures::vectors().join("operator.jwt").display(),
            sys = fixtures::vector("system_account.pub"),
        );
        std::fs::write(&config, conf).expect("writing nats.conf");
        let mut s = NatsServer {
            child: None,
            port,
            url: format!("nats://127.0.0.1:{port}"),
            dir,
            config,
        };
        s.spawn().await;
        s
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// Starts the process and waits until it is ready. Ready means its log says so (the log
    /// is appended to across restarts, so a new "Server is ready" line is awaited) and the port
    /// accepts: a connectable port alone may be another process that took the port, with this
    /// nats-server having failed to bind it.
    async fn spawn(&mut self) {
        const READY: &str = "Server is ready";
        let (log, port) = (self.log(), self.port);
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        let ready_before = log_text().matches(READY).count();
        // In `self` before the wait, so that a failed start is killed on drop too.
        let child = self.child.insert(
            Command::new(nats_server_bin())
                .arg("-c")
                .arg(&self.config)
                .arg("-l")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawning nats-server"),
        );
        wait_started(
            child,
            &format!("nats-server on {port}"),
            Duration::from_secs(15),
            || ready(log_text().matches(READY).count() > ready_before && listening(port)),
            log_text,
        )
        .await;
    }

    /// A client of the system account (it may publish and subscribe on `$SYS.>`).
    pub async fn sys_client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::with_credentials_file(sys_creds_path())
            .await
            .expect("sys.creds parses")
            .connect(self.url.as_str())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "system-account client: {e}; nats-server log:\n{}",
                    self.log_text()
                )
            })
    }

    /// One connection attempt as a user with `creds` (a creds file's text), no retries.
    pub async fn try_connect_user(
        &self,
        creds: &str,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        async_nats::ConnectOptions::with_credentials(creds)
            .expect("creds parse")
            .connection_timeout(Duration::from_secs(2))
            .connect(self.url.as_str())
            .await
    }

    /// Opens and closes one more user connection; true when nats-server admitted it.
    pub async fn admits(&self, creds: &str) -> bool {
        match self.try_connect_user(creds).await {
            Ok(c) => {
                let _ = c.drain().await;
                true
            }
            Err(_) => false,
        }
    }

    /// A user connection with `creds` (a creds file's text), round-tripped once; panics with
    /// nats-server's log when it is refused.
    pub async fn connect_user(&self, creds: &str) -> async_nats::Client {
        let client = async_nats::ConnectOptions::with_credentials(creds)
            .expect("creds parse")
            .connect(self.url.as_str())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "user could not connect: {e}; nats-server log:\n{}",
                    self.log_text()
                )
            });
        client.flush().await.expect("flush");
        client
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Kills it (the port becomes free).
    pub fn kill(&mut self) {
        child::kill(&mut self.child);
    }

    /// Starts it again on the same port with the same config, and waits until it is ready.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Points `s` at the nats-server on `port` as the vectors' system-account user, reconnecting
/// every 100 ms (tests restart nats-servers and must not wait a second for each reconnect),
/// and serves the system account JWT (nats-server fetches it at startup).
pub fn use_nats(s: &mut Settings, port: u16) {
    s.systemaccountjwtpath = Some(fixtures::vectors().join("sys.jwt"));
    s.nats.servers = StringList(vec![format!("nats://127.0.0.1:{port}")]);
    s.nats.usercredentials = Some(sys_creds_path());
    s.nats.reconnectwait = Dur(Duration::from_millis(100));
}

/// Sends `payload` as a request on `subject` and returns our server's JSON reply among all the
/// replies (a nats-server's own resolver may answer too; ours names itself in `server.name`).
pub async fn our_reply(
    sys: &async_nats::Client,
    subject: impl Into<String>,
    payload: &str,
) -> serde_json::Value {
    use futures_util::StreamExt;
    let subject = subject.into();
    let inbox = sys.new_inbox();
    let mut sub = sys.subscribe(inbox.clone()).await.expect("subscribe");
    sys.publish_with_reply(subject.clone(), inbox, payload.to_string().into())
        .await
        .expect("publish");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap_or_else(|_| panic!("no reply from nats-account-server on {subject}"))
            .expect("subscription open");
        let reply: serde_json::Value = serde_json::from_slice(&msg.payload).expect("JSON reply");
        if reply["server"]["name"] == "nats-account-server" {
            return reply;
        }
    }
}

/// Waits until our server at `base` reports its NATS connection up (`/healthz`).
pub async fn wait_nats_connected(base: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{base} connected to NATS"),
        || async {
            get(&format!("{base}/healthz"))
                .await
                .1
                .contains("\"nats\":\"connected\"")
        },
    )
    .await;
}
