//! The links to NATS and to the primary as the log shows them, on real processes: a link that is
//! down is one warning with the address and the socket's cause (not a line per retry), and its
//! return is one line; URLs never show their password.

use crate::common::fixtures::vectors;
use crate::common::nats::NatsServer;
use crate::common::process::ServerProcess;
use crate::common::{eventually, free_port};
use nats_account_server::replica::client::PrimaryClient;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(20);

/// Waits until `server`'s log has `n` lines containing `needle`.
async fn wait_log(server: &ServerProcess, needle: &str, n: usize) {
    eventually(
        WITHIN,
        &format!("{n} log lines with {needle:?}"),
        || async { count(server, needle) >= n },
    )
    .await;
}

fn count(server: &ServerProcess, needle: &str) -> usize {
    server
        .log_text()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_is_one_warning_with_the_cause_and_back_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let nats_port = free_port();
    let conf = dir.path().join("nas.toml");
    // Retries every 50 ms, so many attempts happen between the log lines checked below.
    std::fs::write(&conf, "[nats]\nreconnectwait = \"50ms\"\n").unwrap();
    let v = |f: &str| vectors().join(f).display().to_string();
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let server = ServerProcess::start(
        dir.path(),
        "nas",
        free_port(),
        &[
            "-c",
            conf.to_str().unwrap(),
            "--operator",
            &v("operator.jwt"),
            "--system-account",
            &v("sys.jwt"),
            "--memory",
            "--nats",
            &nats_url,
            "--creds",
            &v("sys.creds"),
            // Trace logging shows each of async-nats' attempts, so the test can count them.
            "-V",
        ],
    )
    .await;
    let down = format!(
        "WARN cannot connect to NATS; retrying every 50ms nats={nats_url} cause=Connection refused (os error 111)"
    );
    wait_log(&server, &down, 1).await;
    wait_log(&server, "attempting connection", 10).await;
    assert_eq!(
        count(&server, "cannot connect to NATS"),
        1,
        "{}",
        server.log_text()
    );
    // Not ours: async-nats logs its own "event: client error" line under -V.
    assert_eq!(count(&server, "NATS event"), 0, "{}", server.log_text());

    let mut nats = NatsServer::resolving_from(nats_port, &server.url).await;
    wait_log(
        &server,
        &format!("INFO connected to NATS nats={nats_url}"),
        1,
    )
    .await;

    nats.kill();
    wait_log(
        &server,
        &format!("WARN disconnected from NATS; reconnecting nats={nats_url}"),
        1,
    )
    .await;
    wait_log(&server, &down, 2).await;
    nats.restart().await;
    wait_log(&server, "INFO connected to NATS again after", 1).await;

    let log = server.log_text();
    assert_eq!(count(&server, "cannot connect to NATS"), 2, "{log}");
    assert_eq!(count(&server, "connected to NATS nats="), 1, "{log}");
}

/// The primary's address without its password, and the socket's cause, in one line.
#[tokio::test]
async fn an_unreachable_primary_is_named_with_the_cause() {
    let port = free_port();
    let client = PrimaryClient::new(
        vec![format!("http://nas:secret@127.0.0.1:{port}")],
        Duration::from_secs(2),
        None,
    )
    .expect("client");
    let err = client.operator().await.expect_err("nothing listens there");
    assert_eq!(
        err.to_string(),
        format!(
            "http://127.0.0.1:{port}: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)"
        )
    );
}

/// A replica process logs that cause, and never the password.
#[tokio::test]
async fn a_replica_logs_why_its_primary_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let primary = format!("http://nas:secret@127.0.0.1:{port}");
    let replica = ServerProcess::start_replica(dir.path(), &primary).await;
    wait_log(
        &replica,
        &format!("http://127.0.0.1:{port}: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)"),
        1,
    )
    .await;
    assert!(
        !replica.log_text().contains("secret"),
        "{}",
        replica.log_text()
    );
}
