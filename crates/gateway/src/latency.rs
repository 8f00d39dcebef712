//! A node's recent latency, and from it the hedge delay of requests that are safe to retry
//! (GET/HEAD/OPTIONS, or carrying an Idempotency-Key): a frozen node (SIGSTOP, a GC pause, a
//! stuck disk, a hung VM) holds a request for the whole freeze, so such a request also goes
//! to another node after `factor` times the node's p99 (never under `floor`, never over
//! `cap`), where the key makes sure it is applied at most once. The cap keeps
//! that promise just after a slow spell (a store outage leaves a p99 of seconds behind it for
//! a thousand answers) and while too little is known of the node: a frozen node then costs a
//! player the cap, not `factor` times the outage. The p99 comes from a small
//! histogram of doubling buckets whose counts are halved every `HALVE_EVERY` answers, so it
//! follows the node's recent behaviour at the cost of a few atomic adds per request.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Upper bound of the first bucket; each next bucket doubles it (the last one is open).
const FIRST_BOUND: Duration = Duration::from_micros(500);
const BUCKETS: usize = 16;
/// Answers between two halvings of every count.
const HALVE_EVERY: u32 = 1_024;
/// Fewer answers than this say nothing yet: the full upstream timeout applies.
const MIN_SAMPLES: u32 = 20;

#[derive(Debug, Clone, Copy)]
pub struct TryTimeout {
    /// Lowest per-try timeout, whatever the node's latency.
    pub floor: Duration,
    /// The per-try timeout is the node's p99 times this.
    pub factor: u32,
    /// Highest per-try timeout, whatever the node's latency.
    pub cap: Duration,
}

impl Default for TryTimeout {
    fn default() -> Self {
        TryTimeout {
            floor: Duration::from_millis(250),
            factor: 4,
            cap: Duration::from_millis(750),
        }
    }
}

#[derive(Default)]
pub struct Recent {
    buckets: [AtomicU32; BUCKETS],
    since_halving: AtomicU32,
}

fn bucket(took: Duration) -> usize {
    let mut bound = FIRST_BOUND;
    for index in 0..BUCKETS - 1 {
        if took <= bound {
            return index;
        }
        bound *= 2;
    }
    BUCKETS - 1
}

fn upper_bound(index: usize) -> Duration {
    FIRST_BOUND * 2u32.pow(index as u32)
}

impl Recent {
    /// Counts one answer (or failure) of the node after `took`.
    pub fn observe(&self, took: Duration) {
        self.buckets[bucket(took)].fetch_add(1, Ordering::Relaxed);
        if self.since_halving.fetch_add(1, Ordering::Relaxed) + 1 >= HALVE_EVERY {
            self.since_halving.store(0, Ordering::Relaxed);
            for count in &self.buckets {
                let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n / 2));
            }
        }
    }

    /// The recent 99th percentile (the upper bound of its bucket); `None` with too few
    /// answers to tell.
    pub fn p99(&self) -> Option<Duration> {
        let counts: [u32; BUCKETS] =
            std::array::from_fn(|index| self.buckets[index].load(Ordering::Relaxed));
        let total: u32 = counts.iter().sum();
        if total < MIN_SAMPLES {
            return None;
        }
        let wanted = total - total / 100;
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Some(upper_bound(index));
            }
        }
        Some(upper_bound(BUCKETS - 1))
    }

    /// How long one try of a retry-safe request may wait for this node's answer.
    pub fn try_timeout(&self, rule: &TryTimeout, ceiling: Duration) -> Duration {
        let limit = match self.p99() {
            Some(p99) => (p99 * rule.factor).max(rule.floor).min(rule.cap),
            None => rule.cap,
        };
        limit.min(ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_follows_the_recent_p99_with_a_floor() {
        let recent = Recent::default();
        let rule = TryTimeout::default();
        let ceiling = Duration::from_secs(10);
        assert_eq!(
            recent.try_timeout(&rule, ceiling),
            rule.cap,
            "nothing known yet"
        );
        for _ in 0..200 {
            recent.observe(Duration::from_millis(3));
        }
        assert_eq!(recent.p99(), Some(Duration::from_millis(4)));
        assert_eq!(recent.try_timeout(&rule, ceiling), rule.floor);
        for _ in 0..200 {
            recent.observe(Duration::from_millis(120));
        }
        assert_eq!(recent.p99(), Some(Duration::from_millis(128)));
        assert_eq!(
            recent.try_timeout(&rule, ceiling),
            Duration::from_millis(512)
        );
        // Just after a slow spell (a store outage), the p99 is seconds: the cap holds.
        for _ in 0..200 {
            recent.observe(Duration::from_secs(2));
        }
        assert_eq!(recent.try_timeout(&rule, ceiling), rule.cap);
        // Slow answers age out: after many fast ones, the p99 is fast again.
        for _ in 0..(HALVE_EVERY * 12) {
            recent.observe(Duration::from_millis(3));
        }
        assert_eq!(recent.try_timeout(&rule, ceiling), rule.floor);
        assert_eq!(
            recent.try_timeout(&rule, Duration::from_millis(100)),
            Duration::from_millis(100),
            "never over the upstream timeout"
        );
    }
}
