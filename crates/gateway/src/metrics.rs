//! The gateway's own Prometheus metrics: per-node request rates, latency, upstream errors,
//! retries, ejections, operator state, health, requests outstanding and WebSockets.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use croupier_vitals::exporter::Register;

use crate::pool::Pool;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeStatus {
    pub node: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeKind {
    pub node: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeState {
    pub node: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

type Latency = Family<NodeLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Per-node handles made once, so the hot path neither allocates labels nor looks them up.
pub struct NodeMetrics {
    /// The node's name: the label of its other statuses.
    name: String,
    pub latency: Histogram,
    pub ok: Counter,
    pub created: Counter,
}

pub struct Metrics {
    registry: Registry,
    /// Series named as on every server (`croupier_security_*`), not under the gateway's prefix.
    security: Registry,
    nodes: Vec<NodeMetrics>,
    pub requests: Family<NodeStatus, Counter>,
    pub latency: Latency,
    pub upstream_errors: Family<NodeKind, Counter>,
    pub retries: Family<Reason, Counter>,
    pub hedges: Family<Reason, Counter>,
    pub refused: Family<Reason, Counter>,
    pub queued: Family<Reason, Counter>,
    pub ejections: Family<NodeLabel, Counter>,
    health_probes: Family<NodeKind, Counter>,
    state: Family<NodeState, Gauge>,
    healthy: Family<NodeLabel, Gauge>,
    outstanding: Family<NodeLabel, Gauge>,
    websockets: Family<NodeLabel, Gauge>,
}

impl Metrics {
    pub fn new(node_names: &[String]) -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("croupier_gateway"),
            security: Registry::with_prefix("croupier"),
            nodes: Vec::new(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            upstream_errors: Family::default(),
            retries: Family::default(),
            hedges: Family::default(),
            refused: Family::default(),
            queued: Family::default(),
            ejections: Family::default(),
            health_probes: Family::default(),
            state: Family::default(),
            healthy: Family::default(),
            outstanding: Family::default(),
            websockets: Family::default(),
        };
        metrics.register();
        metrics.nodes = node_names
            .iter()
            .map(|name| metrics.handles(name))
            .collect();
        metrics
    }

    fn register(&mut self) {
        self.registry
            .add("requests", "Requests answered, by node and status", &self.requests)
            .add("upstream_duration_seconds", "Time to a node's response headers", &self.latency)
            .add(
                "upstream_errors",
                "Failed tries by node and kind (connect: refused, connect_timeout, timeout, reset, 5xx, slow)",
                &self.upstream_errors,
            )
            .add("retries", "Retries on another node, by reason", &self.retries)
            .add("hedges", "Second tries sent while a slow node's first try went on (sent), the ones that answered first (won), and those the retry budget did not allow (no_budget)", &self.hedges)
            .add("refused", "Requests the gateway answered itself (no_node, retry_budget, node_busy, rate_limit_ip, rate_limit_player, rate_limit_sign_in, too_large, not_player_api, websockets_per_ip, websockets_per_player)", &self.refused)
            .add(
                "queued",
                "Requests that waited for an eligible node, by outcome (sent, timeout, full), and those that waited for a free place on their node (node_full)",
                &self.queued,
            )
            .add("ejections", "Passive outlier ejections by node", &self.ejections)
            .add(
                "health_probes",
                "Health probes by node and verdict as kind (passed, failed, busy: timed out while the node answered players)",
                &self.health_probes,
            )
            .add("node_state", "1 for the node's operator state", &self.state)
            .add("node_healthy", "1 while the active health check passes", &self.healthy)
            .add("node_outstanding_requests", "Requests in flight to the node", &self.outstanding)
            .add("node_websockets", "WebSockets proxied to the node", &self.websockets);
    }

    /// A node's hot-path handles. One statement each: a family's read guard must be gone
    /// before the next get_or_create takes its write lock.
    fn handles(&self, name: &str) -> NodeMetrics {
        let node = |status| NodeStatus {
            node: name.to_owned(),
            status,
        };
        let latency = self
            .latency
            .get_or_create(&NodeLabel {
                node: name.to_owned(),
            })
            .clone();
        let ok = self.requests.get_or_create(&node(200)).clone();
        let created = self.requests.get_or_create(&node(201)).clone();
        NodeMetrics {
            name: name.to_owned(),
            latency,
            ok,
            created,
        }
    }

    /// Where series under the gateway's prefix registered elsewhere go (the lanes').
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Where the credential lockout's series go.
    pub fn security_mut(&mut self) -> &mut Registry {
        &mut self.security
    }

    /// A try on node `index` took `took` to its answer's headers (or to its failure).
    pub fn observe_try(&self, index: usize, took: std::time::Duration) {
        self.nodes[index].latency.observe(took.as_secs_f64());
    }

    /// Node `index` answered with `status`: the usual two through handles made once, others
    /// through their labels.
    pub fn count_answer(&self, index: usize, status: u16) {
        let handles = &self.nodes[index];
        match status {
            200 => handles.ok.inc(),
            201 => handles.created.inc(),
            _ => self
                .requests
                .get_or_create(&NodeStatus {
                    node: handles.name.clone(),
                    status,
                })
                .inc(),
        };
    }

    /// A health probe of `node` ended with `verdict`.
    pub fn count_probe(&self, node: &str, verdict: &str) {
        self.health_probes
            .get_or_create(&NodeKind {
                node: node.to_owned(),
                kind: verdict.to_owned(),
            })
            .inc();
    }

    pub fn count(family: &Family<Reason, Counter>, reason: &str) {
        family
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Renders the metrics, first copying the pool's live figures into gauges.
    pub fn render(&self, pool: &Pool) -> String {
        for backend in &pool.backends {
            let node = NodeLabel {
                node: backend.name.clone(),
            };
            let current = backend.admin_state();
            for state in croupier_web::wire::admin::NodeState::ALL {
                self.state
                    .get_or_create(&NodeState {
                        node: backend.name.clone(),
                        state: state.as_str().to_owned(),
                    })
                    .set(i64::from(state == current));
            }
            self.healthy
                .get_or_create(&node)
                .set(i64::from(backend.is_healthy()));
            self.outstanding
                .get_or_create(&node)
                .set(backend.outstanding.load(Ordering::Relaxed));
            self.websockets
                .get_or_create(&node)
                .set(backend.websockets.load(Ordering::Relaxed));
        }
        let mut out = String::new();
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &self.security))
            .and_then(|()| encode_eof(&mut out))
            .expect("writing to a String cannot fail");
        out
    }
}
