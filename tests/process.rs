//! Our binary as a real process: durability across `kill -9`, graceful SIGTERM, exit codes.

use crate::common::fixtures::{self, new_account};
use crate::common::process::{run_to_exit, ServerProcess};
use crate::common::{free_port, get, http};
use std::time::Duration;

fn operator_args(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--operator".into(),
        fixtures::vectors()
            .join("operator.jwt")
            .display()
            .to_string(),
        "--data".into(),
        dir.join("data").display().to_string(),
    ]
}

/// Every write acknowledged with 200 before a SIGKILL is there after restart, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let args = operator_args(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let port = free_port();
    let mut server = ServerProcess::start(dir.path(), "primary", port, &args).await;

    // 50 concurrent POSTs; the kill lands while later ones may still be in flight.
    let accounts: Vec<(String, String)> = (0..50)
        .map(|i| {
            let (kp, jwt) = new_account(&format!("acct-{i}"));
            (kp.public_key(), jwt)
        })
        .collect();
    let client = http();
    let mut posts = Vec::new();
    for (key, jwt) in accounts.clone() {
        let client = client.clone();
        let url = format!("{}/jwt/v1/accounts/{key}", server.url);
        posts.push(tokio::spawn(async move {
            let ok = client
                .post(&url)
                .body(jwt.clone())
                .send()
                .await
                .map(|r| r.status().as_u16() == 200);
            (key, jwt, ok.unwrap_or(false))
        }));
    }
    // Kill as soon as the first half is acknowledged.
    let mut acked = Vec::new();
    for p in posts.drain(..25) {
        let (key, jwt, ok) = p.await.unwrap();
        if ok {
            acked.push((key, jwt));
        }
    }
    server.kill9();
    for p in posts {
        let (key, jwt, ok) = p.await.unwrap();
        if ok {
            acked.push((key, jwt));
        }
    }
    assert!(
        acked.len() >= 25,
        "at least the first 25 writes were acknowledged before the kill"
    );

    let server = ServerProcess::start(dir.path(), "primary-restarted", free_port(), &args).await;
    for (key, jwt) in &acked {
        let (status, body) = get(&format!("{}/jwt/v1/accounts/{key}", server.url)).await;
        assert_eq!(status, 200, "acknowledged account {key} lost after kill -9");
        assert_eq!(&body, jwt, "account {key} changed across kill -9");
    }
}

/// SIGTERM shuts down gracefully with exit code 0 and releases the sled lock for a restart.
#[tokio::test]
async fn sigterm_is_graceful() {
    let dir = tempfile::tempdir().unwrap();
    let args = operator_args(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = ServerProcess::start(dir.path(), "primary", free_port(), &args).await;
    let (key, jwt) = {
        let (kp, jwt) = new_account("graceful");
        (kp.public_key(), jwt)
    };
    let (status, _) = crate::common::post(
        &format!("{}/jwt/v1/accounts/{key}", server.url),
        jwt.clone(),
    )
    .await;
    assert_eq!(status, 200);
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "log:\n{}",
        server.log_text()
    );
    assert!(server.log_text().contains("stopped"));
    let again = ServerProcess::start(dir.path(), "again", free_port(), &args).await;
    assert_eq!(
        get(&format!("{}/jwt/v1/accounts/{key}", again.url)).await.1,
        jwt
    );
}

/// The startup log names the bound port in the line to paste into nats-server's config.
#[tokio::test]
async fn logs_the_resolver_line_with_the_real_port() {
    let dir = tempfile::tempdir().unwrap();
    let args = operator_args(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let port = free_port();
    let server = ServerProcess::start(dir.path(), "primary", port, &args).await;
    assert!(
        server.log_text().contains(&format!(
            "resolver: URL(http://127.0.0.1:{port}/jwt/v1/accounts/)"
        )),
        "log:\n{}",
        server.log_text()
    );
}

/// Bad configuration is a non-zero exit with a message naming the key.
#[test]
fn bad_config_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[http]\nport = \"not a port\"\n",
    )
    .unwrap();
    let (code, out) = run_to_exit(dir.path(), &["-c", "bad.toml", "check-config"], &[]);
    assert_ne!(code, 0);
    assert!(out.contains("http.port"), "{out}");

    std::fs::write(dir.path().join("unknown.conf"), "htp { port: 1 }\n").unwrap();
    let (code, out) = run_to_exit(dir.path(), &["-c", "unknown.conf", "check-config"], &[]);
    assert_ne!(code, 0);
    assert!(out.contains("htp"), "{out}");

    let (code, out) = run_to_exit(dir.path(), &["--operator", "missing.jwt", "--memory"], &[]);
    assert_ne!(code, 0);
    assert!(out.contains("missing.jwt"), "{out}");
}
