//! Byte budgets per client address, for `?decode=true` views (`http.decodebytespersecond`). A
//! cached view of an account with a thousand imports is ~1.5 MB, and a few clients asking for
//! it in a loop move hundreds of MB/s through the server's CPU, which normal reads share
//! (DESIGN §8). The cache removed the verification; this bounds the copying.
//!
//! Each address has a rate and a burst (twice the rate). An answer that fits is sent at once;
//! one that does not is scheduled for when it will fit, and the request waits for that moment
//! (a timer, no work), up to [`MAX_WAIT`]; beyond that it is refused. Waiting rather than
//! refusing at once matters: a client that ignores `Retry-After` and asks again at once would
//! otherwise turn each refusal into a new connection, and a storm of those costs more than
//! the views did. This is the generic cell rate algorithm: per address, the time its budget
//! will be whole again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a view waits for its address's budget; beyond it, 503.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// Addresses tracked at once; beyond it, the ones whose budget is whole again are forgotten
/// (they are indistinguishable from new ones), and if that is not enough, all of them.
const MAX_CLIENTS: usize = 16_384;

/// Per-address budgets of `rate` bytes a second, up to twice that saved up.
pub struct ByteBudget {
    /// Bytes a second; 0: no limit.
    rate: f64,
    /// How far ahead of the rate an address may be: the burst, as time.
    burst: Duration,
    /// Per address: when its budget is whole again.
    clients: Mutex<HashMap<IpAddr, Instant>>,
}

impl ByteBudget {
    /// `rate` bytes a second per address, twice that saved up; `rate` 0 means no limit.
    pub fn new(rate: usize) -> ByteBudget {
        ByteBudget {
            rate: rate as f64,
            burst: Duration::from_secs(2),
            clients: Mutex::default(),
        }
    }

    /// The configured rate, bytes a second.
    pub fn rate(&self) -> usize {
        self.rate as usize
    }

    /// Charges `bytes` to `client` at `now`: how long the answer must wait to fit.
    ///
    /// # Errors
    /// The wait, when it would be over [`MAX_WAIT`]; nothing is charged then.
    pub fn take(&self, client: IpAddr, bytes: usize, now: Instant) -> Result<Duration, Duration> {
        if self.rate <= 0.0 {
            return Ok(Duration::ZERO);
        }
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, whole_at| *whole_at > now);
            if clients.len() >= MAX_CLIENTS {
                clients.clear();
            }
        }
        let whole_at = clients.get(&client).copied().unwrap_or(now).max(now);
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate);
        let new_whole_at = whole_at + cost;
        // It may be sent once what is owed, this answer included, is within the burst.
        let wait = new_whole_at.saturating_duration_since(now + self.burst);
        if wait > MAX_WAIT {
            return Err(wait);
        }
        clients.insert(client, new_whole_at);
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const MS: Duration = Duration::from_millis(1);

    /// Within a millisecond (float seconds).
    fn near(d: Duration, want: Duration) -> bool {
        d.abs_diff(want) < MS
    }

    #[test]
    fn a_burst_is_sent_at_once_then_views_wait_for_the_rate() {
        let budget = ByteBudget::new(1000);
        let t = Instant::now();
        // 2,000 bytes saved up.
        assert_eq!(budget.take(A, 1500, t), Ok(Duration::ZERO));
        assert_eq!(budget.take(A, 500, t), Ok(Duration::ZERO));
        // The next 500 fit half a second later, the 500 after them a second later.
        assert!(near(budget.take(A, 500, t).unwrap(), 500 * MS));
        assert!(near(budget.take(A, 500, t).unwrap(), 1000 * MS));
        // Another address has its own budget.
        assert_eq!(budget.take(B, 2000, t), Ok(Duration::ZERO));
        // Later, what was owed is paid.
        let later = t + Duration::from_secs(3);
        assert_eq!(budget.take(A, 2000, later), Ok(Duration::ZERO));
    }

    #[test]
    fn a_wait_over_the_limit_is_refused_and_charges_nothing() {
        let budget = ByteBudget::new(1000);
        let t = Instant::now();
        assert_eq!(budget.take(A, 2000, t), Ok(Duration::ZERO));
        assert!(near(budget.take(A, 1900, t).unwrap(), 1900 * MS));
        // 2,100 more would have to wait 4 s.
        let refused = budget.take(A, 2100, t).unwrap_err();
        assert!(near(refused, 4000 * MS), "{refused:?}");
        // Nothing was charged: 100 bytes still wait 2 s.
        assert!(near(budget.take(A, 100, t).unwrap(), 2000 * MS));
    }

    #[test]
    fn zero_is_no_limit() {
        let budget = ByteBudget::new(0);
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(budget.take(A, usize::MAX / 2, t), Ok(Duration::ZERO));
        }
    }

    #[test]
    fn the_table_stays_bounded() {
        let budget = ByteBudget::new(1000);
        let t = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            let _ = budget.take(ip, 10, t);
        }
        assert!(budget.clients.lock().unwrap().len() <= MAX_CLIENTS);
    }
}
