//! A node's recent latency, and from it the hedge delay of requests that are safe to retry
//! (GET/HEAD/OPTIONS, or carrying an Idempotency-Key): a frozen node (SIGSTOP, a GC pause, a
//! stuck disk, a hung VM) holds a request for the whole freeze, so such a request also goes
//! to another node after `factor` times the node's p99 (never under `floor`, never over
//! `cap`), where the key makes sure it is applied at most once. The cap keeps that promise
//! during and just after a slow spell (a store outage makes the p99 seconds) and while too
//! little is known of the node: a frozen node then costs a player the cap, not `factor`
//! times the outage.
//!
//! The p99 is that of the answers of the last `WINDOW` to two `WINDOW`s of time: two
//! histograms of doubling buckets, the current window's and the one before, the older
//! emptied and reused as each window begins, for a few atomic operations per answer. Recent
//! means recent in time: the counts used to be halved every 1 024 answers, so at a drill's
//! or a quiet night's few answers a second a store outage kept every node's hedge delay at
//! the cap for minutes after it ended, and a node frozen then cost its players the cap
//! plus the other node's answer (over a second, seen in CI) where the floor was due.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bound of the first bucket; each next bucket doubles it (the last one is open).
const FIRST_BOUND: Duration = Duration::from_micros(500);
const BUCKETS: usize = 16;
/// How long each window of answers lasts: the p99 covers the last one to two.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Fewer answers than this say nothing yet: the cap applies.
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
            cap: Duration::from_millis(500),
        }
    }
}

type Histogram = [AtomicU32; BUCKETS];

pub struct Recent {
    /// The counts of window `n` are in `windows[n % 2]`.
    windows: [Histogram; 2],
    /// The number of the newest window any answer was counted in (whole `WINDOW`s since
    /// `born`).
    newest: AtomicU64,
    born: Instant,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            windows: Default::default(),
            newest: AtomicU64::new(0),
            born: Instant::now(),
        }
    }
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

fn empty(histogram: &Histogram) {
    for count in histogram {
        count.store(0, Ordering::Relaxed);
    }
}

impl Recent {
    /// The number of the window `now` falls in.
    fn window_at(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.born).as_millis() / WINDOW.as_millis()) as u64
    }

    /// Counts one answer (or failure) of the node after `took`, at `now`.
    pub fn observe(&self, took: Duration, now: Instant) {
        let window = self.window_at(now);
        let newest = self.newest.load(Ordering::Relaxed);
        if window > newest
            && self
                .newest
                .compare_exchange(newest, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // This answer begins a window: the histogram it reuses held window - 2, or
            // older; with no answer in the last window the other one is stale too. (An
            // answer counted meanwhile by another thread may be lost: a few among many.)
            empty(&self.windows[(window % 2) as usize]);
            if window > newest + 1 {
                empty(&self.windows[((window + 1) % 2) as usize]);
            }
        }
        let counted = self.newest.load(Ordering::Relaxed).max(window);
        self.windows[(counted % 2) as usize][bucket(took)].fetch_add(1, Ordering::Relaxed);
    }

    /// The 99th percentile at `now` of the answers of the last window or two (the upper
    /// bound of its bucket); `None` with too few answers to tell.
    pub fn p99(&self, now: Instant) -> Option<Duration> {
        let newest = self.newest.load(Ordering::Relaxed);
        let counts: [u32; BUCKETS] = match self.window_at(now).saturating_sub(newest) {
            0 => std::array::from_fn(|index| {
                self.windows[0][index].load(Ordering::Relaxed)
                    + self.windows[1][index].load(Ordering::Relaxed)
            }),
            // No answer yet in this window: the newest one is the window before.
            1 => std::array::from_fn(|index| {
                self.windows[(newest % 2) as usize][index].load(Ordering::Relaxed)
            }),
            _ => return None,
        };
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

    /// How long one try of a retry-safe request sent at `now` may wait for this node's
    /// answer.
    pub fn try_timeout(&self, rule: &TryTimeout, ceiling: Duration, now: Instant) -> Duration {
        let limit = match self.p99(now) {
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
        let now = Instant::now();
        assert_eq!(
            recent.try_timeout(&rule, ceiling, now),
            rule.cap,
            "nothing known yet"
        );
        for _ in 0..200 {
            recent.observe(Duration::from_millis(3), now);
        }
        assert_eq!(recent.p99(now), Some(Duration::from_millis(4)));
        assert_eq!(recent.try_timeout(&rule, ceiling, now), rule.floor);
        for _ in 0..200 {
            recent.observe(Duration::from_millis(100), now);
        }
        assert_eq!(recent.p99(now), Some(Duration::from_millis(128)));
        assert_eq!(
            recent.try_timeout(&rule, ceiling, now),
            Duration::from_millis(500)
        );
        // During a slow spell (a store outage), the p99 is seconds: the cap holds.
        for _ in 0..200 {
            recent.observe(Duration::from_secs(2), now);
        }
        assert_eq!(recent.try_timeout(&rule, ceiling, now), rule.cap);
        assert_eq!(
            recent.try_timeout(&rule, Duration::from_millis(100), now),
            Duration::from_millis(100),
            "never over the upstream timeout"
        );
    }

    /// Before, the counts were halved every 1 024 answers: 200 slow answers of an outage
    /// then 60 fast ones over 12 s (a drill's, or a quiet night's, trickle) left the p99 at
    /// seconds and the hedge delay at the cap, and a node frozen then cost a player the cap
    /// plus the other node's answer. The outage's answers now leave with their windows.
    #[test]
    fn a_slow_spell_ages_out_with_time_even_at_a_trickle_of_answers() {
        let recent = Recent::default();
        let rule = TryTimeout::default();
        let ceiling = Duration::from_secs(10);
        let outage = Instant::now();
        for _ in 0..200 {
            recent.observe(Duration::from_secs(2), outage);
        }
        assert_eq!(recent.try_timeout(&rule, ceiling, outage), rule.cap);
        let mut now = outage;
        for _ in 0..60 {
            now += Duration::from_millis(200);
            recent.observe(Duration::from_millis(3), now);
        }
        assert!(now >= outage + 2 * WINDOW);
        assert_eq!(recent.try_timeout(&rule, ceiling, now), rule.floor);
    }

    /// A node that answered nothing for two windows is not known any more: the cap, not the
    /// p99 of answers long gone. One window of silence keeps the last window's answers.
    #[test]
    fn silence_forgets_the_answers_a_window_at_a_time() {
        let recent = Recent::default();
        let rule = TryTimeout::default();
        let ceiling = Duration::from_secs(10);
        let then = Instant::now();
        for _ in 0..50 {
            recent.observe(Duration::from_millis(3), then);
        }
        assert_eq!(
            recent.try_timeout(&rule, ceiling, then + WINDOW),
            rule.floor
        );
        assert_eq!(recent.p99(then + 2 * WINDOW), None);
        assert_eq!(
            recent.try_timeout(&rule, ceiling, then + 2 * WINDOW),
            rule.cap
        );
        // Answers after a long silence start afresh: the old window is not counted.
        for _ in 0..19 {
            recent.observe(Duration::from_millis(3), then + 3 * WINDOW);
        }
        assert_eq!(recent.p99(then + 3 * WINDOW), None);
    }
}
