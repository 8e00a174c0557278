//! Streamed bulk answers (the pack, the change feed) and the write timeout that cuts off a
//! client that stops reading them.
//!
//! An answer is a snapshot, a list of `Arc<Entry>` taken under the index's read lock (a
//! pointer per token), rendered into chunks only as the connection asks for more. A client that
//! reads slowly therefore costs its socket buffers and the snapshot's pointers, never a copy of
//! the answer.
//!
//! actix-web has no write timeout: while a client does not read, the connection's task waits
//! for the socket to become writable and never polls the body again, so nothing in the body
//! can notice. A watchdog task per large answer does: when the body has not been asked for a
//! chunk within `http.writetimeout`, it shuts the socket down (through a duplicate of its
//! descriptor, recorded for each connection by [`on_connect`]), the pending write fails, and
//! actix drops the connection. Linger 0 makes the close a reset, so the unread data is dropped
//! by the kernel at once instead of being retried.

use crate::metrics::Metrics;
use crate::store::Entry;
use actix_web::dev::Extensions;
use actix_web::{HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use std::any::Any;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Bytes rendered per chunk: big enough that a fast reader costs few polls, small enough that a
/// stalled one leaves little in the connection's write buffer.
const CHUNK: usize = 64 * 1024;

/// The connection's socket descriptor, recorded by [`on_connect`] (valid while the connection
/// serves a request, which is when handlers read it).
#[derive(Debug, Clone, Copy)]
struct ConnSocket(RawFd);

/// `HttpServer::on_connect` hook: records the socket descriptor of plain and TLS connections.
pub fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    use actix_web::rt::net::TcpStream;
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<TcpStream>;
    let fd = if let Some(tcp) = conn.downcast_ref::<TcpStream>() {
        tcp.as_raw_fd()
    } else if let Some(tls) = conn.downcast_ref::<Tls>() {
        tls.as_raw_fd()
    } else {
        return;
    };
    ext.insert(ConnSocket(fd));
}

/// Writes one answer line for `entry` to `out`.
pub type LineFn = fn(&Entry, bool, &mut BytesMut);

/// A streamed answer: `line(entry, first, out)` for each entry of the snapshot.
pub struct Lines {
    /// Shared with other answers over the same snapshot (the pack).
    entries: Arc<Vec<Arc<Entry>>>,
    next: usize,
    /// One past the last entry sent.
    end: usize,
    line: LineFn,
    watch: Option<Watch>,
    /// Held until the answer is dropped (a bulk permit).
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The stream's side of the watchdog.
struct Watch {
    start: Instant,
    /// Milliseconds since `start` at the last chunk handed out.
    last: Arc<AtomicU64>,
    _stop: DropGuard,
}

impl Lines {
    /// An answer over the first `end` of `entries`; `permit` is released when the answer
    /// ends.
    pub fn new(
        entries: Arc<Vec<Arc<Entry>>>,
        end: usize,
        line: LineFn,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Lines {
        Lines {
            end: end.min(entries.len()),
            entries,
            next: 0,
            line,
            watch: None,
            _permit: permit,
        }
    }

    /// Watches the answer to `req`: when the client takes no chunk for `timeout`, its
    /// connection is cut (counted as `write_timeout`). Only answers larger than what socket
    /// buffers absorb need it; a small one is written out at once and the keep-alive timer
    /// covers the connection from then on. Without a recorded socket (tests driving the app
    /// directly) nothing is watched.
    pub fn watched(mut self, req: &HttpRequest, timeout: Duration, metrics: &Metrics) -> Lines {
        // Only whether the answer exceeds one chunk matters: stop counting there (a pack of a
        // million tokens would otherwise be summed whole on every request).
        let mut size = 0;
        let small = self.entries[..self.end].iter().all(|e| {
            size += e.jwt.len();
            size <= CHUNK
        });
        if small || timeout.is_zero() {
            return self;
        }
        let Some(ConnSocket(fd)) = req.conn_data::<ConnSocket>().copied() else {
            return self;
        };
        // A duplicate, so the descriptor cannot be closed and reused for another connection
        // while the watchdog holds it. Failing (descriptors exhausted) leaves it unwatched.
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor the connection owns; the result is a
        // new descriptor we own.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            tracing::debug!("no descriptor left to watch a streamed answer");
            return self;
        }
        // SAFETY: `dup` is a fresh descriptor owned by nobody else.
        let socket = unsafe { OwnedFd::from_raw_fd(dup) };
        let stop = CancellationToken::new();
        let last = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        tokio::spawn(watchdog(
            socket,
            start,
            last.clone(),
            timeout,
            stop.clone(),
            metrics.clone(),
        ));
        self.watch = Some(Watch {
            start,
            last,
            _stop: stop.drop_guard(),
        });
        self
    }

    /// The response: 200, `text/plain`, chunked.
    pub fn respond(self, mut res: actix_web::HttpResponseBuilder) -> HttpResponse {
        res.content_type("text/plain; charset=utf-8")
            .streaming(self)
    }
}

impl futures_util::Stream for Lines {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.next >= this.end {
            return Poll::Ready(None);
        }
        let mut out = BytesMut::with_capacity(CHUNK + 4096);
        while this.next < this.end && out.len() < CHUNK {
            (this.line)(&this.entries[this.next], this.next == 0, &mut out);
            this.next += 1;
        }
        if let Some(w) = &this.watch {
            w.last
                .store(w.start.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        Poll::Ready(Some(Ok(out.freeze())))
    }
}

/// Takes turns with the other connections of the worker: actix goes on writing a body for as
/// long as the socket takes it, so fast readers of megabyte decoded views in a loop would hold
/// the worker, and every request queued on it, for a whole view each. Every other poll
/// answers `Pending` after waking itself, which sends the connection's task to the back of the
/// worker's queue: at most one chunk per turn. (Not used for the feed yet: with it, replica
/// tests of catch-up and anti-entropy failed, which is not understood.)
#[derive(Default)]
struct Turn {
    gave_way: bool,
}

impl Turn {
    /// True when this poll must give way (and has arranged to be polled again).
    fn give_way(&mut self, cx: &mut Context<'_>) -> bool {
        self.gave_way = !self.gave_way;
        if self.gave_way {
            cx.waker().wake_by_ref();
        }
        self.gave_way
    }
}

/// A body already in memory (a cached decoded view), sent a chunk per turn ([`Turn`]) with
/// its `Content-Length`.
pub fn in_turns(body: Bytes, mut res: actix_web::HttpResponseBuilder) -> HttpResponse {
    let len = body.len() as u64;
    let chunks = InTurns {
        body,
        turn: Turn::default(),
    };
    res.body(actix_web::body::SizedStream::new(len, chunks))
}

struct InTurns {
    body: Bytes,
    turn: Turn,
}

impl futures_util::Stream for InTurns {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.body.is_empty() {
            return Poll::Ready(None);
        }
        if this.turn.give_way(cx) {
            return Poll::Pending;
        }
        let n = this.body.len().min(CHUNK);
        Poll::Ready(Some(Ok(this.body.split_to(n))))
    }
}

/// Cuts the connection off when no chunk was taken for `timeout`; ends with the answer.
async fn watchdog(
    socket: OwnedFd,
    start: Instant,
    last: Arc<AtomicU64>,
    timeout: Duration,
    stop: CancellationToken,
    metrics: Metrics,
) {
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = start + since + timeout;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        if Duration::from_millis(last.load(Ordering::Relaxed)) == since {
            break;
        }
    }
    metrics.refused("write_timeout");
    tracing::info!(
        ?timeout,
        "a client did not read its answer within http.writetimeout; connection closed"
    );
    let fd = socket.as_raw_fd();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: plain socket calls on a descriptor we own; errors (the peer already gone) are
    // harmless and ignored.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
    // Keep the duplicate until the answer is dropped, so the reset goes out when actix closes
    // its descriptor, not before.
    stop.cancelled().await;
}
