//! Test harness shared by every test area.
//!
//! - [`TestServer`]: an in-process server on `127.0.0.1:0` with its own temp dir.
//! - [`process::ServerProcess`]: our binary as a child process (signals, exit codes, kill -9).
//! - [`nats::NatsServer`]: a real nats-server in operator mode, killed on drop.
//! - [`proxy::Proxy`]: a TCP proxy the test can switch to drop, delay or reset traffic.
//! - [`fixtures`]: the official test vectors and helpers to mint more tokens with their keys.
//! - [`eventually`]: the only way tests wait.

#![allow(dead_code)]

pub mod fixtures;
pub mod jetstream;
pub mod nats;
pub mod nginx;
pub mod process;
pub mod proxy;
pub mod tls;

use nats_account_server::config::Settings;
use nats_account_server::RunningServer;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// An in-process server. Dropping it stops nothing gracefully (the runtime ends with the
/// test), but the temp dir lives as long as the value.
pub struct TestServer {
    /// The running server (take it to stop it gracefully).
    pub server: Option<RunningServer>,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// The server's data directory and scratch space.
    pub dir: TempDir,
}

/// Settings for a primary on a sled store in `dir`, trusting the vectors' operator.
pub fn primary_settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings {
        operatorjwtpath: Some(fixtures::vectors().join("operator.jwt")),
        ..Settings::default()
    };
    s.store.data = Some(dir.join("data"));
    s.http.workers = Some(2);
    s
}

/// Settings for a replica of `primaries` on a sled store in `dir`: no local operator (it
/// fetches the primary's), quick retries and a short request timeout.
pub fn replica_settings(dir: &std::path::Path, primaries: &[&str]) -> Settings {
    let mut s = primary_settings(dir);
    s.operatorjwtpath = None;
    s.primary =
        nats_account_server::config::StringList(primaries.iter().map(|p| p.to_string()).collect());
    s.replication.maxbackoff = nats_account_server::config::Dur(Duration::from_millis(200));
    s.replicationtimeout = nats_account_server::config::Dur(Duration::from_secs(2));
    s
}

/// A replica of `primaries` on its own temp dir, after `tweak` adjusts its settings.
pub async fn replica_of(primaries: &[&str], tweak: impl FnOnce(&mut Settings)) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = replica_settings(dir.path(), primaries);
    tweak(&mut s);
    TestServer::start_in(dir, s).await
}

/// A fresh account key and its JWT (signed by the vectors' signing key), as strings.
pub fn account(name: &str) -> (String, String) {
    let (kp, jwt) = fixtures::new_account(name);
    (kp.public_key(), jwt)
}

/// The `ETag` our servers send with `token`: derived from its bytes, not its `jti` (DESIGN §4).
pub fn etag_of(token: &str) -> String {
    nats_account_server::store::etag(token.as_bytes())
}

/// True when `base` serves exactly `jwt` for account `key`.
pub async fn serves(base: &str, key: &str, jwt: &str) -> bool {
    let (status, body) = get(&format!("{base}/jwt/v1/accounts/{key}")).await;
    status == 200 && body == jwt
}

impl TestServer {
    /// A primary with the vectors' operator on a fresh sled store.
    pub async fn primary() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A primary, after `tweak` adjusts its settings (sled under the temp dir by default).
    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = primary_settings(dir.path());
        tweak(&mut settings);
        TestServer::start_in(dir, settings).await
    }

    /// Starts `settings` with `dir` as the owned temp dir.
    pub async fn start_in(dir: TempDir, settings: Settings) -> TestServer {
        TestServer::start_on(dir, settings, 0).await
    }

    /// Starts on a given port (0: any), for servers that must come back on the same address.
    pub async fn start_on(dir: TempDir, settings: Settings, port: u16) -> TestServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
        let server = RunningServer::start(settings, listener)
            .await
            .expect("server starts");
        let url = format!("http://{}", server.addr());
        TestServer {
            server: Some(server),
            url,
            dir,
        }
    }

    /// The running server.
    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server running")
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Graceful stop; the temp dir stays.
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }

    /// Path under the temp dir.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

/// A client with a short timeout, so a hung server fails the test instead of hanging it.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// GET → (status, body).
pub async fn get(url: &str) -> (u16, String) {
    let r = http().get(url).send().await.expect("GET");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// POST body → (status, body).
pub async fn post(url: &str, body: impl Into<String>) -> (u16, String) {
    let r = http()
        .post(url)
        .body(body.into())
        .send()
        .await
        .expect("POST");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Mints a fresh account (signed by the vectors' operator signing key), POSTs it to `base` and
/// asserts the 200; returns `(public key, jwt)`.
pub async fn post_new_account(base: &str, name: &str) -> (String, String) {
    let (key, jwt) = account(name);
    post_accepted(base, &key, &jwt).await;
    (key, jwt)
}

/// Fails the test listing every collected failure (batch tests check every case before
/// failing, so one run shows all that is wrong).
pub fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "wrong answers:\n{}",
        failures.join("\n")
    );
}

/// POSTs the account JWT `jwt` for `key` to `base` and asserts the 200.
pub async fn post_accepted(base: &str, key: &str, jwt: &str) {
    let (status, body) = post(&format!("{base}/jwt/v1/accounts/{key}"), jwt).await;
    assert_eq!(status, 200, "POST of account {key} to {base}: {body}");
}

/// Waits until `base` answers `/readyz` with 200 (a replica: its initial sync is done).
pub async fn wait_ready(base: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{base} ready"),
        || async { get(&format!("{base}/readyz")).await.0 == 200 },
    )
    .await;
}

/// The sum of the `/metrics` samples of `base` whose line starts with `needle` (a family name,
/// or a name with its labels), 0 when there are none.
pub async fn metric(base: &str, needle: &str) -> f64 {
    let (_, text) = get(&format!("{base}/metrics")).await;
    text.lines()
        .filter(|l| l.starts_with(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` until it returns true or `within` passes; panics with `what` on timeout.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(5);
    loop {
        if check().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        // Polling interval, not a wait for an outcome: backs off to at most 100 ms.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A TCP port that was free a moment ago (for processes that must keep a port across restarts).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Copies a directory tree (a stopped sled store, a folder of config files).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Stops `server` and starts a replica of `primaries` on its data directory (as an operator
/// restarting it with another `--primary`).
pub async fn restart_as_replica_of(mut server: TestServer, primaries: &[&str]) -> TestServer {
    server.stop().await;
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("temp dir"));
    let settings = replica_settings(dir.path(), primaries);
    TestServer::start_in(dir, settings).await
}
