//! A TCP proxy the test controls, for cutting a replica off from its primary: it listens on
//! `127.0.0.1:0`, forwards every connection to a target, and its [`Mode`] can be switched at
//! any time, taking effect on new and established connections alike. Killed on drop (every
//! connection it holds is closed).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// A black hole: accept connections and hold them open, forwarding nothing (bytes that
    /// arrive on established connections are discarded), like a network partition.
    Drop,
    /// Forward, waiting this many milliseconds before each chunk.
    Delay(u64),
    /// Close every connection at once with a TCP reset, new ones as soon as they are accepted.
    Reset,
}

/// A running proxy.
pub struct Proxy {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    mode: watch::Sender<Mode>,
    cancel: CancellationToken,
}

impl Proxy {
    /// Starts a proxy to `target` (`host:port`) in [`Mode::Pass`]. Needs a tokio runtime.
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let (mode, rx) = watch::channel(Mode::Pass);
        let cancel = CancellationToken::new();
        let target = target.to_string();
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                };
                let _ = client.set_nodelay(true);
                tokio::spawn(connection(client, target.clone(), rx.clone(), stop.clone()));
            }
        });
        Proxy {
            addr,
            url: format!("http://{addr}"),
            mode,
            cancel,
        }
    }

    /// Switches the mode; established connections follow at once.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Closes a socket with RST instead of FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Holds `client` open, discarding what it sends, until it closes, the mode becomes
/// [`Mode::Reset`], or the proxy stops.
async fn black_hole(
    mut client: TcpStream,
    mut mode: watch::Receiver<Mode>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                if *mode.borrow() == Mode::Reset {
                    return reset(client);
                }
            }
            n = client.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

async fn connection(
    client: TcpStream,
    target: String,
    mut mode: watch::Receiver<Mode>,
    stop: CancellationToken,
) {
    let now = *mode.borrow_and_update();
    match now {
        Mode::Reset => return reset(client),
        Mode::Drop => return black_hole(client, mode, stop).await,
        Mode::Pass | Mode::Delay(_) => {}
    }
    let Ok(upstream) = TcpStream::connect(&target).await else {
        return reset(client);
    };
    let _ = upstream.set_nodelay(true);
    let mut client = client;
    let mut upstream = upstream;
    let mut reset_both = false;
    {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let mut cbuf = vec![0u8; 16 * 1024];
        let mut ubuf = vec![0u8; 16 * 1024];
        let (mut client_open, mut upstream_open) = (true, true);
        while client_open || upstream_open {
            // One direction's chunk, forwarded according to the mode at the time it arrived.
            let (chunk, to_upstream) = tokio::select! {
                _ = stop.cancelled() => break,
                changed = mode.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if *mode.borrow() == Mode::Reset {
                        reset_both = true;
                        break;
                    }
                    continue;
                }
                n = cr.read(&mut cbuf), if client_open => match n {
                    Ok(0) | Err(_) => {
                        client_open = false;
                        let _ = uw.shutdown().await;
                        continue;
                    }
                    Ok(n) => (&cbuf[..n], true),
                },
                n = ur.read(&mut ubuf), if upstream_open => match n {
                    Ok(0) | Err(_) => {
                        upstream_open = false;
                        let _ = cw.shutdown().await;
                        continue;
                    }
                    Ok(n) => (&ubuf[..n], false),
                },
            };
            let current = *mode.borrow();
            match current {
                Mode::Drop => continue,
                Mode::Reset => {
                    reset_both = true;
                    break;
                }
                Mode::Delay(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Mode::Pass => {}
            }
            let written = if to_upstream {
                uw.write_all(chunk).await
            } else {
                cw.write_all(chunk).await
            };
            if written.is_err() {
                reset_both = true;
                break;
            }
        }
    }
    if reset_both {
        reset(client);
        reset(upstream);
    }
}
