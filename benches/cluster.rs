//! System benchmarks that run the release binary as real processes on 127.0.0.1 (see
//! `benches/BENCHMARKS.md`):
//!
//! ```text
//! cargo bench --bench cluster -- replication   # POST on primary → replica serves it (with/without NATS)
//! cargo bench --bench cluster -- scale         # 100k accounts: durable POST rate (16 clients), RSS, replica sync
//! cargo bench --bench cluster -- abuse         # normal GET p50/p99, quiet and beside hostile load
//! cargo bench --bench cluster -- million       # 1M accounts: sync, RSS, restart, GET 1M vs 10k, slow readers
//! cargo bench --bench cluster -- failover      # 3 nodes: semi-sync vs async POST/s, SIGKILL → new leader
//! cargo bench --bench cluster                  # replication and scale
//! ```
//!
//! Helper modes used by `benches/load.sh`:
//! `mint --out DIR --count N` (operator + N account JWTs as files, keys list) and
//! `post --url URL --dir DIR [--clients N]` (POSTs them).
//!
//! `cargo test --all-targets` builds this in test mode and runs it without `--bench`: it then
//! exits at once. Every loop is bounded in count and time; everything listens on 127.0.0.1.

use nats_account_server::jwt::{self, encode};
use nkeys::KeyPair;
use serde_json::json;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod failover;
mod million;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench binaries without `--bench`: nothing to do.
        println!("cluster benchmarks: skipped (run them with `cargo bench --bench cluster`)");
        return;
    }
    let opts = Opts::parse(&args);
    match opts.mode.as_deref() {
        None => {
            replication(&opts);
            scale(&opts);
        }
        Some("replication") => replication(&opts),
        Some("scale") => scale(&opts),
        Some("mint") => mint_files(&opts),
        Some("post") => post_files(&opts),
        Some("memory") => memory(&opts),
        Some("abuse") => abuse(&opts),
        Some("million") => million::million(&opts),
        Some("failover") => failover::failover(&opts),
        Some(other) => {
            eprintln!("unknown mode {other:?}: replication | scale | abuse | million | failover | memory | mint | post");
            std::process::exit(2);
        }
    }
}

/// Command-line options (`--name value`); unknown flags such as cargo's `--bench` are ignored.
struct Opts {
    mode: Option<String>,
    values: HashMap<String, String>,
}

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut mode = None;
        let mut values = HashMap::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if let Some(v) = it.peek().filter(|v| !v.starts_with("--")) {
                    values.insert(name.to_string(), v.to_string());
                    it.next();
                }
            } else if mode.is_none() {
                mode = Some(a.clone());
            }
        }
        Opts { mode, values }
    }

    fn num(&self, name: &str, default: usize) -> usize {
        self.values
            .get(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("--{name}: not a number: {v}"))
            })
            .unwrap_or(default)
    }

    fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(
            self.values
                .get(name)
                .unwrap_or_else(|| panic!("--{name} DIR is required")),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and tokens

/// A fresh operator with a system account and a system-account user (for NATS), written to `dir`.
struct Operator {
    kp: KeyPair,
    jwt_path: PathBuf,
    sys_pub: String,
    sys_jwt_path: PathBuf,
    creds_path: PathBuf,
}

impl Operator {
    fn create(dir: &Path) -> Operator {
        let kp = KeyPair::new_operator();
        let sys = KeyPair::new_account();
        let sys_pub = sys.public_key();
        let op_jwt = encode::operator(&kp, "bench", &[], Some(&sys_pub));
        let sys_jwt = encode::account(&kp, &sys_pub, "SYS", json!({}));
        let user = KeyPair::new_user();
        let user_jwt = encode::user(&sys, &user.public_key(), "sys");
        let creds = encode::creds(&user_jwt, &user.seed().expect("seed"));
        let jwt_path = dir.join("operator.jwt");
        let sys_jwt_path = dir.join("sys.jwt");
        let creds_path = dir.join("sys.creds");
        std::fs::write(&jwt_path, op_jwt).expect("write operator.jwt");
        std::fs::write(&sys_jwt_path, sys_jwt).expect("write sys.jwt");
        std::fs::write(&creds_path, creds).expect("write sys.creds");
        Operator {
            kp,
            jwt_path,
            sys_pub,
            sys_jwt_path,
            creds_path,
        }
    }

    /// `n` new accounts signed by the operator, `(public key, jwt)`, minted on every core.
    fn mint_accounts(&self, n: usize, tag: &str) -> Vec<(String, String)> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = n.div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        (t * per..((t + 1) * per).min(n))
                            .map(|i| {
                                let key = KeyPair::new_account().public_key();
                                let jwt = encode::account(
                                    &self.kp,
                                    &key,
                                    &format!("{tag}-{i}"),
                                    json!({}),
                                );
                                (key, jwt)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("minting thread"))
                .collect()
        })
    }

    /// Version `version` (1, 2, …) of `key`, issued that many seconds from now: versions are
    /// ordered by `iat` in whole seconds, and another JWT with the stored `iat` is refused.
    fn update(&self, key: &str, name: &str, version: i64) -> String {
        encode::account_at(&self.kp, key, name, json!({}), jwt::now_unix() + version)
    }
}

fn etag_of(token: &str) -> String {
    nats_account_server::store::etag(token.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 keep-alive client (blocking, no allocations beyond the buffers): cheaper
// than a full client on a 2-core machine where the client competes with the servers.

struct Resp {
    status: u16,
    etag: Option<String>,
    /// Every header, names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    /// A header's value; `name` in lower case.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        // One retry on a fresh connection (the server may have closed an idle keep-alive).
        match self.try_request(method, path, headers, body) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.stream = None;
                self.try_request(method, path, headers, body)
            }
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected");
        let mut req = Vec::with_capacity(256 + body.len());
        write!(
            req,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        )?;
        for (k, v) in headers {
            write!(req, "{k}: {v}\r\n")?;
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        stream.write_all(&req)?;

        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
        let mut len = 0usize;
        let mut etag = None;
        let mut headers = Vec::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("etag") {
                    etag = Some(v.trim().to_string());
                }
            }
        }
        while self.buf.len() < head_end + len {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Ok(Resp {
            status,
            etag,
            headers,
            body,
        })
    }

    fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", self.addr))
    }

    fn post(&mut self, path: &str, body: &[u8]) -> Resp {
        self.request("POST", path, &[("Content-Type", "application/jwt")], body)
            .unwrap_or_else(|e| panic!("POST {path} on {}: {e}", self.addr))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Processes

/// The release binary cargo built for this bench.
/// The server binary: this build's, or `BENCH_SERVER_BIN` (another build, for an A/B in one
/// harness).
fn server_bin() -> PathBuf {
    std::env::var_os("BENCH_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nats-account-server")))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A child process, killed on drop; its output goes to a log file shown on failure.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, dir: &Path, cmd: &mut Command) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "{}: {why}; log:\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.fail(&format!("exited with {status}"));
        }
    }

    /// CPU time used so far (user + system), in clock ticks (1/100 s).
    fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may contain spaces), from field 3 on.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
    }

    /// Waits (up to `max`) until the process has used under 5% of a core for half a second:
    /// work a phase left queued (jobs of disconnected clients) is done before the next starts.
    fn wait_idle(&self, max: Duration) {
        let until = Instant::now() + max;
        let mut last = self.cpu_ticks();
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.cpu_ticks();
            if now - last <= 2 {
                return;
            }
            last = now;
        }
    }

    /// Resident set size in MiB.
    fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS")
    }

    /// A `/proc/<pid>/status` figure given in kB (`VmRSS`, `VmHWM`: the peak RSS), in MiB.
    fn status_mib(&self, field: &str) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// Resets the process's peak RSS (`VmHWM`) to its current RSS (`clear_refs` 5, Linux ≥ 4.0).
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// SIGTERM, then wait (bounded), then SIGKILL.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our server on `port` with `args`, waited for until `/healthz` answers.
fn start_server(name: &str, dir: &Path, port: u16, args: &[String]) -> Proc {
    start_server_on(None, name, dir, port, args)
}

/// [`start_server`], on one `core` only when given (`taskset`: every thread of the process,
/// and the server sizes its HTTP workers to the one core it may use).
fn start_server_on(
    core: Option<usize>,
    name: &str,
    dir: &Path,
    port: u16,
    args: &[String],
) -> Proc {
    let mut cmd = match core {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &core.to_string()]).arg(server_bin());
            c
        }
        None => Command::new(server_bin()),
    };
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(args);
    let mut p = Proc::spawn(name, dir, &mut cmd);
    wait_until(&mut p, Duration::from_secs(60), "serving /healthz", || {
        Conn::new(addr(port))
            .request("GET", "/healthz", &[], b"")
            .is_ok_and(|r| r.status == 200)
    });
    p
}

fn start_nats(dir: &Path, port: u16, op: &Operator, resolver_port: u16) -> Proc {
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\noperator: {}\nsystem_account: {}\nresolver: URL(http://127.0.0.1:{resolver_port}/jwt/v1/accounts/)\n",
            op.jwt_path.display(),
            op.sys_pub
        ),
    )
    .expect("nats.conf");
    let mut p = Proc::spawn(
        "nats-server",
        dir,
        Command::new(nats_server_bin()).arg("-c").arg(&conf),
    );
    wait_until(&mut p, Duration::from_secs(15), "listening", || {
        TcpStream::connect(addr(port)).is_ok()
    });
    p
}

/// The installed nats-server.
fn nats_server_bin() -> &'static str {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("nats-server is not installed (apt-get install nats-server)")
}

/// Polls `cond` every 10 ms until it holds; panics with `p`'s log after `timeout`.
fn wait_until(p: &mut Proc, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        p.check_alive();
        if Instant::now() > deadline {
            p.fail(&format!("not {what} after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn json_of(r: &Resp) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null)
}

fn account_path(key: &str) -> String {
    format!("/jwt/v1/accounts/{key}")
}

// ---------------------------------------------------------------------------------------------
// Statistics

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------------------
// Replication latency

fn replication(opts: &Opts) {
    let updates = opts.num("updates", 200);
    println!("== replication latency: POST on the primary → the replica serves the new JWT ({updates} updates each)");
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9}   {:>26}",
        "mode", "p50 ms", "p90 ms", "p99 ms", "max ms", "timeouts", "ack→visible p50/p99 ms"
    );
    for with_nats in [true, false] {
        replication_run(with_nats, updates);
    }
}

fn replication_run(with_nats: bool, updates: usize) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let op = Operator::create(dir);
    let (pp, rp, np) = (free_port(), free_port(), free_port());
    let nats_args = |args: &mut Vec<String>| {
        if with_nats {
            args.extend([
                "--nats".into(),
                format!("nats://127.0.0.1:{np}"),
                "--creds".into(),
                op.creds_path.display().to_string(),
            ]);
        }
    };
    let mut pargs = vec![
        "--operator".into(),
        op.jwt_path.display().to_string(),
        "--system-account".into(),
        op.sys_jwt_path.display().to_string(),
        "--data".into(),
        dir.join("primary").display().to_string(),
    ];
    nats_args(&mut pargs);
    let mut primary = start_server("primary", dir, pp, &pargs);
    let _nats = with_nats.then(|| start_nats(dir, np, &op, pp));
    let mut rargs = vec![
        "--operator".into(),
        op.jwt_path.display().to_string(),
        "--data".into(),
        dir.join("replica").display().to_string(),
        "--primary".into(),
        format!("http://127.0.0.1:{pp}"),
    ];
    nats_args(&mut rargs);
    let mut replica = start_server("replica", dir, rp, &rargs);

    let mut pc = Conn::new(addr(pp));
    let mut rc = Conn::new(addr(rp));
    if with_nats {
        for (p, port) in [(&mut primary, pp), (&mut replica, rp)] {
            wait_until(p, Duration::from_secs(30), "connected to NATS", || {
                json_of(&Conn::new(addr(port)).get("/healthz"))["nats"] == "connected"
            });
        }
    }
    wait_until(&mut replica, Duration::from_secs(30), "ready", || {
        Conn::new(addr(rp)).get("/readyz").status == 200
    });
    // The replica's NATS subscriptions are made right after it connects; give them a moment
    // to reach the server before the first measured update.
    std::thread::sleep(Duration::from_millis(300));

    // A few accounts to update in turn, replicated before measuring.
    let seeds = op.mint_accounts(10, "seed");
    let mut etags: Vec<String> = Vec::new();
    for (key, token) in &seeds {
        let r = pc.post(&account_path(key), token.as_bytes());
        assert_eq!(
            r.status,
            200,
            "seed POST: {}",
            String::from_utf8_lossy(&r.body)
        );
        etags.push(etag_of(token));
    }
    for (i, (key, _)) in seeds.iter().enumerate() {
        wait_until(
            &mut replica,
            Duration::from_secs(30),
            "holding the seed accounts",
            || rc.get(&account_path(key)).etag.as_deref() == Some(&etags[i]),
        );
    }
    let updates_tokens: Vec<(usize, String)> = (0..updates)
        .map(|i| {
            let k = i % seeds.len();
            let version = (i / seeds.len()) as i64 + 1;
            (k, op.update(&seeds[k].0, &format!("update-{i}"), version))
        })
        .collect();

    let timeout = Duration::from_secs(5);
    let mut e2e = Vec::with_capacity(updates);
    let mut after_ack = Vec::with_capacity(updates);
    let mut timeouts = 0;
    for (k, token) in &updates_tokens {
        let key = &seeds[*k].0;
        let path = account_path(key);
        let old = etags[*k].clone();
        let new = etag_of(token);
        let t0 = Instant::now();
        let r = pc.post(&path, token.as_bytes());
        let acked = Instant::now();
        assert_eq!(
            r.status,
            200,
            "update POST: {}",
            String::from_utf8_lossy(&r.body)
        );
        let seen = loop {
            let r = rc
                .request("GET", &path, &[("If-None-Match", &old)], b"")
                .expect("GET on the replica");
            if r.status == 200 && r.etag.as_deref() == Some(new.as_str()) {
                break Some(Instant::now());
            }
            if t0.elapsed() > timeout {
                break None;
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        match seen {
            Some(t) => {
                e2e.push(t - t0);
                after_ack.push(t - acked);
            }
            None => timeouts += 1,
        }
        etags[*k] = new;
        std::thread::sleep(Duration::from_millis(2));
    }
    e2e.sort();
    after_ack.sort();
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9}   {:>26}",
        if with_nats {
            "with NATS"
        } else {
            "without NATS"
        },
        ms(pct(&e2e, 50.0)),
        ms(pct(&e2e, 90.0)),
        ms(pct(&e2e, 99.0)),
        ms(e2e.last().copied().unwrap_or_default()),
        timeouts,
        format!(
            "{} / {}",
            ms(pct(&after_ack, 50.0)),
            ms(pct(&after_ack, 99.0))
        ),
    );
    replica.stop();
    primary.stop();
}

// ---------------------------------------------------------------------------------------------
// Scale: durable write rate, memory, replica sync

fn scale(opts: &Opts) {
    let n = opts.num("accounts", 100_000);
    let clients = opts.num("clients", 16);
    println!("== scale: {n} accounts");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let op = Operator::create(dir);
    let t = Instant::now();
    let accounts = op.mint_accounts(n, "acct");
    let bytes: usize = accounts.iter().map(|(_, j)| j.len()).sum();
    println!(
        "minted {n} account JWTs in {:.1} s (mean {} bytes)",
        t.elapsed().as_secs_f64(),
        bytes / n.max(1)
    );

    let pp = free_port();
    let pargs = vec![
        "--operator".into(),
        op.jwt_path.display().to_string(),
        "--data".into(),
        dir.join("primary").display().to_string(),
    ];
    let primary = start_server("primary", dir, pp, &pargs);
    let rss0 = primary.rss_mib();

    let w = post_all(addr(pp), &accounts, clients);
    println!(
        "durable POST, {clients} clients, {n} new accounts: {:.0} POST/s  (p50 {} ms, p99 {} ms, max {} ms; {} s)",
        w.rate,
        ms(w.p50),
        ms(w.p99),
        ms(w.max),
        format_args!("{:.1}", w.elapsed.as_secs_f64()),
    );
    let r = Conn::new(addr(pp)).get("/readyz");
    assert_eq!(
        json_of(&r)["accounts"],
        json!(n),
        "primary holds every account"
    );
    std::thread::sleep(Duration::from_millis(500));
    let primary_rss = primary.rss_mib();
    println!("primary RSS: {rss0:.1} MiB empty, {primary_rss:.1} MiB after {n} POSTs");

    // A fresh replica: spawn → ready with every account.
    let rp = free_port();
    let rargs = vec![
        "--operator".into(),
        op.jwt_path.display().to_string(),
        "--data".into(),
        dir.join("replica").display().to_string(),
        "--primary".into(),
        format!("http://127.0.0.1:{pp}"),
    ];
    let t0 = Instant::now();
    let mut cmd = Command::new(server_bin());
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{rp}"))
        .args(&rargs);
    let mut replica = Proc::spawn("replica", dir, &mut cmd);
    wait_until(
        &mut replica,
        Duration::from_secs(120),
        "synced",
        || match Conn::new(addr(rp)).request("GET", "/readyz", &[], b"") {
            Ok(r) => r.status == 200 && json_of(&r)["accounts"] == json!(n),
            Err(_) => false,
        },
    );
    let sync = t0.elapsed();
    let peak = replica.rss_mib();
    std::thread::sleep(Duration::from_secs(1));
    let replica_rss = replica.rss_mib();
    println!(
        "fresh replica sync of {n} accounts: {:.2} s (process start → /readyz 200 with {n} accounts)",
        sync.as_secs_f64()
    );
    println!("replica RSS: {peak:.1} MiB at sync completion, {replica_rss:.1} MiB 1 s later");
    replica.stop();

    // Cold start of the primary on its 100k store.
    primary.stop();
    let t0 = Instant::now();
    let primary = start_server("primary-restart", dir, pp, &pargs);
    let start = t0.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "primary restart on {n} accounts: serving after {:.2} s, RSS {:.1} MiB",
        start.as_secs_f64(),
        primary.rss_mib()
    );
    primary.stop();
    println!(
        "RESULT scale accounts={n} post_per_s={:.0} post_p99_ms={} primary_rss_mib={primary_rss:.1} replica_sync_s={:.2} replica_rss_mib={replica_rss:.1}",
        w.rate,
        ms(w.p99),
        sync.as_secs_f64()
    );
}

struct WriteStats {
    rate: f64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// POSTs every token, `clients` connections in parallel, each waiting for its answer.
fn post_all(to: SocketAddr, tokens: &[(String, String)], clients: usize) -> WriteStats {
    let deadline = Instant::now() + Duration::from_secs(600);
    let t0 = Instant::now();
    let mut lat: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let mut conn = Conn::new(to);
                    let mut lat = Vec::new();
                    for (key, token) in tokens.iter().skip(c).step_by(clients) {
                        assert!(Instant::now() < deadline, "POST loop exceeded 10 minutes");
                        let t = Instant::now();
                        let r = conn.post(&account_path(key), token.as_bytes());
                        lat.push(t.elapsed());
                        assert_eq!(
                            r.status,
                            200,
                            "POST {key}: {}",
                            String::from_utf8_lossy(&r.body)
                        );
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    });
    let elapsed = t0.elapsed();
    lat.sort();
    WriteStats {
        rate: tokens.len() as f64 / elapsed.as_secs_f64(),
        elapsed,
        p50: pct(&lat, 50.0),
        p99: pct(&lat, 99.0),
        max: lat.last().copied().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Memory breakdown (in this process): the index alone, then a sled store written in feed-sized
// pages, as a replica does.

fn own_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn memory(opts: &Opts) {
    use nats_account_server::store::{Kind, Store};
    let n = opts.num("accounts", 100_000);
    let page = opts.num("page", 5000);
    println!("== memory: {n} accounts in this process");
    let tmp = tempfile::tempdir().expect("temp dir");
    let op = Operator::create(tmp.path());
    let accounts = op.mint_accounts(n, "mem");
    let token_bytes: usize = accounts.iter().map(|(_, t)| t.len()).sum();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let load = |store: &Store| {
        for chunk in accounts.chunks(page) {
            let items = chunk
                .iter()
                .map(|(k, t)| (Kind::Account, k.clone(), jwt::decode(t).expect("own token")))
                .collect();
            rt.block_on(store.put_many(items, Vec::new()))
                .expect("put_many");
        }
    };
    let before = own_rss_mib();
    let mem = Store::memory(true);
    load(&mem);
    let after = own_rss_mib();
    println!(
        "index (memory store): +{:.1} MiB for {n} accounts ({:.0} bytes each; the JWTs alone are {:.1} MiB)",
        after - before,
        (after - before) * 1048576.0 / n as f64,
        token_bytes as f64 / 1048576.0
    );
    drop(mem);
    let before = own_rss_mib();
    let sled = Store::open_sled(&tmp.path().join("data")).expect("sled");
    let t = Instant::now();
    load(&sled);
    let after = own_rss_mib();
    println!(
        "sled store (index + sled), written in pages of {page}: +{:.1} MiB over the previous line's baseline, {:.2} s",
        after - before,
        t.elapsed().as_secs_f64()
    );
    // A restart: the same data loaded by a fresh store.
    rt.block_on(sled.close());
    drop(sled);
    nats_account_server::heap::trim();
    let before = own_rss_mib();
    let t = Instant::now();
    let reopened = Store::open_sled(&tmp.path().join("data")).expect("reopen sled");
    nats_account_server::heap::trim();
    let after = own_rss_mib();
    println!(
        "sled store reopened ({} accounts loaded): +{:.1} MiB, {:.2} s",
        reopened.counts().0,
        after - before,
        t.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers for benches/load.sh

/// `mint --out DIR --count N`: DIR/operator.jwt, DIR/keys.txt, DIR/www/jwt/v1/accounts/<key>
/// (the JWT, as nginx serves it), DIR/server.path (the release binary to run) and DIR/tool.path
/// (this program, to run `post` without going through cargo again).
fn mint_files(opts: &Opts) {
    let out = opts.path("out");
    let n = opts.num("count", 10_000);
    let www = out.join("www/jwt/v1/accounts");
    std::fs::create_dir_all(&www).expect("create www");
    let op = Operator::create(&out);
    let accounts = op.mint_accounts(n, "load");
    let mut keys = String::with_capacity(n * 57);
    for (key, token) in &accounts {
        std::fs::write(www.join(key), token).expect("write token file");
        keys.push_str(key);
        keys.push('\n');
    }
    std::fs::write(out.join("keys.txt"), keys).expect("write keys.txt");
    std::fs::write(out.join("server.path"), server_bin().display().to_string())
        .expect("write server.path");
    let me = std::env::current_exe().expect("own path");
    std::fs::write(out.join("tool.path"), me.display().to_string()).expect("write tool.path");
    println!("minted {n} accounts into {}", out.display());
}

/// `post --url http://127.0.0.1:PORT --dir DIR [--clients N]`: POSTs every file of
/// DIR/www/jwt/v1/accounts.
fn post_files(opts: &Opts) {
    let dir = opts.path("dir");
    let url = opts.values.get("url").expect("--url http://127.0.0.1:PORT");
    let to: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("--url http://127.0.0.1:PORT");
    let mut tokens = Vec::new();
    for e in std::fs::read_dir(dir.join("www/jwt/v1/accounts")).expect("read www") {
        let e = e.expect("dir entry");
        tokens.push((
            e.file_name().to_string_lossy().into_owned(),
            std::fs::read_to_string(e.path()).expect("read token"),
        ));
    }
    let w = post_all(to, &tokens, opts.num("clients", 16));
    println!(
        "posted {} accounts: {:.0} POST/s (p99 {} ms)",
        tokens.len(),
        w.rate,
        ms(w.p99)
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile load beside normal reads (DESIGN §8): the normal GET latency with and without abuse

/// Normal GETs of random known accounts on `clients` keep-alive connections for `secs`:
/// sorted latencies.
/// With `core`, every reader thread runs on that core only.
fn normal_reads(
    to: SocketAddr,
    keys: &[String],
    clients: usize,
    secs: u64,
    core: Option<usize>,
) -> Vec<Duration> {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut lat: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    if let Some(core) = core {
                        pin_this_thread(core);
                    }
                    let mut conn = Conn::new(to);
                    let mut lat = Vec::new();
                    let mut i = c * 7919;
                    while Instant::now() < until {
                        i = (i * 31 + 17) % keys.len();
                        let t = Instant::now();
                        let r = conn.get(&account_path(&keys[i]));
                        lat.push(t.elapsed());
                        assert_eq!(r.status, 200, "normal GET");
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("reader thread"))
            .collect()
    });
    lat.sort();
    lat
}

/// Runs this thread on `core` only.
fn pin_this_thread(core: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity on this
    // thread (pid 0) with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Puts this thread in the `SCHED_IDLE` class: it runs only on CPU time nobody else wants, and
/// any other thread waking up takes the core from it at once. The abusers stand for clients on
/// other machines: on this shared 2-core machine their own CPU use (generating keys, reading
/// megabyte views, sending megabyte bodies) must not be what delays the normal readers' threads
/// or the server. What they cost the server is untouched: the server's threads run as always.
/// (nice 10 was used before; a nice thread may still finish its time slice when a normal one
/// wakes, a `SCHED_IDLE` one never does.)
fn idle_this_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on this thread's own id with a valid parameter.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
        libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param);
    }
}

/// A raw socket that sends `path` and never reads (a small receive buffer, so it stalls the
/// server quickly). Returns the stream to keep it open.
fn stalled_get(to: SocketAddr, path: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).ok()?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
    let size: libc::c_int = 8 * 1024;
    // SAFETY: setsockopt on a socket we own.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
    Some(s)
}

/// `cargo bench --bench cluster -- abuse [--accounts N] [--secs S] [--clients C] [--rounds R]
/// [--pin 0|1] [--kinds K,…] [--decode-budget BYTES]`: a primary with N accounts plus 10
/// accounts of ~700 KB (a ~15 MB pack) and one with 1,000 imports; R rounds of normal GETs of
/// random accounts for S seconds quiet, then S seconds beside the abuse: 16 slow readers of the
/// pack and full feed (re-opened as they are cut off), 64 parked long polls (re-tried after
/// their 503s), 8 clients reading `?decode=true` of the 1,000-import account, 8 re-posting it,
/// 4 asking for random unknown keys. Prints p50/p99 of each phase and the medians.
///
/// Who runs where: the abusers stand for clients on other machines, so their threads are in
/// the `SCHED_IDLE` class ([`idle_this_thread`]). With `--pin 1` (the default) the server runs
/// on core 0 and the normal readers on core 1, as in the read benchmark (DESIGN §9: server
/// pinned to one core): what the abuse costs the *server* then shows in the readers' latency,
/// and the readers' and abusers' own CPU use does not. `--pin 0` shares both cores among all.
fn abuse(opts: &Opts) {
    let n = opts.num("accounts", 10_000);
    // Short phases, many rounds: this VM's host takes CPU away now and then (steal time, up to
    // ~20% for tens of seconds), which long phases would charge to one side only.
    let secs = opts.num("secs", 5) as u64;
    let clients = opts.num("clients", 4);
    let rounds = opts.num("rounds", 6).max(1);
    // `--pin 0` lets the server and the readers share both cores (how this was measured first).
    let pin = opts.values.get("pin").is_none_or(|v| v != "0");
    // `--kinds slow,polls,decode,repost,unknown` (default: all) picks the abuse.
    let kinds = opts
        .values
        .get("kinds")
        .cloned()
        .unwrap_or_else(|| "slow,polls,decode,repost,unknown".into());
    println!(
        "== abuse: {n} accounts, {clients} normal readers, {rounds} rounds of {secs} s quiet then {secs} s beside abuse: {kinds}; {}",
        if pin { "server on core 0, readers on core 1" } else { "not pinned" }
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let op = Operator::create(dir);
    let accounts = op.mint_accounts(n, "acct");
    let port = free_port();
    let mut args = vec![
        "--operator".into(),
        op.jwt_path.display().to_string(),
        "--data".into(),
        dir.join("primary").display().to_string(),
    ];
    // `--decode-budget BYTES` sets `http.decodebytespersecond` (0: no budget, as before it
    // existed), for an A/B in one build.
    if let Some(b) = opts.values.get("decode-budget") {
        let conf = dir.join("abuse.toml");
        std::fs::write(&conf, format!("[http]\ndecodebytespersecond = {b}\n")).expect("config");
        args.extend(["-c".into(), conf.display().to_string()]);
        println!("http.decodebytespersecond = {b}");
    }
    let server = start_server_on(pin.then_some(0), "primary", dir, port, &args);
    let to = addr(port);
    post_all(to, &accounts, 16);
    let big: Vec<(String, String)> = (0..10)
        .map(|i| {
            let key = KeyPair::new_account().public_key();
            let pad = json!({ "x_padding": "p".repeat(700 * 1024) });
            (
                key.clone(),
                encode::account(&op.kp, &key, &format!("big-{i}"), pad),
            )
        })
        .collect();
    post_all(to, &big, 2);
    let importer = KeyPair::new_account().public_key();
    let exporter = KeyPair::new_account();
    let imports: Vec<serde_json::Value> = (0..1000)
        .map(|i| {
            let subject = format!("orders.{i}.>");
            json!({ "type": "stream", "account": exporter.public_key(), "subject": subject,
                    "token": encode::activation(&exporter, &importer, &subject, "stream") })
        })
        .collect();
    let heavy = encode::account(
        &op.kp,
        &importer,
        "importer",
        json!({ "limits": { "imports": -1, "exports": -1, "wildcards": true, "conn": -1 },
                "imports": imports }),
    );
    let t = Instant::now();
    assert_eq!(
        Conn::new(to)
            .post(&account_path(&importer), heavy.as_bytes())
            .status,
        200
    );
    println!(
        "the 1,000-import account ({} KB) stored in {} ms",
        heavy.len() / 1000,
        ms(t.elapsed())
    );

    let keys: Vec<String> = accounts.iter().map(|(k, _)| k.clone()).collect();
    let reader_core = pin.then_some(1);

    let rss_quiet = server.rss_mib();
    let (mut quiet_p50, mut quiet_p99, mut loud_p50, mut loud_p99) =
        (vec![], vec![], vec![], vec![]);
    let mut ratios: Vec<f64> = Vec::new();
    let mut counts: Vec<(&str, u64)> = Vec::new();
    let rate = |lat: &[Duration]| lat.len() as f64 / secs as f64;
    for round in 1..=rounds {
        server.wait_idle(Duration::from_secs(30));
        let steal = Steal::start();
        let quiet = normal_reads(to, &keys, clients, secs, reader_core);
        let quiet_steal = steal.percent();
        let mut loud_steal = 0.0;
        let (loud, did) = beside_abuse(to, &kinds, &importer, &heavy, || {
            let steal = Steal::start();
            let lat = normal_reads(to, &keys, clients, secs, reader_core);
            loud_steal = steal.percent();
            lat
        });
        for (what, n) in did {
            match counts.iter_mut().find(|(w, _)| *w == what) {
                Some((_, total)) => *total += n,
                None => counts.push((what, n)),
            }
        }
        println!(
            "round {round}: quiet {:.0} GET/s, p50 {} ms, p99 {} ms (steal {quiet_steal:.0}%); abuse {:.0} GET/s, p50 {} ms, p99 {} ms (steal {loud_steal:.0}%)",
            rate(&quiet),
            ms(pct(&quiet, 50.0)),
            ms(pct(&quiet, 99.0)),
            rate(&loud),
            ms(pct(&loud, 50.0)),
            ms(pct(&loud, 99.0)),
        );
        ratios.push(pct(&loud, 99.0).as_secs_f64() / pct(&quiet, 99.0).as_secs_f64().max(1e-9));
        quiet_p50.push(pct(&quiet, 50.0));
        quiet_p99.push(pct(&quiet, 99.0));
        loud_p50.push(pct(&loud, 50.0));
        loud_p99.push(pct(&loud, 99.0));
    }
    let rss_loud = server.rss_mib();
    let metrics = String::from_utf8_lossy(&Conn::new(to).get("/metrics").body).into_owned();
    for line in metrics.lines().filter(|l| {
        l.starts_with("nas_refused_total")
            || l.starts_with("nas_decode_cache_total")
            || l.starts_with("nas_post_shortcuts_total")
    }) {
        println!("  {line}");
    }
    for (what, n) in &counts {
        println!("  abuse, all rounds: {n} {what}");
    }
    println!("RSS: {rss_quiet:.1} MiB before the abuse, {rss_loud:.1} MiB after");
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (q50, q99, l50, l99) = (
        median(&mut quiet_p50),
        median(&mut quiet_p99),
        median(&mut loud_p50),
        median(&mut loud_p99),
    );
    let ratio = l99.as_secs_f64() / q99.as_secs_f64().max(1e-9);
    ratios.sort_by(f64::total_cmp);
    let round_ratio = ratios[ratios.len() / 2];
    println!(
        "RESULT abuse rounds={rounds} pinned={pin} quiet_p50_ms={} quiet_p99_ms={} abuse_p50_ms={} abuse_p99_ms={} p99_ratio={ratio:.2} median_round_ratio={round_ratio:.2} (medians of the rounds; goal <= 2)",
        ms(q50),
        ms(q99),
        ms(l50),
        ms(l99),
    );
    server.stop();
}

/// The share of CPU time the hypervisor took from this VM ("steal", `/proc/stat`) over a span.
struct Steal(u64, u64);

impl Steal {
    fn sample() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let f: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        (f.get(7).copied().unwrap_or(0), f.iter().sum())
    }

    fn start() -> Steal {
        let (steal, total) = Steal::sample();
        Steal(steal, total)
    }

    fn percent(&self) -> f64 {
        let (steal, total) = Steal::sample();
        100.0 * (steal - self.0) as f64 / (total - self.1).max(1) as f64
    }
}

/// Runs `measure` while the abusers of `kinds` (see [`abuse`]) hit the server at `to`; returns
/// its result and how much of each abuse was done.
fn beside_abuse<R: Send>(
    to: SocketAddr,
    kinds: &str,
    importer: &str,
    heavy: &str,
    measure: impl FnOnce() -> R + Send,
) -> (R, Vec<(&'static str, u64)>) {
    let on = |k: &str| kinds.split(',').any(|x| x == k);
    // Polls park only at the head: one beyond it is answered at once (a restored primary).
    let head = json_of(&Conn::new(to).get("/readyz"))["head_seq"]
        .as_u64()
        .expect("/readyz has head_seq");
    let poll = format!("/jwt/v1/changes?since={head}&wait=50");
    let poll = &poll;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stop = &stop;
    std::thread::scope(|s| {
        let mut abusers = Vec::new();
        // Slow readers: re-opened every 7 s (past the 5 s write timeout, when they are cut).
        let on = &on;
        abusers.push(s.spawn(move || {
            if !on("slow") {
                return ("slow readers opened", 0);
            }
            idle_this_thread();
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let held: Vec<_> = (0..16)
                    .filter_map(|i| {
                        let path = if i % 4 == 3 {
                            "/jwt/v1/changes?since=0&limit=10000"
                        } else {
                            "/jwt/v1/pack"
                        };
                        stalled_get(to, path)
                    })
                    .collect();
                rounds += held.len() as u64;
                for _ in 0..70 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                drop(held);
            }
            ("slow readers opened", rounds)
        }));
        // Parked long polls: 64 wanted (beyond the per-address cap), re-tried every 100 ms.
        abusers.push(s.spawn(move || {
            if !on("polls") {
                return ("long polls opened", 0);
            }
            idle_this_thread();
            let mut opened = 0u64;
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                held.retain(|c| {
                    let mut b = [0u8; 1];
                    c.set_nonblocking(true).ok();
                    // A 503 (or any answer) means this one is not parked: drop it.
                    (&*c).read(&mut b).is_err()
                });
                while held.len() < 64 {
                    match stalled_get(to, poll) {
                        Some(c) => held.push(c),
                        None => break,
                    }
                    opened += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            ("long polls opened", opened)
        }));
        for c in 0..if on("decode") { 8 } else { 0 } {
            let path = format!("{}?decode=true", account_path(importer));
            abusers.push(s.spawn(move || {
                idle_this_thread();
                let mut conn = Conn::new(to);
                // Refusals are in `nas_refused_total{reason="decode_budget"}`, printed below.
                let mut served = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // An abuser: a 503 (this address's share of views taken) is asked
                    // again at once, Retry-After or not.
                    match conn.get(&path).status {
                        200 => served += 1,
                        503 => {}
                        other => panic!("decode view {c}: {other}"),
                    }
                }
                ("decode views served", served)
            }));
        }
        for _ in 0..if on("repost") { 8 } else { 0 } {
            let (path, body) = (account_path(importer), heavy.as_bytes());
            abusers.push(s.spawn(move || {
                idle_this_thread();
                let mut conn = Conn::new(to);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    assert_eq!(conn.post(&path, body).status, 200, "re-post");
                    n += 1;
                }
                ("re-posts", n)
            }));
        }
        for _ in 0..if on("unknown") { 4 } else { 0 } {
            abusers.push(s.spawn(move || {
                idle_this_thread();
                let mut conn = Conn::new(to);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = KeyPair::new_account().public_key();
                    assert_eq!(conn.get(&account_path(&key)).status, 404, "unknown key");
                    n += 1;
                }
                ("unknown keys", n)
            }));
        }
        // Let the abuse build up (slow readers stalled, polls parked) before measuring.
        std::thread::sleep(Duration::from_secs(2));
        let loud = measure();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut counts: Vec<(&str, u64)> = Vec::new();
        for a in abusers {
            let (what, n) = a.join().expect("abuser");
            match counts.iter_mut().find(|(w, _)| *w == what) {
                Some((_, total)) => *total += n,
                None => counts.push((what, n)),
            }
        }
        (loud, counts)
    })
}
