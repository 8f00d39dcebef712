//! Retry budget: retries may add at most a fixed share of the traffic (plus a small floor per
//! second), so that when every node struggles, retries cannot multiply the load.

use parking_lot::Mutex;
use std::time::Instant;

/// Tokens are counted in thousandths, so that shares like 0.2 add up exactly.
const MILLI: u64 = 1_000;

pub struct RetryBudget {
    state: Mutex<(u64, Instant)>,
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
            state: Mutex::new((per_second * 10, Instant::now())),
            per_request: (ratio.clamp(0.0, 1.0) * MILLI as f64).round() as u64,
            per_second,
            capacity,
        }
    }

    fn refill(&self, tokens: &mut u64, at: &mut Instant) {
        let now = Instant::now();
        let earned = (now.duration_since(*at).as_secs_f64() * self.per_second as f64) as u64;
        if earned > 0 {
            *tokens = (*tokens + earned).min(self.capacity);
            *at = now;
        }
    }

    /// Called for each request.
    pub fn deposit(&self) {
        let mut guard = self.state.lock();
        let (tokens, at) = &mut *guard;
        self.refill(tokens, at);
        *tokens = (*tokens + self.per_request).min(self.capacity);
    }

    /// Takes one retry from the budget, if there is one.
    pub fn try_withdraw(&self) -> bool {
        let mut guard = self.state.lock();
        let (tokens, at) = &mut *guard;
        self.refill(tokens, at);
        if *tokens >= MILLI {
            *tokens -= MILLI;
            true
        } else {
            false
        }
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
}
