//! What the child-process guards of the harness share (our binary, nats-server, nginx,
//! JetStream servers, the README's commands): spawning with a log, waiting for a fresh child
//! to be ready, and killing it for good.

use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Spawns `command` in `cwd` with no stdin and its stdout and stderr appended to `log`.
pub fn spawn_logged(command: &mut Command, cwd: &Path, log: &Path) -> std::io::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    command
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
}

/// Waits until `ready()` resolves to true, polling on the runtime's timer: an async test keeps
/// running its in-process servers meanwhile (a nats-server does not come up until its resolver,
/// often one of ours, answers its probe). Panics with `what` and `log()` when `child` exits
/// first or `within` passes.
pub async fn wait_started<F, Fut>(
    child: &mut Child,
    what: &str,
    within: Duration,
    mut ready: F,
    log: impl Fn() -> String,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !ready().await {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}; log:\n{}", log());
        }
        if Instant::now() > deadline {
            panic!("{what} was not ready within {within:?}; log:\n{}", log());
        }
        // Polling interval, not a wait for an outcome.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True when something accepts connections on `127.0.0.1:port` (a connect on loopback
/// answers at once: it does not hold up the runtime).
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// SIGKILL and reap `child`, if there is one (the port it held is free afterwards).
pub fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
