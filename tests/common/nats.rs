//! A real nats-server (the Debian package, installed by `tests/run.sh`) in operator mode whose
//! URL resolver points at one of our servers. Killed on drop; its log is kept in its temp dir
//! and printed when it fails to start.

use super::{eventually, fixtures, get};
use nats_account_server::config::{Dur, Settings, StringList};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
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
    for p in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("nats-server is not installed: run tests/run.sh, which installs it (apt-get install nats-server)");
}

/// The system account user's creds file, usable before any nats-server runs (our server is
/// configured before nats-server can start).
pub fn sys_creds_path() -> PathBuf {
    fixtures::vectors().join("sys.creds")
}

impl NatsServer {
    /// Starts nats-server on `port` (0 picks one) trusting the vectors' operator, with its
    /// resolver at `resolver_url` (e.g. `http://127.0.0.1:9090/jwt/v1/accounts/`).
    pub fn start(port: u16, resolver_url: &str) -> NatsServer {
        NatsServer::start_with(port, resolver_url, "")
    }

    /// [`NatsServer::start`] with extra configuration lines (e.g. a `resolver_tls` block).
    pub fn start_with(port: u16, resolver_url: &str, extra: &str) -> NatsServer {
        NatsServer::start_resolver(port, &format!("URL({resolver_url})"), extra)
    }

    /// nats-server with a NATS-based resolver, `resolver: { type: <kind>, dir: …, <options> }`
    /// (`kind` is `cache` or `full`; the directory is [`NatsServer::resolver_dir`]); the system
    /// account JWT is preloaded, as such resolvers need.
    pub fn start_nats_resolver(port: u16, kind: &str, options: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let jwt_dir = dir.path().join("jwt");
        NatsServer::start_nats_resolver_with(dir, port, kind, &jwt_dir, options)
    }

    /// [`NatsServer::start_nats_resolver`] whose resolver directory is `jwt_dir` (shared with
    /// one of our directory stores); [`NatsServer::resolver_dir`] does not apply.
    pub fn start_nats_resolver_in(
        port: u16,
        kind: &str,
        jwt_dir: &Path,
        options: &str,
    ) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        NatsServer::start_nats_resolver_with(dir, port, kind, jwt_dir, options)
    }

    fn start_nats_resolver_with(
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
        NatsServer::start_in(dir, port, &resolver, &preload)
    }

    /// The directory of a NATS-based resolver ([`NatsServer::start_nats_resolver`]).
    pub fn resolver_dir(&self) -> PathBuf {
        self.dir.path().join("jwt")
    }

    fn start_resolver(port: u16, resolver: &str, extra: &str) -> NatsServer {
        NatsServer::start_in(
            tempfile::tempdir().expect("temp dir"),
            port,
            resolver,
            extra,
        )
    }

    fn start_in(dir: tempfile::TempDir, port: u16, resolver: &str, extra: &str) -> NatsServer {
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
        s.spawn();
        s
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// Starts the process and waits until it is ready. Ready means its log says so (the log
    /// is appended to across restarts, so a new "Server is ready" line is awaited) and the port
    /// accepts: a connectable port alone may be another process that took the port, with this
    /// nats-server having failed to bind it.
    fn spawn(&mut self) {
        const READY: &str = "Server is ready";
        let ready_before = self.log_text().matches(READY).count();
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(&self.config)
            .arg("-l")
            .arg(self.log())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.log_text().matches(READY).count() <= ready_before
            || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "nats-server exited with {status}; log:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "nats-server was not ready on {}; log:\n{}",
                    self.port,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same config.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A creds file for the system account user (for our server's `--creds`).
    pub fn sys_creds(&self) -> PathBuf {
        sys_creds_path()
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
