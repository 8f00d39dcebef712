//! The access log, bounded at any request rate: every answer of 500 or more and every
//! refusal the gateway makes itself is logged; other answers are logged individually up to
//! `SAMPLED_PER_SECOND` a second, and every `SUMMARY_EVERY` a summary line counts all answers
//! by status class. At 150 requests a second the old one-line-per-request log grew 20 KB a
//! second (tens of GB a day at the stack's target rates); this one is a few lines a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Individual lines a second for answers below 500.
pub const SAMPLED_PER_SECOND: u64 = 10;
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

pub struct AccessLog {
    started: Instant,
    /// The second (since `started`) whose lines `sampled` counts.
    second: AtomicU64,
    sampled: AtomicU64,
    /// Answers by class since the last summary: 2xx, 3xx, 4xx, 5xx.
    classes: [AtomicU64; 4],
    unlogged: AtomicU64,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            started: Instant::now(),
            second: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            classes: Default::default(),
            unlogged: AtomicU64::new(0),
        }
    }
}

impl AccessLog {
    /// Counts an answer and says whether it gets its own line.
    pub fn keep(&self, status: u16) -> bool {
        let class = usize::from(status / 100).clamp(2, 5) - 2;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            return true;
        }
        let now = self.started.elapsed().as_secs();
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.sampled.store(0, Ordering::Relaxed);
        }
        let kept = self.sampled.fetch_add(1, Ordering::Relaxed) < SAMPLED_PER_SECOND;
        if !kept {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
        }
        kept
    }

    /// Logs and resets the counts since the last summary (nothing when there were none).
    pub fn summarise(&self) {
        let [ok, redirect, client, server] =
            [0, 1, 2, 3].map(|i| self.classes[i].swap(0, Ordering::Relaxed));
        let unlogged = self.unlogged.swap(0, Ordering::Relaxed);
        if ok + redirect + client + server == 0 {
            return;
        }
        tracing::info!(
            seconds = SUMMARY_EVERY.as_secs(),
            status_2xx = ok,
            status_3xx = redirect,
            status_4xx = client,
            status_5xx = server,
            not_logged_individually = unlogged,
            "access summary"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_always_kept_and_the_rest_is_sampled() {
        let log = AccessLog::default();
        let kept = (0..1_000).filter(|_| log.keep(200)).count() as u64;
        assert!((SAMPLED_PER_SECOND..=2 * SAMPLED_PER_SECOND).contains(&kept));
        assert!((0..100).all(|_| log.keep(503)));
        assert_eq!(log.classes[0].load(Ordering::Relaxed), 1_000);
        assert_eq!(log.classes[3].load(Ordering::Relaxed), 100);
        log.summarise();
        assert_eq!(log.classes[0].load(Ordering::Relaxed), 0);
    }
}
