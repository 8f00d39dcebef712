//! A run's summary (JSON, with k6-style threshold verdicts), the live progress line, and (in
//! `page`) the HTML report.

mod page;

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::run::{LoadConfig, Model, Scenario};
use crate::stats::{OpStats, Stats};
use crate::threshold::{Figures, Verdict};

pub use page::html;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    pub ok: u64,
    pub errors: u64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub second: usize,
    pub requests: u64,
    pub errors: u64,
    pub bets: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebSockets {
    pub opened: u64,
    pub messages: u64,
    pub reconnects: u64,
    pub failures: u64,
    /// Times a player was without a socket for more than a second, and the longest time.
    pub gaps_over_1s: u64,
    pub longest_gap_ms: u64,
}

/// What the players saw go wrong, told apart: answers that were not 2xx, connections refused
/// (nothing listening: the request was never sent), connections reset or closed before the
/// answer (it may have been acted on), other transport failures (timeouts, failed connects),
/// and bets never acknowledged after every retry with their key.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Failures {
    pub non_2xx_answers: u64,
    pub refused_connections: u64,
    pub reset_connections: u64,
    pub other_transport: u64,
    pub bets_never_acknowledged: u64,
}

impl Failures {
    /// From the count of each outcome label ("201", "503", "refused", "reset", …).
    pub fn of(outcomes: &BTreeMap<String, u64>, bets_never_acknowledged: u64) -> Failures {
        let mut failures = Failures {
            bets_never_acknowledged,
            ..Failures::default()
        };
        for (label, &count) in outcomes {
            match (label.as_str(), label.parse::<u16>()) {
                (_, Ok(status)) if (200..300).contains(&status) => {}
                (_, Ok(_)) => failures.non_2xx_answers += count,
                (crate::player::REFUSED, _) => failures.refused_connections += count,
                (crate::player::RESET, _) => failures.reset_connections += count,
                _ => failures.other_transport += count,
            }
        }
        failures
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target: String,
    pub model: String,
    pub scenario: String,
    pub players: usize,
    pub ramp_s: f64,
    pub duration_s: f64,
    pub elapsed_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub error_percent: f64,
    pub rps: f64,
    pub bets: u64,
    pub bets_per_s: f64,
    pub dropped: u64,
    /// Latency is measured from each request's intended start (coordinated omission
    /// corrected); closed loops with think time also use HdrHistogram's record_correct.
    pub latency_measured_from: &'static str,
    pub latency_ms: Latency,
    pub ops: BTreeMap<String, OpSummary>,
    /// Open model: the initial players' sign-in and lobby, before measuring began.
    pub setup: BTreeMap<String, OpSummary>,
    pub outcomes: BTreeMap<String, u64>,
    pub failures: Failures,
    pub websockets: WebSockets,
    pub cpu_seconds: f64,
    pub requests_per_cpu_second: f64,
    pub timeline: Vec<Point>,
    pub thresholds: Vec<Verdict>,
    pub pass: bool,
    /// Every percentile a threshold can name (per mille, ms); left out of the JSON.
    #[serde(skip)]
    pub all_quantiles: Vec<(u32, f64)>,
}

impl Figures for Summary {
    fn percentile_ms(&self, per_mille: u32) -> f64 {
        self.percentile(per_mille)
    }
    fn max_ms(&self) -> f64 {
        self.latency_ms.max
    }
    fn mean_ms(&self) -> f64 {
        self.latency_ms.mean
    }
    fn error_percent(&self) -> f64 {
        self.error_percent
    }
    fn rps(&self) -> f64 {
        self.rps
    }
    fn bets_per_s(&self) -> f64 {
        self.bets_per_s
    }
}

impl Summary {
    fn percentile(&self, per_mille: u32) -> f64 {
        self.all_quantiles
            .iter()
            .find(|(p, _)| *p == per_mille)
            .map(|(_, v)| *v)
            .unwrap_or(f64::NAN)
    }
}

/// Every percentile a threshold can name, p1..p99 and p99.9, in milliseconds.
fn quantiles(h: &Histogram<u64>) -> Vec<(u32, f64)> {
    (1..=99)
        .map(|p| p * 10)
        .chain([999])
        .map(|per_mille| {
            let q = per_mille as f64 / 1000.0;
            (per_mille, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

pub fn summarise(config: &LoadConfig, stats: &Stats, cpu_seconds: f64) -> Summary {
    let elapsed = stats.start.elapsed().as_secs_f64().max(1e-9);
    // Seconds at the full rate: the ramp counts half (the rate climbs linearly from zero).
    let window = (config.ramp.as_secs_f64() / 2.0 + config.duration.as_secs_f64()).min(elapsed);
    let requests = stats.requests();
    let errors = stats.errors();
    let mut summary = Summary {
        target: config.target.clone(),
        model: model_name(&config.model),
        scenario: match config.scenario {
            Scenario::Casino => "casino".into(),
            Scenario::Lobby => "lobby".into(),
        },
        players: config.players,
        ramp_s: config.ramp.as_secs_f64(),
        duration_s: config.duration.as_secs_f64(),
        elapsed_s: elapsed,
        requests,
        errors,
        error_percent: if requests == 0 {
            0.0
        } else {
            100.0 * errors as f64 / requests as f64
        },
        rps: requests as f64 / elapsed,
        bets: stats.bets,
        bets_per_s: stats.bets as f64 / window.max(1e-9),
        dropped: stats.dropped,
        latency_measured_from: "intended start (coordinated omission corrected)",
        latency_ms: Latency::of(&stats.all),
        ops: op_summaries(&stats.ops),
        setup: op_summaries(&stats.setup),
        outcomes: stats.outcomes.clone(),
        failures: Failures::of(&stats.outcomes, stats.bets_failed),
        websockets: WebSockets::of(stats),
        cpu_seconds,
        requests_per_cpu_second: requests as f64 / cpu_seconds.max(1e-9),
        timeline: timeline(stats),
        thresholds: Vec::new(),
        pass: true,
        all_quantiles: quantiles(&stats.all),
    };
    summary.thresholds = config
        .thresholds
        .iter()
        .map(|t| t.check(&summary))
        .collect();
    summary.pass = summary.thresholds.iter().all(|v| v.pass);
    summary
}

fn model_name(model: &Model) -> String {
    match *model {
        Model::Open {
            rate,
            new_players_per_s,
        } => format!("open: {rate}/s arrivals, {new_players_per_s} new players/s"),
        Model::Closed { think } => format!("closed: think {} ms", think.as_millis()),
    }
}

fn op_summaries(ops: &BTreeMap<&'static str, OpStats>) -> BTreeMap<String, OpSummary> {
    ops.iter()
        .map(|(op, s)| {
            let summary = OpSummary {
                ok: s.ok,
                errors: s.errors,
                latency_ms: Latency::of(&s.latency),
            };
            ((*op).to_owned(), summary)
        })
        .collect()
}

/// Requests, errors, bets and latency second by second.
fn timeline(stats: &Stats) -> Vec<Point> {
    stats
        .seconds
        .iter()
        .enumerate()
        .map(|(second, s)| Point {
            second,
            requests: s.ok + s.errors,
            errors: s.errors,
            bets: s.bets,
            p50_ms: s.latency.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: s.latency.value_at_quantile(0.99) as f64 / 1000.0,
        })
        .collect()
}

impl WebSockets {
    fn of(stats: &Stats) -> Self {
        WebSockets {
            opened: stats.ws_opened,
            messages: stats.ws_messages,
            reconnects: stats.ws_reconnects,
            failures: stats.ws_failures,
            gaps_over_1s: stats.ws_gaps_over_1s,
            longest_gap_ms: stats.ws_longest_gap_ms,
        }
    }
}

/// One line for stderr: the last complete second and the totals so far.
pub fn progress_line(stats: &Stats, in_flight: usize) -> String {
    let elapsed = stats.start.elapsed().as_secs();
    let last = elapsed
        .checked_sub(1)
        .and_then(|i| stats.seconds.get(i as usize));
    let (rps, errors, bets, p50, p99) = last.map_or((0, 0, 0, 0.0, 0.0), |s| {
        (
            s.ok + s.errors,
            s.errors,
            s.bets,
            s.latency.value_at_quantile(0.5) as f64 / 1000.0,
            s.latency.value_at_quantile(0.99) as f64 / 1000.0,
        )
    });
    format!(
        "[{elapsed:>4}s] {rps:>6} req/s {bets:>5} bets/s {errors:>4} errors/s  p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  in flight {in_flight:>5}  total {} req, {} errors, {} ws",
        stats.requests(),
        stats.errors(),
        stats.ws_opened
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn refused_and_reset_connections_are_told_apart_from_non_2xx_answers() {
        let outcomes = [
            ("200", 5),
            ("201", 7),
            ("503", 2),
            ("409", 1),
            ("refused", 3),
            ("reset", 4),
            ("transport", 1),
            ("connect", 1),
        ]
        .map(|(label, n)| (label.to_owned(), n))
        .into_iter()
        .collect();
        assert_eq!(
            super::Failures::of(&outcomes, 6),
            super::Failures {
                non_2xx_answers: 3,
                refused_connections: 3,
                reset_connections: 4,
                other_transport: 2,
                bets_never_acknowledged: 6,
            }
        );
    }

    use super::*;
    use crate::run::LoadConfig;
    use crate::threshold::Threshold;
    use std::time::{Duration, Instant};

    #[test]
    fn summary_checks_thresholds_and_renders_self_contained_html() {
        let start = Instant::now() - Duration::from_secs(3);
        let mut stats = Stats::new(start);
        for i in 0..300u64 {
            let t = start + Duration::from_millis(10 * i);
            stats.record(
                "bet",
                t,
                t + Duration::from_millis(2 + i % 5),
                "201",
                true,
                None,
            );
        }
        stats.record(
            "bet",
            start,
            start + Duration::from_millis(80),
            "503",
            false,
            None,
        );
        let mut config = LoadConfig::new(
            "http://127.0.0.1:1",
            Model::Closed {
                think: Duration::ZERO,
            },
        );
        config.duration = Duration::from_secs(3);
        config.thresholds = ["p99<50ms", "errors<0.1%", "p50<10ms"]
            .iter()
            .map(|e| Threshold::parse(e).unwrap())
            .collect();
        let summary = summarise(&config, &stats, 0.5);
        assert_eq!(summary.requests, 301);
        assert_eq!(summary.errors, 1);
        let verdicts: Vec<bool> = summary.thresholds.iter().map(|v| v.pass).collect();
        assert_eq!(verdicts, [true, false, true]);
        assert!(!summary.pass);
        assert_eq!(summary.timeline.len(), 3);
        let page = html(&summary);
        assert!(page.contains("<svg") && page.contains("<polyline"));
        assert!(!page.contains("<script") && !page.contains("https://"));
        assert!(page.contains("FAIL"));
    }
}
