//! When each simulated request is meant to start. The open model (requests arrive at a target
//! rate whatever the server does) ramps the rate up linearly, then holds it; the closed model
//! (a fixed number of players who each wait for their answer, think, and play again) starts
//! its players evenly over the ramp-up. Latency is measured from these intended times.

use std::time::Duration;

use crate::error::LoadError;

/// Arrivals at `rate` per second after a linear ramp from zero over `ramp`, for `steady`.
#[derive(Debug, Clone, Copy)]
pub struct OpenSchedule {
    rate: f64,
    ramp: f64,
    steady: f64,
}

impl OpenSchedule {
    pub fn new(rate: f64, ramp: Duration, steady: Duration) -> Result<Self, LoadError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(LoadError::Config(format!(
                "the arrival rate must be above zero, got {rate}"
            )));
        }
        Ok(OpenSchedule {
            rate,
            ramp: ramp.as_secs_f64(),
            steady: steady.as_secs_f64(),
        })
    }

    pub fn length(&self) -> Duration {
        Duration::from_secs_f64(self.ramp + self.steady)
    }

    /// How many arrivals the whole schedule holds.
    pub fn total(&self) -> u64 {
        (self.rate * (self.ramp / 2.0 + self.steady)).floor() as u64
    }

    /// Intended start of arrival `k` (0-based) from the start of the run; `None` past the end.
    /// Arrivals by time t are rate·t²/(2·ramp) during the ramp and rate·(t − ramp/2) after it;
    /// arrival k is when that count reaches k + 1.
    pub fn offset(&self, k: u64) -> Option<Duration> {
        let n = k as f64 + 1.0;
        let ramp_arrivals = self.rate * self.ramp / 2.0;
        let t = if n <= ramp_arrivals {
            (2.0 * n * self.ramp / self.rate).sqrt()
        } else {
            self.ramp + (n - ramp_arrivals) / self.rate
        };
        (t <= self.ramp + self.steady + 1e-9).then(|| Duration::from_secs_f64(t))
    }
}

/// When closed-model player `i` of `players` starts: evenly over the ramp-up.
pub fn closed_start(i: usize, players: usize, ramp: Duration) -> Duration {
    if players == 0 {
        return Duration::ZERO;
    }
    ramp.mul_f64(i as f64 / players as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrivals_between(s: &OpenSchedule, from: f64, to: f64) -> usize {
        (0..)
            .map_while(|k| s.offset(k))
            .filter(|t| (from..to).contains(&t.as_secs_f64()))
            .count()
    }

    #[test]
    fn steady_rate_is_held_exactly() {
        let s = OpenSchedule::new(200.0, Duration::ZERO, Duration::from_secs(5)).unwrap();
        assert_eq!(s.total(), 1000);
        for second in 0..5 {
            let n = arrivals_between(&s, second as f64, second as f64 + 1.0);
            assert!((199..=201).contains(&n), "second {second}: {n}");
        }
        assert_eq!((0..).map_while(|k| s.offset(k)).count(), 1000);
    }

    #[test]
    fn ramp_is_linear_then_steady() {
        let s = OpenSchedule::new(100.0, Duration::from_secs(4), Duration::from_secs(2)).unwrap();
        // Rate at t is 25·t during the ramp: arrivals in [1,2) = 25·(4−1)/2 = 37.5.
        let n = arrivals_between(&s, 1.0, 2.0);
        assert!((37..=38).contains(&n), "{n}");
        let n = arrivals_between(&s, 3.0, 4.0);
        assert!((87..=88).contains(&n), "{n}");
        let n = arrivals_between(&s, 4.0, 5.0);
        assert!((99..=101).contains(&n), "{n}");
        let offsets: Vec<_> = (0..).map_while(|k| s.offset(k)).collect();
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(offsets.len() as u64, s.total());
        assert!(*offsets.last().unwrap() <= s.length());
    }

    #[test]
    fn zero_or_negative_rates_are_refused() {
        assert!(OpenSchedule::new(0.0, Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(OpenSchedule::new(f64::NAN, Duration::ZERO, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn closed_players_start_evenly() {
        let ramp = Duration::from_secs(10);
        assert_eq!(closed_start(0, 4, ramp), Duration::ZERO);
        assert_eq!(closed_start(2, 4, ramp), Duration::from_secs(5));
        assert_eq!(closed_start(0, 0, ramp), Duration::ZERO);
    }
}
