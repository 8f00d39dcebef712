//! Retry budget: retries may add at most a fixed share of the traffic (plus a small floor per
//! second), so that when every node struggles, retries cannot multiply the load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// Tokens are counted in thousandths, so that shares like 0.2 add up exactly.
const MILLI: u64 = 1_000;

/// Every request deposits with one atomic update and no clock read; only a withdrawal (a
/// retry or a hedge, rare) takes the lock and the clock to add the floor earned since the last.
pub struct RetryBudget {
    /// Thousandths of a retry available now.
    tokens: AtomicU64,
    /// When the floor was last added.
    refilled: Mutex<Instant>,
    /// Thousandths of a retry deposited per request (200 = retries up to 20% of requests).
    per_request: u64,
    /// Thousandths of a retry added per second whatever the traffic.
    per_second: u64,
    capacity: u64,
}

impl RetryBudget {
    pub fn new(ratio: f64, floor_per_second: f64) -> Self {
        let per_second = (floor_per_second.max(0.0) * MILLI as f64) as u64;
        let capacity = (per_second * 10).max(100 * MILLI);
        RetryBudget {
            tokens: AtomicU64::new(per_second * 10),
            refilled: Mutex::new(Instant::now()),
            per_request: (ratio.clamp(0.0, 1.0) * MILLI as f64).round() as u64,
            per_second,
            capacity,
        }
    }

    /// Adds `amount` thousandths, up to the capacity.
    fn add(&self, amount: u64) {
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tokens| {
                (tokens < self.capacity).then(|| (tokens + amount).min(self.capacity))
            });
    }

    /// Called for each request.
    pub fn deposit(&self) {
        self.add(self.per_request);
    }

    /// Takes one retry from the budget, if there is one.
    pub fn try_withdraw(&self) -> bool {
        {
            let mut at = self.refilled.lock();
            let now = Instant::now();
            let earned = (now.duration_since(*at).as_secs_f64() * self.per_second as f64) as u64;
            if earned > 0 {
                self.add(earned);
                *at = now;
            }
        }
        self.tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tokens| {
                tokens.checked_sub(MILLI)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_the_share_of_requests() {
        let budget = RetryBudget::new(0.2, 0.0);
        // Drain the initial reserve.
        while budget.try_withdraw() {}
        for _ in 0..100 {
            budget.deposit();
        }
        let allowed = (0..100).filter(|_| budget.try_withdraw()).count();
        assert_eq!(allowed, 20);
    }

    /// Deposits from every lane at once add up exactly, with no lock to keep them apart.
    #[test]
    fn deposits_from_many_threads_at_once_all_count() {
        let budget = RetryBudget::new(0.2, 0.0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..100).for_each(|_| budget.deposit()));
            }
        });
        let allowed = (0..200).filter(|_| budget.try_withdraw()).count();
        assert_eq!(allowed, 80);
    }

    /// With no traffic, the floor still earns retries as time passes.
    #[test]
    fn the_floor_is_earned_with_time() {
        let budget = RetryBudget::new(0.2, 10.0);
        while budget.try_withdraw() {}
        let drained = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(250));
        let allowed = (0..10).filter(|_| budget.try_withdraw()).count();
        let earned = drained.elapsed().as_secs_f64() * 10.0;
        assert!(
            allowed >= 2 && allowed as f64 <= earned + 0.5,
            "{allowed} retries after {earned:.1} earned at 10/s"
        );
    }
}
