//! Limits against hostile load (DESIGN §8): what keeps a misbehaving client from taking the
//! server's memory, descriptors or CPU away from normal reads.
//!
//! - Bulk answers (the pack, large change-feed pages) take a permit of `http.maxbulk`.
//! - Parked long polls are counted globally (`http.maxlongpolls`) and per client address
//!   (`http.maxlongpollsperclient`).
//! - `?decode=true` views are cached per token version ([`DecodeCache`]).
//! - NATS PACK answers take a permit of `nats.maxpackanswers`.
//! - CPU-heavy request work waits for the heavy-work thread (`http.maxheavy` in its queue).
//!
//! Every refusal is a [`Busy`] (the HTTP edge answers 503 + `Retry-After`) counted in
//! `nas_refused_total`. One [`Limits`] per server, shared by every worker.

pub mod budget;
pub mod heavy;

use crate::config::Settings;
use crate::metrics::{LongPollGuard, Metrics};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Seconds a refused client is told to wait (`Retry-After`).
const RETRY_AFTER: u64 = 2;

/// A limit on concurrent work is reached (bulk answers, parked long polls, heavy work): the
/// request is refused, and the client should come back after `retry_after` seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} (limit {limit}: {setting}); retry in {retry_after} s")]
pub struct Busy {
    /// What is busy, for people.
    pub what: &'static str,
    /// The setting holding the limit.
    pub setting: &'static str,
    /// Its value.
    pub limit: usize,
    /// Seconds the client should wait (`Retry-After`).
    pub retry_after: u64,
}

/// The server's limits and the state that enforces them.
pub struct Limits {
    bulk: Arc<Semaphore>,
    max_bulk: usize,
    parked: Arc<Mutex<Parked>>,
    max_long_polls: usize,
    max_long_polls_per_client: usize,
    packs: Arc<Semaphore>,
    /// `http.writetimeout`: how long a streamed answer may wait for its client to read.
    pub write_timeout: Duration,
    /// `http.maxheaderbytes`.
    pub max_header_bytes: usize,
    /// Rendered `?decode=true` views.
    pub decode: DecodeCache,
    /// Bytes of decoded views per client address (`http.decodebytespersecond`).
    decode_budget: budget::ByteBudget,
    /// CPU-heavy request work (large writes, decoded views), off the HTTP workers.
    pub heavy: heavy::HeavyPool,
}

/// Parked long polls: the total and the count per client address.
#[derive(Default)]
struct Parked {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new(&Settings::default())
    }
}

impl Limits {
    /// Limits from `settings`. The long-poll cap is lowered to half the process's descriptor
    /// limit when that is smaller: each parked poll holds a connection, and the other half
    /// must stay free for normal requests, the store and NATS.
    pub fn new(settings: &Settings) -> Limits {
        let h = &settings.http;
        let mut max_long_polls = h.maxlongpolls;
        if let Some(nofile) = descriptor_limit() {
            let half = (nofile / 2).max(1);
            if half < max_long_polls {
                tracing::warn!(
                    configured = max_long_polls,
                    descriptors = nofile,
                    effective = half,
                    "http.maxlongpolls lowered to half the descriptor limit (raise it with ulimit -n)"
                );
                max_long_polls = half;
            }
        }
        Limits {
            bulk: Arc::new(Semaphore::new(h.maxbulk)),
            max_bulk: h.maxbulk,
            parked: Arc::default(),
            max_long_polls,
            max_long_polls_per_client: h.maxlongpollsperclient.min(max_long_polls),
            packs: Arc::new(Semaphore::new(settings.nats.maxpackanswers)),
            write_timeout: h.writetimeout.0,
            max_header_bytes: h.maxheaderbytes,
            decode: DecodeCache::new(h.decodecachebytes),
            decode_budget: budget::ByteBudget::new(h.decodebytespersecond),
            heavy: heavy::HeavyPool::new(h.maxheavy),
        }
    }

    /// A permit to send one bulk answer, held until the answer is sent (or cut off).
    ///
    /// # Errors
    /// [`Busy`] when `http.maxbulk` answers are being sent.
    pub fn bulk(&self, metrics: &Metrics) -> Result<OwnedSemaphorePermit, Busy> {
        self.bulk.clone().try_acquire_owned().map_err(|_| {
            metrics.refused("bulk_busy");
            Busy {
                what: "too many pack and change-feed answers are being sent",
                setting: "http.maxbulk",
                limit: self.max_bulk,
                retry_after: RETRY_AFTER,
            }
        })
    }

    /// Registers a long poll from `client` about to park; it counts until the guard drops.
    ///
    /// # Errors
    /// [`Busy`] when the global or the per-client cap is reached.
    pub fn park(&self, client: Option<IpAddr>, metrics: &Metrics) -> Result<Parking, Busy> {
        let mut p = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        if p.total >= self.max_long_polls {
            metrics.refused("long_polls");
            return Err(Busy {
                what: "too many change-feed long polls are waiting",
                setting: "http.maxlongpolls",
                limit: self.max_long_polls,
                retry_after: RETRY_AFTER,
            });
        }
        if let Some(ip) = client {
            let n = p.per_client.entry(ip).or_default();
            if *n >= self.max_long_polls_per_client {
                metrics.refused("long_polls_per_client");
                return Err(Busy {
                    what: "too many change-feed long polls from this address are waiting",
                    setting: "http.maxlongpollsperclient",
                    limit: self.max_long_polls_per_client,
                    retry_after: RETRY_AFTER,
                });
            }
            *n += 1;
        }
        p.total += 1;
        Ok(Parking {
            parked: self.parked.clone(),
            client,
            _gauge: metrics.long_poll(),
        })
    }

    /// Charges a decoded view of `bytes` to `client`'s budget: how long the view must wait
    /// before it is sent (zero while the address is within its share).
    ///
    /// # Errors
    /// [`Busy`] when the address has taken so much of its `http.decodebytespersecond` that
    /// the view would wait over [`budget::MAX_WAIT`]; its `retry_after` says when it
    /// would fit.
    pub fn decode_view(
        &self,
        client: Option<IpAddr>,
        bytes: usize,
        metrics: &Metrics,
    ) -> Result<Duration, Busy> {
        let Some(ip) = client else {
            return Ok(Duration::ZERO);
        };
        self.decode_budget
            .take(ip, bytes, std::time::Instant::now())
            .inspect(|wait| {
                if !wait.is_zero() {
                    metrics.decode_delayed();
                }
            })
            .map_err(|wait| {
                metrics.refused("decode_budget");
                Busy {
                    what: "this address has taken its share of decoded views",
                    setting: "http.decodebytespersecond",
                    limit: self.decode_budget.rate(),
                    retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            })
    }

    /// A permit to stream one NATS PACK answer, or `None` at `nats.maxpackanswers`.
    pub fn pack(&self) -> Option<OwnedSemaphorePermit> {
        self.packs.clone().try_acquire_owned().ok()
    }
}

/// A parked long poll, counted until dropped.
pub struct Parking {
    parked: Arc<Mutex<Parked>>,
    client: Option<IpAddr>,
    _gauge: LongPollGuard,
}

impl Drop for Parking {
    fn drop(&mut self) {
        let mut p = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        p.total = p.total.saturating_sub(1);
        if let Some(ip) = self.client {
            if let Some(n) = p.per_client.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    p.per_client.remove(&ip);
                }
            }
        }
    }
}

/// The soft `RLIMIT_NOFILE` of this process, when it has one.
fn descriptor_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur as usize)
}

/// Rendered `?decode=true` views keyed by the token's ETag (a digest of its bytes, so one
/// entry per version), bounded in bytes.
///
/// Two generations approximate LRU at O(1): views go into the current generation; when it
/// holds half the budget it becomes the previous one (dropping the old previous), and a hit in
/// the previous generation moves the view back into the current one. So what is read stays,
/// and memory never exceeds the budget (plus one view).
pub struct DecodeCache {
    budget: usize,
    gens: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<Bytes, Bytes>,
    current_bytes: usize,
    previous: HashMap<Bytes, Bytes>,
}

impl DecodeCache {
    /// A cache of at most `budget` bytes of views (0: nothing is cached).
    pub fn new(budget: usize) -> DecodeCache {
        DecodeCache {
            budget,
            gens: Mutex::default(),
        }
    }

    /// The cached view of the version with `etag`.
    pub fn get(&self, etag: &Bytes) -> Option<Bytes> {
        let mut g = self.gens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = g.current.get(etag) {
            return Some(v.clone());
        }
        let v = g.previous.remove(etag)?;
        g.insert(etag.clone(), v.clone(), self.budget / 2);
        Some(v)
    }

    /// Caches `view` for `etag` (views larger than half the budget are not kept).
    pub fn insert(&self, etag: Bytes, view: Bytes) {
        let half = self.budget / 2;
        if view.len() + etag.len() > half {
            return;
        }
        let mut g = self.gens.lock().unwrap_or_else(|e| e.into_inner());
        g.insert(etag, view, half);
    }
}

impl Generations {
    fn insert(&mut self, etag: Bytes, view: Bytes, half: usize) {
        let key_len = etag.len();
        let size = key_len + view.len();
        if self.current_bytes + size > half {
            self.previous = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        self.current_bytes += size;
        if let Some(old) = self.current.insert(etag, view) {
            self.current_bytes -= key_len + old.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_cache_stays_within_its_budget_and_keeps_what_is_read() {
        let cache = DecodeCache::new(1000);
        let key = |i: usize| Bytes::from(format!("\"{i:032}\""));
        let view = Bytes::from(vec![b'v'; 66]);
        cache.insert(key(0), view.clone());
        for i in 1..100 {
            cache.insert(key(i), view.clone());
            // Read 0 every time: it must survive the churn.
            assert_eq!(cache.get(&key(0)), Some(view.clone()), "after {i} inserts");
        }
        let g = cache.gens.lock().unwrap();
        let held: usize = g
            .current
            .iter()
            .chain(g.previous.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum();
        assert!(held <= 1000, "{held} bytes held");
        drop(g);
        assert_eq!(cache.get(&key(1)), None, "an old unread view was evicted");
        // Too large to cache: not kept.
        cache.insert(key(500), Bytes::from(vec![b'x'; 600]));
        assert_eq!(cache.get(&key(500)), None);
        // A zero budget caches nothing.
        let off = DecodeCache::new(0);
        off.insert(key(1), view.clone());
        assert_eq!(off.get(&key(1)), None);
    }

    #[test]
    fn long_polls_are_capped_globally_and_per_client() {
        let mut s = Settings::default();
        s.http.maxlongpolls = 3;
        s.http.maxlongpollsperclient = 2;
        let limits = Limits::new(&s);
        let m = Metrics::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limits.park(Some(a), &m).unwrap();
        let _a2 = limits.park(Some(a), &m).unwrap();
        assert!(matches!(
            limits.park(Some(a), &m),
            Err(Busy {
                setting: "http.maxlongpollsperclient",
                ..
            })
        ));
        let _b1 = limits.park(Some(b), &m).unwrap();
        assert!(matches!(
            limits.park(Some(b), &m),
            Err(Busy {
                setting: "http.maxlongpolls",
                ..
            })
        ));
        drop(a1);
        let _b2 = limits.park(Some(b), &m).expect("a slot is free again");
        let text = m.render(0, 0, 0, false);
        assert!(text.contains("nas_refused_total{reason=\"long_polls\"} 1"));
        assert!(text.contains("nas_refused_total{reason=\"long_polls_per_client\"} 1"));
    }
}
