//! Our binary as a child process: for kill -9, signals, exit codes and config files. The child
//! is killed on drop; its log is kept in the guard's dir and printed when a wait fails.

use super::child::wait_started;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `nats-account-server` child.
pub struct ServerProcess {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    /// Its combined stdout/stderr.
    pub log: PathBuf,
}

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_nats-account-server")
}

impl ServerProcess {
    /// Starts the binary with `args` plus `--listen 127.0.0.1:<port>`, logging to
    /// `<dir>/<name>.log`, and waits until `/healthz` answers.
    pub async fn start(dir: &Path, name: &str, port: u16, args: &[&str]) -> ServerProcess {
        ServerProcess::start_wrapped(dir, name, port, &[], args).await
    }

    /// [`ServerProcess::start`] run through `wrapper` (a command that execs its arguments,
    /// such as `prlimit --nofile=256:256`), so the child is still our binary.
    pub async fn start_wrapped(
        dir: &Path,
        name: &str,
        port: u16,
        wrapper: &[&str],
        args: &[&str],
    ) -> ServerProcess {
        let listen = format!("127.0.0.1:{port}");
        ServerProcess::spawn(
            wrapper,
            dir,
            dir,
            name,
            port,
            &[&["--listen", &listen], args].concat(),
        )
        .await
    }

    /// Starts the binary with exactly `args` (which make it listen on `port`) in the working
    /// directory `cwd`, logging to `<dir>/<name>.log`, and waits until `/healthz` answers.
    pub async fn start_in(
        cwd: &Path,
        dir: &Path,
        name: &str,
        port: u16,
        args: &[&str],
    ) -> ServerProcess {
        ServerProcess::spawn(&[], cwd, dir, name, port, args).await
    }

    async fn spawn(
        wrapper: &[&str],
        cwd: &Path,
        dir: &Path,
        name: &str,
        port: u16,
        args: &[&str],
    ) -> ServerProcess {
        let log = dir.join(format!("{name}.log"));
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = super::child::spawn_logged(command.args(args), cwd, &log)
            .expect("spawning nats-account-server");
        let mut p = ServerProcess {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            port,
            log,
        };
        // In the guard before the wait, so that a failed start is killed on drop too.
        let (url, log) = (p.url.clone(), p.log.clone());
        wait_started(
            p.child.as_mut().expect("just spawned"),
            &format!("nats-account-server on {port} (log {})", log.display()),
            Duration::from_secs(20),
            || healthy(&url),
            || std::fs::read_to_string(&log).unwrap_or_default(),
        )
        .await;
        p
    }

    /// [`ServerProcess::start`] as a sled primary trusting the vectors' operator, with its
    /// store in `<dir>/data` (so a restart on the same `dir` finds it).
    pub async fn start_primary(dir: &Path, name: &str, port: u16) -> ServerProcess {
        let op = super::fixtures::vectors().join("operator.jwt");
        let op = op.to_str().expect("UTF-8 path");
        ServerProcess::start(dir, name, port, &["--operator", op, "--data", "data"]).await
    }

    /// A replica of `primary` (no `--operator`: it learns the primary's) with its store in
    /// `<dir>/data`.
    pub async fn start_replica(dir: &Path, primary: &str) -> ServerProcess {
        ServerProcess::start(
            dir,
            "replica",
            super::free_port(),
            &["--primary", primary, "--data", "data"],
        )
        .await
    }

    /// The child's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        super::child::kill(&mut self.child);
    }

    /// Sends `signal` (e.g. "TERM", "HUP") to the child.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Waits for the child to exit within `within`; returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let c = self.child.as_mut()?;
        let exited = super::poll(within, || std::future::ready(c.try_wait().ok().flatten())).await;
        match exited {
            Some(status) => {
                self.child = None;
                status.code()
            }
            None => panic!(
                "server did not exit in {within:?}; log:\n{}",
                self.log_text()
            ),
        }
    }
}

/// True when the server at `url` answers `/healthz` with a success.
async fn healthy(url: &str) -> bool {
    super::http()
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the binary to completion with `args` in `dir`: (exit code, stdout+stderr).
pub fn run_to_exit(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running nats-account-server");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}
