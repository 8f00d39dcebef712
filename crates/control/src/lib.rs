//! `croupier control`: the control plane. Once a second it scrapes every component's
//! `/metrics` and runs the synthetic checks, hands each scrape to the monitoring core
//! (`croupier-monitor`: series, alert rules, SLOs and burn rates), leaves silenced alerts
//! quiet, groups what fired by component into one webhook message (`notify`) and one
//! incident (`state`), pushes incident updates to connected players through the nodes, pages
//! the people on call and escalates what nobody acknowledges (`oncall`, `paging`), sends
//! incident news to the status page's subscribers (`subscriptions`), and rolls component
//! uptime up for the status page (`components`, read back by the SLA reports of `sla`).
//! `api` serves the operators' REST API and the players' status feed, `pages` the status
//! page and the dashboard.
#![forbid(unsafe_code)]

pub mod alertlog;
pub mod api;
pub mod backups;
pub mod capacity;
pub mod catalog;
pub mod checks;
pub mod components;
pub mod config;
pub mod dates;
pub mod eligibility;
pub mod gateways;
pub mod html;
pub mod lease;
pub mod mail;
pub mod maintenance;
pub mod node_probe;
pub mod notify;
pub mod oncall;
pub mod operator;
pub mod operator_sessions;
pub mod ops_client;
pub mod pages;
pub mod paging;
pub mod pgstats;
pub mod postmortem;
pub mod public_status;
pub mod refusal;
pub mod replication;
pub mod rollout;
pub mod sla;
pub mod sla_format;
pub mod staging;
pub mod state;
pub mod state_pages;
pub mod state_subscriptions;
pub mod subscriptions;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use croupier_web::wire::ops::{GameStatus, GameStatusSet, Notice, SetGameStatus};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use components::UptimeAccumulator;
use croupier_monitor::engine::{AlertEvent, Engine, Kind, RuleDef, Target};
use croupier_monitor::promtext::{self, Sample};
use croupier_monitor::series::{Point, TargetSeries};
use croupier_monitor::slo::{SloDef, SloTracker};
use notify::Webhook;
use state::{RolloutStatus, State};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);
/// Share of player requests that must succeed (not 5xx) over 30 days.
pub const AVAILABILITY_OBJECTIVE: f64 = 0.999;

pub struct ControlConfig {
    pub targets: Vec<Target>,
    /// The players' address for synthetic checks (lobby, test bet), if any.
    pub check_url: Option<String>,
    /// How the test player of the synthetic checks and smoke tests signs in; demo mode.
    pub test_players: checks::TestPlayers,
    pub webhooks: Vec<Webhook>,
    pub ops_token: String,
    pub rules: Vec<RuleDef>,
    pub slos: Vec<SloDef>,
    /// The SLA contract's service credit tiers (SLA reports).
    pub sla_credits: Vec<sla::CreditTier>,
    /// Who is paged for incidents, when the deployment file has an `[oncall]` section.
    pub pager: Option<paging::Pager>,
    /// Status-page subscriptions, when the deployment file has a `[subscriptions]` section.
    pub subscriptions: Option<subscriptions::Subscriptions>,
    /// How rolling updates replace a node's build.
    pub update: rollout::UpdateConfig,
    /// What to back up and prove by restores, when backups are on.
    pub backup: Option<backups::BackupConfig>,
    /// Room kept back in the data folder so that an incident can still be recorded when the
    /// disk is full.
    pub reserve: Option<croupier_vitals::reserve::Reserve>,
    /// Whether this control plane leads (`lease`); only the leader acts.
    pub leadership: Arc<lease::Leadership>,
    /// A PostgreSQL database where the leader also logs what it sent (`alertlog`), for
    /// control planes on several machines; None: `control.db`'s history alone.
    pub shared_alert_log: Option<String>,
    /// When wrong ops tokens (API, dashboard sign-in) get an address blocked.
    pub lockout: croupier_web::lockout::LockoutConfig,
    /// What the control plane trusts and presents when it calls `https://` components.
    pub client_tls: croupier_web::tls::ClientFiles,
    /// The control plane serves HTTPS: the dashboard's session cookie is `Secure`.
    pub secure_cookies: bool,
}

impl ControlConfig {
    /// The game nodes among the targets.
    pub fn nodes(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().filter(|t| t.kind == Kind::Node)
    }
}

pub struct Control {
    pub config: ControlConfig,
    /// The dashboard's signed-in operators.
    pub sessions: operator_sessions::OperatorSessions,
    checks: Option<checks::Checks>,
    pub state: Arc<State>,
    pub engine: Mutex<Engine>,
    /// Recent points of each target, in the order of `config.targets`.
    pub series: Mutex<Vec<TargetSeries>>,
    pub slos: Mutex<Vec<SloTracker>>,
    uptime: Mutex<UptimeAccumulator>,
    /// The backups' health, when the control plane runs them.
    pub backup_status: Option<Arc<Mutex<backups::BackupStatus>>>,
    backup_alerts: Mutex<backups::BackupAlerts>,
    /// The last replication state read from each `postgres://` store target, by name.
    pub replication: Mutex<HashMap<String, replication::Replication>>,
    /// How each `postgres://` store target is reached, by name (or why it cannot be).
    store_servers: HashMap<String, Result<croupier_pgconn::Server, String>>,
    /// Games a maintenance window has closed.
    games_in_maintenance: Mutex<HashSet<String>>,
    pub client: HttpClient,
    /// When the monitor loop last finished a round (ms since the epoch; 0: not yet).
    last_round_ms: AtomicI64,
    /// What the leaders sent, shared across machines (`alertlog`).
    alert_log: Option<alertlog::SharedLog>,
    /// Whether the last monitor round ran as the leader: the first round that leads takes
    /// over (`take_over`).
    led: AtomicBool,
    /// Test-only fault (`--fault panic-under-lock`): rounds left that panic while holding
    /// the series lock.
    panics_left: AtomicU32,
    /// Wrong ops tokens per address, and the addresses blocked for them (each block is an
    /// audit entry).
    pub lockout: Arc<croupier_web::lockout::Lockout>,
    /// The gateways' blocks already in the audit log (`api::blocks::audit_gateway_blocks`).
    gateway_blocks: Mutex<api::blocks::SeenBlocks>,
}

/// The monitor loop is called stuck (and `/healthz` fails) when no round finished for this long.
pub const STUCK_AFTER_MS: i64 = 30_000;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Control {
    /// A control plane for `config`; fails when its TLS files cannot be read.
    pub fn new(
        config: ControlConfig,
        state: State,
    ) -> Result<Arc<Control>, croupier_web::tls::TlsError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_millis(300)));
        http.set_nodelay(true);
        let tls = croupier_web::tls::client_config(&config.client_tls)?;
        let connector = croupier_web::tls::https_connector(http, tls);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let mut config = config;
        let checks = config
            .check_url
            .as_deref()
            .map(|base| checks::Checks::new(base, config.test_players.clone()));
        if let Some(checks) = &checks {
            for (name, kind) in [
                ("check-lobby", Kind::LobbyCheck),
                ("check-bet", Kind::BetCheck),
            ] {
                config.targets.push(Target::new(name, kind, &checks.base));
            }
        }
        let engine = Engine::new(config.targets.clone(), config.rules.clone());
        let series = config
            .targets
            .iter()
            .map(|_| TargetSeries::default())
            .collect();
        let slos = config.slos.iter().cloned().map(SloTracker::new).collect();
        let state = Arc::new(state);
        let backup_status = config
            .backup
            .clone()
            .map(|backup| backups::spawn(backup, state.clone(), config.leadership.clone()));
        let alert_log = config
            .shared_alert_log
            .as_deref()
            .map(alertlog::SharedLog::new);
        let lockout = Arc::new(api::blocks::lockout(config.lockout.clone(), state.clone()));
        let store_servers = replication::servers(&config.targets);
        Ok(Arc::new(Control {
            lockout,
            sessions: Default::default(),
            config,
            checks,
            state,
            engine: Mutex::new(engine),
            series: Mutex::new(series),
            slos: Mutex::new(slos),
            uptime: Mutex::new(UptimeAccumulator::default()),
            games_in_maintenance: Mutex::new(HashSet::new()),
            backup_status,
            backup_alerts: Mutex::new(backups::BackupAlerts::default()),
            replication: Mutex::new(HashMap::new()),
            store_servers,
            client,
            last_round_ms: AtomicI64::new(0),
            led: AtomicBool::new(false),
            gateway_blocks: Mutex::new(api::blocks::SeenBlocks::default()),
            alert_log,
            panics_left: AtomicU32::new(0),
        }))
    }

    async fn scrape(&self, target: &Target) -> Option<Vec<Sample>> {
        match (target.kind, &self.checks, &target.http_check) {
            (Kind::LobbyCheck, Some(checks), _) => return checks.lobby(&self.client).await,
            (Kind::BetCheck, Some(checks), _) => return checks.bet(&self.client).await,
            (Kind::HttpCheck, _, Some(check)) => {
                return checks::http(&self.client, &target.base, check).await;
            }
            (Kind::Store, _, _) if replication::is_postgres(&target.base) => {
                return self.read_replication(target).await;
            }
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

    /// Reads a PostgreSQL store's replication (see `replication`); a changed primary is a
    /// failover, put on the timeline by the leader.
    async fn read_replication(&self, target: &Target) -> Option<Vec<promtext::Sample>> {
        let read = match self.store_servers.get(&target.name)? {
            Ok(server) => replication::read(server).await,
            Err(e) => Err(e.clone()),
        };
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::debug!(store = %target.name, error = %e, "no primary answers");
                return None;
            }
        };
        let before = self
            .replication
            .lock()
            .insert(target.name.clone(), read.clone());
        if let Some(before) = before
            && before.primary != read.primary
            && self.config.leadership.is_leader()
        {
            let recorded = replication::record_failover(
                &self.state,
                &target.name,
                &before.primary,
                &read.primary,
                now_ms(),
            );
            if let Err(e) = recorded {
                tracing::error!(error = %e, "cannot record a failover");
            }
        }
        Some(replication::samples(&read))
    }

    /// Tells every connected player, through each node, about an incident.
    /// `push_to_players` when `component` is one players see; an operators' component
    /// (security, the store's replication) is never theirs to hear about.
    pub async fn tell_players_about(&self, component: &str, message: &str, level: &str) {
        if catalog::players_name(component).is_some() {
            self.push_to_players(message, level).await;
        }
    }

    pub async fn push_to_players(&self, message: &str, level: &str) {
        for target in self.config.nodes() {
            let Ok(request) = hyper::Request::post(format!("{}/ops/notices", target.base))
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {}", self.config.ops_token))
                .body(Full::new(Bytes::from(
                    serde_json::to_string(&Notice {
                        message: message.to_owned(),
                        level: level.to_owned(),
                    })
                    .unwrap_or_default(),
                )))
            else {
                continue;
            };
            let _ = tokio::time::timeout(SCRAPE_TIMEOUT, self.client.request(request)).await;
        }
    }

    /// Test-only: the next `count` monitor rounds panic while they hold the series lock. The
    /// lock cannot poison and the loop survives a round's panic: later rounds go on.
    pub fn inject_panics(&self, count: u32) {
        self.panics_left.store(count, Ordering::SeqCst);
    }

    fn injected_panic(&self) {
        if self
            .panics_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("injected fault: a panic while the series lock is held");
        }
    }

    /// Whether the monitor loop finished a round lately (the control plane's liveness): a
    /// process whose loop is stuck answers `/healthz` 503, so systemd or Kubernetes restart it.
    pub fn monitor_alive(&self, now_ms: i64) -> bool {
        let last = self.last_round_ms.load(Ordering::Relaxed);
        last == 0 || now_ms - last < STUCK_AFTER_MS
    }

    /// Whether each target answered its last scrape.
    pub fn up(&self) -> Vec<bool> {
        self.series
            .lock()
            .iter()
            .map(|s| s.latest().is_some_and(|p| p.up))
            .collect()
    }

    /// One round: scrape all, evaluate, act on what changed. A follower scrapes and
    /// evaluates too (its view stays warm for the day it leads) but runs no synthetic check
    /// and acts on nothing.
    pub async fn tick(self: &Arc<Control>) {
        let began_leading = self.config.leadership.is_leader();
        let scrapes = futures_util::future::join_all(self.config.targets.iter().map(|t| async {
            if began_leading || !t.kind.is_synthetic() {
                Some(self.scrape(t).await)
            } else {
                None
            }
        }))
        .await;
        let now = now_ms();
        let now_s = (now / 1000) as u64;
        let points: Vec<Option<Point>> = {
            let mut series = self.series.lock();
            self.injected_panic();
            series
                .iter_mut()
                .zip(&scrapes)
                .map(|(s, scrape)| {
                    scrape
                        .as_ref()
                        .map(|got| s.record(now, got.as_deref()).clone())
                })
                .collect()
        };
        let scrapes: Vec<Option<Vec<Sample>>> = scrapes.into_iter().map(Option::flatten).collect();
        // The scrapes take up to their timeout, and the lease can go meanwhile: a round acts
        // as the leader only if it led when it began and still does now.
        let leading = began_leading && self.config.leadership.is_leader();
        if leading && !self.led.swap(true, Ordering::SeqCst) {
            self.take_over(now_s).await;
        } else if !leading {
            self.led.store(false, Ordering::SeqCst);
        }
        let mut events = self.engine.lock().evaluate(now_s, &points);
        let windows = if leading {
            self.upkeep_windows(now).await
        } else {
            self.active_windows(now)
        };
        let excluded: Vec<&str> = windows.iter().flat_map(|w| w.scope.components()).collect();
        events.extend(self.evaluate_slos(now_s, &scrapes, &excluded));
        // Announcing the windows awaited too: look again before the round's other acts.
        if !(leading && self.config.leadership.is_leader()) {
            return;
        }
        if let Some(status) = &self.backup_status {
            let health = status.lock().health.clone();
            events.extend(self.backup_alerts.lock().evaluate(now_s, health.as_ref()));
        }
        self.act(events, &windows, now).await;
        let gateway_scrapes = self.config.targets.iter().zip(&scrapes);
        api::blocks::audit_gateway_blocks(self, gateway_scrapes).await;
        paging::upkeep(self, now);
        subscriptions::deliver(self);
        self.roll_up_uptime(now, &excluded);
        if let Some(reserve) = &self.config.reserve {
            reserve.restore();
        }
    }

    /// The first round this process leads: every evaluator takes on which alerts the leader
    /// before it sent as firing (the state's alert history), so this round and the next ones
    /// send exactly what it did not: an alert sent before the failover is not sent again, its
    /// resolution is sent once, and an alert that fired while no one led is sent once.
    async fn take_over(&self, now_s: u64) {
        self.end_orphaned_rollouts();
        let sent = match alertlog::sent(&self.state, self.alert_log.as_ref()).await {
            Ok(sent) => sent,
            Err(e) => {
                // Keep what this process's own evaluators believe rather than forget it all.
                tracing::error!(error = %e, "cannot read which alerts were sent; taking over as is");
                return;
            }
        };
        tracing::info!(firing = sent.len(), "taking over as leader");
        self.engine.lock().assume(&sent, now_s);
        for tracker in self.slos.lock().iter_mut() {
            tracker.assume(&sent, now_s);
        }
        self.backup_alerts.lock().assume(&sent, now_s);
    }

    /// A rolling update runs in the leader's process: one the state says is running when a
    /// process takes the lease was left by a leader that died, and would block every later
    /// one. It is marked failed, with a step saying why (its node may be left drained).
    fn end_orphaned_rollouts(&self) {
        let Ok(rollouts) = self.state.rollouts(5) else {
            return;
        };
        let now = now_ms();
        for rollout in rollouts
            .iter()
            .filter(|r| r.status == RolloutStatus::Running)
        {
            let node = rollout.steps.last().map_or("", |s| s.node.as_str());
            let why = "the control plane running it stopped; check the node's drain state and start the update again";
            let _ = self
                .state
                .rollout_step(rollout.id, node, "orphaned", false, why, now);
            let _ = self
                .state
                .finish_rollout(rollout.id, RolloutStatus::Failed, None, now);
            tracing::warn!(
                rollout = rollout.id,
                "a rolling update left running by the last leader is marked failed"
            );
        }
    }

    /// The maintenance windows active now, with no side effect (what a follower reads).
    fn active_windows(&self, now: i64) -> Vec<maintenance::Window> {
        let windows = self.state.windows().unwrap_or_default();
        windows
            .into_iter()
            .filter(|w| w.active_at(now).is_some())
            .collect()
    }

    /// The maintenance windows active now; on the way, players are told of those coming
    /// (at each lead time) and games whose window opens or closes are put in or out of
    /// maintenance on every node.
    async fn upkeep_windows(self: &Arc<Control>, now: i64) -> Vec<maintenance::Window> {
        let windows = self.state.windows().unwrap_or_default();
        for window in windows.iter().filter(|w| w.scope.players_see()) {
            for (start, lead) in window.announcements_due(now) {
                if matches!(
                    self.state.mark_announced(window.id, start, lead, now),
                    Ok(true)
                ) {
                    let message = format!(
                        "Scheduled maintenance: {} ({}) starts {} for {} minutes.",
                        window.title,
                        window.scope.players_text(),
                        maintenance::utc_text(start),
                        window.duration_s / 60
                    );
                    let news = subscriptions::Subscriptions::maintenance_news(window, &message);
                    let control = self.clone();
                    tokio::spawn(async move {
                        control.push_to_players(&message, "info").await;
                        if let Some(subscriptions) = &control.config.subscriptions {
                            subscriptions.tell(&control, &news).await;
                        }
                    });
                }
            }
        }
        let active: Vec<maintenance::Window> = windows
            .into_iter()
            .filter(|w| w.active_at(now).is_some())
            .collect();
        let games: HashSet<String> = active
            .iter()
            .flat_map(|w| w.scope.components())
            .filter(|c| catalog::GAMES.contains(c))
            .map(str::to_owned)
            .collect();
        let (opened, closed) = {
            let mut held = self.games_in_maintenance.lock();
            let closed: Vec<String> = games.difference(&held).cloned().collect();
            let opened: Vec<String> = held.difference(&games).cloned().collect();
            *held = games;
            (opened, closed)
        };
        for (game, status) in closed
            .iter()
            .map(|g| (g, GameStatus::Maintenance))
            .chain(opened.iter().map(|g| (g, GameStatus::Open)))
        {
            self.set_game_status(game, status).await;
        }
        active
    }

    /// Opens or closes a game on every node (each tells its players).
    async fn set_game_status(&self, game: &str, status: GameStatus) {
        for node in self.config.nodes() {
            let url = format!("{}/ops/games/{game}", node.base);
            let body = SetGameStatus::from(status);
            let put = ops_client::request_with(self, hyper::Method::PUT, url, &body);
            if let Err(e) = ops_client::call::<GameStatusSet>(self, &node.name, put).await {
                tracing::warn!(node = %node.name, game, status = status.as_str(), error = %e, "cannot set the game's status");
            }
        }
    }

    /// Feeds and evaluates every SLO; one whose component is in maintenance skips the
    /// interval (the window is left out of the figures).
    fn evaluate_slos(
        &self,
        now_s: u64,
        scrapes: &[Option<Vec<Sample>>],
        in_maintenance: &[&str],
    ) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let mut slos = self.slos.lock();
        for tracker in slos.iter_mut() {
            let wanted = if tracker.reads_gateways() {
                Kind::Gateway
            } else {
                Kind::Node
            };
            let feeding: Vec<&Option<Vec<Sample>>> = self
                .config
                .targets
                .iter()
                .zip(scrapes)
                .filter(|(t, _)| t.kind == wanted)
                .map(|(_, s)| s)
                .collect();
            if feeding.iter().any(|s| s.is_none())
                || in_maintenance.contains(&tracker.def.component.as_str())
            {
                // A missing process's counters would look like a drop: skip the interval.
                tracker.gap();
            } else {
                let answered: Vec<&[Sample]> =
                    feeding.iter().filter_map(|s| s.as_deref()).collect();
                tracker.observe(now_s, &answered);
            }
            events.extend(tracker.evaluate(now_s));
        }
        events
    }

    /// Records every transition; notifies and tells players about those not silenced,
    /// grouped by component; resolved messages always go out.
    async fn act(
        self: &Arc<Control>,
        events: Vec<AlertEvent>,
        windows: &[maintenance::Window],
        now: i64,
    ) {
        let events = self.unsent(events).await;
        if events.is_empty() {
            return;
        }
        let silences = self.state.silences(now).unwrap_or_default();
        let mut groups: Vec<notify::Group> = Vec::new();
        for event in events {
            if let Some(why) = held(&event, windows, &silences, now) {
                let _ = self.state.record_alert(&event.key, why, now, event.value);
                alertlog::record(self.alert_log.as_ref(), &event.key, why, now).await;
                continue;
            }
            let incident = self.record(&event, now);
            let what = if event.firing { "fired" } else { "resolved" };
            alertlog::record(self.alert_log.as_ref(), &event.key, what, now).await;
            let position = groups
                .iter()
                .position(|g| g.component == event.component && g.firing == event.firing);
            let group = match position {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(notify::Group {
                        component: event.component.clone(),
                        firing: event.firing,
                        alerts: Vec::new(),
                    });
                    groups.last_mut().expect("just pushed")
                }
            };
            group.alerts.push((event, incident));
        }
        for group in groups {
            self.announce(&group, now);
        }
    }

    /// Sends a group of transitions to every webhook and, when it is on a component players
    /// see, tells them in a sentence. An operators' component (a security block, a standby's
    /// lag) is never announced to players: it is not theirs, and a scanner would read on its
    /// own socket that it had been noticed.
    fn announce(self: &Arc<Control>, group: &notify::Group, now: i64) {
        for hook in &self.config.webhooks {
            let payload = notify::body(hook.format, group, now);
            let (control, url) = (self.clone(), hook.url.clone());
            tokio::spawn(async move { notify::send(&control.client, &url, &payload).await });
        }
        let Some(name) = catalog::players_name(&group.component) else {
            return;
        };
        let message = if group.firing {
            format!("We are looking into a problem affecting {name}.")
        } else {
            format!("The problem affecting {name} is resolved.")
        };
        let control = self.clone();
        let level = if group.firing { "warning" } else { "info" };
        tokio::spawn(async move { control.push_to_players(&message, level).await });
    }

    /// Keeps the transitions the state says were not sent yet: a firing alert not already
    /// sent (or silenced), a resolution of one that was. After `take_over` the evaluators
    /// agree with the state, so this drops nothing unless two leaders' rounds overlapped.
    async fn unsent(&self, events: Vec<AlertEvent>) -> Vec<AlertEvent> {
        let sent = match alertlog::sent(&self.state, self.alert_log.as_ref()).await {
            Ok(sent) => sent,
            Err(e) => {
                tracing::error!(error = %e, "cannot read which alerts were sent");
                return events;
            }
        };
        events
            .into_iter()
            .filter(|e| e.firing != sent.contains(&e.key))
            .collect()
    }

    fn roll_up_uptime(&self, now: i64, in_maintenance: &[&str]) {
        let Ok(active) = self.state.incidents(true) else {
            return;
        };
        let now_s = now / 1000;
        let batch = {
            let mut uptime = self.uptime.lock();
            uptime.observe(now_s, &active, in_maintenance);
            uptime.due(now_s + 1)
        };
        if let Some(batch) = batch
            && let Err(e) = self.state.add_uptime(now_s, &batch)
        {
            tracing::error!(error = %e, "cannot record uptime");
        }
    }

    /// Alert history and incidents for one transition; returns the incident's id. A firing
    /// alert joins the open alert incident of its component, or opens one; the incident
    /// resolves when its last alert does.
    fn record(&self, event: &AlertEvent, now: i64) -> Option<i64> {
        let what = if event.firing { "fired" } else { "resolved" };
        let write = || {
            self.state
                .record_alert(&event.key, what, now, event.value)?;
            if event.firing {
                self.join_or_open(event, now)
            } else {
                self.resolve_in_incident(event, now)
            }
        };
        let mut result = write();
        // Out of space? Give the reserve back and write again: the incident that says why
        // is the one record that must not be lost.
        if result.is_err()
            && self
                .config
                .reserve
                .as_ref()
                .is_some_and(croupier_vitals::reserve::Reserve::release)
        {
            result = write();
        }
        result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot record the incident");
            None
        })
    }

    fn join_or_open(&self, event: &AlertEvent, now: i64) -> Result<Option<i64>, state::StateError> {
        let message = match &event.detail {
            Some(detail) => format!("Alert {} fired: {detail}.", event.key),
            None => format!("Alert {} fired.", event.key),
        };
        if let Some(id) = self
            .state
            .open_alert_incident_for_component(&event.component)?
        {
            self.state.set_incident_alert(id, &event.key, true)?;
            self.state.raise_severity(id, event.severity)?;
            self.state.note_incident(id, &message, now)?;
            return Ok(Some(id));
        }
        self.state
            .open_incident(
                &match &event.detail {
                    Some(detail) => format!("{} on {}: {detail}", event.rule, event.target),
                    None => format!("{} on {}", event.rule, event.target),
                },
                &event.component,
                event.severity,
                Some(&event.key),
                &message,
                now,
            )
            .map(Some)
    }

    fn resolve_in_incident(
        &self,
        event: &AlertEvent,
        now: i64,
    ) -> Result<Option<i64>, state::StateError> {
        let Some(id) = self.state.open_incident_for_alert(&event.key)? else {
            return Ok(None);
        };
        let still_firing = self.state.set_incident_alert(id, &event.key, false)?;
        let message = format!("Alert {} resolved.", event.key);
        if still_firing == 0 {
            self.state.update_incident(
                id,
                crate::state::IncidentStatus::Resolved,
                &message,
                None,
                now,
            )?;
        } else {
            self.state.note_incident(id, &message, now)?;
        }
        Ok(Some(id))
    }
}

/// Scrapes and evaluates once a second until the process stops. A round that panics is
/// logged and counted, and the next round runs as usual: the state it left is plain data.
pub fn spawn_monitor(control: Arc<Control>) {
    croupier_vitals::background::spawn_every("monitor", SCRAPE_INTERVAL, move || {
        let control = control.clone();
        async move {
            control.lockout.sweep();
            croupier_vitals::background::survive("monitor round", control.tick()).await;
            control.last_round_ms.store(now_ms(), Ordering::Relaxed);
        }
    });
}

/// Why a firing alert is held back rather than sent: a maintenance window covers it, or a
/// silence matches it. A resolution is never held.
fn held(
    event: &AlertEvent,
    windows: &[maintenance::Window],
    silences: &[state::Silence],
    now: i64,
) -> Option<&'static str> {
    if !event.firing {
        return None;
    }
    if windows
        .iter()
        .any(|w| w.scope.covers_alert(&event.target, &event.component))
    {
        return Some("held (maintenance)");
    }
    silences
        .iter()
        .any(|s| s.matches(&event.key, &event.component, now))
        .then_some("silenced")
}
