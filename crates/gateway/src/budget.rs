//! Retry budget: retries may add at most a fixed share of the traffic (plus a small floor per
//! second), so that when every node struggles, retries cannot multiply the load.

use std::sync::Mutex;
use std::time::Instant;

pub struct RetryBudget {
    state: Mutex<(f64, Instant)>,
    /// Tokens deposited per request (0.2 = retries up to 20% of requests).
    ratio: f64,
    /// Tokens added per second whatever the traffic.
    floor_per_second: f64,
    capacity: f64,
}

impl RetryBudget {
    pub fn new(ratio: f64, floor_per_second: f64) -> Self {
        let capacity = (floor_per_second * 10.0).max(10.0);
        RetryBudget {
            state: Mutex::new((capacity, Instant::now())),
            ratio,
            floor_per_second,
            capacity,
        }
    }

    fn refill(&self, tokens: &mut f64, at: &mut Instant) {
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.floor_per_second)
            .min(self.capacity);
        *at = now;
    }

    /// Called for each request.
    pub fn deposit(&self) {
        let mut guard = self.state.lock().expect("budget lock");
        let (tokens, at) = &mut *guard;
        self.refill(tokens, at);
        *tokens = (*tokens + self.ratio).min(self.capacity);
    }

    /// Takes one retry from the budget, if there is one.
    pub fn try_withdraw(&self) -> bool {
        let mut guard = self.state.lock().expect("budget lock");
        let (tokens, at) = &mut *guard;
        self.refill(tokens, at);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
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
