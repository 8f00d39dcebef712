//! Prometheus metrics: HTTP requests and latency by route, bets and money by game, rounds in
//! flight, drain state, WebSockets, and the host's CPU, memory, network and disk (sysinfo).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sysinfo::{Disks, Networks, System};

use croupier_vitals::exporter::Register;

use crate::state::AppState;
use crate::store_metrics::StoreMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GameLabels {
    pub game: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterfaceLabels {
    pub interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MountLabels {
    pub mount: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: LatencyFamily,
    pub in_flight_requests: Gauge,
    pub bets: Family<GameLabels, Counter>,
    pub staked: Family<GameLabels, Counter>,
    pub paid: Family<GameLabels, Counter>,
    pub rounds_in_flight: Gauge,
    pub draining: Gauge,
    /// 1 when the last read of the store (at scrape time) succeeded.
    pub store_up: Gauge,
    pub websockets: Gauge,
    pub store: Arc<StoreMetrics>,
    host: HostMetrics,
    /// The data folder's filesystem, descriptors, memory cap, panics, dropped log lines.
    pub vitals: croupier_vitals::exporter::Vitals,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("croupier");
        let mut metrics = Metrics {
            vitals: croupier_vitals::exporter::Vitals::register(&mut registry),
            store: Arc::new(StoreMetrics::register(&mut registry)),
            host: HostMetrics::register(&mut registry),
            registry,
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight_requests: Gauge::default(),
            bets: Family::default(),
            staked: Family::default(),
            paid: Family::default(),
            rounds_in_flight: Gauge::default(),
            draining: Gauge::default(),
            store_up: Gauge::default(),
            websockets: Gauge::default(),
        };
        metrics.register_own();
        metrics
    }

    /// Registers the node's own series: requests, rounds and money, drain, WebSockets.
    fn register_own(&mut self) {
        self.registry
            .add(
                "http_requests",
                "HTTP requests by route and status",
                &self.requests,
            )
            .add(
                "http_request_duration_seconds",
                "HTTP request latency by route",
                &self.latency,
            )
            .add(
                "http_requests_in_flight",
                "HTTP requests being served",
                &self.in_flight_requests,
            )
            .add("bets", "Rounds started, by game", &self.bets)
            .add(
                "staked_minor_units",
                "Money staked, in minor units, by game",
                &self.staked,
            )
            .add(
                "paid_minor_units",
                "Money paid out (stakes included), in minor units, by game",
                &self.paid,
            )
            .add(
                "rounds_in_flight",
                "Open multi-step rounds last advanced on this node",
                &self.rounds_in_flight,
            )
            .add("draining", "1 while this node is draining", &self.draining)
            .add(
                "store_up",
                "1 when this node's last read of the store succeeded",
                &self.store_up,
            )
            .add(
                "websocket_connections",
                "Open player WebSockets",
                &self.websockets,
            );
    }

    /// Samples the host and the vitals; called about once a second so CPU usage and network
    /// deltas mean "over the last second".
    pub fn sample_host(&self) {
        self.host.sample();
        self.vitals.sample();
    }

    /// The registry, for pieces that add their own series (the credential lockout).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn record_round(&self, game: &str, new_stake: i64, payout: Option<i64>) {
        let labels = GameLabels {
            game: game.to_owned(),
        };
        if new_stake > 0 {
            self.staked.get_or_create(&labels).inc_by(new_stake as u64);
        }
        if let Some(paid) = payout.filter(|p| *p > 0) {
            self.paid.get_or_create(&labels).inc_by(paid as u64);
        }
    }
}

struct HostProbe {
    system: System,
    networks: Networks,
    disks: Disks,
    pid: Option<sysinfo::Pid>,
}

/// The host's CPU, memory, network and disks, and this process's memory, from sysinfo.
struct HostMetrics {
    probe: Mutex<HostProbe>,
    cpu_usage: Gauge<f64, AtomicU64>,
    memory_used: Gauge,
    memory_total: Gauge,
    process_memory: Gauge,
    network_rx: Family<InterfaceLabels, Counter>,
    network_tx: Family<InterfaceLabels, Counter>,
    disk_total: Family<MountLabels, Gauge>,
    disk_available: Family<MountLabels, Gauge>,
}

impl HostMetrics {
    /// Registers the host's series under `host_` in `registry`.
    fn register(registry: &mut Registry) -> Self {
        let host = HostMetrics {
            probe: Mutex::new(HostProbe {
                system: System::new(),
                networks: Networks::new_with_refreshed_list(),
                disks: Disks::new_with_refreshed_list(),
                pid: sysinfo::get_current_pid().ok(),
            }),
            cpu_usage: Gauge::default(),
            memory_used: Gauge::default(),
            memory_total: Gauge::default(),
            process_memory: Gauge::default(),
            network_rx: Family::default(),
            network_tx: Family::default(),
            disk_total: Family::default(),
            disk_available: Family::default(),
        };
        registry
            .sub_registry_with_prefix("host")
            .add(
                "cpu_usage_ratio",
                "Host CPU busy, 0 to 1, over the last second",
                &host.cpu_usage,
            )
            .add("memory_used_bytes", "Host memory in use", &host.memory_used)
            .add(
                "memory_total_bytes",
                "Host memory in all",
                &host.memory_total,
            )
            .add(
                "process_resident_memory_bytes",
                "This process's resident memory",
                &host.process_memory,
            )
            .add(
                "network_receive_bytes",
                "Bytes received by interface",
                &host.network_rx,
            )
            .add(
                "network_transmit_bytes",
                "Bytes sent by interface",
                &host.network_tx,
            )
            .add(
                "disk_total_bytes",
                "Disk size by mount point",
                &host.disk_total,
            )
            .add(
                "disk_available_bytes",
                "Disk space available by mount point",
                &host.disk_available,
            );
        host
    }

    fn sample(&self) {
        let mut probe = self.probe.lock();
        let HostProbe {
            system,
            networks,
            disks,
            pid,
        } = &mut *probe;
        self.sample_system(system, *pid);
        networks.refresh(true);
        for (name, data) in networks.iter() {
            let labels = InterfaceLabels {
                interface: name.clone(),
            };
            self.network_rx
                .get_or_create(&labels)
                .inc_by(data.received());
            self.network_tx
                .get_or_create(&labels)
                .inc_by(data.transmitted());
        }
        disks.refresh(true);
        for disk in disks.list() {
            let labels = MountLabels {
                mount: disk.mount_point().display().to_string(),
            };
            self.disk_total
                .get_or_create(&labels)
                .set(disk.total_space() as i64);
            self.disk_available
                .get_or_create(&labels)
                .set(disk.available_space() as i64);
        }
    }

    /// CPU and memory, the host's and this process's.
    fn sample_system(&self, system: &mut System, pid: Option<sysinfo::Pid>) {
        system.refresh_cpu_usage();
        system.refresh_memory();
        self.cpu_usage
            .set(f64::from(system.global_cpu_usage()) / 100.0);
        self.memory_used.set(system.used_memory() as i64);
        self.memory_total.set(system.total_memory() as i64);
        if let Some(pid) = pid {
            system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
            if let Some(process) = system.process(pid) {
                self.process_memory.set(process.memory() as i64);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts and times every routed request, and tracks requests in flight (for drain).
pub async fn track_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let metrics = &state.metrics;
    metrics.in_flight_requests.inc();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.in_flight_requests.dec();
    metrics
        .latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
