//! CPU-heavy request work, off the HTTP workers and below their priority.
//!
//! An HTTP worker is one thread serving many connections: a handler that computes for
//! milliseconds (verifying an 860 KB account with 1,000 imports, rendering its decoded view)
//! delays every other request on that worker. Such work runs here instead, on one dedicated
//! thread at a lower scheduling priority (nice 10), behind a bounded queue: normal reads keep
//! their worker and win the CPU, a flood of heavy requests gets at most what is left over, and
//! beyond the queue it is refused (503, counted as `heavy_busy`).
//!
//! The tokio blocking pool is not used for this: it grows to hundreds of threads at normal
//! priority, which is exactly what a flood must not get.

use super::Busy;
use crate::metrics::Metrics;
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// Handle to the heavy-work thread. Cheap to clone.
#[derive(Clone)]
pub struct HeavyPool {
    tx: mpsc::SyncSender<Job>,
    queue: usize,
}

/// Scheduling priority of the heavy-work thread (the HTTP workers run at 0).
const NICE: libc::c_int = 10;

impl HeavyPool {
    /// Starts the thread, with room for `queue` jobs waiting.
    pub fn new(queue: usize) -> HeavyPool {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        std::thread::Builder::new()
            .name("nas-heavy".into())
            .spawn(move || {
                // SAFETY: setpriority on this thread's own id; failure only leaves the
                // priority unchanged.
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, NICE);
                }
                // Ends when every handle is dropped.
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .expect("spawning the heavy-work thread");
        HeavyPool { tx, queue }
    }

    /// Runs `f` on the heavy-work thread and waits for its result.
    ///
    /// # Errors
    /// [`Busy`] when `queue` jobs are already waiting.
    pub async fn run<T: Send + 'static>(
        &self,
        metrics: &Metrics,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        });
        if self.tx.try_send(job).is_err() {
            metrics.refused("heavy_busy");
            return Err(Busy {
                what: "too many large writes and decoded views are waiting",
                setting: "http.maxheavy",
                limit: self.queue,
                retry_after: 2,
            });
        }
        match result.await {
            Ok(Ok(value)) => Ok(value),
            // The same bug as if it had panicked inline.
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => unreachable!("the heavy-work thread runs every job it accepts"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_refuses_beyond_its_queue() {
        let pool = HeavyPool::new(1);
        let metrics = Metrics::new();
        assert_eq!(pool.run(&metrics, || 6 * 7).await.unwrap(), 42);
        // Hold the thread, fill the one queue slot, and the next job is refused.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let mut busy = Box::pin(pool.run(&metrics, move || {
            let _ = started_tx.send(());
            held.recv().ok()
        }));
        assert!(futures_util::poll!(&mut busy).is_pending());
        started.await.unwrap();
        // The first poll queues the job.
        let mut queued = Box::pin(pool.run(&metrics, || 1));
        assert!(futures_util::poll!(&mut queued).is_pending());
        assert!(matches!(
            pool.run(&metrics, || 2).await,
            Err(Busy {
                setting: "http.maxheavy",
                ..
            })
        ));
        release.send(()).unwrap();
        assert!(busy.await.unwrap().is_some());
        assert_eq!(queued.await.unwrap(), 1);
        assert!(metrics
            .render(0, 0, 0, false)
            .contains("nas_refused_total{reason=\"heavy_busy\"} 1"));
    }
}
