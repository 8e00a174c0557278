//! Test harness shared by every test area.
//!
//! - [`TestServer`]: an in-process server on `127.0.0.1:0` with its own temp dir.
//! - [`process::ServerProcess`]: our binary as a child process (signals, exit codes, kill -9).
//! - [`nats::NatsServer`]: a real nats-server in operator mode, killed on drop.
//! - [`proxy::Proxy`]: a TCP proxy the test can switch to drop, delay or reset traffic.
//! - [`fixtures`]: the official test vectors and helpers to mint more tokens with their keys.
//! - [`feed`]: a server's change feed, read and parsed as a replica would.
//! - [`send`] / [`Reply`], [`get`], [`post`], [`raw_http`]: requests, from polite to hostile.
//! - [`eventually`] (and [`poll`], when the wait's outcome is itself under test): the only way
//!   tests wait.
//!
//! No blanket `allow(dead_code)`: a helper no test uses is deleted, not kept. (Only the
//! `integration` binary includes this module; `fresh_clone` does not.)

pub mod child;
pub mod feed;
pub mod fixtures;
pub mod jetstream;
pub mod nats;
pub mod nginx;
pub mod process;
pub mod proxy;
pub mod tls;
pub mod untrusted;

use nats_account_server::config::Settings;
use nats_account_server::RunningServer;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
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

/// Serves the routes `routes` adds on a loopback port, in the test's runtime: a stand-in for
/// another program's HTTP server (a Go-era primary, a proxy). Returns its URL and a handle
/// that stops it (it also ends with the test's runtime).
pub fn serve_routes(
    routes: impl Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
) -> (String, actix_web::dev::ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server =
        actix_web::HttpServer::new(move || actix_web::App::new().configure(routes.clone()))
            .listen(listener)
            .unwrap()
            .workers(1)
            .disable_signals()
            .run();
    let handle = server.handle();
    tokio::spawn(server);
    (url, handle)
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

/// A response with everything a test may look at.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Every header.
    pub headers: HeaderMap,
    /// The body as text (empty when it could not be read).
    pub body: String,
}

impl Reply {
    /// A header's value, or "" when absent; panics on a value that is not ASCII.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
            .unwrap_or("")
    }
}

/// Sends `req` and collects status, headers and body.
pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    let r = req.send().await.expect("request");
    Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap_or_default(),
    }
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

/// The status of `GET /jwt/v1/accounts/<key>` on `base`.
pub async fn status_of(base: &str, key: &str) -> u16 {
    get(&format!("{base}/jwt/v1/accounts/{key}")).await.0
}

/// Waits until `base` serves exactly `jwt` for account `key` (at most `within`); returns how
/// long that took.
pub async fn wait_serves(base: &str, key: &str, jwt: &str, within: Duration) -> Duration {
    let start = Instant::now();
    eventually(within, &format!("{base} serves {key}"), || {
        serves(base, key, jwt)
    })
    .await;
    start.elapsed()
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

/// `/readyz` of `base`: its status and its JSON detail.
pub async fn readyz(base: &str) -> (u16, Value) {
    let (status, body) = get(&format!("{base}/readyz")).await;
    let detail = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/readyz of {base} is not JSON ({e}): {body}"));
    (status, detail)
}

/// Waits until `replica` has applied its primary's change feed up to the head `primary` has
/// now. Serving a key is not enough to know a replica holds it: while it syncs, a miss is
/// answered by asking the primary (a 404 even just cached), not from its store.
pub async fn wait_applied(primary: &str, replica: &str) {
    let head = readyz(primary).await.1["head_seq"].as_u64().unwrap();
    eventually(
        Duration::from_secs(10),
        &format!("{replica} applied the feed up to {head}"),
        || async { readyz(replica).await.1["replica"]["applied_seq"].as_u64() >= Some(head) },
    )
    .await;
}

/// `max-age=N` from a Cache-Control value.
pub fn max_age(cache_control: &str) -> i64 {
    cache_control
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .unwrap_or_else(|| panic!("no max-age in {cache_control:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("max-age is not an integer in {cache_control:?}"))
}

/// A raw HTTP exchange, for requests client libraries would never send: `request` is written
/// on a fresh connection (concurrently with reading, so a server that answers early and closes
/// is still heard), and the response head and body (by `Content-Length`) are read. `status` is
/// `None` when the connection closed without an answer. Never waits longer than `within`.
pub async fn raw_http(
    addr: SocketAddr,
    request: Vec<u8>,
    within: Duration,
) -> (Option<u16>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        // Keep the write half open until the exchange ends: a half-close could end the
        // request early for the server.
        wr
    });
    let mut buf = Vec::new();
    let read = async {
        let mut tmp = [0u8; 8192];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return;
                }
            }
            match rd.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
    writer.abort();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|s| s.parse().ok());
    (status, text)
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
    let done = poll(within, || {
        let check = check();
        async move { check.await.then_some(()) }
    })
    .await;
    if done.is_none() {
        panic!("timed out after {within:?} waiting for: {what}");
    }
}

/// Polls `attempt` until it yields a value or `within` passes (then `None`). For waits whose
/// outcome is under test (did a failover happen, and when); [`eventually`] where a timeout can
/// only fail the test.
pub async fn poll<T, F, Fut>(within: Duration, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = attempt().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        // Polling interval, not a wait for an outcome: backs off to at most 100 ms.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Opens a stopped server's sled store (`data`) for a test to change behind its back, runs
/// `edit`, and returns once the store's directory lock is free again. Dropping a sled handle
/// does not always release the lock at once (its background threads finish first), and a
/// server started on the directory meanwhile refuses it as locked.
pub fn edit_sled<T>(data: &std::path::Path, edit: impl FnOnce(&sled::Db) -> T) -> T {
    let out = {
        let db = sled::open(data).expect("open the stopped store");
        let out = edit(&db);
        db.flush().expect("flush");
        out
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while nats_account_server::store::sled::is_locked(data) {
        assert!(
            std::time::Instant::now() < deadline,
            "the sled lock on {} was not released",
            data.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    out
}

/// Starts a server with `settings` and asserts the start is refused because the configured
/// operator (`configured`, its identity key) is not the one the store has pinned; returns the
/// error's text.
pub async fn assert_start_refused_for_operator(settings: Settings, configured: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused = nats_account_server::RunningServer::start(settings, listener).await;
    let message = refused.err().expect("the start is refused").to_string();
    assert!(
        message.contains(&format!("the configured operator is {configured}")),
        "{message}"
    );
    message
}

/// A TCP port that was free a moment ago (for processes that must keep a port across restarts).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Where the system program `name` is installed (the sbin directories too, which are not on
/// every user's `PATH`); panics naming the Debian `package` that `tests/run.sh` installs.
pub fn system_bin(name: &str, package: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run tests/run.sh, which installs it (apt-get install {package})"
            )
        })
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
