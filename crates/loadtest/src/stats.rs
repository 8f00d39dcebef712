//! What a run measured. Every latency is recorded from the request's INTENDED start (its slot
//! in the open model's schedule, or, for a request that follows another, the moment it was
//! due), so a stalled server cannot hide its stall by slowing the generator down: this is the
//! coordinated-omission correction. Closed-model players with a think time also record with
//! `record_correct` and the think time as the expected interval. Per-second buckets keep the
//! timeline for the report; failed and slow requests are kept with their time for the drills.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// A request slower than this counts as a stall when drills decide when service recovered.
pub const SLOW: Duration = Duration::from_secs(1);
const MAX_MICROS: u64 = 120_000_000;

fn histogram(significant: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, significant).expect("valid histogram bounds")
}

#[derive(Clone)]
pub struct OpStats {
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
}

impl OpStats {
    fn new() -> Self {
        OpStats {
            latency: histogram(3),
            ok: 0,
            errors: 0,
        }
    }
}

/// One second of the run, by completion time.
#[derive(Clone)]
pub struct Second {
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub bets: u64,
}

/// A failed or slow request: when it completed, how long it took, what failed.
#[derive(Debug, Clone)]
pub struct Incident {
    pub at: Instant,
    pub latency: Duration,
    pub failed: bool,
    pub what: String,
}

pub struct Stats {
    /// When measuring began: the timeline's second 0.
    pub start: Instant,
    /// False while the players sign in before an open-model run: those requests go to
    /// `setup` only, so the figures and thresholds describe the load itself.
    measuring: bool,
    pub setup: BTreeMap<&'static str, OpStats>,
    pub all: Histogram<u64>,
    pub ops: BTreeMap<&'static str, OpStats>,
    pub seconds: Vec<Second>,
    /// Count of answers and failures by label ("201", "503", "transport").
    pub outcomes: BTreeMap<String, u64>,
    pub incidents: Vec<Incident>,
    /// Acknowledged new rounds (fresh bets).
    pub bets: u64,
    /// Bets never acknowledged: refused, or unanswered after every try with their key.
    pub bets_failed: u64,
    /// Open-model arrivals skipped because too many requests were in flight.
    pub dropped: u64,
    pub ws_opened: u64,
    pub ws_messages: u64,
    pub ws_reconnects: u64,
    pub ws_failures: u64,
    /// Times a player was left without a WebSocket for more than a second, and the longest.
    pub ws_gaps_over_1s: u64,
    pub ws_longest_gap_ms: u64,
    /// Set by a drill at its fault: the first fresh bet acknowledged at or after it is kept
    /// in `first_bet_after_watch` (the end of a write outage).
    watch_bets_from: Option<Instant>,
    pub first_bet_after_watch: Option<Instant>,
}

const MAX_INCIDENTS: usize = 100_000;

/// The outcome label of an answer: its status code, spelled without a format per request
/// for the usual ones.
pub fn status_label(status: u16) -> Cow<'static, str> {
    const USUAL: [(u16, &str); 16] = [
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (303, "303"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (409, "409"),
        (413, "413"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    match USUAL.iter().find(|(code, _)| *code == status) {
        Some((_, label)) => Cow::Borrowed(label),
        None => Cow::Owned(status.to_string()),
    }
}

impl Stats {
    pub fn new(start: Instant) -> Self {
        Stats {
            start,
            measuring: true,
            setup: BTreeMap::new(),
            all: histogram(3),
            ops: BTreeMap::new(),
            seconds: Vec::new(),
            outcomes: BTreeMap::new(),
            incidents: Vec::new(),
            bets: 0,
            bets_failed: 0,
            dropped: 0,
            ws_opened: 0,
            ws_messages: 0,
            ws_reconnects: 0,
            ws_failures: 0,
            ws_gaps_over_1s: 0,
            ws_longest_gap_ms: 0,
            watch_bets_from: None,
            first_bet_after_watch: None,
        }
    }

    /// Keeps the first fresh bet acknowledged from `from` on.
    pub fn watch_bets_from(&mut self, from: Instant) {
        self.watch_bets_from = Some(from);
        self.first_bet_after_watch = None;
    }

    /// Records into `setup` until `begin`.
    pub fn setting_up(&mut self) {
        self.measuring = false;
    }

    /// Whether the load itself has begun (the set-up is over).
    pub fn measuring(&self) -> bool {
        self.measuring
    }

    /// Starts measuring now: second 0 of the timeline.
    pub fn begin(&mut self, at: Instant) {
        self.start = at;
        self.measuring = true;
    }

    fn second(&mut self, at: Instant) -> &mut Second {
        let index = at.saturating_duration_since(self.start).as_secs() as usize;
        while self.seconds.len() <= index {
            self.seconds.push(Second {
                latency: histogram(2),
                ok: 0,
                errors: 0,
                bets: 0,
            });
        }
        &mut self.seconds[index]
    }

    /// Records one request of kind `op` meant to start at `intended`, answered (or failed) at
    /// `done`. `expected_interval` turns on HdrHistogram's own correction for closed loops.
    pub fn record(
        &mut self,
        op: &'static str,
        intended: Instant,
        done: Instant,
        outcome: &str,
        ok: bool,
        expected_interval: Option<Duration>,
    ) {
        let latency = done.saturating_duration_since(intended);
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        let record = |h: &mut Histogram<u64>| match expected_interval {
            Some(interval) => h
                .record_correct(micros, (interval.as_micros() as u64).max(1))
                .expect("value within bounds"),
            None => h.saturating_record(micros),
        };
        if !self.measuring {
            let stats = self.setup.entry(op).or_insert_with(OpStats::new);
            record(&mut stats.latency);
            if ok {
                stats.ok += 1;
            } else {
                stats.errors += 1;
            }
            return;
        }
        record(&mut self.all);
        let stats = self.ops.entry(op).or_insert_with(OpStats::new);
        record(&mut stats.latency);
        if ok {
            stats.ok += 1;
        } else {
            stats.errors += 1;
        }
        match self.outcomes.get_mut(outcome) {
            Some(count) => *count += 1,
            None => {
                self.outcomes.insert(outcome.to_owned(), 1);
            }
        }
        let second = self.second(done);
        second.latency.saturating_record(micros);
        if ok {
            second.ok += 1;
        } else {
            second.errors += 1;
        }
        if (!ok || latency >= SLOW) && self.incidents.len() < MAX_INCIDENTS {
            self.incidents.push(Incident {
                at: done,
                latency,
                failed: !ok,
                what: format!("{op} {outcome}"),
            });
        }
    }

    pub fn count_bet(&mut self, at: Instant) {
        if self.first_bet_after_watch.is_none() && self.watch_bets_from.is_some_and(|w| at >= w) {
            self.first_bet_after_watch = Some(at);
        }
        self.bets += 1;
        self.second(at).bets += 1;
    }

    pub fn requests(&self) -> u64 {
        self.all.len()
    }

    pub fn errors(&self) -> u64 {
        self.ops.values().map(|o| o.errors).sum()
    }

    pub fn setup_errors(&self) -> u64 {
        self.setup.values().map(|o| o.errors).sum()
    }

    /// The last failed or slow request that completed at or after `since`.
    pub fn last_trouble_since(&self, since: Instant) -> Option<&Incident> {
        self.incidents
            .iter()
            .filter(|i| i.at >= since)
            .max_by_key(|i| i.at)
    }

    pub fn failures_between(&self, from: Instant, to: Instant) -> u64 {
        self.incidents
            .iter()
            .filter(|i| i.failed && i.at >= from && i.at <= to)
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_label_is_its_code() {
        for status in [100, 200, 201, 299, 303, 429, 503, 599] {
            assert_eq!(status_label(status), status.to_string());
        }
    }

    #[test]
    fn latency_counts_from_the_intended_start() {
        let start = Instant::now();
        let mut stats = Stats::new(start);
        // Due at 0 ms, but the generator only got to send it at 900 ms; answered at 910 ms.
        stats.record(
            "bet",
            start,
            start + Duration::from_millis(910),
            "201",
            true,
            None,
        );
        let p = stats.all.value_at_quantile(0.5);
        assert!((905_000..=915_000).contains(&p), "{p}");
    }

    #[test]
    fn closed_loop_correction_fills_the_stall() {
        let start = Instant::now();
        let mut plain = Stats::new(start);
        let mut corrected = Stats::new(start);
        for i in 0..99u64 {
            let t = start + Duration::from_millis(10 * i);
            plain.record("bet", t, t + Duration::from_millis(1), "201", true, None);
            corrected.record(
                "bet",
                t,
                t + Duration::from_millis(1),
                "201",
                true,
                Some(Duration::from_millis(10)),
            );
        }
        // One 1-second stall.
        let t = start + Duration::from_secs(1);
        plain.record("bet", t, t + Duration::from_secs(1), "201", true, None);
        corrected.record(
            "bet",
            t,
            t + Duration::from_secs(1),
            "201",
            true,
            Some(Duration::from_millis(10)),
        );
        // Uncorrected, the stall is 1% of samples and p90 looks fine; corrected, the ~99
        // requests that should have been sent during the stall are counted as waiting.
        assert!(plain.all.value_at_quantile(0.9) < 2_000);
        assert!(corrected.all.value_at_quantile(0.9) > 400_000);
        assert_eq!(plain.all.len(), 100);
        assert!(corrected.all.len() > 190);
    }

    #[test]
    fn failures_and_stalls_are_kept_with_their_time() {
        let start = Instant::now();
        let mut stats = Stats::new(start);
        let t = start + Duration::from_millis(1500);
        stats.record(
            "bet",
            start,
            start + Duration::from_millis(2),
            "201",
            true,
            None,
        );
        stats.record("bet", start, t, "201", true, None);
        stats.record(
            "lobby",
            t,
            t + Duration::from_millis(3),
            "transport",
            false,
            None,
        );
        assert_eq!(stats.errors(), 1);
        assert_eq!(stats.incidents.len(), 2);
        assert_eq!(
            stats.last_trouble_since(start).unwrap().what,
            "lobby transport"
        );
        assert_eq!(stats.failures_between(start, t + Duration::from_secs(1)), 1);
        assert_eq!(stats.seconds.len(), 2);
        assert_eq!(
            (
                stats.seconds[0].ok,
                stats.seconds[1].ok,
                stats.seconds[1].errors
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn setup_is_kept_apart_from_the_measured_load() {
        let start = Instant::now();
        let mut stats = Stats::new(start);
        stats.setting_up();
        assert!(!stats.measuring());
        let slow = start + Duration::from_millis(300);
        stats.record("sign_in", start, slow, "transport", false, None);
        let begin = start + Duration::from_secs(2);
        stats.begin(begin);
        stats.record(
            "bet",
            begin,
            begin + Duration::from_millis(2),
            "201",
            true,
            None,
        );
        assert_eq!(
            (stats.requests(), stats.errors(), stats.setup_errors()),
            (1, 0, 1)
        );
        assert_eq!(stats.seconds.len(), 1);
        assert!(stats.all.max() < 10_000);
    }
}
