//! `cargo bench --bench cluster -- million [--accounts 1000000]`: DESIGN §9's scale goals at a
//! million accounts of ~800-byte JWTs (issue 18), in one command:
//!
//! 1. signs `--accounts` account JWTs with a test operator (every core) and writes them
//!    straight into a sled store through the crate's own `Store::open_sled` + `put_entries`, in
//!    commits of 10,000 (what a primary that took them by POST would hold, without 100 s of
//!    HTTP); a `--small` (10,000) store the same way for the read comparison;
//! 2. starts a primary on it: start → `/readyz` 200 with every account (a restart), peak
//!    (VmHWM) and idle RSS;
//! 3. starts a fresh replica: start → `/readyz` 200 with every account (the sync), peak and
//!    idle RSS of both nodes;
//! 4. reads the full pack and the full change feed once (time, bytes, the primary's peak), then
//!    holds `--slow` readers of the pack and of the full feed that never read, and reports what
//!    they cost the primary (RSS growth per reader);
//! 5. restarts the primary again (a second restart figure);
//! 6. GET throughput at `--accounts` vs `--small` accounts with `benches/load.sh`'s harness:
//!    each server with `http.workers = 1` under `taskset -c 0`, wrk (`-t1`, 64 connections,
//!    `benches/random_get.lua`) under `taskset -c 1`, `--rounds` alternating rounds of
//!    `--secs` seconds.
//!
//! Peak RSS is the kernel's high-water mark (`VmHWM` in `/proc/<pid>/status`), reset through
//! `/proc/<pid>/clear_refs` between phases, so nothing between two samples is missed.

use super::{
    addr, free_port, json_of, server_bin, wait_until, Conn, Operator, Opts, Proc, TcpStream,
};
use nats_account_server::jwt::{self, encode, Jwt};
use nats_account_server::store::{Entry, Kind, Policy, Store};
use nkeys::KeyPair;
use serde_json::json;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accounts per store commit while generating.
const COMMIT: usize = 10_000;

pub(super) fn million(opts: &Opts) {
    let n = opts.num("accounts", 1_000_000);
    let small = opts.num("small", 10_000);
    let size = opts.num("size", 800);
    let secs = opts.num("secs", 10);
    let rounds = opts.num("rounds", 3);
    let slow = opts.num("slow", 8);
    // `--stop-after generate` leaves after writing the stores (with `--keep 1`: to profile).
    let stop_after = opts.values.get("stop-after").cloned().unwrap_or_default();
    println!("== million: {n} accounts of ~{size}-byte JWTs (and {small} for the read comparison)");
    println!("machine: {}", machine());
    // `--dir` puts the stores elsewhere than the system's temp directory (it is removed).
    let tmp = match opts.values.get("dir") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let dir = tmp.path();
    let op = Operator::create(dir);

    let t = Instant::now();
    let (keys, mean) = generate(&op, &dir.join("primary"), n, size, "m");
    println!(
        "generated {n} accounts (mean {mean} bytes) into a sled store in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (small_keys, _) = generate(&op, &dir.join("small"), small, size, "s");
    write_keys(&dir.join("keys.txt"), &keys);
    write_keys(&dir.join("small-keys.txt"), &small_keys);
    drop(small_keys);
    let disk = du(&dir.join("primary"));
    println!("primary store on disk: {:.0} MiB", disk);
    if stop_after == "generate" {
        println!("kept {}", tmp.keep().display());
        return;
    }

    // --- 2. primary start on the store (a restart)
    let pp = free_port();
    let pargs = vec![
        "--operator".into(),
        op.jwt_path.display().to_string(),
        "--data".into(),
        dir.join("primary").display().to_string(),
    ];
    let (mut primary, start1) = start_ready("primary", dir, pp, &pargs, n);
    let p_start_peak = primary.status_mib("VmHWM");
    std::thread::sleep(Duration::from_secs(2));
    let p_idle = primary.status_mib("VmRSS");
    println!(
        "primary start → ready with {n} accounts: {:.2} s; peak RSS {p_start_peak:.0} MiB, idle {p_idle:.0} MiB",
        start1.as_secs_f64()
    );

    // --- 3. fresh replica
    primary.reset_peak();
    let rp = free_port();
    let rargs = vec![
        "--operator".into(),
        op.jwt_path.display().to_string(),
        "--data".into(),
        dir.join("replica").display().to_string(),
        "--primary".into(),
        format!("http://127.0.0.1:{pp}"),
    ];
    let (replica, sync) = start_ready("replica", dir, rp, &rargs, n);
    let r_peak = replica.status_mib("VmHWM");
    let p_sync_peak = primary.status_mib("VmHWM");
    std::thread::sleep(Duration::from_secs(3));
    let r_idle = replica.status_mib("VmRSS");
    let p_idle2 = primary.status_mib("VmRSS");
    println!(
        "fresh replica sync of {n} accounts: {:.2} s (start → /readyz 200 with every account)",
        sync.as_secs_f64()
    );
    println!("replica RSS: peak {r_peak:.0} MiB, idle {r_idle:.0} MiB (3 s after ready)");
    println!(
        "primary RSS while serving the sync: peak {p_sync_peak:.0} MiB; idle {p_idle2:.0} MiB"
    );
    replica.stop();

    // --- 4. pack and feed: one fast reader each, then slow readers
    primary.reset_peak();
    let before = primary.status_mib("VmRSS");
    let t = Instant::now();
    let (pack_bytes, pack_lines) = read_all(addr(pp), "/jwt/v1/pack");
    let pack_time = t.elapsed();
    let pack_peak = primary.status_mib("VmHWM");
    println!(
        "pack: {pack_lines} lines, {:.0} MiB in {:.2} s; primary RSS {before:.0} → peak {pack_peak:.0} MiB",
        pack_bytes as f64 / 1048576.0,
        pack_time.as_secs_f64()
    );
    primary.reset_peak();
    let t = Instant::now();
    let (feed_bytes, feed_pages) = read_feed(addr(pp), n);
    let feed_time = t.elapsed();
    let feed_peak = primary.status_mib("VmHWM");
    println!(
        "full change feed: {feed_pages} pages of 10,000, {:.0} MiB in {:.2} s; primary peak {feed_peak:.0} MiB",
        feed_bytes as f64 / 1048576.0,
        feed_time.as_secs_f64()
    );
    let (pack_each, feed_each) = slow_readers(&mut primary, pp, slow);
    println!(
        "slow readers (8 KiB receive buffer, never read, held 3 s): pack {pack_each:.2} MiB each, full feed page {feed_each:.2} MiB each"
    );

    // --- 5. second restart
    primary.stop();
    let (primary, start2) = start_ready("primary-restart", dir, pp, &pargs, n);
    let p_restart_peak = primary.status_mib("VmHWM");
    std::thread::sleep(Duration::from_secs(2));
    let p_restart_idle = primary.status_mib("VmRSS");
    println!(
        "primary restart → ready: {:.2} s; peak RSS {p_restart_peak:.0} MiB, idle {p_restart_idle:.0} MiB",
        start2.as_secs_f64()
    );
    primary.stop();

    // --- 6. GET throughput, 1M vs 10k, one core each
    let (big_rps, small_rps) = reads(
        dir,
        &op,
        [
            (n, "primary", "keys.txt"),
            (small, "small", "small-keys.txt"),
        ],
        secs,
        rounds,
    );
    let ratio = big_rps / small_rps.max(1.0);
    println!(
        "GET throughput (medians): {big_rps:.0} req/s at {n} accounts vs {small_rps:.0} at {small}: {ratio:.3}× (goal ≥ 0.9)"
    );

    let peak_primary = p_start_peak.max(p_sync_peak).max(pack_peak).max(feed_peak);
    println!(
        "RESULT million accounts={n} jwt_bytes={mean} sync_s={:.2} replica_peak_mib={r_peak:.0} replica_idle_mib={r_idle:.0} primary_peak_mib={peak_primary:.0} primary_idle_mib={p_idle:.0} restart_s={:.2},{:.2} get_rps={big_rps:.0} get_rps_small={small_rps:.0} get_ratio={ratio:.3} pack_s={:.2} feed_s={:.2} slow_pack_mib={pack_each:.2} slow_feed_mib={feed_each:.2} load={}",
        sync.as_secs_f64(),
        start1.as_secs_f64(),
        start2.as_secs_f64(),
        pack_time.as_secs_f64(),
        feed_time.as_secs_f64(),
        loadavg()
    );
    if opts.values.get("keep").is_some_and(|v| v == "1") {
        println!("kept {}", tmp.keep().display());
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1048576.0);
    format!(
        "{} cpus, {cpu}, {mem:.0} GiB RAM, load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        loadavg()
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join("/")
}

fn du(path: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        let Ok(meta) = std::fs::metadata(p) else {
            return 0;
        };
        if meta.is_dir() {
            std::fs::read_dir(p)
                .map(|d| d.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0)
        } else {
            use std::os::unix::fs::MetadataExt;
            meta.blocks() * 512
        }
    }
    walk(path) as f64 / 1048576.0
}

fn write_keys(path: &Path, keys: &[String]) {
    let mut out = String::with_capacity(keys.len() * 57);
    for k in keys {
        out.push_str(k);
        out.push('\n');
    }
    std::fs::write(path, out).expect("write keys");
}

/// Signs `n` account JWTs of about `size` bytes and stores them in a new sled store at `data`,
/// signing the next slice on every core while the store's writer commits the previous one.
/// Returns the keys and the mean token length.
fn generate(op: &Operator, data: &Path, n: usize, size: usize, tag: &str) -> (Vec<String>, usize) {
    let pad = padding(op, size);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Store::open_sled(data).expect("open sled store");
    let mut keys = Vec::with_capacity(n);
    let mut bytes = 0usize;
    let mut pending: Option<tokio::task::JoinHandle<()>> = None;
    let mut start = 0;
    while start < n {
        let end = (start + COMMIT).min(n);
        let entries = sign_slice(op, start..end, &pad, tag);
        for e in &entries {
            keys.push(e.key.to_string());
            bytes += e.jwt.len();
        }
        if let Some(p) = pending.take() {
            rt.block_on(p).expect("commit task");
        }
        let s = store.clone();
        pending = Some(rt.spawn(async move {
            s.put_entries(entries, Vec::new(), Policy::NewerWins)
                .await
                .expect("commit");
        }));
        start = end;
    }
    if let Some(p) = pending.take() {
        rt.block_on(p).expect("commit task");
    }
    assert_eq!(store.counts().0, n, "every generated account is stored");
    rt.block_on(store.close());
    drop(store);
    (keys, bytes / n.max(1))
}

/// The `description` that brings a generated account JWT to about `size` bytes.
fn padding(op: &Operator, size: usize) -> String {
    let key = KeyPair::new_account().public_key();
    let base = encode::account(&op.kp, &key, "m-0000000", json!({ "description": "" })).len();
    // Base64 makes 4 characters of every 3 bytes.
    "x".repeat(size.saturating_sub(base) * 3 / 4)
}

/// Account entries `range`, signed on every core.
fn sign_slice(
    op: &Operator,
    range: std::ops::Range<usize>,
    pad: &str,
    tag: &str,
) -> Vec<Arc<Entry>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = range.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let from = range.start + t * per;
                let to = (from + per).min(range.end);
                s.spawn(move || {
                    (from..to)
                        .map(|i| {
                            let key = KeyPair::new_account().public_key();
                            let raw = encode::account(
                                &op.kp,
                                &key,
                                &format!("{tag}-{i:07}"),
                                json!({ "description": pad }),
                            );
                            let claims = jwt::parse_unverified(&raw).expect("own token");
                            let jwt = Jwt {
                                raw,
                                alg: "ed25519-nkey".into(),
                                claims,
                            };
                            Arc::new(Entry::new(Kind::Account, &key, &jwt))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    })
}

/// Starts our server and waits until `/readyz` answers 200 with `n` accounts: the time from
/// spawning the process.
fn start_ready(name: &str, dir: &Path, port: u16, args: &[String], n: usize) -> (Proc, Duration) {
    let t0 = Instant::now();
    let mut cmd = Command::new(server_bin());
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(args);
    let mut p = Proc::spawn(name, dir, &mut cmd);
    let ready = wait_ready(&mut p, port, n);
    (p, ready.duration_since(t0))
}

fn wait_ready(p: &mut Proc, port: u16, n: usize) -> Instant {
    wait_until(p, Duration::from_secs(300), "ready", || {
        match Conn::new(addr(port)).request("GET", "/readyz", &[], b"") {
            Ok(r) => r.status == 200 && json_of(&r)["accounts"] == json!(n),
            Err(_) => false,
        }
    });
    Instant::now()
}

/// GET `path` on a new connection (`Connection: close`) and reads the whole chunked answer:
/// (bytes received, lines of the body). Counting lines from the raw stream is close enough:
/// chunk-size lines add one per 64 KiB chunk.
fn read_all(to: SocketAddr, path: &str) -> (usize, usize) {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut buf = vec![0u8; 256 * 1024];
    let (mut bytes, mut lines) = (0usize, 0usize);
    loop {
        let k = s.read(&mut buf).expect("read");
        if k == 0 {
            break;
        }
        bytes += k;
        lines += buf[..k].iter().filter(|b| **b == b'\n').count();
    }
    (bytes, lines)
}

/// Reads the whole change feed in pages of 10,000, as a replica does (without verifying):
/// (bytes, pages).
fn read_feed(to: SocketAddr, n: usize) -> (usize, usize) {
    let mut since = 0u64;
    let (mut bytes, mut pages, mut seen) = (0usize, 0usize, 0usize);
    loop {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        write!(
            s,
            "GET /jwt/v1/changes?since={since}&limit=10000 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut body = Vec::with_capacity(10 << 20);
        s.read_to_end(&mut body).expect("read");
        bytes += body.len();
        pages += 1;
        // Feed lines start with `<seq>|`: the last one's sequence is the next cursor.
        let mut count = 0;
        let mut last = None;
        for line in body.split(|b| *b == b'\n') {
            if let Some(i) = line.iter().position(|b| *b == b'|') {
                if let Ok(seq) = std::str::from_utf8(&line[..i]).unwrap_or("").parse::<u64>() {
                    if line.len() > 100 {
                        count += 1;
                        last = Some(seq);
                    }
                }
            }
        }
        seen += count;
        match last {
            Some(l) if count == 10_000 => since = l,
            _ => break,
        }
        assert!(pages <= n / 10_000 + 2, "the feed does not end");
    }
    assert_eq!(seen, n, "the feed holds every account");
    (bytes, pages)
}

/// Holds `k` readers of the pack that never read, then `k` of a full feed page: the primary's
/// RSS growth per reader, in MiB, for each.
fn slow_readers(primary: &mut Proc, port: u16, k: usize) -> (f64, f64) {
    let mut each = Vec::new();
    for path in ["/jwt/v1/pack", "/jwt/v1/changes?since=0&limit=10000"] {
        std::thread::sleep(Duration::from_millis(500));
        let before = primary.status_mib("VmRSS");
        let held: Vec<TcpStream> = (0..k)
            .filter_map(|_| super::stalled_get(addr(port), path))
            .collect();
        assert_eq!(held.len(), k, "every slow reader connected");
        // Below the 5 s write timeout, which cuts them off.
        std::thread::sleep(Duration::from_secs(3));
        let during = primary.status_mib("VmRSS");
        drop(held);
        each.push((during - before) / k as f64);
        println!("  {k} slow readers of {path}: primary RSS {before:.0} → {during:.0} MiB");
    }
    (each[0], each[1])
}

/// GET throughput of servers over the stores named in `stores` (accounts, data directory,
/// keys file), each pinned to cpu 0 with one HTTP worker, wrk on cpu 1, rounds alternating
/// which goes first: the median requests/s of each.
fn reads(
    dir: &Path,
    op: &Operator,
    stores: [(usize, &str, &str); 2],
    secs: usize,
    rounds: usize,
) -> (f64, f64) {
    let lua = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/random_get.lua");
    let mut servers = Vec::new();
    for (n, data, _) in stores {
        let port = free_port();
        let conf = dir.join(format!("{data}.toml"));
        std::fs::write(
            &conf,
            format!(
                "operatorjwtpath = \"{}\"\n[http]\nhost = \"127.0.0.1\"\nport = {port}\nworkers = 1\n[store]\ndata = \"{}\"\n",
                op.jwt_path.display(),
                dir.join(data).display()
            ),
        )
        .expect("config");
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", "0"]).arg(server_bin()).arg("-c").arg(&conf);
        let mut p = Proc::spawn(&format!("get-{data}"), dir, &mut cmd);
        wait_ready(&mut p, port, n);
        servers.push((p, port));
    }
    let wrk = |port: u16, keys: &str, secs: usize| -> (f64, String) {
        let out = Command::new("taskset")
            .args(["-c", "1", "wrk", "-t1", "-c64"])
            .arg(format!("-d{secs}s"))
            .arg("-s")
            .arg(&lua)
            .arg(format!("http://127.0.0.1:{port}"))
            .arg("--")
            .arg(dir.join(keys))
            .output()
            .expect("wrk (apt-get install wrk)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .unwrap_or_else(|| panic!("wrk printed no RESULT: {text}"))
            .to_string();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap_or("0")
                .to_string()
        };
        assert_eq!(field("non2xx"), "0", "wrk saw errors: {line}");
        assert_eq!(field("sock_errors"), "0", "wrk saw errors: {line}");
        let rps = field("rps").parse().unwrap_or(0.0);
        (
            rps,
            format!(
                "{rps:>8.0} req/s  p50 {:>5} µs  p99 {:>5} µs",
                field("p50_us"),
                field("p99_us")
            ),
        )
    };
    for (i, (_, port)) in servers.iter().enumerate() {
        wrk(*port, stores[i].2, 2);
    }
    let mut rps = [Vec::new(), Vec::new()];
    for r in 0..rounds {
        let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (v, line) = wrk(servers[i].1, stores[i].2, secs);
            println!(
                "  round {} {:>8} accounts: {line}  (load {})",
                r + 1,
                stores[i].0,
                loadavg()
            );
            rps[i].push(v);
        }
    }
    for (p, _) in &servers {
        println!("  {}: RSS {:.0} MiB", p.name, p.status_mib("VmRSS"));
    }
    for (p, _) in servers {
        p.stop();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        }
    };
    (median(&mut rps[0]), median(&mut rps[1]))
}
