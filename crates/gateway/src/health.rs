//! Active health checks: each node's `/readyz` on an interval with a timeout; `rise`
//! successes in a row bring it up, `fall` failures take it down (a draining node answers 503
//! and so goes down too).
//!
//! A probe that times out on a node that answered players meanwhile (below 500) is the node
//! busy, not dead, and counts as neither: under overload every node's probe waits behind
//! the players' requests, and counting those timeouts took all nodes down at once, turning a
//! slow peak into 503 `no_node` for everyone. A frozen or crashed node answers no one, and a
//! node that cannot reach its store answers 503, so both still go down. Slowness itself is
//! the hedges' and the outlier detection's business (`proxy`).

use std::sync::Arc;
use std::time::Duration;

use crate::Gateway;
use crate::upstream::Outgoing;

#[derive(Debug, Clone, Copy)]
pub struct HealthConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(150),
            rise: 2,
            fall: 2,
        }
    }
}

pub fn spawn_checks(gateway: Arc<Gateway>) {
    for index in 0..gateway.pool.backends.len() {
        let gateway = gateway.clone();
        tokio::spawn(async move { check_loop(gateway, index).await });
    }
}

/// What one probe of `/readyz` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Passed,
    /// Answered other than 200, or could not connect.
    Failed,
    TimedOut,
}

async fn probe(gateway: &Gateway, index: usize) -> Probe {
    let backend = &gateway.pool.backends[index];
    let request = Outgoing::get("/readyz");
    let sent = backend.upstream.send(&gateway.dial, &request, true);
    match tokio::time::timeout(gateway.config.health.timeout, sent).await {
        Ok(Ok(answer)) if answer.status == 200 => Probe::Passed,
        Ok(_) => Probe::Failed,
        Err(_) => Probe::TimedOut,
    }
}

/// What a probe says of the node, given whether it answered players since the last probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Up,
    Down,
    Busy,
}

impl Verdict {
    fn of(probe: Probe, served_meanwhile: bool) -> Verdict {
        match probe {
            Probe::Passed => Verdict::Up,
            Probe::TimedOut if served_meanwhile => Verdict::Busy,
            Probe::TimedOut | Probe::Failed => Verdict::Down,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Up => "passed",
            Verdict::Down => "failed",
            Verdict::Busy => "busy",
        }
    }
}

/// Verdicts in a row.
#[derive(Debug, Default)]
struct Streak {
    successes: u32,
    failures: u32,
}

impl Streak {
    /// Counts a verdict on a node that is `healthy` now; returns its health when it changes.
    fn count(&mut self, verdict: Verdict, healthy: bool, config: &HealthConfig) -> Option<bool> {
        match verdict {
            Verdict::Up => {
                self.successes += 1;
                self.failures = 0;
                (!healthy && self.successes >= config.rise).then_some(true)
            }
            Verdict::Down => {
                self.failures += 1;
                self.successes = 0;
                (healthy && self.failures >= config.fall).then_some(false)
            }
            // Alive, so a run of failures ends; but not ready in time, so no step up either.
            Verdict::Busy => {
                self.failures = 0;
                None
            }
        }
    }
}

/// One node's checks: what the rounds so far found, plain data a half-done round leaves valid.
struct Checks {
    gateway: Arc<Gateway>,
    index: usize,
    streak: Streak,
    served_before: u64,
}

impl Checks {
    /// Probes the node once and moves its health when the streak says so.
    async fn round(&mut self) {
        let (gateway, config) = (&self.gateway, self.gateway.config.health);
        let backend = &gateway.pool.backends[self.index];
        let probe = probe(gateway, self.index).await;
        let served = backend.served();
        let verdict = Verdict::of(probe, served > self.served_before);
        self.served_before = served;
        gateway.metrics.count_probe(&backend.name, verdict.label());
        match self.streak.count(verdict, backend.is_healthy(), &config) {
            Some(true) => {
                backend.set_healthy(true);
                tracing::info!(node = %backend.name, "node is up");
            }
            Some(false) => {
                backend.set_healthy(false);
                tracing::warn!(node = %backend.name, "node is down");
            }
            None => {}
        }
    }
}

async fn check_loop(gateway: Arc<Gateway>, index: usize) {
    let mut tick = tokio::time::interval(gateway.config.health.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let served_before = gateway.pool.backends[index].served();
    let mut checks = Checks {
        gateway,
        index,
        streak: Streak::default(),
        served_before,
    };
    loop {
        tick.tick().await;
        croupier_vitals::background::survive("gateway health check", checks.round()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    use std::time::Instant;
    use tokio::net::TcpListener;

    const PROBE_TIMEOUT: Duration = Duration::from_millis(60);

    /// A node whose `/readyz` answers long after the probe gave up (as under overload, queued
    /// behind the players' requests) and whose player API answers `players` at once.
    async fn late_ready_node(players: StatusCode) -> String {
        let app = Router::new()
            .route(
                "/readyz",
                get(|| async {
                    tokio::time::sleep(PROBE_TIMEOUT * 5).await;
                    "ready"
                }),
            )
            .route("/api/v1/wallet", get(move || async move { players }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    /// A gateway in front of `node` with quick checks and no queue (503 at once when no node
    /// is eligible); returns it and its players' address.
    async fn gateway_for(node: String) -> (Arc<Gateway>, String) {
        let mut config = crate::GatewayConfig::new(vec![("n0".to_owned(), node)], "t".repeat(32));
        config.health = HealthConfig {
            interval: Duration::from_millis(40),
            timeout: PROBE_TIMEOUT,
            rise: 2,
            fall: 2,
        };
        config.queue_timeout = Duration::ZERO;
        let gateway = Gateway::new(config).unwrap();
        let players = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", players.local_addr().unwrap());
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let serving = crate::serve(
            players,
            admin,
            gateway.clone(),
            std::future::pending(),
            None,
        );
        tokio::spawn(serving);
        (gateway, address)
    }

    /// Statuses of player requests sent through the gateway, one every 10 ms for `length`.
    async fn play_for(gateway: &Gateway, address: &str, length: Duration) -> Vec<u16> {
        let started = Instant::now();
        let mut statuses = Vec::new();
        let player = crate::upstream::Upstream::new(address);
        while started.elapsed() < length {
            let request = Outgoing::get("/api/v1/wallet");
            let answer = player.send(&gateway.dial, &request, true).await.unwrap();
            statuses.push(answer.status);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        statuses
    }

    async fn wait_until_down(gateway: &Gateway) -> bool {
        let deadline = Instant::now() + PROBE_TIMEOUT * 30;
        while Instant::now() < deadline {
            if !gateway.pool.backends[0].is_healthy() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Before: two timed-out probes took the node down while it answered every player, and
    /// the players then got 503 `no_node` (the whole stack past its peak, every node at once).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_answering_players_stays_up_when_its_probes_time_out() {
        let (gateway, address) = gateway_for(late_ready_node(StatusCode::OK).await).await;
        let statuses = play_for(&gateway, &address, PROBE_TIMEOUT * 25).await;
        let refused = statuses.iter().filter(|s| **s != 200).count();
        assert_eq!(
            refused,
            0,
            "{refused} of {} requests refused",
            statuses.len()
        );
        assert!(gateway.pool.backends[0].is_healthy());
        let busy = gateway.metrics.render(&gateway.pool);
        assert!(
            busy.contains(r#"croupier_gateway_health_probes_total{node="n0",kind="busy"}"#),
            "{busy}"
        );
    }

    /// A node that answers no one (frozen, or its players' requests hang) still goes down.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_serving_no_one_goes_down_when_its_probes_time_out() {
        let (gateway, _) = gateway_for(late_ready_node(StatusCode::OK).await).await;
        assert!(wait_until_down(&gateway).await);
    }

    /// Answering players 503 (its store unreachable) is no proof of life: the node goes down
    /// and its players move to another node.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_answering_only_503_goes_down_when_its_probes_time_out() {
        let node = late_ready_node(StatusCode::SERVICE_UNAVAILABLE).await;
        let (gateway, address) = gateway_for(node).await;
        let playing = play_for(&gateway, &address, PROBE_TIMEOUT * 25);
        let (_, down) = tokio::join!(playing, wait_until_down(&gateway));
        assert!(down);
    }

    #[test]
    fn busy_ends_a_run_of_failures_but_brings_no_node_up() {
        let config = HealthConfig::default();
        let mut streak = Streak::default();
        assert_eq!(streak.count(Verdict::Down, true, &config), None);
        assert_eq!(streak.count(Verdict::Busy, true, &config), None);
        assert_eq!(streak.count(Verdict::Down, true, &config), None);
        assert_eq!(streak.count(Verdict::Down, true, &config), Some(false));
        assert_eq!(streak.count(Verdict::Busy, false, &config), None);
        assert_eq!(streak.count(Verdict::Busy, false, &config), None);
        assert_eq!(streak.count(Verdict::Up, false, &config), None);
        assert_eq!(streak.count(Verdict::Up, false, &config), Some(true));
        assert_eq!(Verdict::of(Probe::TimedOut, false), Verdict::Down);
        assert_eq!(Verdict::of(Probe::Failed, true), Verdict::Down);
        assert_eq!(Verdict::of(Probe::TimedOut, true), Verdict::Busy);
    }
}
