//! Byte budgets per client address: a token bucket per address that refills at a fixed rate.
//! Used for `?decode=true` views (`http.decodebytesperclient`): a cached view of an account
//! with a thousand imports is ~1.5 MB, and a few clients asking for it in a loop move hundreds
//! of MB/s through the server's CPU, which normal reads share (DESIGN §8). The cache removed
//! the verification; this bounds the copying.
//!
//! An answer is allowed when the bucket holds its size, or is full (so an answer larger than
//! the burst is still served, to an address that has been quiet); the bucket can then go
//! below zero, and the address waits until it has refilled.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once; beyond it, the ones whose bucket is full again are forgotten
/// (they are indistinguishable from new ones), and if that is not enough, all of them.
const MAX_CLIENTS: usize = 16_384;

/// Per-address budgets of `rate` bytes a second, up to `burst` bytes saved up.
pub struct ByteBudget {
    rate: f64,
    burst: f64,
    clients: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    bytes: f64,
    at: Instant,
}

impl ByteBudget {
    /// `rate` bytes a second per address, `burst` = twice that; `rate` 0 means no limit.
    pub fn new(rate: usize) -> ByteBudget {
        ByteBudget {
            rate: rate as f64,
            burst: 2.0 * rate as f64,
            clients: Mutex::default(),
        }
    }

    /// The configured rate, bytes a second.
    pub fn rate(&self) -> usize {
        self.rate as usize
    }

    /// Takes `bytes` from `client`'s budget at `now`, or says how long until it could.
    ///
    /// # Errors
    /// The wait, when the budget does not hold `bytes` (or `burst`, for larger answers).
    pub fn take(&self, client: IpAddr, bytes: usize, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            let (rate, burst) = (self.rate, self.burst);
            clients.retain(|_, b| b.refilled(now, rate, burst) < burst);
            if clients.len() >= MAX_CLIENTS {
                clients.clear();
            }
        }
        let bucket = clients.entry(client).or_insert(Bucket {
            bytes: self.burst,
            at: now,
        });
        let have = bucket.refilled(now, self.rate, self.burst);
        let need = (bytes as f64).min(self.burst);
        if have < need {
            *bucket = Bucket {
                bytes: have,
                at: now,
            };
            return Err(Duration::from_secs_f64((need - have) / self.rate));
        }
        *bucket = Bucket {
            bytes: have - bytes as f64,
            at: now,
        };
        Ok(())
    }
}

impl Bucket {
    /// The bytes held at `now`.
    fn refilled(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        (self.bytes + secs * rate).min(burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_burst_then_the_rate() {
        let budget = ByteBudget::new(1000);
        let t = Instant::now();
        // 2,000 bytes saved up.
        assert!(budget.take(A, 1500, t).is_ok());
        assert!(budget.take(A, 500, t).is_ok());
        let wait = budget.take(A, 500, t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another address has its own budget.
        assert!(budget.take(B, 2000, t).is_ok());
        // Half a second later 500 bytes are back.
        assert!(budget.take(A, 500, t + Duration::from_millis(500)).is_ok());
        assert!(budget.take(A, 1, t + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn an_answer_over_the_burst_is_served_to_a_quiet_address_then_paid_for() {
        let budget = ByteBudget::new(1000);
        let t = Instant::now();
        assert!(budget.take(A, 5000, t).is_ok());
        // 3,000 bytes in debt: the next answer waits for 3 s of refill plus its own size
        // (capped at the burst).
        let wait = budget.take(A, 10_000, t).unwrap_err();
        assert_eq!(wait, Duration::from_secs(5));
        assert!(budget.take(A, 10_000, t + Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn zero_is_no_limit() {
        let budget = ByteBudget::new(0);
        let t = Instant::now();
        for _ in 0..100 {
            assert!(budget.take(A, usize::MAX / 2, t).is_ok());
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
