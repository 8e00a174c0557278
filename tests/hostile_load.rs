//! Hostile load (DESIGN §8), against our binary as a real process on loopback: slow readers of
//! the pack and the feed hold no copies of them and are cut off after `http.writetimeout`;
//! bulk answers and parked long polls are capped (503 + `Retry-After`), also with the process's
//! descriptor limit lowered; re-posts are refused before the content rules; `?decode=true`
//! views are cached per version; a 64 KiB header gets 431; a `?notify=true` flood never
//! crowds out a real notification; NATS PACK requests share one computation. Every refusal
//! is checked in `/metrics`.
//!
//! Counts and durations are bounded; waits are for conditions (`eventually`).

use crate::common::fixtures::{self, account_jwt, new_account};
use crate::common::nats::{sys_creds_path, wait_nats_connected, NatsServer};
use crate::common::process::ServerProcess;
use crate::common::{eventually, free_port, get, http, metric, post, post_accepted, raw_http};
use futures_util::StreamExt;
use nats_account_server::jwt::encode;
use nkeys::KeyPair;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Our binary as a sled primary trusting the vectors' operator, with `config` (TOML) as its
/// config file and `extra` flags, started through `wrapper` (e.g. `prlimit`).
async fn start(
    dir: &Path,
    name: &str,
    config: &str,
    extra: &[&str],
    wrapper: &[&str],
) -> ServerProcess {
    let conf = dir.join(format!("{name}.toml"));
    std::fs::write(&conf, config).expect("config file");
    let op = fixtures::vectors().join("operator.jwt");
    let mut args = vec![
        "--operator",
        op.to_str().expect("UTF-8 path"),
        "--data",
        "data",
        "-c",
        conf.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    ServerProcess::start_wrapped(dir, name, free_port(), wrapper, &args).await
}

fn addr(server: &ServerProcess) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port))
}

/// Resident memory of `pid` in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Opens a connection from `from` (a loopback address), sends a GET of `path`, and reads
/// until the response head is in; returns the connection and what was read.
async fn send_get(to: SocketAddr, from: [u8; 4], path: &str) -> (TcpStream, String) {
    let socket = TcpSocket::new_v4().expect("socket");
    // A small receive buffer, so a client that stops reading stops the server quickly (and
    // the kernel does not hold megabytes for it).
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind the client address");
    let mut stream = socket.connect(to).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .expect("send request");
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut tmp).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    (stream, String::from_utf8_lossy(&buf).into_owned())
}

/// An account of about `kib` KiB (padding in its claims), POSTed to `base`; `(key, jwt)`.
async fn post_big_account(base: &str, name: &str, kib: usize) -> (String, String) {
    let key = KeyPair::new_account().public_key();
    let jwt = account_jwt(&key, name, json!({ "x_padding": "p".repeat(kib * 1024) }));
    post_accepted(base, &key, &jwt).await;
    (key, jwt)
}

// ---------------------------------------------------------------------------------------------
// Bulk answers: streamed, capped, cut off when not read
// ---------------------------------------------------------------------------------------------

/// 24 clients that read the head of a 14 MB pack or full feed and then stop reading: the
/// server's resident memory stays within 48 MiB of what it was before them (building each
/// answer in memory, as before, took it up by 24 × 14 MB), each is cut off once it has taken
/// nothing for `http.writetimeout` (and not before), one request beyond `http.maxbulk` gets
/// 503 with `Retry-After`, and meanwhile and afterwards everything else is answered, the pack
/// and feed whole and in their wire formats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_bulk_answers_hold_no_copies_and_are_cut_off() {
    const READERS: usize = 24;
    const BOUND_KIB: u64 = 48 * 1024;
    let write_timeout = Duration::from_secs(2);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(
        dir.path(),
        "bulk",
        &format!("[http]\nwritetimeout = \"2s\"\nmaxbulk = {READERS}\n"),
        &[],
        &[],
    )
    .await;
    let mut accounts = Vec::new();
    for i in 0..15 {
        accounts.push(post_big_account(&server.url, &format!("big-{i}"), 700).await);
    }

    // Whole answers to a reader that reads, in the Go format (pack) and the feed format.
    let (status, pack) = get(&format!("{}/jwt/v1/pack", server.url)).await;
    assert_eq!(status, 200);
    assert!(pack.len() > 14_000_000, "{} bytes", pack.len());
    let want_pack: Vec<String> = accounts.iter().map(|(k, j)| format!("{k}|{j}")).collect();
    assert_eq!(
        pack,
        want_pack.join("\n"),
        "key|jwt joined by \\n, no trailing newline"
    );
    let (status, feed) = get(&format!(
        "{}/jwt/v1/changes?since=0&limit=10000",
        server.url
    ))
    .await;
    assert_eq!(status, 200);
    let want_feed: String = accounts
        .iter()
        .enumerate()
        .map(|(i, (k, j))| format!("{}|account|{k}|{j}\n", i + 1))
        .collect();
    assert_eq!(feed, want_feed, "seq|kind|key|jwt lines");

    let pid = server.pid().expect("running");
    let before = rss_kib(pid);
    let mut held = Vec::new();
    for i in 0..READERS {
        let path = if i % 3 == 2 {
            "/jwt/v1/changes?since=0&limit=10000"
        } else {
            "/jwt/v1/pack"
        };
        let (conn, head) = send_get(addr(&server), [127, 0, 0, 1], path).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head:.200}");
        held.push(conn);
    }
    let stalled = Instant::now();

    // Every bulk permit is taken: one more is refused at once, and counted.
    let r = http()
        .get(format!("{}/jwt/v1/pack", server.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    assert_eq!(
        metric(&server.url, "nas_refused_total{reason=\"bulk_busy\"}").await,
        1.0
    );
    let (key, jwt) = &accounts[0];
    assert_eq!(
        get(&format!("{}/jwt/v1/accounts/{key}", server.url)).await,
        (200, jwt.clone())
    );

    let peak = Arc::new(AtomicU64::new(before));
    eventually(
        write_timeout * 5 + Duration::from_secs(10),
        "every slow reader cut off",
        || {
            let peak = peak.clone();
            let url = server.url.clone();
            async move {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                metric(&url, "nas_refused_total{reason=\"write_timeout\"}").await >= READERS as f64
            }
        },
    )
    .await;
    assert!(
        stalled.elapsed() >= write_timeout,
        "cut off after {:?}, before http.writetimeout",
        stalled.elapsed()
    );
    let grew = peak.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "RSS before the slow readers {before} KiB, peak {} KiB (+{grew} KiB)",
        peak.load(Ordering::Relaxed)
    );
    assert!(
        grew < BOUND_KIB,
        "{READERS} slow readers raised RSS by {grew} KiB (bound {BOUND_KIB} KiB)"
    );

    // Each slow reader finds its answer ended early: no end-of-body chunk.
    for mut conn in held {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a cut-off connection must end");
        assert!(
            !rest.ends_with(b"0\r\n\r\n"),
            "a cut-off answer was completed"
        );
    }
    // The permits are back: the pack is served whole again.
    assert_eq!(
        get(&format!("{}/jwt/v1/pack", server.url)).await,
        (200, pack)
    );
    assert_eq!(get(&format!("{}/healthz", server.url)).await.0, 200);
}

// ---------------------------------------------------------------------------------------------
// Long polls
// ---------------------------------------------------------------------------------------------

/// Under a 256-descriptor limit, 300 long polls: the cap (by default lowered to half the
/// descriptor limit, 128) parks 128 and answers the rest 503 + `Retry-After` at once, closing
/// their connections; `/healthz` and account GETs keep answering meanwhile (without the cap,
/// the polls took every descriptor and they timed out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_are_capped_under_a_low_descriptor_limit_and_reads_keep_answering() {
    const POLLS: usize = 300;
    const CAP: usize = 128;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(
        dir.path(),
        "polls",
        "[http]\nmaxlongpollsperclient = 100000\n",
        &[],
        &["prlimit", "--nofile=256:256"],
    )
    .await;
    assert!(
        server.log_text().contains("http.maxlongpolls lowered"),
        "{}",
        server.log_text()
    );
    let (kp, jwt) = new_account("reader");
    let key = kp.public_key();
    post_accepted(&server.url, &key, &jwt).await;

    let to = addr(&server);
    let (tx, mut refused) = tokio::sync::mpsc::unbounded_channel();
    let mut polls = Vec::new();
    for _ in 0..POLLS {
        let tx = tx.clone();
        polls.push(tokio::spawn(async move {
            let (conn, head) =
                send_get(to, [127, 0, 0, 1], "/jwt/v1/changes?since=1&wait=50").await;
            let _ = tx.send(head);
            // Parked polls answer only after their wait; keep the connection until aborted.
            conn
        }));
    }
    drop(tx);
    let parked = || async { metric(&server.url, "nas_changes_long_polls").await };
    eventually(
        Duration::from_secs(30),
        "the long-poll cap reached",
        || async {
            parked().await >= CAP as f64
                && metric(&server.url, "nas_refused_total{reason=\"long_polls\"}").await
                    >= (POLLS - CAP) as f64
        },
    )
    .await;
    assert_eq!(parked().await, CAP as f64);

    // Reads keep answering, promptly, with the cap reached.
    for _ in 0..20 {
        let healthz = tokio::time::timeout(
            Duration::from_secs(2),
            get(&format!("{}/healthz", server.url)),
        )
        .await;
        assert_eq!(healthz.map(|r| r.0).ok(), Some(200));
        let account = tokio::time::timeout(
            Duration::from_secs(2),
            get(&format!("{}/jwt/v1/accounts/{key}", server.url)),
        )
        .await;
        assert_eq!(account.ok(), Some((200, jwt.clone())));
    }
    let mut answers = Vec::new();
    while answers.len() < POLLS - CAP {
        let head = tokio::time::timeout(Duration::from_secs(10), refused.recv())
            .await
            .expect("refusals arrive")
            .expect("a head");
        answers.push(head);
    }
    for head in &answers {
        assert!(head.starts_with("HTTP/1.1 503"), "{head:.200}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("retry-after:"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
    }
    for p in polls {
        p.abort();
    }
}

/// One client address cannot take every long-poll slot: beyond `http.maxlongpollsperclient`
/// its polls get 503, while another address still parks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_are_capped_per_client_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(
        dir.path(),
        "per-client",
        "[http]\nmaxlongpollsperclient = 2\n",
        &[],
        &[],
    )
    .await;
    let to = addr(&server);
    // At the head (the store is empty): a poll beyond it would be answered at once.
    let path = "/jwt/v1/changes?since=0&wait=30";
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::spawn(async move {
            send_get(to, [127, 0, 0, 1], path).await
        }));
    }
    eventually(Duration::from_secs(10), "two polls parked", || async {
        metric(&server.url, "nas_changes_long_polls").await == 2.0
    })
    .await;
    let (_, head) = send_get(to, [127, 0, 0, 1], path).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head:.300}");
    assert!(head.contains("http.maxlongpollsperclient"), "{head:.300}");
    assert_eq!(
        metric(
            &server.url,
            "nas_refused_total{reason=\"long_polls_per_client\"}"
        )
        .await,
        1.0
    );
    // Another address parks.
    held.push(tokio::spawn(async move {
        send_get(to, [127, 0, 0, 2], path).await
    }));
    eventually(
        Duration::from_secs(10),
        "a poll from 127.0.0.2 parked",
        || async { metric(&server.url, "nas_changes_long_polls").await == 3.0 },
    )
    .await;
    for h in held {
        h.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Expensive requests made cheap: re-posts, decode views
// ---------------------------------------------------------------------------------------------

/// An account with 1,000 imports, each with an activation token (1,000 signatures for the
/// content rules): re-posting the stored bytes is answered 200, an older `iat` 409 and another
/// token of the same `iat` 409, each before the content rules run (counted in
/// `nas_post_shortcuts_total`); `?decode=true` renders the view (1,000 nested tokens) once
/// per version and serves it from the cache after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reposts_are_refused_before_the_rules_and_decode_views_are_cached() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), "repost", "", &[], &[]).await;
    let importer = KeyPair::new_account().public_key();
    let exporter = KeyPair::new_account();
    let imports: Vec<Value> = (0..1000)
        .map(|i| {
            let subject = format!("orders.{i}.>");
            json!({ "type": "stream", "account": exporter.public_key(), "subject": subject,
                    "token": encode::activation(&exporter, &importer, &subject, "stream") })
        })
        .collect();
    let nats = json!({ "limits": { "imports": -1, "exports": -1, "wildcards": true, "conn": -1 },
                       "imports": imports });
    let iat = nats_account_server::jwt::now_unix();
    let signer = fixtures::signing_key();
    let big = encode::account_at(&signer, &importer, "importer", nats.clone(), iat);
    let url = format!("{}/jwt/v1/accounts/{importer}", server.url);
    let first = Instant::now();
    let (status, body) = post(&url, big.clone()).await;
    assert_eq!(status, 200, "{body}");
    let first = first.elapsed();

    let reposts = 20;
    let start = Instant::now();
    for _ in 0..reposts {
        assert_eq!(post(&url, big.clone()).await.0, 200);
    }
    let each = start.elapsed() / reposts;
    println!("first POST of 1,000 imports {first:?}, each re-post {each:?}");
    let shortcut = |result: &str| format!("nas_post_shortcuts_total{{result=\"{result}\"}}");
    assert_eq!(
        metric(&server.url, &shortcut("unchanged")).await,
        reposts as f64
    );

    let older = encode::account_at(&signer, &importer, "importer", nats.clone(), iat - 10);
    let (status, body) = post(&url, older).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(metric(&server.url, &shortcut("stale")).await, 1.0);
    let same_second = encode::account_at(&signer, &importer, "other", nats.clone(), iat);
    assert_eq!(post(&url, same_second).await.0, 409);
    assert_eq!(metric(&server.url, &shortcut("same_iat")).await, 1.0);
    assert_eq!(
        get(&url).await,
        (200, big.clone()),
        "the stored version stays"
    );

    // Decode views: rendered once per version.
    let cache = |result: &str| format!("nas_decode_cache_total{{result=\"{result}\"}}");
    let (status, view) = get(&format!("{url}?decode=true")).await;
    assert_eq!(status, 200);
    assert_eq!(view.matches("token_claims").count(), 1000);
    for _ in 0..5 {
        assert_eq!(
            get(&format!("{url}?decode=true")).await,
            (200, view.clone())
        );
    }
    assert_eq!(metric(&server.url, &cache("miss")).await, 1.0);
    assert_eq!(metric(&server.url, &cache("hit")).await, 5.0);
    // A new version is a new view.
    let newer = encode::account_at(&signer, &importer, "renamed", nats, iat + 1);
    post_accepted(&server.url, &importer, &newer).await;
    let (status, renamed) = get(&format!("{url}?decode=true")).await;
    assert_eq!(status, 200);
    assert!(renamed.contains("\"renamed\""));
    assert_eq!(metric(&server.url, &cache("miss")).await, 2.0);
}

/// Decoded views are budgeted per client address (`http.decodebytespersecond`): within its
/// share a view is sent at once; beyond it, it waits for the share; one that would wait over
/// 2 s gets 503 with a `Retry-After` (counted as `decode_budget`). Another address, and plain
/// GETs from the same one, are served meanwhile, and the address gets views again later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_views_are_budgeted_per_client_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 10 kB a second, 20 kB saved up: a view of ~17 kB is sent at once, the next one ~1.4 s
    // later, and a third asked for at the same time would wait ~3 s: refused.
    let server = start(
        dir.path(),
        "budget",
        "[http]\ndecodebytespersecond = 10000\n",
        &[],
        &[],
    )
    .await;
    let (key, _) = post_big_account(&server.url, "big", 16).await;
    let to = addr(&server);
    let path = format!("/jwt/v1/accounts/{key}?decode=true");
    let status = |head: &str| head.get(9..12).and_then(|s| s.parse::<u16>().ok());
    let view = |from: [u8; 4]| {
        let path = path.clone();
        async move {
            let asked = Instant::now();
            let (_, head) = send_get(to, from, &path).await;
            (head, asked.elapsed())
        }
    };
    let delayed = || metric(&server.url, "nas_decode_views_delayed_total");
    let (first, _) = view([127, 0, 0, 2]).await;
    assert_eq!(status(&first), Some(200), "{first}");
    assert_eq!(delayed().await, 0.0, "sent at once");
    // Two more at the same time: one waits for the share, the other is refused.
    let (a, b) = tokio::join!(view([127, 0, 0, 2]), view([127, 0, 0, 2]));
    let (mut served, mut refused) = (Vec::new(), Vec::new());
    for (head, took) in [a, b] {
        match status(&head) {
            Some(200) => served.push(took),
            Some(503) => refused.push(head),
            _ => panic!("unexpected answer: {head}"),
        }
    }
    assert_eq!((served.len(), refused.len()), (1, 1), "{refused:?}");
    assert_eq!(delayed().await, 1.0, "the served one waited for the share");
    assert!(
        served[0] >= Duration::from_secs(1),
        "the second view waited for the share: {:?}",
        served[0]
    );
    assert!(
        refused[0].to_ascii_lowercase().contains("retry-after:"),
        "{}",
        refused[0]
    );
    assert!(
        refused[0].contains("http.decodebytespersecond"),
        "{}",
        refused[0]
    );
    assert_eq!(
        metric(&server.url, "nas_refused_total{reason=\"decode_budget\"}").await,
        1.0
    );
    // Others are not held up by it.
    let (other, _) = view([127, 0, 0, 3]).await;
    assert_eq!(status(&other), Some(200), "{other}");
    assert_eq!(delayed().await, 1.0, "another address is sent at once");
    let (_, plain) = send_get(to, [127, 0, 0, 2], &format!("/jwt/v1/accounts/{key}")).await;
    assert_eq!(status(&plain), Some(200), "{plain}");
    // And the address gets views again once its budget has refilled.
    eventually(
        Duration::from_secs(10),
        "the address is served views again",
        || async { status(&view([127, 0, 0, 2]).await.0) == Some(200) },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

/// A request head over `http.maxheaderbytes` (32 KiB by default) gets 431, on reads and
/// writes alike, at once (not a 400, not a hang), counted; one under it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_kib_header_gets_431() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), "headers", "", &[], &[]).await;
    let (kp, jwt) = new_account("headers");
    let key = kp.public_key();
    post_accepted(&server.url, &key, &jwt).await;
    let to = addr(&server);
    let header = |kib: usize| "h".repeat(kib * 1024);

    let (status, text) = raw_http(
        to,
        format!(
            "GET /jwt/v1/accounts/{key} HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            header(64)
        )
        .into_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status, Some(431), "{text:.300}");
    assert!(text.contains("http.maxheaderbytes"), "{text:.300}");
    let (fresh, fresh_jwt) = new_account("never-stored");
    let (status, text) = raw_http(
        to,
        format!(
            "POST /jwt/v1/accounts/{} HTTP/1.1\r\nHost: t\r\nCookie: {}\r\nContent-Length: {}\r\n\r\n{fresh_jwt}",
            fresh.public_key(),
            header(64),
            fresh_jwt.len()
        )
        .into_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status, Some(431), "{text:.300}");
    assert_eq!(
        metric(
            &server.url,
            "nas_refused_total{reason=\"header_too_large\"}"
        )
        .await,
        2.0
    );
    let (status, text) = raw_http(
        to,
        format!(
            "GET /jwt/v1/accounts/{key} HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            header(16)
        )
        .into_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status, Some(200), "{text:.300}");
    assert_eq!(
        get(&format!(
            "{}/jwt/v1/accounts/{}",
            server.url,
            fresh.public_key()
        ))
        .await
        .0,
        404,
        "the refused write was not stored"
    );
}

// ---------------------------------------------------------------------------------------------
// NATS: notifications and PACK
// ---------------------------------------------------------------------------------------------

/// A nats-server (cache resolver: it needs nothing from us to start) and our binary connected
/// to it as the system account, with `config`.
async fn with_nats(dir: &Path, name: &str, config: &str) -> (NatsServer, ServerProcess) {
    let nats = NatsServer::start_nats_resolver(0, "cache", "timeout: \"1s\"").await;
    let creds = sys_creds_path();
    let sys = fixtures::vectors().join("sys.jwt");
    let server = start(
        dir,
        name,
        config,
        &[
            "--nats",
            &nats.url,
            "--creds",
            creds.to_str().expect("UTF-8 path"),
            "--system-account",
            sys.to_str().expect("UTF-8 path"),
        ],
        &[],
    )
    .await;
    wait_nats_connected(&server.url).await;
    (nats, server)
}

/// While 16 clients flood `?notify=true` re-sends of 50 accounts, a real change's
/// notification still arrives (re-sends are coalesced per key and wait behind real changes),
/// and no real notification is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_flood_never_crowds_out_a_real_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (nats, server) = with_nats(dir.path(), "notify", "").await;
    let mut keys = Vec::new();
    for i in 0..50 {
        let (kp, jwt) = new_account(&format!("flooded-{i}"));
        post_accepted(&server.url, &kp.public_key(), &jwt).await;
        keys.push(kp.public_key());
    }
    let sys = nats.sys_client().await;
    let mut updates = sys
        .subscribe("$SYS.ACCOUNT.*.CLAIMS.UPDATE")
        .await
        .expect("subscribe");
    sys.flush().await.expect("flush");

    let keys = Arc::new(keys);
    let mut flood = Vec::new();
    for c in 0..16 {
        let (keys, base) = (keys.clone(), server.url.clone());
        flood.push(tokio::spawn(async move {
            let client = http();
            for i in 0..250 {
                let key = &keys[(c * 7 + i) % keys.len()];
                let r = client
                    .get(format!("{base}/jwt/v1/accounts/{key}?notify=true"))
                    .send()
                    .await
                    .expect("GET");
                assert_eq!(r.status(), 200);
            }
        }));
    }
    // Mid-flood: a real change.
    eventually(Duration::from_secs(10), "the flood under way", || async {
        metric(&server.url, "nas_notifications_total{result=\"sent\"}").await > 200.0
    })
    .await;
    let (kp, jwt) = new_account("real-change");
    let real = kp.public_key();
    post_accepted(&server.url, &real, &jwt).await;
    let subject = format!("$SYS.ACCOUNT.{real}.CLAIMS.UPDATE");
    let arrived = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = updates.next().await {
            if msg.subject.as_str() == subject {
                return Some(msg.payload);
            }
        }
        None
    })
    .await;
    assert_eq!(
        arrived.ok().flatten().as_deref(),
        Some(jwt.as_bytes()),
        "the real change's notification arrived during the flood"
    );
    for f in flood {
        f.await.expect("flood client");
    }
    assert_eq!(
        metric(&server.url, "nas_notifications_total{result=\"dropped\"}").await,
        0.0
    );
}

/// 20 concurrent PACK requests (a stale hash each, so each wants every account) over a real
/// nats-server share one computation of the answer; each gets the whole pack or, beyond
/// `nats.maxpackanswers`, no answer (counted); an in-sync request reuses it; a write makes a
/// new state, computed once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pack_requests_share_one_computation() {
    const REQUESTS: usize = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let (nats, server) = with_nats(dir.path(), "pack", "[nats]\nmaxpackanswers = 2\n").await;
    let mut want = std::collections::HashMap::new();
    for i in 0..5 {
        let (kp, jwt) = new_account(&format!("packed-{i}"));
        post_accepted(&server.url, &kp.public_key(), &jwt).await;
        want.insert(kp.public_key(), jwt);
    }
    let sys = nats.sys_client().await;
    let mut subs = Vec::new();
    for _ in 0..REQUESTS {
        let inbox = sys.new_inbox();
        subs.push(sys.subscribe(inbox.clone()).await.expect("subscribe"));
        sys.publish_with_reply("$SYS.REQ.CLAIMS.PACK", inbox, vec![0u8; 32].into())
            .await
            .expect("publish");
    }
    sys.flush().await.expect("flush");
    let answers = futures_util::future::join_all(subs.into_iter().map(|mut sub| async move {
        let mut got = std::collections::HashMap::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(3), sub.next()).await {
                Ok(Some(msg)) if msg.payload.is_empty() => return Some(got),
                Ok(Some(msg)) => {
                    let text = String::from_utf8(msg.payload.to_vec()).expect("UTF-8");
                    let (k, j) = text.split_once('|').expect("key|jwt");
                    got.insert(k.to_string(), j.to_string());
                }
                _ => return None,
            }
        }
    }))
    .await;
    let answered: Vec<_> = answers.into_iter().flatten().collect();
    assert!(!answered.is_empty());
    for got in &answered {
        assert_eq!(got, &want, "every answer is the whole pack");
    }
    let busy = metric(&server.url, "nas_refused_total{reason=\"pack_busy\"}").await;
    assert_eq!(answered.len() + busy as usize, REQUESTS);
    let computed = || async { metric(&server.url, "nas_resolver_pack_computations_total").await };
    assert_eq!(computed().await, 1.0, "one computation for one store state");

    // In sync: nothing sent, nothing computed again.
    let mut hash = [0u8; 32];
    for jwt in want.values() {
        use sha2::Digest;
        for (h, b) in hash.iter_mut().zip(sha2::Sha256::digest(jwt.as_bytes())) {
            *h ^= b;
        }
    }
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        sys.request("$SYS.REQ.CLAIMS.PACK", hash.to_vec().into()),
    )
    .await
    .expect("answered")
    .expect("request");
    assert!(reply.payload.is_empty(), "in sync: the empty message alone");
    assert_eq!(computed().await, 1.0);

    // A write: a new state, computed once more.
    let (kp, jwt) = new_account("packed-late");
    post_accepted(&server.url, &kp.public_key(), &jwt).await;
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        sys.request("$SYS.REQ.CLAIMS.PACK", hash.to_vec().into()),
    )
    .await
    .expect("answered")
    .expect("request");
    assert!(!reply.payload.is_empty(), "out of sync after the write");
    assert_eq!(computed().await, 2.0);
}
