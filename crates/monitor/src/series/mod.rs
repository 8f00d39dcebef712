//! Recent metrics at 1 s resolution, kept in memory: each scrape of a target is turned into
//! one `Point` (host CPU, memory, disk, network rates, request rate, error rate, latency
//! p50/p99, bets per second, rounds in flight, store reachability) by differencing its
//! counters against the previous scrape. The dashboard's live charts and the rate-based alert
//! rules (latency, error rate, network) read these points. Hosts watched through
//! node_exporter and stores through postgres_exporter give the same fields from their own
//! series.

pub mod room;

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::promtext::Sample;

/// Points kept per target: 15 minutes at one a second.
pub const KEPT_POINTS: usize = 900;

/// One second of one target, derived from its scrape.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Point {
    pub ts_s: u64,
    pub up: bool,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    /// The fullest disk's used share.
    pub disk: Option<f64>,
    pub net_rx_bps: Option<f64>,
    pub net_tx_bps: Option<f64>,
    /// Player requests per second (the control plane's own scrapes and checks left out).
    pub requests_ps: Option<f64>,
    /// Share of those requests answered 5xx.
    pub error_ratio: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub bets_ps: Option<f64>,
    pub rounds_in_flight: Option<f64>,
    pub store_up: Option<f64>,
    /// The ledger store's batches over the last second (a node's writer): p99 of the time a
    /// batch's oldest operation waited for the writer, of the writer's wait for its turn while
    /// other processes wrote (SQLite), of its commit (flush and fsync), and of the WAL
    /// checkpoints run beside the writer (SQLite).
    pub store_queue_p99_ms: Option<f64>,
    pub store_turn_p99_ms: Option<f64>,
    pub store_commit_p99_ms: Option<f64>,
    pub store_checkpoint_p99_ms: Option<f64>,
    /// The data folder whose filesystem the next fields describe (`room`).
    pub data_folder: Option<String>,
    /// Used share of that filesystem.
    pub data_used: Option<f64>,
    pub data_available_bytes: Option<f64>,
    /// Seconds until it is full at the recent trend; `None` when not filling.
    pub data_full_in_s: Option<f64>,
    /// Source addresses the target blocks now for wrong operator credentials (or, a
    /// gateway, for scanning its players' port).
    pub security_blocked: Option<f64>,
    /// The largest replay lag of a store's standbys, seconds.
    pub replication_lag_s: Option<f64>,
    /// A PostgreSQL store's connections to the ledger's database, and the server's
    /// `max_connections` (postgres_exporter's `pg_stat_database_numbackends`,
    /// `pg_settings_max_connections`).
    pub store_connections: Option<f64>,
    pub store_connections_max: Option<f64>,
    /// Players a node flags now for unusual play (`croupier_play_flags`).
    pub play_flags: Option<f64>,
}

/// Counters of one scrape that rates are computed from.
#[derive(Debug, Clone, Default)]
struct Counters {
    ts_ms: i64,
    net_rx: Option<f64>,
    net_tx: Option<f64>,
    /// node_exporter's CPU seconds: idle, and all modes.
    cpu_idle: Option<f64>,
    cpu_all: Option<f64>,
    requests: Option<f64>,
    errors: Option<f64>,
    bets: Option<f64>,
    /// Cumulative latency buckets by upper bound (seconds).
    buckets: BTreeMap<OrderedBound, f64>,
    /// The store writer's queue wait and commit histograms, the same way.
    store_queue: BTreeMap<OrderedBound, f64>,
    store_turn: BTreeMap<OrderedBound, f64>,
    store_commit: BTreeMap<OrderedBound, f64>,
    store_checkpoint: BTreeMap<OrderedBound, f64>,
}

/// A bucket bound usable as a map key (bounds are never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedBound(f64);
impl Eq for OrderedBound {}
impl PartialOrd for OrderedBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Routes that are operators' traffic, not players'.
fn is_player_route(sample: &Sample) -> bool {
    sample
        .labels
        .get("route")
        .is_none_or(|r| r.starts_with("/api/"))
}

fn sum(samples: &[Sample], name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
    let mut found = false;
    let total = samples
        .iter()
        .filter(|s| s.name == name && keep(s))
        .inspect(|_| found = true)
        .map(|s| s.value)
        .sum();
    found.then_some(total)
}

fn gauge(samples: &[Sample], name: &str) -> Option<f64> {
    samples.iter().find(|s| s.name == name).map(|s| s.value)
}

/// Addresses blocked now, for guessing operator credentials or (the gateway's players' port)
/// for scanning and floods.
fn blocked_addresses(samples: &[Sample]) -> Option<f64> {
    let credentials = gauge(samples, "croupier_security_blocked");
    let scanning = gauge(samples, "croupier_security_scan_blocked");
    match (credentials, scanning) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

fn is_5xx(sample: &Sample) -> bool {
    sample
        .labels
        .get("status")
        .is_some_and(|code| code.starts_with('5'))
}

fn counters(samples: &[Sample], ts_ms: i64) -> Counters {
    let (requests, latency) = if samples
        .iter()
        .any(|s| s.name == "croupier_gateway_requests_total")
    {
        (
            "croupier_gateway_requests_total",
            "croupier_gateway_upstream_duration_seconds_bucket",
        )
    } else {
        (
            "croupier_http_requests_total",
            "croupier_http_request_duration_seconds_bucket",
        )
    };
    let buckets = histogram(samples, latency, is_player_route);
    let any = |_: &Sample| true;
    let requests_total = sum(samples, requests, is_player_route);
    Counters {
        ts_ms,
        net_rx: sum(samples, "croupier_host_network_receive_bytes_total", any)
            .or_else(|| sum(samples, "node_network_receive_bytes_total", any)),
        net_tx: sum(samples, "croupier_host_network_transmit_bytes_total", any)
            .or_else(|| sum(samples, "node_network_transmit_bytes_total", any)),
        cpu_idle: sum(samples, "node_cpu_seconds_total", |s| {
            s.labels.get("mode").is_some_and(|m| m == "idle")
        }),
        cpu_all: sum(samples, "node_cpu_seconds_total", any),
        requests: requests_total,
        // No 5xx series yet means none answered: zero, when requests are counted at all.
        errors: requests_total
            .map(|_| sum(samples, requests, |s| is_player_route(s) && is_5xx(s)).unwrap_or(0.0)),
        // A node that took no bet yet has no bet series: zero on a node.
        bets: sum(samples, "croupier_bets_total", any)
            .or_else(|| gauge(samples, "croupier_rounds_in_flight").map(|_| 0.0)),
        buckets,
        store_queue: histogram(samples, "croupier_store_queue_wait_seconds_bucket", any),
        store_turn: histogram(samples, "croupier_store_turn_wait_seconds_bucket", any),
        store_commit: histogram(samples, "croupier_store_commit_seconds_bucket", any),
        store_checkpoint: histogram(samples, "croupier_store_checkpoint_seconds_bucket", any),
    }
}

/// The cumulative buckets of histogram series `name` (summed over the series `keep` picks),
/// by upper bound.
fn histogram(
    samples: &[Sample],
    name: &str,
    keep: impl Fn(&Sample) -> bool,
) -> BTreeMap<OrderedBound, f64> {
    let mut buckets = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name && keep(s)) {
        if let Some(le) = s.labels.get("le").and_then(|le| match le.as_str() {
            "+Inf" => Some(f64::INFINITY),
            text => text.parse().ok(),
        }) {
            *buckets.entry(OrderedBound(le)).or_insert(0.0) += s.value;
        }
    }
    buckets
}

/// The `q` quantile of the observations between two cumulative histograms, interpolated
/// within the bucket as Prometheus' `histogram_quantile` does.
fn quantile(
    q: f64,
    now: &BTreeMap<OrderedBound, f64>,
    before: &BTreeMap<OrderedBound, f64>,
) -> Option<f64> {
    let deltas: Vec<(f64, f64)> = now
        .iter()
        .map(|(le, count)| {
            let earlier = before.get(le).copied().unwrap_or(0.0);
            (le.0, (count - earlier).max(0.0))
        })
        .collect();
    let total = deltas.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for (le, count) in deltas {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower_bound);
            }
            let in_bucket = count - lower_count;
            let fraction = if in_bucket > 0.0 {
                (rank - lower_count) / in_bucket
            } else {
                1.0
            };
            return Some(lower_bound + (le - lower_bound) * fraction);
        }
        lower_bound = le;
        lower_count = count;
    }
    Some(lower_bound)
}

/// Recent points of one target.
#[derive(Debug, Default)]
pub struct TargetSeries {
    previous: Option<Counters>,
    pub points: VecDeque<Point>,
}

impl TargetSeries {
    /// Adds the point for one scrape (`None`: the scrape failed) and returns it.
    pub fn record(&mut self, ts_ms: i64, scrape: Option<&[Sample]>) -> &Point {
        let mut point = Point {
            ts_s: (ts_ms / 1000) as u64,
            up: scrape.is_some(),
            ..Point::default()
        };
        if let Some(samples) = scrape {
            point.cpu = gauge(samples, "croupier_host_cpu_usage_ratio");
            point.memory = memory_used(samples);
            point.disk = disk_used(samples);
            point.rounds_in_flight = gauge(samples, "croupier_rounds_in_flight");
            point.store_up =
                gauge(samples, "croupier_store_up").or_else(|| gauge(samples, "pg_up"));
            point.security_blocked = blocked_addresses(samples);
            point.play_flags = gauge(samples, "croupier_play_flags");
            point.replication_lag_s = gauge(samples, "croupier_replication_max_replay_lag_seconds");
            // Summed: postgres_exporter has one per database of the server.
            point.store_connections = sum(samples, "pg_stat_database_numbackends", |_| true);
            point.store_connections_max = gauge(samples, "pg_settings_max_connections");
            room::fill(&mut point, samples, &self.points);
            let now = counters(samples, ts_ms);
            if let Some(before) = &self.previous {
                rates(&mut point, &now, before);
            }
            self.previous = Some(now);
        } else {
            self.previous = None;
        }
        if self.points.len() == KEPT_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(point);
        self.points.back().expect("just pushed")
    }

    pub fn latest(&self) -> Option<&Point> {
        self.points.back()
    }
}

fn memory_used(samples: &[Sample]) -> Option<f64> {
    let share = |used: Option<f64>, total: Option<f64>| {
        used.zip(total).and_then(|(u, t)| (t > 0.0).then(|| u / t))
    };
    share(
        gauge(samples, "croupier_host_memory_used_bytes"),
        gauge(samples, "croupier_host_memory_total_bytes"),
    )
    .or_else(|| {
        let available = gauge(samples, "node_memory_MemAvailable_bytes");
        share(available, gauge(samples, "node_memory_MemTotal_bytes")).map(|a| 1.0 - a)
    })
}

/// The fullest disk's used share (our own series, or node_exporter's filesystems).
fn disk_used(samples: &[Sample]) -> Option<f64> {
    [
        (
            "croupier_host_disk_total_bytes",
            "croupier_host_disk_available_bytes",
        ),
        ("node_filesystem_size_bytes", "node_filesystem_avail_bytes"),
    ]
    .iter()
    .flat_map(|(total_name, available_name)| {
        samples
            .iter()
            .filter(move |s| s.name == *total_name && s.value > 0.0)
            .filter_map(move |total| {
                let available = samples
                    .iter()
                    .find(|s| s.name == *available_name && s.labels == total.labels)?;
                Some(1.0 - available.value / total.value)
            })
    })
    .reduce(f64::max)
}

/// Fills the per-second rates; a counter that went down (a restart) gives no rate.
fn rates(point: &mut Point, now: &Counters, before: &Counters) {
    let seconds = (now.ts_ms - before.ts_ms) as f64 / 1000.0;
    if seconds <= 0.0 {
        return;
    }
    let rate = |a: Option<f64>, b: Option<f64>| {
        let (a, b) = (a?, b?);
        (a >= b).then(|| (a - b) / seconds)
    };
    point.net_rx_bps = rate(now.net_rx, before.net_rx);
    point.net_tx_bps = rate(now.net_tx, before.net_tx);
    point.requests_ps = rate(now.requests, before.requests);
    point.bets_ps = rate(now.bets, before.bets);
    if let (Some(cpu_all), Some(idle)) = (
        rate(now.cpu_all, before.cpu_all),
        rate(now.cpu_idle, before.cpu_idle),
    ) && point.cpu.is_none()
        && cpu_all > 0.0
    {
        point.cpu = Some(1.0 - idle / cpu_all);
    }
    if let (Some(requests), Some(errors)) = (
        rate(now.requests, before.requests),
        rate(now.errors, before.errors),
    ) {
        point.error_ratio = Some(if requests > 0.0 {
            errors / requests
        } else {
            0.0
        });
    }
    point.p50_ms = quantile(0.5, &now.buckets, &before.buckets).map(|s| s * 1000.0);
    point.p99_ms = quantile(0.99, &now.buckets, &before.buckets).map(|s| s * 1000.0);
    let p99_ms = |now, before| quantile(0.99, now, before).map(|s| s * 1000.0);
    point.store_queue_p99_ms = p99_ms(&now.store_queue, &before.store_queue);
    point.store_turn_p99_ms = p99_ms(&now.store_turn, &before.store_turn);
    point.store_commit_p99_ms = p99_ms(&now.store_commit, &before.store_commit);
    point.store_checkpoint_p99_ms = p99_ms(&now.store_checkpoint, &before.store_checkpoint);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promtext::parse;

    fn node_scrape(requests: u64, errors: u64, fast: u64, slow: u64, bets: u64) -> Vec<Sample> {
        let total = fast + slow;
        parse(&format!(
            "croupier_http_requests_total{{route=\"/api/v1/rounds\",status=\"201\"}} {}\n\
             croupier_http_requests_total{{route=\"/api/v1/rounds\",status=\"503\"}} {errors}\n\
             croupier_http_requests_total{{route=\"/metrics\",status=\"200\"}} 999\n\
             croupier_http_request_duration_seconds_bucket{{le=\"0.01\",route=\"/api/v1/rounds\"}} {fast}\n\
             croupier_http_request_duration_seconds_bucket{{le=\"0.1\",route=\"/api/v1/rounds\"}} {total}\n\
             croupier_http_request_duration_seconds_bucket{{le=\"+Inf\",route=\"/api/v1/rounds\"}} {total}\n\
             croupier_http_request_duration_seconds_bucket{{le=\"0.01\",route=\"/metrics\"}} 0\n\
             croupier_http_request_duration_seconds_bucket{{le=\"+Inf\",route=\"/metrics\"}} 5000\n\
             croupier_bets_total{{game=\"dice\"}} {bets}\n\
             croupier_host_cpu_usage_ratio 0.25\n\
             croupier_host_disk_total_bytes{{mount=\"/\"}} 100\n\
             croupier_host_disk_available_bytes{{mount=\"/\"}} 40\n",
            requests - errors
        ))
    }

    #[test]
    fn rates_error_ratio_and_quantiles_come_from_counter_deltas() {
        let mut series = TargetSeries::default();
        let first = series.record(1_000, Some(&node_scrape(100, 0, 100, 0, 10)));
        assert_eq!((first.requests_ps, first.cpu), (None, Some(0.25)));
        // Two seconds later: 200 more requests, 20 of them 5xx; 100 took under 10 ms, 100
        // between 10 and 100 ms; 50 more bets.
        let point = series
            .record(3_000, Some(&node_scrape(300, 20, 200, 100, 60)))
            .clone();
        assert_eq!(point.requests_ps, Some(100.0));
        assert_eq!(point.error_ratio, Some(0.1));
        assert_eq!(point.bets_ps, Some(25.0));
        assert_eq!(point.disk, Some(0.6));
        let p50 = point.p50_ms.unwrap();
        assert!((p50 - 10.0).abs() < 1e-9, "{p50}");
        let p99 = point.p99_ms.unwrap();
        assert!((p99 - 98.2).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn the_store_writers_stages_p99_come_from_its_histograms() {
        let scrape = |fast: u64, slow: u64| {
            let total = fast + slow;
            parse(&format!(
                "croupier_store_info{{backend=\"postgres\"}} 1\n\
                 croupier_store_commit_seconds_bucket{{le=\"0.005\"}} {fast}\n\
                 croupier_store_commit_seconds_bucket{{le=\"0.05\"}} {total}\n\
                 croupier_store_commit_seconds_bucket{{le=\"+Inf\"}} {total}\n\
                 croupier_store_queue_wait_seconds_bucket{{le=\"0.001\"}} {total}\n\
                 croupier_store_queue_wait_seconds_bucket{{le=\"+Inf\"}} {total}\n\
                 croupier_store_turn_wait_seconds_bucket{{le=\"0.002\"}} {total}\n\
                 croupier_store_turn_wait_seconds_bucket{{le=\"+Inf\"}} {total}\n\
                 croupier_store_checkpoint_seconds_bucket{{le=\"0.01\"}} {slow}\n\
                 croupier_store_checkpoint_seconds_bucket{{le=\"+Inf\"}} {slow}\n"
            ))
        };
        let mut series = TargetSeries::default();
        series.record(1_000, Some(&scrape(10, 0)));
        // 100 more batches: every one committed between 5 and 50 ms, waited under 1 ms.
        let point = series.record(2_000, Some(&scrape(10, 100))).clone();
        let commit = point.store_commit_p99_ms.unwrap();
        assert!((commit - 49.55).abs() < 1e-9, "{commit}");
        let queue = point.store_queue_p99_ms.unwrap();
        assert!((queue - 0.99).abs() < 1e-9, "{queue}");
        let turn = point.store_turn_p99_ms.unwrap();
        assert!((turn - 1.98).abs() < 1e-9, "{turn}");
        let checkpoint = point.store_checkpoint_p99_ms.unwrap();
        assert!((checkpoint - 9.9).abs() < 1e-9, "{checkpoint}");
        // No batch in the next second: no figure rather than a stale one.
        let idle = series.record(3_000, Some(&scrape(10, 100)));
        assert_eq!(idle.store_commit_p99_ms, None);
    }

    #[test]
    fn node_exporter_and_postgres_exporter_give_the_same_fields() {
        let scrape = |idle: f64, user: f64| {
            parse(&format!(
                "node_cpu_seconds_total{{cpu=\"0\",mode=\"idle\"}} {idle}\n\
                 node_cpu_seconds_total{{cpu=\"0\",mode=\"user\"}} {user}\n\
                 node_memory_MemAvailable_bytes 25\nnode_memory_MemTotal_bytes 100\n\
                 node_filesystem_size_bytes{{mountpoint=\"/\"}} 10\n\
                 node_filesystem_avail_bytes{{mountpoint=\"/\"}} 1\npg_up 0\n\
                 pg_stat_database_numbackends{{datname=\"casino\"}} 7\n\
                 pg_stat_database_numbackends{{datname=\"postgres\"}} 1\n\
                 pg_settings_max_connections 100\n"
            ))
        };
        let mut series = TargetSeries::default();
        series.record(1_000, Some(&scrape(100.0, 100.0)));
        let point = series.record(2_000, Some(&scrape(100.25, 100.75)));
        assert_eq!(point.cpu, Some(0.75));
        assert_eq!(point.memory, Some(0.75));
        assert_eq!(point.disk, Some(0.9));
        assert_eq!(point.store_up, Some(0.0));
        assert_eq!(point.store_connections, Some(8.0));
        assert_eq!(point.store_connections_max, Some(100.0));
    }

    #[test]
    fn a_failed_scrape_is_a_down_point_and_breaks_the_rates() {
        let mut series = TargetSeries::default();
        series.record(1_000, Some(&node_scrape(100, 0, 100, 0, 0)));
        assert!(!series.record(2_000, None).up);
        let after = series.record(3_000, Some(&node_scrape(50, 0, 50, 0, 0)));
        assert_eq!(after.requests_ps, None, "no rate across a gap");
        for t in 0..KEPT_POINTS as i64 {
            series.record(4_000 + t * 1000, None);
        }
        assert_eq!(series.points.len(), KEPT_POINTS);
    }
}
