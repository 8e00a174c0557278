//! Our binary as a child process: for kill -9, signals, exit codes and config files. The child
//! is killed on drop; its log is kept in the guard's dir and printed when a wait fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    pub fn start(dir: &Path, name: &str, port: u16, args: &[&str]) -> ServerProcess {
        ServerProcess::start_wrapped(dir, name, port, &[], args)
    }

    /// [`ServerProcess::start`] run through `wrapper` (a command that execs its arguments,
    /// such as `prlimit --nofile=256:256`), so the child is still our binary.
    pub fn start_wrapped(
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
    }

    /// Starts the binary with exactly `args` (which make it listen on `port`) in the working
    /// directory `cwd`, logging to `<dir>/<name>.log`, and waits until `/healthz` answers.
    pub fn start_in(cwd: &Path, dir: &Path, name: &str, port: u16, args: &[&str]) -> ServerProcess {
        ServerProcess::spawn(&[], cwd, dir, name, port, args)
    }

    fn spawn(
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
        let p = ServerProcess {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            port,
            log,
        };
        p.wait_healthy(Duration::from_secs(20));
        p
    }

    /// [`ServerProcess::start`] as a sled primary trusting the vectors' operator, with its
    /// store in `<dir>/data` (so a restart on the same `dir` finds it).
    pub fn start_primary(dir: &Path, name: &str, port: u16) -> ServerProcess {
        let op = super::fixtures::vectors().join("operator.jwt");
        let op = op.to_str().expect("UTF-8 path");
        ServerProcess::start(dir, name, port, &["--operator", op, "--data", "data"])
    }

    /// A replica of `primary` (no `--operator`: it learns the primary's) with its store in
    /// `<dir>/data`, started from an async test.
    pub fn start_replica(dir: &Path, primary: &str) -> ServerProcess {
        tokio::task::block_in_place(|| {
            ServerProcess::start(
                dir,
                "replica",
                super::free_port(),
                &["--primary", primary, "--data", "data"],
            )
        })
    }

    /// Blocks until `/healthz` answers 200 (or panics with the log).
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let ok = std::process::Command::new("curl")
                    .args(["-sf", "-o", "/dev/null", &format!("{}/healthz", self.url)])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "server did not become healthy; log {}:\n{}",
                    self.log.display(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "server did not exit in {within:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
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
