//! Alert rules applied to each scrape of each target: the target is down, its host's CPU or
//! memory is high. Each (rule, target) pair keeps its own `RuleState`; the engine returns the
//! transitions, and the caller turns them into notifications and incidents.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::series::Point;
use crate::severity::Severity;
use crate::threshold::{Comparison, RuleState, ThresholdRule, Transition};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Node,
    Gateway,
    /// The synthetic lobby check.
    LobbyCheck,
    /// The synthetic test bet.
    BetCheck,
    /// An HTTP check from the deployment file (status, latency, body), like Gatus.
    HttpCheck,
    /// A store's exporter (postgres_exporter).
    Store,
    /// A host's node_exporter.
    Host,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub kind: Kind,
    /// Base URL; metrics are at `/metrics` (an HTTP check's own URL; a store's `postgres://`
    /// URL, which may hold a password: whoever shows it masks it).
    pub base: String,
    /// The player-facing component its alerts affect, when not the kind's own.
    pub component: Option<String>,
    /// What an HTTP check expects.
    pub http_check: Option<HttpCheck>,
}

impl Target {
    pub fn new(name: &str, kind: Kind, base: &str) -> Target {
        Target {
            name: name.to_owned(),
            kind,
            base: base.to_owned(),
            component: None,
            http_check: None,
        }
    }
}

/// What an HTTP check's answer must be.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// The status code expected (default 200).
    #[serde(default = "ok_status")]
    pub status: u16,
    /// The slowest acceptable answer, in milliseconds (default 1000).
    #[serde(default = "one_second")]
    pub max_latency_ms: u64,
    /// Text the body must contain, if any.
    #[serde(default)]
    pub body_contains: Option<String>,
}

fn ok_status() -> u16 {
    200
}

fn one_second() -> u64 {
    1_000
}

impl HttpCheck {
    /// Whether an answer passes: status, latency, body.
    pub fn passes(&self, status: u16, latency: Duration, body: &str) -> bool {
        status == self.status
            && latency <= Duration::from_millis(self.max_latency_ms)
            && self
                .body_contains
                .as_deref()
                .is_none_or(|needle| body.contains(needle))
    }
}

impl Kind {
    /// A synthetic check (a test bet moves money): run by the leader alone.
    pub fn is_synthetic(self) -> bool {
        matches!(self, Kind::LobbyCheck | Kind::BetCheck | Kind::HttpCheck)
    }
}

/// What a rule reads from a target's latest point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// 1 when the target answered its scrape (or its check passed), missing otherwise.
    Up,
    Cpu,
    Memory,
    Disk,
    NetworkReceiveBps,
    NetworkTransmitBps,
    LatencyP99Ms,
    ErrorRatio,
    /// 1 when a node could read the store.
    StoreUp,
    /// Used share of the filesystem holding the target's data folder.
    DataDisk,
    /// Seconds until that filesystem is full at the trend of the last five minutes.
    DataFullInS,
    /// Addresses blocked now for guessing operator credentials (`croupier_security_blocked`)
    /// or for scanning the players' port (`croupier_security_scan_blocked`).
    SecurityBlocked,
    /// The largest replay lag of the ledger's standbys, seconds (`replication`).
    ReplicationLagS,
    /// Players flagged now for unusual play (`croupier_play_flags`).
    PlayFlags,
    /// The store's server: the share of its `max_connections` in use.
    StoreConnectionsUsed,
    /// A node's store commits: their p99 over the last scrape interval, ms
    /// (`croupier_store_commit_seconds`); none when it committed nothing.
    StoreCommitP99Ms,
}

impl Metric {
    pub fn value(self, point: &Point) -> Option<f64> {
        match self {
            Metric::Up => point.up.then_some(1.0),
            Metric::Cpu => point.cpu,
            Metric::Memory => point.memory,
            Metric::Disk => point.disk,
            Metric::NetworkReceiveBps => point.net_rx_bps,
            Metric::NetworkTransmitBps => point.net_tx_bps,
            Metric::LatencyP99Ms => point.p99_ms,
            Metric::ErrorRatio => point.error_ratio,
            Metric::StoreUp => point.store_up,
            Metric::DataDisk => point.data_used,
            Metric::DataFullInS => point.data_full_in_s,
            Metric::SecurityBlocked => point.security_blocked,
            Metric::ReplicationLagS => point.replication_lag_s,
            Metric::PlayFlags => point.play_flags,
            Metric::StoreCommitP99Ms => point.store_commit_p99_ms,
            Metric::StoreConnectionsUsed => {
                match (point.store_connections, point.store_connections_max) {
                    (Some(used), Some(max)) if max > 0.0 => Some(used / max),
                    _ => None,
                }
            }
        }
    }
}

/// A rule as configured: the threshold logic, what it reads, how bad it is for players.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleDef {
    #[serde(flatten)]
    pub rule: ThresholdRule,
    pub metric: Metric,
    /// How bad it is for players; an outage on the wallet is always critical.
    pub severity: Severity,
    /// The player-facing component it affects; by default the target's own.
    #[serde(default)]
    pub component: Option<String>,
    /// Target kinds it applies to; all when empty.
    #[serde(default)]
    pub kinds: Vec<Kind>,
}

impl RuleDef {
    /// The rule with its alerts on `component` whatever the target's.
    fn on_component(mut self, component: &str) -> RuleDef {
        self.component = Some(component.into());
        self
    }

    /// The component an alert of this rule on `target` affects: the rule's, the target's,
    /// or its kind's.
    fn component_for(&self, target: &Target) -> String {
        self.component
            .clone()
            .or_else(|| target.component.clone())
            .unwrap_or_else(|| component_of(target.kind).to_owned())
    }
}

pub(crate) fn component_of(kind: Kind) -> &'static str {
    match kind {
        // Every game runs on every node; with one node down the others carry on.
        Kind::Node => "games",
        // The gateway is every player's way in.
        Kind::Gateway | Kind::LobbyCheck | Kind::HttpCheck => "lobby",
        Kind::BetCheck | Kind::Store => "wallet",
        Kind::Host => "games",
    }
}

#[allow(clippy::too_many_arguments)]
fn rule(
    name: &str,
    metric: Metric,
    comparison: Comparison,
    (threshold, clear_threshold): (f64, Option<f64>),
    for_duration_s: u64,
    (fire_after, resolve_after): (u32, u32),
    severity: Severity,
    kinds: &[Kind],
) -> RuleDef {
    RuleDef {
        rule: ThresholdRule {
            name: name.into(),
            comparison,
            threshold,
            clear_threshold,
            for_duration_s,
            fire_after,
            resolve_after,
            missing_breaches: metric == Metric::Up,
        },
        metric,
        severity,
        component: None,
        kinds: kinds.to_vec(),
    }
}

/// The component of security alerts: operators only, never on the players' status page.
pub const SECURITY_COMPONENT: &str = "security";

/// The component of the ledger's replication alerts and failovers: operators only (a
/// standby's lag or a failover that worked costs players nothing by itself).
pub const STORE_COMPONENT: &str = "store";

/// The built-in rules, evaluated once a second; a deployment's TOML may replace them.
pub fn default_rules() -> Vec<RuleDef> {
    let mut rules = security_rules();
    rules.extend(store_rules());
    rules.extend(data_disk_rules());
    rules.extend(server_rules());
    rules
}

/// Someone is guessing operator tokens, or scanning or flooding the players' port; a node
/// flags unusual play (`croupier_node::flags`: operators look at `/api/v1/flags`). Operators
/// are told, players see nothing (an internal component, left off the status page).
fn security_rules() -> Vec<RuleDef> {
    use Comparison::Above;
    vec![
        rule(
            "security_blocks",
            Metric::SecurityBlocked,
            Above,
            (0.5, None),
            0,
            (1, 5),
            Severity::Minor,
            &[Kind::Node, Kind::Gateway],
        )
        .on_component(SECURITY_COMPONENT),
        rule(
            "unusual_play",
            Metric::PlayFlags,
            Above,
            (0.5, None),
            0,
            (1, 5),
            Severity::Minor,
            &[Kind::Node],
        )
        .on_component(SECURITY_COMPONENT),
    ]
}

/// The ledger's server: unreachable, a standby far behind, near its connection limit, slow
/// to commit.
fn store_rules() -> Vec<RuleDef> {
    use Comparison::{Above, Below};
    vec![
        // A standby far behind: a failover now would wait for it to replay, and reads it
        // serves are stale. Players lose nothing yet: an operators' component.
        rule(
            "replication_lag",
            Metric::ReplicationLagS,
            Above,
            (10.0, Some(5.0)),
            0,
            (3, 5),
            Severity::Minor,
            &[Kind::Store],
        )
        .on_component(STORE_COMPONENT),
        // Near the connection limit the next node to start, or a pool that grows, is refused
        // (an outage), so operators hear of it while there is room. Like the postgres-mixin's
        // PostgreSQLTooManyConnections (over 80% of max_connections).
        rule(
            "store_connections_high",
            Metric::StoreConnectionsUsed,
            Above,
            (0.8, Some(0.7)),
            30,
            (3, 10),
            Severity::Minor,
            &[Kind::Store],
        )
        .on_component(STORE_COMPONENT),
        // Every acknowledged bet waits for its batch's commit, and so for the ledger's flush
        // (PostgreSQL: the server's WAL; SQLite: the node's file): commits slow for a minute
        // are that disk (a checkpoint, the kernel's writeback beside it, a failing device) or
        // the server's CPU before they are anything of the node's. Players see it as latency
        // (`latency_high`); this says where it comes from. A second without commits says
        // nothing, so an idle node never fires it.
        rule(
            "store_commit_slow",
            Metric::StoreCommitP99Ms,
            Above,
            (50.0, Some(25.0)),
            60,
            (3, 10),
            Severity::Minor,
            &[Kind::Node],
        )
        .on_component(STORE_COMPONENT),
        // One slow scrape is not an outage; two in a row (2 s) are.
        rule(
            "down",
            Metric::Up,
            Below,
            (1.0, None),
            0,
            (2, 2),
            Severity::Major,
            &[],
        ),
        // Without the store no money moves.
        rule(
            "store_down",
            Metric::StoreUp,
            Below,
            (1.0, None),
            0,
            (2, 2),
            Severity::Major,
            &[Kind::Node, Kind::Store],
        )
        .on_component("wallet"),
    ]
}

/// The ledger's disk: full is a wallet outage (no bet can be written); filling pages while
/// there is still time, like predict_linear(free[5m], 4h) < 0.
fn data_disk_rules() -> Vec<RuleDef> {
    use Comparison::{Above, Below};
    vec![
        rule(
            "data_disk_full",
            Metric::DataDisk,
            Above,
            (0.97, Some(0.95)),
            0,
            (2, 3),
            Severity::Critical,
            &[Kind::Node],
        )
        .on_component("wallet"),
        rule(
            "data_disk_filling",
            Metric::DataFullInS,
            Below,
            (4.0 * 3_600.0, Some(8.0 * 3_600.0)),
            30,
            (10, 30),
            Severity::Major,
            &[Kind::Node],
        )
        .on_component("wallet"),
    ]
}

/// The machines and what players get from them: resources running out, slow or failing
/// answers.
fn server_rules() -> Vec<RuleDef> {
    use Comparison::Above;
    let servers = [Kind::Node, Kind::Gateway, Kind::Host];
    let resource = |name: &str, metric, threshold| {
        rule(
            name,
            metric,
            Above,
            threshold,
            60,
            (3, 5),
            Severity::Minor,
            &servers,
        )
    };
    let traffic = |name: &str, metric, threshold| {
        rule(
            name,
            metric,
            Above,
            threshold,
            30,
            (5, 10),
            Severity::Major,
            &servers,
        )
    };
    vec![
        resource("cpu_high", Metric::Cpu, (0.9, Some(0.8))),
        resource("memory_high", Metric::Memory, (0.9, Some(0.85))),
        resource("disk_full", Metric::Disk, (0.9, Some(0.85))),
        resource(
            "network_receive_high",
            Metric::NetworkReceiveBps,
            (100e6, Some(80e6)),
        ),
        resource(
            "network_transmit_high",
            Metric::NetworkTransmitBps,
            (100e6, Some(80e6)),
        ),
        traffic("latency_high", Metric::LatencyP99Ms, (250.0, Some(150.0))),
        traffic("error_rate_high", Metric::ErrorRatio, (0.05, Some(0.01))),
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    /// `rule/target`.
    pub key: String,
    pub rule: String,
    pub target: String,
    pub severity: Severity,
    pub component: String,
    pub firing: bool,
    pub since_s: u64,
    pub value: Option<f64>,
    /// What the alert is about in words, when the target's point says more than its name
    /// (the data folder that is filling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveAlert {
    pub key: String,
    pub component: String,
    pub severity: Severity,
    pub state: crate::threshold::AlertState,
}

pub struct Engine {
    pub targets: Vec<Target>,
    rules: Vec<RuleDef>,
    states: HashMap<(usize, usize), RuleState>,
}

impl Engine {
    pub fn new(targets: Vec<Target>, rules: Vec<RuleDef>) -> Engine {
        Engine {
            targets,
            rules,
            states: HashMap::new(),
        }
    }

    /// Evaluates every rule on every target's latest point, in the order of `targets`; a
    /// target without a point this round (a synthetic check a follower does not run) keeps
    /// its state.
    pub fn evaluate(&mut self, now_s: u64, points: &[Option<Point>]) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for (t, target) in self.targets.iter().enumerate() {
            let Some(Some(point)) = points.get(t) else {
                continue;
            };
            for (r, def) in self.rules.iter().enumerate() {
                if !def.kinds.is_empty() && !def.kinds.contains(&target.kind) {
                    continue;
                }
                let value = def.metric.value(point);
                let state = self.states.entry((r, t)).or_default();
                let Some(transition) = state.evaluate(&def.rule, now_s, value) else {
                    continue;
                };
                let (firing, since_s) = match transition {
                    Transition::Fired { since } => (true, since),
                    Transition::Resolved { fired_at } => (false, fired_at),
                };
                let component = def.component_for(target);
                events.push(AlertEvent {
                    key: format!("{}/{}", def.rule.name, target.name),
                    rule: def.rule.name.clone(),
                    target: target.name.clone(),
                    severity: def.severity.on(&component),
                    component,
                    firing,
                    since_s,
                    value,
                    detail: matches!(def.metric, Metric::DataDisk | Metric::DataFullInS)
                        .then(|| crate::series::room::detail(point))
                        .flatten(),
                });
            }
        }
        events
    }

    /// Takes on, for every rule on every target, whether its alert was sent as firing
    /// (`sent` holds the keys): what a new leader does before its first evaluation.
    pub fn assume(&mut self, sent: &HashSet<String>, now_s: u64) {
        for (t, target) in self.targets.iter().enumerate() {
            for (r, def) in self.rules.iter().enumerate() {
                if !def.kinds.is_empty() && !def.kinds.contains(&target.kind) {
                    continue;
                }
                let key = format!("{}/{}", def.rule.name, target.name);
                let sent = sent.contains(&key);
                match self.states.get_mut(&(r, t)) {
                    Some(state) => state.assume(sent, now_s),
                    None if sent => self.states.entry((r, t)).or_default().assume(true, now_s),
                    None => {}
                }
            }
        }
    }

    /// Alerts pending or firing now.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut active: Vec<ActiveAlert> = self
            .states
            .iter()
            .filter(|(_, s)| s.state != crate::threshold::AlertState::Inactive)
            .map(|((r, t), s)| {
                let (def, target) = (&self.rules[*r], &self.targets[*t]);
                let component = def.component_for(target);
                ActiveAlert {
                    key: format!("{}/{}", def.rule.name, target.name),
                    severity: def.severity.on(&component),
                    component,
                    state: s.state,
                }
            })
            .collect();
        active.sort_by(|a, b| a.key.cmp(&b.key));
        active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_latency_and_body_all_count() {
        let check = HttpCheck {
            status: 200,
            max_latency_ms: 100,
            body_contains: Some("\"games\"".into()),
        };
        let fast = Duration::from_millis(5);
        assert!(check.passes(200, fast, r#"{"games":[]}"#));
        assert!(!check.passes(503, fast, r#"{"games":[]}"#));
        assert!(!check.passes(200, Duration::from_millis(150), r#"{"games":[]}"#));
        assert!(!check.passes(200, fast, "maintenance"));
    }

    #[test]
    fn two_failed_scrapes_fire_down_and_two_good_ones_resolve_it() {
        let targets = vec![Target::new("node-1", Kind::Node, "http://x")];
        let mut engine = Engine::new(targets, default_rules());
        let ok = Point {
            up: true,
            cpu: Some(0.2),
            ..Point::default()
        };
        let down = Point::default();
        assert!(engine.evaluate(0, &[Some(ok.clone())]).is_empty());
        assert!(
            engine.evaluate(1, &[Some(down.clone())]).is_empty(),
            "one failed scrape is not an outage"
        );
        let fired = engine.evaluate(2, &[Some(down.clone())]);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (
                fired[0].key.as_str(),
                fired[0].firing,
                fired[0].component.as_str()
            ),
            ("down/node-1", true, "games")
        );
        assert_eq!(engine.active().len(), 1);
        assert!(engine.evaluate(3, &[Some(ok.clone())]).is_empty());
        let resolved = engine.evaluate(4, &[Some(ok.clone())]);
        assert_eq!((resolved.len(), resolved[0].firing), (1, false));
        assert!(engine.active().is_empty());
    }

    /// The ledger's server with `used` of its 100 connections taken.
    fn server_with(used: f64) -> Option<Point> {
        Some(Point {
            up: true,
            store_up: Some(1.0),
            store_connections: Some(used),
            store_connections_max: Some(100.0),
            ..Point::default()
        })
    }

    #[test]
    fn a_server_near_its_connection_limit_warns_the_operators() {
        let targets = vec![Target::new("ledger", Kind::Store, "postgres://x/y")];
        let mut engine = Engine::new(targets, default_rules());
        let fired = evaluate_over(&mut engine, 0..40, &server_with(60.0));
        assert!(fired.is_empty(), "60% in use: {:?}", keys(&fired));
        let fired = evaluate_over(&mut engine, 40..75, &server_with(85.0));
        assert_eq!(keys(&fired), vec![("store_connections_high/ledger", true)]);
        assert_eq!(fired[0].component, STORE_COMPONENT);
        assert_eq!(fired[0].severity, Severity::Minor);
        assert_eq!(fired[0].value, Some(0.85));
        // Between the clear threshold and the threshold it keeps firing; below, it resolves.
        let kept = evaluate_over(&mut engine, 75..90, &server_with(75.0));
        assert!(kept.is_empty(), "{:?}", keys(&kept));
        let resolved = evaluate_over(&mut engine, 90..105, &server_with(50.0));
        assert_eq!(
            keys(&resolved),
            vec![("store_connections_high/ledger", false)]
        );
    }

    /// A node whose store commits had a p99 of `ms` over the last second.
    fn node_committing_in(ms: Option<f64>) -> Option<Point> {
        Some(Point {
            up: true,
            store_up: Some(1.0),
            store_commit_p99_ms: ms,
            ..Point::default()
        })
    }

    #[test]
    fn commits_slow_for_a_minute_warn_the_operators_and_a_stall_or_an_idle_node_does_not() {
        let targets = vec![Target::new("node-1", Kind::Node, "http://x")];
        let mut engine = Engine::new(targets, default_rules());
        let mut run = |from: u64, to: u64, ms: Option<f64>| {
            evaluate_over(&mut engine, from..to, &node_committing_in(ms))
        };
        // A stall of a few seconds (a burst of the disk's writeback) and an idle node.
        assert!(run(0, 5, Some(170.0)).is_empty());
        assert!(run(5, 20, Some(4.0)).is_empty());
        assert!(
            run(20, 200, None).is_empty(),
            "an idle node commits nothing"
        );
        let fired = run(200, 275, Some(90.0));
        assert_eq!(keys(&fired), vec![("store_commit_slow/node-1", true)]);
        assert_eq!(fired[0].component, STORE_COMPONENT);
        assert_eq!(fired[0].severity, Severity::Minor);
        assert_eq!(fired[0].value, Some(90.0));
        assert!(
            run(275, 300, Some(30.0)).is_empty(),
            "above the clear threshold"
        );
        assert_eq!(
            keys(&run(300, 320, Some(5.0))),
            vec![("store_commit_slow/node-1", false)]
        );
    }

    /// Evaluates one target showing `point` at each second of `seconds`; what fired or resolved.
    fn evaluate_over(
        engine: &mut Engine,
        seconds: std::ops::Range<u64>,
        point: &Option<Point>,
    ) -> Vec<AlertEvent> {
        seconds
            .flat_map(|t| engine.evaluate(t, std::slice::from_ref(point)))
            .collect()
    }

    fn keys(events: &[AlertEvent]) -> Vec<(&str, bool)> {
        events.iter().map(|e| (e.key.as_str(), e.firing)).collect()
    }

    #[test]
    fn a_new_leader_sends_only_what_the_one_before_did_not() {
        let targets = vec![
            Target::new("node-1", Kind::Node, "http://x"),
            Target::new("node-2", Kind::Node, "http://y"),
        ];
        let (ok, down) = (
            Some(Point {
                up: true,
                cpu: Some(0.2),
                ..Point::default()
            }),
            Some(Point::default()),
        );
        let both_down = [down.clone(), down.clone()];
        // A follower's warm engine saw both nodes go down; the old leader sent node-1's alert
        // and died before sending node-2's.
        let mut warm = Engine::new(targets.clone(), default_rules());
        for t in 0..3 {
            warm.evaluate(t, &both_down);
        }
        let sent = HashSet::from(["down/node-1".to_owned()]);
        warm.assume(&sent, 3);
        let fired: Vec<AlertEvent> = (4..8).flat_map(|t| warm.evaluate(t, &both_down)).collect();
        assert_eq!(keys(&fired), vec![("down/node-2", true)]);
        // A leader restarted cold resolves, once, the alert sent before it when all is well.
        let mut cold = Engine::new(targets, default_rules());
        cold.assume(&sent, 0);
        let both_ok = [ok.clone(), ok.clone()];
        let resolved: Vec<AlertEvent> = (1..6).flat_map(|t| cold.evaluate(t, &both_ok)).collect();
        assert_eq!(keys(&resolved), vec![("down/node-1", false)]);
    }
}
