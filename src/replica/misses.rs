//! Read misses on a replica that may be missing data: asked of the primary with one request in
//! flight per key, a cap on concurrent requests, and a bounded negative cache.
//!
//! Why all three: a replica sits in front of a fleet, and a client asking for random unknown
//! keys must not turn into the same number of requests at the primary. A caught-up replica
//! never comes here (it answers 404 from its own store); this is for one that is still syncing,
//! lagging or stalled. The one exception is the operator's system account, which a primary may
//! serve from a file rather than its store: a caught-up replica asks for it too, and remembers
//! the answer ([`SystemAccount`]).

use crate::store::{Entry, Kind};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
// tokio's clock, not std's: the same instant in production, and tests can pause and advance it.
use tokio::time::Instant;

/// A key as the miss machinery sees it.
pub(super) type MissKey = (Kind, Arc<str>);

/// Keys the primary said it does not have, remembered for a TTL, at most `cap` of them.
///
/// Insertion order is kept in a queue next to the map, so expiry and eviction take the oldest
/// entries from its front: O(1) per insert (amortised), never a scan of the whole map.
pub(super) struct NegativeCache {
    ttl: Duration,
    cap: usize,
    /// When each key was remembered, and the insert's number (to tell re-inserts apart).
    map: HashMap<MissKey, (Instant, u64)>,
    order: VecDeque<(MissKey, Instant, u64)>,
    inserts: u64,
}

impl NegativeCache {
    /// An empty cache.
    pub(super) fn new(ttl: Duration, cap: usize) -> NegativeCache {
        NegativeCache {
            ttl,
            cap: cap.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
            inserts: 0,
        }
    }

    /// Whether the primary said recently that it does not have `key`.
    pub(super) fn contains(&self, key: &MissKey) -> bool {
        self.map
            .get(key)
            .is_some_and(|(at, _)| at.elapsed() < self.ttl)
    }

    /// Remembers that the primary does not have `key`.
    pub(super) fn insert(&mut self, key: MissKey) {
        let now = Instant::now();
        while let Some((_, at, _)) = self.order.front() {
            if now.duration_since(*at) < self.ttl && self.order.len() < self.cap {
                break;
            }
            self.pop_oldest();
        }
        self.inserts += 1;
        self.map.insert(key.clone(), (now, self.inserts));
        self.order.push_back((key, now, self.inserts));
    }

    fn pop_oldest(&mut self) {
        if let Some((key, _, n)) = self.order.pop_front() {
            // A key inserted again later has a newer insert in the map: that one stays.
            if self.map.get(&key).is_some_and(|(_, m)| *m == n) {
                self.map.remove(&key);
            }
        }
    }

    /// Number of remembered keys.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The operator's system account as the primary last served it (verified), when this
/// replica's store does not hold it: the primary serves it from its `systemaccountjwtpath`
/// file, so no feed ever brings it. Kept out of the store on purpose: stored, it would be in
/// this replica's feed, pack and digest but not in the primary's, and anti-entropy would never
/// find the two equal (it would send the account back to the primary as a write nobody made).
pub(super) struct SystemAccount {
    /// How long an answer is served without asking again (`replication.notfoundttl`, the same
    /// bound as for the primary's "not found").
    ttl: Duration,
    /// The last verified answer and when it came.
    last: Option<(Arc<Entry>, Instant)>,
}

impl SystemAccount {
    pub(super) fn new(ttl: Duration) -> SystemAccount {
        SystemAccount { ttl, last: None }
    }

    /// The last answer for `key`, if it is younger than the TTL.
    pub(super) fn fresh(&self, key: &str) -> Option<Arc<Entry>> {
        self.answer(key, Some(self.ttl))
    }

    /// The last answer for `key`, however old: served while the primary cannot be asked
    /// (stale-if-error, as for everything else a replica holds).
    pub(super) fn last(&self, key: &str) -> Option<Arc<Entry>> {
        self.answer(key, None)
    }

    /// The last answer for `key`, if younger than `max_age` (when given).
    fn answer(&self, key: &str, max_age: Option<Duration>) -> Option<Arc<Entry>> {
        self.last
            .as_ref()
            .filter(|(e, at)| &*e.key == key && max_age.is_none_or(|age| at.elapsed() < age))
            .map(|(e, _)| e.clone())
    }

    /// Remembers the primary's answer; `None`: the primary has none (forget the last one).
    pub(super) fn set(&mut self, entry: Option<Arc<Entry>>) {
        self.last = entry.map(|e| (e, Instant::now()));
    }
}

/// Shared between the clones of a replica handle: the negative cache, the keys in flight and
/// the system account served from the primary.
pub(super) struct Misses {
    pub(super) negative: Mutex<NegativeCache>,
    pub(super) system: Mutex<SystemAccount>,
    /// Requests to the primary in flight, by key; waiters for the same key share one.
    pub(super) inflight: Mutex<HashMap<MissKey, InFlight>>,
    /// Bounds the requests to the primary in flight at once.
    pub(super) permits: tokio::sync::Semaphore,
    /// When a token the primary served last made this replica fetch the operator JWT again
    /// (see `ReplicaHandle::verify_served`): at most one such fetch a second.
    pub(super) operator_asked: Mutex<Option<Instant>>,
}

/// The shared result of one request to the primary: the system account it served (other keys
/// are stored, and read from the store).
pub(super) type InFlight = futures_util::future::Shared<
    futures_util::future::BoxFuture<'static, Result<Option<Arc<Entry>>, String>>,
>;

impl Misses {
    /// Empty, with the given negative-cache TTL and size and the cap on concurrent requests.
    pub(super) fn new(ttl: Duration, cap: usize, concurrent: usize) -> Misses {
        Misses {
            negative: Mutex::new(NegativeCache::new(ttl, cap)),
            system: Mutex::new(SystemAccount::new(ttl)),
            inflight: Mutex::default(),
            permits: tokio::sync::Semaphore::new(concurrent.max(1)),
            operator_asked: Mutex::default(),
        }
    }

    /// Whether a fetch of the operator JWT may start now (none in the last second); if so, it
    /// counts as started.
    pub(super) fn may_ask_operator(&self) -> bool {
        let mut last = self
            .operator_asked
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    pub(super) fn negative(&self) -> std::sync::MutexGuard<'_, NegativeCache> {
        self.negative.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn system(&self) -> std::sync::MutexGuard<'_, SystemAccount> {
        self.system.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<MissKey, InFlight>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> MissKey {
        (Kind::Account, format!("K{i}").into())
    }

    #[test]
    fn remembers_within_the_ttl_and_stays_bounded() {
        let mut c = NegativeCache::new(Duration::from_secs(60), 100);
        for i in 0..1000 {
            c.insert(key(i));
        }
        assert_eq!(c.len(), 100, "the oldest are evicted at the cap");
        assert!(c.contains(&key(999)));
        assert!(!c.contains(&key(0)));
    }

    #[test]
    fn expired_entries_leave_on_the_next_insert() {
        let mut c = NegativeCache::new(Duration::from_millis(1), 100);
        for i in 0..50 {
            c.insert(key(i));
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(!c.contains(&key(1)), "expired");
        c.insert(key(1000));
        assert_eq!(c.len(), 1, "expired entries were dropped from the front");
    }

    #[test]
    fn a_key_inserted_again_keeps_its_newer_time() {
        let mut c = NegativeCache::new(Duration::from_secs(60), 2);
        c.insert(key(1));
        c.insert(key(1));
        c.insert(key(2));
        // The cap evicts the oldest queue entry (key 1's first insert), not key 1 itself.
        assert!(c.contains(&key(1)));
        assert!(c.contains(&key(2)));
    }

    // With tokio's clock paused, time moves only when a test advances it: expiry is checked at
    // its exact boundary, without waiting.

    #[tokio::test(start_paused = true)]
    async fn a_key_is_forgotten_exactly_when_its_ttl_passes() {
        let ttl = Duration::from_secs(30);
        let mut c = NegativeCache::new(ttl, 100);
        c.insert(key(1));
        tokio::time::advance(Duration::from_secs(10)).await;
        c.insert(key(2));
        tokio::time::advance(Duration::from_secs(20) - Duration::from_millis(1)).await;
        assert!(c.contains(&key(1)), "1 ms before its TTL");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!c.contains(&key(1)), "at its TTL");
        assert!(c.contains(&key(2)), "inserted 10 s later");
        // Expired entries stay in the map until an insert takes them off the queue's front.
        assert_eq!(c.len(), 2);
        c.insert(key(3));
        assert_eq!(c.len(), 2, "key 1 dropped; keys 2 and 3 kept");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!c.contains(&key(2)));
        assert!(c.contains(&key(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_inserted_again_lives_a_full_ttl_from_its_last_insert() {
        let ttl = Duration::from_secs(30);
        let mut c = NegativeCache::new(ttl, 100);
        c.insert(key(1));
        tokio::time::advance(Duration::from_secs(20)).await;
        c.insert(key(1));
        // 40 s after the first insert: that one expires and leaves the queue on the next
        // insert, but the map keeps the second.
        tokio::time::advance(Duration::from_secs(20)).await;
        c.insert(key(2));
        assert!(c.contains(&key(1)), "20 s after its last insert");
        assert_eq!(c.len(), 2);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!c.contains(&key(1)), "30 s after its last insert");
        assert!(c.contains(&key(2)));
    }
}
