//! `cargo bench --bench cluster -- failover`: automatic failover (issue 17, DESIGN §6.2) in a
//! release build, with real processes on 127.0.0.1: one nats-server with JetStream (the
//! election link) and three nodes started the same way (`--cluster bench`).
//!
//! 1. **Write rate, asynchronous vs semi-synchronous.** For each of `--rounds` rounds, a fresh
//!    cluster with `syncreplicas = 0` and one with `syncreplicas = 1` (the order alternates
//!    between rounds, so a slow minute of this shared machine does not always hit the same
//!    mode) take `--writes` new accounts from `--clients` keep-alive connections on the leader,
//!    each waiting for its 200. Reports POST/s, p50/p99 and the semi-sync fallbacks the
//!    leader counted (a fallback means the write was answered without its follower copy, so a
//!    rate with fallbacks is not a semi-synchronous rate).
//! 2. **Failover time.** One cluster with `--lease` seconds and `syncreplicas = 1`; a writer
//!    posts a new account at a time, to every live node in turn (followers forward to the
//!    leader). `--kills` times: SIGKILL the leader, then time (a) the first write accepted by
//!    a new leader (a 200 carrying a newer `X-Cluster-Term`), (b) every live node agreeing on
//!    that leader in `/readyz`, and (c) the killed node, restarted on its data, back as a
//!    caught-up follower. At the end every acknowledged write is read back from every node.

use super::{
    addr, free_port, json_of, ms, pct, post_all, start_server, Conn, Operator, Opts, Proc,
};
use nats_account_server::jwt::encode;
use nkeys::KeyPair;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(super) fn failover(opts: &Opts) {
    let rounds = opts.num("rounds", 3);
    let writes = opts.num("writes", 4000);
    let clients = opts.num("clients", 16);
    let kills = opts.num("kills", 5);
    let lease = opts.num("lease", 5);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let op = Operator::create(dir);
    println!(
        "== failover: 3 nodes + 1 nats-server (JetStream), release build, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    write_rates(dir, &op, rounds, writes, clients);
    failover_times(dir, &op, kills, lease);
}

/// Fresh `(key, token)` pairs: new accounts signed by the operator.
fn mint(op: &Operator, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let key = KeyPair::new_account().public_key();
            let token = encode::account(&op.kp, &key, &format!("f{i}"), json!({}));
            (key, token)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The cluster

/// A nats-server with JetStream and nothing else (no operator mode): the election link.
fn start_jetstream(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let conf = dir.join("js.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\n",
            dir.join("js").display().to_string()
        ),
    )
    .expect("js.conf");
    let mut p = Proc::spawn(
        "jetstream",
        dir,
        Command::new(super::nats_server_bin()).arg("-c").arg(&conf),
    );
    super::wait_until(&mut p, Duration::from_secs(15), "listening", || {
        std::net::TcpStream::connect(addr(port)).is_ok()
    });
    (p, port)
}

/// One node: its own directory, port and arguments; restartable on the same data.
struct Node {
    name: String,
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    proc: Option<Proc>,
}

impl Node {
    fn start(&mut self) {
        self.proc = Some(start_server(&self.name, &self.dir, self.port, &self.args));
    }

    /// SIGKILL: dropping a [`Proc`] kills its child (`Child::kill` sends SIGKILL) and reaps it.
    fn kill9(&mut self) {
        self.proc = None;
    }

    fn alive(&self) -> bool {
        self.proc.is_some()
    }

    fn cluster(&self) -> Option<serde_json::Value> {
        let r = Conn::new(addr(self.port))
            .request("GET", "/readyz", &[], b"")
            .ok()?;
        Some(json_of(&r))
    }
}

struct Cluster {
    nodes: Vec<Node>,
    _nats: Proc,
}

impl Cluster {
    fn start(dir: &Path, op: &Operator, tag: &str, config: &str) -> Cluster {
        let base = dir.join(tag);
        std::fs::create_dir_all(&base).expect("cluster dir");
        let (nats, nats_port) = start_jetstream(&base);
        let conf = base.join("node.toml");
        std::fs::write(&conf, config).expect("node.toml");
        let mut nodes: Vec<Node> = (0..3)
            .map(|i| {
                let port = free_port();
                let data = base.join(format!("data{i}"));
                Node {
                    name: format!("{tag}-node{i}"),
                    dir: base.clone(),
                    port,
                    args: [
                        "-c",
                        conf.to_str().expect("utf-8 path"),
                        "--cluster",
                        "bench",
                        "--advertise",
                        &format!("http://127.0.0.1:{port}"),
                        "--nats",
                        &format!("nats://127.0.0.1:{nats_port}"),
                        "--operator",
                        op.jwt_path.to_str().expect("utf-8 path"),
                        "--data",
                        data.to_str().expect("utf-8 path"),
                    ]
                    .map(str::to_string)
                    .to_vec(),
                    proc: None,
                }
            })
            .collect();
        for n in &mut nodes {
            n.start();
        }
        Cluster { nodes, _nats: nats }
    }

    /// The leader every live node agrees on: `(node id, term, index)`.
    fn agreed_leader(&self) -> Option<(String, u64, usize)> {
        let mut leader = None;
        let mut leading = Vec::new();
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.alive()) {
            let c = n.cluster()?["cluster"].clone();
            let seen = (c["leader"].as_str()?.to_string(), c["term"].as_u64()?);
            if leader.get_or_insert_with(|| seen.clone()) != &seen {
                return None;
            }
            if c["role"] == "leader" {
                leading.push((c["node"].as_str()?.to_string(), i));
            }
        }
        let (id, term) = leader?;
        match leading.as_slice() {
            [(node, i)] if *node == id => Some((id, term, *i)),
            _ => None,
        }
    }

    fn wait_leader(&self, within: Duration) -> (String, u64, usize) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.agreed_leader() {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A counter of the leader's `/metrics` (0 when absent).
    fn metric(&self, i: usize, name: &str) -> f64 {
        let r = Conn::new(addr(self.nodes[i].port)).get("/metrics");
        String::from_utf8_lossy(&r.body)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Write rate

fn write_rates(dir: &Path, op: &Operator, rounds: usize, writes: usize, clients: usize) {
    // `--rounds 0`: failover times only.
    if rounds == 0 {
        return;
    }
    println!("-- POST rate on the leader, {clients} clients, {writes} new accounts a run");
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for sync in order {
            let config = format!("[cluster]\nleasettl = \"5s\"\nsyncreplicas = {sync}\n");
            let tag = format!("rate{round}-sync{sync}");
            let cluster = Cluster::start(dir, op, &tag, &config);
            let (_, _, li) = cluster.wait_leader(Duration::from_secs(30));
            // Both followers following before the clock starts: a semi-synchronous write
            // needs one of them.
            wait_following(&cluster, li);
            let tokens = mint(op, writes);
            let w = post_all(addr(cluster.nodes[li].port), &tokens, clients);
            let fallbacks = cluster.metric(li, "nas_cluster_semisync_fallbacks_total");
            println!(
                "syncreplicas={sync} round {round}: {:>7.0} POST/s (p50 {}, p99 {}, max {}; {:.1} s; semi-sync fallbacks {fallbacks})",
                w.rate,
                ms(w.p50),
                ms(w.p99),
                ms(w.max),
                w.elapsed.as_secs_f64()
            );
            rates[sync].push(w.rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, s) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "semi-synchronous / asynchronous: {s:.0} / {a:.0} POST/s = {:.2} (goal ≥ 0.5)",
        s / a
    );
}

/// Waits until both followers report themselves caught up with the leader.
fn wait_following(cluster: &Cluster, leader: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, n) in cluster.nodes.iter().enumerate() {
        if i == leader || !n.alive() {
            continue;
        }
        loop {
            let ok = n.cluster().is_some_and(|v| {
                v["cluster"]["role"] == "follower" && v["replica"]["caught_up"] == true
            });
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "{} never caught up", n.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Failover time

/// One write the background writer sent.
struct Write {
    key: String,
    answered: Instant,
    status: u16,
    term: Option<u64>,
}

fn failover_times(dir: &Path, op: &Operator, kills: usize, lease: usize) {
    println!("-- failover: lease {lease} s, syncreplicas = 1, {kills} SIGKILLs of the leader");
    let config =
        format!("[cluster]\nleasettl = \"{lease}s\"\nsyncreplicas = 1\nsynctimeout = \"2s\"\n");
    let mut cluster = Cluster::start(dir, op, "failover", &config);
    let (_, _, li) = cluster.wait_leader(Duration::from_secs(30));
    wait_following(&cluster, li);

    // The writer: one new account at a time, to every live node in turn.
    let live: Arc<Mutex<Vec<u16>>> =
        Arc::new(Mutex::new(cluster.nodes.iter().map(|n| n.port).collect()));
    let log: Arc<Mutex<Vec<Write>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (live, log, stop) = (live.clone(), log.clone(), stop.clone());
        let kp = KeyPair::from_seed(&op.kp.seed().expect("seed")).expect("operator key");
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let ports = live.lock().expect("live").clone();
                let port = ports[i % ports.len()];
                i += 1;
                let key = KeyPair::new_account().public_key();
                let token = encode::account(&kp, &key, &format!("w{i}"), json!({}));
                let mut conn = Conn::new(addr(port));
                let r = conn.request(
                    "POST",
                    &format!("/jwt/v1/accounts/{key}"),
                    &[("Content-Type", "application/jwt")],
                    token.as_bytes(),
                );
                let (status, term) = match r {
                    Ok(r) => (
                        r.status,
                        r.header("x-cluster-term").and_then(|t| t.parse().ok()),
                    ),
                    Err(_) => (0, None),
                };
                log.lock().expect("log").push(Write {
                    key,
                    answered: Instant::now(),
                    status,
                    term,
                });
                if status != 200 {
                    // Not a busy loop while there is no leader.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };

    let mut took = Vec::new();
    let mut agreed = Vec::new();
    let mut rejoined = Vec::new();
    for k in 0..kills {
        let (old, term, li) = cluster.wait_leader(Duration::from_secs(60));
        // Some writes in this term first.
        let since = Instant::now();
        wait_for(Duration::from_secs(20), "writes before the kill", || {
            log.lock()
                .expect("log")
                .iter()
                .rev()
                .take_while(|w| w.answered > since)
                .filter(|w| w.status == 200)
                .count()
                >= 20
        });
        let port = cluster.nodes[li].port;
        live.lock().expect("live").retain(|p| *p != port);
        let t0 = Instant::now();
        cluster.nodes[li].kill9();
        let accepted = |w: &Write| w.answered > t0 && w.status == 200 && w.term > Some(term);
        wait_for(
            Duration::from_secs(60),
            "a write accepted by a new leader",
            || log.lock().expect("log").iter().rev().any(accepted),
        );
        let first_write = log
            .lock()
            .expect("log")
            .iter()
            .find(|w| accepted(w))
            .map(|w| w.answered - t0)
            .expect("the write just seen");
        let (new, new_term, _) = cluster.wait_leader(Duration::from_secs(60));
        let all_agree = t0.elapsed();
        cluster.nodes[li].start();
        let back = Instant::now();
        let node = &cluster.nodes[li];
        wait_for(Duration::from_secs(120), "the old leader caught up", || {
            node.cluster().is_some_and(|v| {
                v["cluster"]["role"] == "follower" && v["replica"]["caught_up"] == true
            })
        });
        let rejoin = back.elapsed();
        live.lock().expect("live").push(port);
        println!(
            "kill {k}: leader {old} (term {term}) → {new} (term {new_term}): first write accepted after {:.2} s, all agree after {:.2} s; restarted node caught up after {:.2} s",
            first_write.as_secs_f64(),
            all_agree.as_secs_f64(),
            rejoin.as_secs_f64()
        );
        took.push(first_write);
        agreed.push(all_agree);
        rejoined.push(rejoin);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");

    for v in [&mut took, &mut agreed, &mut rejoined] {
        v.sort();
    }
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    println!(
        "kill → first write accepted: median {}, max {} (lease {lease} s; goal < 12 s at 5 s)",
        secs(pct(&took, 50.0)),
        secs(took[took.len() - 1])
    );
    println!(
        "kill → every node agrees: median {}, max {}; restart → caught up: median {}, max {}",
        secs(pct(&agreed, 50.0)),
        secs(agreed[agreed.len() - 1]),
        secs(pct(&rejoined, 50.0)),
        secs(rejoined[rejoined.len() - 1])
    );

    // Every acknowledged write, on every node.
    let (_, _, li) = cluster.wait_leader(Duration::from_secs(60));
    wait_following(&cluster, li);
    let acked: Vec<String> = log
        .lock()
        .expect("log")
        .iter()
        .filter(|w| w.status == 200)
        .map(|w| w.key.clone())
        .collect();
    let mut missing = 0;
    for n in &cluster.nodes {
        let mut conn = Conn::new(addr(n.port));
        missing += acked
            .iter()
            .filter(|k| conn.get(&format!("/jwt/v1/accounts/{k}")).status != 200)
            .count();
    }
    println!(
        "acknowledged writes: {}, missing from a node at the end: {missing}",
        acked.len()
    );
}

/// Polls `cond` every 10 ms; returns when it first held. Panics after `within`.
fn wait_for(within: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "not {what} after {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
