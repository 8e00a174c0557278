//! Semi-synchronous replication on the leader: which followers have durably applied what.
//!
//! A follower acknowledges implicitly: it asks the change feed for what comes after its
//! cursor only once everything up to the cursor is committed in its store, so `since=S` on a
//! feed request says "S is durable here". A write waits until `syncreplicas` followers have
//! acknowledged its sequence, at most `synctimeout`. After a timeout the leader stops waiting
//! (like MySQL's semi-synchronous replication falling back to asynchronous) until enough
//! followers have caught up with the write that timed out, so a lost follower costs one
//! timeout, not one per write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waited {
    /// Enough followers have the write.
    Acked,
    /// Not within the timeout: now degraded to asynchronous.
    TimedOut,
    /// Already degraded: not waited for.
    Degraded,
}

pub(super) struct Acks {
    /// This leader's store lineage: acknowledgements of another store's sequences are ignored.
    lineage: String,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// Highest acknowledged sequence by follower node id.
    acked: HashMap<String, u64>,
    /// Degraded to asynchronous since a write at this sequence timed out.
    degraded_at: Option<u64>,
}

impl State {
    fn count_at_least(&self, seq: u64) -> usize {
        self.acked.values().filter(|a| **a >= seq).count()
    }
}

impl Acks {
    pub(super) fn new(lineage: &str) -> Acks {
        Acks {
            lineage: lineage.to_string(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain map: a panic while holding it cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn ack(&self, node: &str, lineage: &str, since: u64) {
        if lineage != self.lineage {
            return;
        }
        {
            let mut s = self.state();
            let slot = s.acked.entry(node.to_string()).or_insert(0);
            if since <= *slot {
                return;
            }
            *slot = since;
        }
        self.changed.notify_waiters();
    }

    /// Waits until `n` followers acknowledged `seq`, at most `timeout`.
    pub(super) async fn wait(&self, seq: u64, n: usize, timeout: Duration) -> Waited {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so an acknowledgement between the check and the
            // wait is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state();
                let have = s.count_at_least(seq);
                if have >= n {
                    if s.degraded_at.is_some_and(|d| s.count_at_least(d) >= n) {
                        s.degraded_at = None;
                        tracing::info!(
                            "semi-synchronous replication resumed: enough followers caught up"
                        );
                    }
                    return Waited::Acked;
                }
                if let Some(d) = s.degraded_at {
                    if s.count_at_least(d) >= n {
                        s.degraded_at = None;
                    } else {
                        return Waited::Degraded;
                    }
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let mut s = self.state();
                if s.count_at_least(seq) >= n {
                    return Waited::Acked;
                }
                s.degraded_at.get_or_insert(seq);
                return Waited::TimedOut;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn waits_for_enough_followers_of_this_lineage() {
        let acks = Arc::new(Acks::new("L"));
        let a = acks.clone();
        let waiter = tokio::spawn(async move { a.wait(5, 2, Duration::from_secs(10)).await });
        acks.ack("f1", "L", 5);
        acks.ack("f2", "OTHER", 9); // another store's sequence: not an acknowledgement
        acks.ack("f1", "L", 7);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        acks.ack("f2", "L", 5);
        assert_eq!(waiter.await.unwrap(), Waited::Acked);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_then_stays_asynchronous_until_followers_catch_up() {
        let acks = Acks::new("L");
        assert_eq!(
            acks.wait(3, 1, Duration::from_secs(2)).await,
            Waited::TimedOut
        );
        // Degraded: the next write does not wait.
        assert_eq!(
            acks.wait(4, 1, Duration::from_secs(2)).await,
            Waited::Degraded
        );
        // A follower catches up past the write that timed out: waiting again.
        acks.ack("f1", "L", 3);
        assert_eq!(acks.wait(3, 1, Duration::from_secs(2)).await, Waited::Acked);
        assert_eq!(
            acks.wait(5, 1, Duration::from_secs(2)).await,
            Waited::TimedOut
        );
    }
}
