//! `croupier control`: the control plane. Once a second it scrapes every component's
//! `/metrics`, evaluates the alert rules (`engine`, on the `threshold` logic), sends webhooks
//! for alerts that fire and resolve (`notify`), opens an incident for each firing alert and
//! resolves it with the alert (`state`), and pushes incident updates to connected players
//! through the nodes. `slo` feeds the players' availability SLO from the gateways' request
//! counters into the multi-window multi-burn-rate evaluation (`window`, `burn`), whose page and
//! ticket become alerts like any other. `api` serves the operators' REST API and the players'
//! status feed.

pub mod api;
pub mod burn;
pub mod checks;
pub mod engine;
pub mod notify;
pub mod promtext;
pub mod slo;
pub mod state;
pub mod threshold;
pub mod window;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use engine::{Engine, Kind, Target};
use notify::Webhook;
use state::State;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);
/// Share of player requests that must succeed (not 5xx) over 30 days.
pub const AVAILABILITY_OBJECTIVE: f64 = 0.999;

pub struct ControlConfig {
    pub targets: Vec<Target>,
    /// The players' address for synthetic checks (lobby, test bet), if any.
    pub check_url: Option<String>,
    pub webhooks: Vec<Webhook>,
    pub ops_token: String,
}

pub struct Control {
    pub config: ControlConfig,
    checks: Option<checks::Checks>,
    pub state: State,
    pub engine: Mutex<Engine>,
    /// Whether each target answered its last scrape.
    pub up: Mutex<Vec<bool>>,
    /// The players' availability SLO, from the gateways' request counters.
    pub slo: Mutex<slo::SloTracker>,
    pub client: HttpClient,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Control {
    pub fn new(config: ControlConfig, state: State) -> Arc<Control> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(300)));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let mut config = config;
        let checks = config.check_url.as_deref().map(checks::Checks::new);
        if let Some(checks) = &checks {
            for (name, kind) in [
                ("check-lobby", Kind::LobbyCheck),
                ("check-bet", Kind::BetCheck),
            ] {
                config.targets.push(Target {
                    name: name.into(),
                    kind,
                    base: checks.base.clone(),
                });
            }
        }
        let engine = Engine::new(config.targets.clone(), engine::default_rules());
        let up = vec![false; config.targets.len()];
        Arc::new(Control {
            config,
            checks,
            state,
            engine: Mutex::new(engine),
            up: Mutex::new(up),
            slo: Mutex::new(slo::SloTracker::new(AVAILABILITY_OBJECTIVE)),
            client,
        })
    }

    async fn scrape(&self, target: &Target) -> Option<Vec<promtext::Sample>> {
        match (target.kind, &self.checks) {
            (Kind::LobbyCheck, Some(checks)) => return checks.lobby(&self.client).await,
            (Kind::BetCheck, Some(checks)) => return checks.bet(&self.client).await,
            _ => {}
        }
        let uri: hyper::Uri = format!("{}/metrics", target.base).parse().ok()?;
        let request = hyper::Request::get(uri)
            .body(Full::new(Bytes::new()))
            .ok()?;
        let response = tokio::time::timeout(SCRAPE_TIMEOUT, self.client.request(request))
            .await
            .ok()?
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = tokio::time::timeout(SCRAPE_TIMEOUT, response.into_body().collect())
            .await
            .ok()?
            .ok()?;
        Some(promtext::parse(&String::from_utf8_lossy(&body.to_bytes())))
    }

    /// Tells every connected player, through each node, about an incident.
    pub async fn push_to_players(&self, message: &str, level: &str) {
        for target in self.config.targets.iter().filter(|t| t.kind == Kind::Node) {
            let Ok(request) = hyper::Request::post(format!("{}/ops/notices", target.base))
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {}", self.config.ops_token))
                .body(Full::new(Bytes::from(
                    json!({"message": message, "level": level}).to_string(),
                )))
            else {
                continue;
            };
            let _ = tokio::time::timeout(SCRAPE_TIMEOUT, self.client.request(request)).await;
        }
    }

    /// One round: scrape all, evaluate, act on what changed.
    pub async fn tick(self: &Arc<Control>) {
        let scrapes =
            futures_util::future::join_all(self.config.targets.iter().map(|t| self.scrape(t)))
                .await;
        *self.up.lock().expect("up lock") = scrapes.iter().map(Option::is_some).collect();
        let now = now_ms();
        let events = self
            .engine
            .lock()
            .expect("engine lock")
            .evaluate((now / 1000) as u64, &scrapes);
        for event in events {
            let incident = self.record(&event, now);
            for hook in &self.config.webhooks {
                let payload = notify::body(hook.format, &event, incident, now);
                let (control, url) = (self.clone(), hook.url.clone());
                tokio::spawn(async move { notify::send(&control.client, &url, &payload).await });
            }
            let message = if event.firing {
                format!(
                    "We are looking into a problem affecting {}.",
                    event.component
                )
            } else {
                format!("The problem affecting {} is resolved.", event.component)
            };
            let control = self.clone();
            let level = if event.firing { "warning" } else { "info" };
            tokio::spawn(async move { control.push_to_players(&message, level).await });
        }
    }

    /// Alert history and incidents for one transition; returns the incident's id.
    fn record(&self, event: &engine::AlertEvent, now: i64) -> Option<i64> {
        let what = if event.firing { "fired" } else { "resolved" };
        let logged = self.state.record_alert(&event.key, what, now, event.value);
        if let Err(e) = logged {
            tracing::error!(error = %e, "cannot record the alert");
        }
        let open = self
            .state
            .open_incident_for_alert(&event.key)
            .ok()
            .flatten();
        let result = match (event.firing, open) {
            (true, Some(id)) => Ok(id),
            (true, None) => self.state.open_incident(
                &format!("{} on {}", event.rule, event.target),
                event.component,
                event.severity,
                Some(&event.key),
                &format!("Alert {} fired.", event.key),
                now,
            ),
            (false, Some(id)) => self
                .state
                .update_incident(
                    id,
                    "resolved",
                    &format!("Alert {} resolved.", event.key),
                    None,
                    now,
                )
                .map(|()| id),
            (false, None) => return None,
        };
        match result {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, "cannot record the incident");
                None
            }
        }
    }
}

/// Scrapes and evaluates once a second until the process stops.
pub fn spawn_monitor(control: Arc<Control>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SCRAPE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            control.tick().await;
        }
    });
}
