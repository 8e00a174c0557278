//! The README's "A local cluster in three commands", run as written: the commands are read from
//! the README itself, so the section and this test cannot drift apart. Only what a test must
//! change is changed: `cargo run --release --` is the binary under test, `nats-server` the
//! installed one, the ports 4222, 9090 and 9091 become free ones (in the commands and in a copy
//! of `deploy/`, the working directory), because tests run in parallel with other tests on one
//! machine. The `nats` CLI line is done with async-nats (the CLI is not installed here).

use crate::common::child;
use crate::common::nats::nats_server_bin;
use crate::common::process::binary;
use crate::common::{copy_dir, eventually, free_port, get};
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(20);

/// The shell blocks of the README section `title`, each as its command lines.
fn readme_blocks(title: &str) -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find(&format!("## {title}\n"))
        .unwrap_or_else(|| panic!("README has no section {title:?}"));
    let section = &readme[start + 3..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .split("```sh\n")
        .skip(1)
        .map(|block| {
            block[..block.find("```").expect("closed block")]
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// The README's ports and the free ones the test uses instead.
struct Ports(Vec<(&'static str, String)>);

impl Ports {
    fn new() -> Ports {
        Ports(
            ["4222", "9090", "9091"]
                .into_iter()
                .map(|p| (p, free_port().to_string()))
                .collect(),
        )
    }

    /// `text` with every `:<README port>` replaced, and `port = <README port>` (TOML).
    fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (from, to) in &self.0 {
            out = out
                .replace(&format!(":{from}"), &format!(":{to}"))
                .replace(&format!("port = {from}"), &format!("port = {to}"));
        }
        out
    }

    fn get(&self, readme_port: &str) -> &str {
        &self
            .0
            .iter()
            .find(|(p, _)| *p == readme_port)
            .expect("port")
            .1
    }
}

/// A child process of the test, killed on drop, its output in `log`.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        child::kill(&mut self.child);
    }
}

/// Runs one README command line in `cwd`, with the programs a test must use.
fn spawn(cwd: &Path, line: &str, name: &str) -> Proc {
    let (program, args) = program_and_args(line);
    let log = cwd.join(format!("{name}.log"));
    let child = child::spawn_logged(Command::new(program).args(args), cwd, &log)
        .unwrap_or_else(|e| panic!("spawning {line:?}: {e}"));
    Proc {
        child: Some(child),
        log,
    }
}

/// The program to run for a README line, and its arguments. The README's lines have no quoting.
fn program_and_args(line: &str) -> (PathBuf, Vec<String>) {
    assert!(
        !line.contains(['"', '\'', '\\']),
        "unquoted words only: {line}"
    );
    if let Some(rest) = line.strip_prefix("cargo run --release -- ") {
        (PathBuf::from(binary()), words(rest))
    } else if let Some(rest) = line.strip_prefix("nats-server ") {
        (nats_server_bin(), words(rest))
    } else {
        let mut w = words(line);
        (PathBuf::from(w.remove(0)), w)
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// The value after `flag` in `line`.
fn flag<'a>(line: &'a str, flag: &str) -> &'a str {
    let mut w = line.split_whitespace();
    w.find(|x| *x == flag)
        .and_then(|_| w.next())
        .unwrap_or_else(|| panic!("{flag} in {line}"))
}

async fn status(url: &str) -> u16 {
    match reqwest::get(url).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_local_cluster_runs_and_a_user_connects() {
    let blocks = readme_blocks("A local cluster in three commands");
    assert_eq!(blocks.len(), 2, "the commands, then the check: {blocks:?}");
    let (commands, checks) = (&blocks[0], &blocks[1]);
    assert_eq!(commands.len(), 3, "three commands: {commands:?}");

    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let ports = Ports::new();
    let deploy = cwd.join("deploy");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"),
        &deploy,
    );
    for file in ["demo.toml", "nats/local.conf"] {
        let path = deploy.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, ports.apply(&text)).unwrap();
    }
    let commands: Vec<String> = commands.iter().map(|c| ports.apply(c)).collect();
    let checks: Vec<String> = checks.iter().map(|c| ports.apply(c)).collect();
    let primary_url = format!("http://127.0.0.1:{}", ports.get("9090"));
    let replica_url = format!("http://127.0.0.1:{}", ports.get("9091"));

    // 1. The primary.
    let primary = spawn(cwd, &commands[0], "primary");
    eventually(WITHIN, "the primary answers", || async {
        status(&format!("{primary_url}/healthz")).await == 200
    })
    .await;
    // 2. nats-server (it fetches the system account from the primary at start).
    let nats = spawn(cwd, &commands[1], "nats-server");
    eventually(
        WITHIN,
        "the primary is connected to nats-server",
        || async {
            get(&format!("{primary_url}/healthz"))
                .await
                .1
                .contains("\"nats\":\"connected\"")
        },
    )
    .await;
    // 3. The replica.
    let replica = spawn(cwd, &commands[2], "replica");
    eventually(WITHIN, "the replica is ready", || async {
        status(&format!("{replica_url}/readyz")).await == 200
    })
    .await;

    let demo_account = std::fs::read_to_string(deploy.join("demo/demo-account.jwt")).unwrap();
    for check in &checks {
        if check.starts_with("nats ") {
            // A user of the demo account connects: nats-server resolves the account through
            // the primary, and the connection works end to end.
            let server = flag(check, "--server");
            let creds = cwd.join(flag(check, "--creds"));
            let subject = check.split_whitespace().rev().nth(1).expect("subject");
            let client = async_nats::ConnectOptions::with_credentials_file(creds)
                .await
                .expect("demo user creds")
                .connect(server)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "the demo user could not connect: {e}\nnats-server:\n{}\nprimary:\n{}",
                        nats.log_text(),
                        primary.log_text()
                    )
                });
            let mut sub = client.subscribe(subject.to_string()).await.unwrap();
            client
                .publish(subject.to_string(), "hi".into())
                .await
                .unwrap();
            let msg = tokio::time::timeout(WITHIN, sub.next())
                .await
                .expect("message within the deadline")
                .expect("subscription open");
            assert_eq!(&msg.payload[..], b"hi");
            continue;
        }
        let (program, args) = program_and_args(check);
        let run = || {
            let out = Command::new(&program)
                .args(&args)
                .current_dir(cwd)
                .output()
                .expect("running a check");
            assert!(out.status.success(), "{check}: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        if check.contains("--data-binary") {
            assert_eq!(run(), "", "{check}: a POST answers 200 with no body");
        } else {
            // The replica applies the write through its change feed a moment later.
            eventually(WITHIN, check, || async {
                run().trim() == demo_account.trim()
            })
            .await;
        }
    }
    drop(replica);
}
