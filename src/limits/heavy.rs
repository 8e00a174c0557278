//! CPU-heavy request work, off the HTTP workers and below their priority.
//!
//! An HTTP worker is one thread serving many connections: a handler that computes for
//! milliseconds (verifying an 860 KB account with 1,000 imports, rendering its decoded view)
//! delays every other request on that worker. Such work runs here instead, on one dedicated
//! thread behind a bounded queue: normal reads keep their worker and win the CPU, a flood of
//! heavy requests gets what is left over, and beyond the queue it is refused (503, counted as
//! `heavy_busy`).
//!
//! The thread runs in the kernel's `SCHED_IDLE` class: it gets the CPU only when nothing else
//! wants it, and the kernel lets an HTTP worker that wakes take the core back at once, where a
//! thread at nice 10 may first finish its time slice. Measured in the abuse benchmark (all its
//! kinds of abuse beside normal reads, server on one core): normal reads' p99 rose 2.2–2.5× with
//! this thread at nice 10, 1.6× in `SCHED_IDLE` (benches/BENCHMARKS.md). So that a
//! machine busy with reads cannot starve heavy work for good, a job that has waited
//! [`STARVED`] (queued or running) raises the thread to the normal class at nice 10, which the
//! scheduler always gives a share; the next job that has not waited that long lowers it again.
//! Leaving `SCHED_IDLE` takes root, `CAP_SYS_NICE` or an `RLIMIT_NICE` of 10 or more (systemd:
//! `LimitNICE=10`); a process without it never enters that class and runs heavy work at nice 10
//! throughout, as it could not be raised again (said once at start, at INFO).
//!
//! The tokio blocking pool is not used for this: it grows to hundreds of threads at normal
//! priority, which is exactly what a flood must not get.

use super::Busy;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Whether this process may take a thread out of `SCHED_IDLE` again, tried on a throwaway
/// thread the way the heavy-work thread would (nice 10, idle, then the normal class).
fn can_leave_idle() -> bool {
    std::thread::spawn(|| {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
        set_class(me, true);
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler of the calling thread with a valid parameter.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) == 0 }
    })
    .join()
    .unwrap_or(false)
}

/// A job and when it was queued.
type Job = (Instant, Box<dyn FnOnce() + Send>);

/// Handle to the heavy-work thread. Cheap to clone.
#[derive(Clone)]
pub struct HeavyPool {
    tx: mpsc::SyncSender<Job>,
    queue: usize,
    /// The thread's kernel id (0 until it has started), to raise its class from outside.
    tid: Arc<AtomicI32>,
}

/// Scheduling priority of the heavy-work thread when raised (the HTTP workers run at 0).
const NICE: libc::c_int = 10;

/// How long a job may wait (queued, then running) on idle CPU time before the thread is
/// raised to the normal class.
const STARVED: Duration = Duration::from_secs(1);

/// Puts thread `tid` in `SCHED_IDLE` (`idle`) or back in the normal class at [`NICE`].
/// Failure only leaves the class as it was.
fn set_class(tid: libc::pid_t, idle: bool) {
    let policy = if idle {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscalls with a valid parameter. `tid` is the heavy-work thread's (or
    // the probe's own), and that thread is alive: it ends only when every handle is dropped,
    // and a caller raising it holds one, so the id cannot have been reused by another thread.
    unsafe {
        // Nice first: leaving `SCHED_IDLE` is checked against the nice value it had.
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE);
        libc::sched_setscheduler(tid, policy, &param);
    }
}

impl HeavyPool {
    /// Starts the thread, with room for `queue` jobs waiting.
    pub fn new(queue: usize) -> HeavyPool {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let idle_class = can_leave_idle();
        if !idle_class {
            tracing::info!("heavy work (large writes, decoded views) runs at nice {NICE}: this process may not leave SCHED_IDLE once in it (needs CAP_SYS_NICE or RLIMIT_NICE >= 10)");
        }
        // 0 (no thread) keeps the caller's raising a no-op when the class is never idle.
        let tid = Arc::new(AtomicI32::new(0));
        let own = tid.clone();
        std::thread::Builder::new()
            .name("nas-heavy".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                let me = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
                set_class(me, false);
                if idle_class {
                    own.store(me, Ordering::Relaxed);
                }
                // Ends when every handle is dropped.
                while let Ok((queued, job)) = rx.recv() {
                    if idle_class {
                        set_class(me, queued.elapsed() < STARVED);
                    }
                    job();
                }
            })
            .expect("spawning the heavy-work thread");
        HeavyPool { tx, queue, tid }
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
        let job = Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        });
        if self.tx.try_send((Instant::now(), job)).is_err() {
            metrics.refused("heavy_busy");
            return Err(Busy {
                what: "too many large writes and decoded views are waiting",
                setting: "http.maxheavy",
                limit: self.queue,
                retry_after: 2,
            });
        }
        let mut result = std::pin::pin!(result);
        let outcome = match tokio::time::timeout(STARVED, &mut result).await {
            Ok(outcome) => outcome,
            Err(_) => {
                // Starved on idle CPU time: this job (or one ahead of it) gets a normal share.
                let tid = self.tid.load(Ordering::Relaxed);
                if tid != 0 {
                    tracing::debug!(
                        "heavy work waited {STARVED:?}: raising its thread to nice {NICE}"
                    );
                    set_class(tid, false);
                }
                result.await
            }
        };
        match outcome {
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

    /// The scheduling policy of the calling thread.
    fn own_policy() -> libc::c_int {
        // SAFETY: sched_getscheduler of the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[tokio::test]
    async fn runs_on_idle_cpu_time_and_is_raised_when_a_job_waits_too_long() {
        let pool = HeavyPool::new(4);
        let metrics = Metrics::new();
        if !can_leave_idle() {
            // Without the permission the thread stays in the normal class at nice 10.
            assert_eq!(
                pool.run(&metrics, own_policy).await.unwrap(),
                libc::SCHED_OTHER
            );
            return;
        }
        assert_eq!(
            pool.run(&metrics, own_policy).await.unwrap(),
            libc::SCHED_IDLE
        );

        // A job still unfinished after STARVED raises the thread while it runs.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let waited = pool.run(&metrics, move || {
            let _ = started_tx.send(());
            held.recv().ok();
            own_policy()
        });
        let tid = pool.tid.load(Ordering::Relaxed);
        let watcher = async {
            started.await.unwrap();
            let deadline = Instant::now() + STARVED * 20;
            // SAFETY: sched_getscheduler of a thread of this process.
            while unsafe { libc::sched_getscheduler(tid) } != libc::SCHED_OTHER {
                assert!(Instant::now() < deadline, "never raised");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            release.send(()).unwrap();
        };
        let (policy, ()) = tokio::join!(waited, watcher);
        assert_eq!(policy.unwrap(), libc::SCHED_OTHER);
        // SAFETY: getpriority of a thread of this process.
        assert_eq!(
            unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) },
            NICE
        );

        // The next job, queued just now, lowers it again.
        assert_eq!(
            pool.run(&metrics, own_policy).await.unwrap(),
            libc::SCHED_IDLE
        );
    }
}
