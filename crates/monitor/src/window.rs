//! Good and total event counts over rolling windows: a fine ring of 10-second buckets covering
//! three days (every burn-rate window) and a coarse ring of hourly buckets covering the 30-day
//! SLO period (the error budget). Counts older than a ring's span fall out of it.

/// One ring of buckets; a slot remembers which bucket index it holds, so stale slots read as
/// empty without any sweeping.
#[derive(Debug, Clone)]
struct Ring {
    bucket_s: u64,
    slots: Vec<(u64, u64, u64)>,
}

impl Ring {
    fn new(bucket_s: u64, span_s: u64) -> Ring {
        Ring {
            bucket_s,
            slots: vec![(u64::MAX, 0, 0); span_s.div_ceil(bucket_s) as usize],
        }
    }

    fn add(&mut self, at_s: u64, good: u64, total: u64) {
        let index = at_s / self.bucket_s;
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(index % len) as usize];
        if slot.0 != index {
            *slot = (index, 0, 0);
        }
        slot.1 += good;
        slot.2 += total;
    }

    /// (good, total) over the `window_s` seconds ending at `now_s`, whole buckets.
    fn sum(&self, now_s: u64, window_s: u64) -> (u64, u64) {
        let last = now_s / self.bucket_s;
        let count = window_s
            .div_ceil(self.bucket_s)
            .min(self.slots.len() as u64);
        let len = self.slots.len() as u64;
        (0..count)
            .filter_map(|back| last.checked_sub(back))
            .map(|index| self.slots[(index % len) as usize])
            .filter(|(held, _, _)| *held != u64::MAX)
            .filter(|(held, _, _)| *held <= last && last - *held < count)
            .fold((0, 0), |(g, t), (_, good, total)| (g + good, t + total))
    }

    fn span_s(&self) -> u64 {
        self.bucket_s * self.slots.len() as u64
    }
}

pub const FINE_BUCKET_S: u64 = 10;
pub const FINE_SPAN_S: u64 = 3 * 24 * 3600;
pub const COARSE_BUCKET_S: u64 = 3600;
pub const COARSE_SPAN_S: u64 = 30 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct EventWindow {
    fine: Ring,
    coarse: Ring,
}

impl Default for EventWindow {
    fn default() -> Self {
        EventWindow {
            fine: Ring::new(FINE_BUCKET_S, FINE_SPAN_S),
            coarse: Ring::new(COARSE_BUCKET_S, COARSE_SPAN_S),
        }
    }
}

impl EventWindow {
    /// Records `total` events at `at_s`, `good` of them good.
    pub fn add(&mut self, at_s: u64, good: u64, total: u64) {
        debug_assert!(good <= total);
        self.fine.add(at_s, good, total);
        self.coarse.add(at_s, good, total);
    }

    /// (good, total) over the last `window_s` seconds.
    pub fn sum(&self, now_s: u64, window_s: u64) -> (u64, u64) {
        if window_s <= self.fine.span_s() {
            self.fine.sum(now_s, window_s)
        } else {
            self.coarse.sum(now_s, window_s)
        }
    }

    /// Share of bad events over the window; `None` without events.
    pub fn error_ratio(&self, now_s: u64, window_s: u64) -> Option<f64> {
        let (good, total) = self.sum(now_s, window_s);
        (total > 0).then(|| (total - good) as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cover_exactly_the_window_and_forget_old_buckets() {
        let mut w = EventWindow::default();
        for t in 0..600 {
            w.add(t, 9, 10);
        }
        assert_eq!(w.sum(599, 300), (2_700, 3_000));
        assert_eq!(w.sum(599, 600), (5_400, 6_000));
        // Three days later the fine ring has wrapped past these buckets.
        assert_eq!(w.sum(599 + FINE_SPAN_S, 300), (0, 0));
        // The hourly ring still holds them for the 30-day budget.
        assert_eq!(w.sum(599 + FINE_SPAN_S, COARSE_SPAN_S), (5_400, 6_000));
        assert_eq!(w.sum(599 + COARSE_SPAN_S + 3600, COARSE_SPAN_S), (0, 0));
    }

    #[test]
    fn error_ratio() {
        let mut w = EventWindow::default();
        assert_eq!(w.error_ratio(0, 60), None);
        w.add(5, 99, 100);
        assert_eq!(w.error_ratio(5, 60), Some(0.01));
    }
}
