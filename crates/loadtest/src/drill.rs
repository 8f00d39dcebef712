//! Failover drills: each runs a bounded open-model load through the gateway of a real stack,
//! injects one real fault, waits for the stack to be whole again, then runs the bank checks.
//!
//! - `kill-node`: `kill -9` of node-1's process; `croupier up` restarts it.
//! - `restart-gateway`: SIGTERM to the gateway process; `croupier up`, which holds its
//!   listening sockets, starts a new one at once (any refused connection is an error).
//! - `store-outage`: on PostgreSQL, the drill's own server is crashed (`pg_ctl stop -m
//!   immediate`), kept down for `outage` and started again. A SQLite ledger is made unavailable
//!   to every writer by holding its write lock (`BEGIN EXCLUSIVE` from this process) for
//!   `outage`: SQLite has no server process to restart, and moving or chmod-ing the file does
//!   nothing to the nodes' open descriptors (a node opening it meanwhile would even create an
//!   empty ledger), so a held lock is the honest outage: writers wait (up to the store's 10 s
//!   busy timeout, then fail with 503), reads go on.
//! - `drain-cycle`: each node in turn is drained at the gateway and on the node itself, its
//!   requests in flight are waited for, then it is undrained and must be eligible again.
//! - `freeze-node` (see `freeze`): node-1 is stopped with SIGSTOP for 4 s and continued; it
//!   fails when a player's request took over a second.
//!
//! - `store-failover` (see `failover`): the PostgreSQL primary is SIGKILLed with all its
//!   processes and its streaming standby promoted; the report adds the write outage, errors
//!   other than 503 and acknowledged bets lost.
//!
//! The report: player-visible errors (non-2xx answers, refused connections and connections
//! reset under a request counted apart), the slowest request, time to recover (from the fault
//! until the stack is whole and the last failed or stalled request after it), the bank checks
//! (a bet settled twice among them) and a verdict. A refused connection fails the
//! restart-gateway drill: the supervisor holds the gateway's sockets.
// libc calls for signals, process groups or descriptors; each block says why it is sound.
#![allow(unsafe_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use croupier_web::wire::admin::{NodeState, Nodes, SetNodeState};
use croupier_web::wire::ops::{DrainReport, SetDrain};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bank::{self, BankReport};
use crate::error::LoadError;
use crate::failover::{self, Failover, FailoverFigures};
use crate::http::{Call, HttpClient};
use crate::pgcluster::PgCluster;
use crate::report::Failures;
use crate::run::{self, LoadConfig, Model};
use crate::stack::{Stack, alive};
use croupier_ledger::StoreLocation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillKind {
    KillNode,
    RestartGateway,
    StoreOutage,
    DrainCycle,
    FreezeNode,
    /// Not part of `ALL`: it needs the data folder on a filesystem the drill mounts.
    DiskFull,
    /// Not part of `ALL`: it needs a stack on the drill's own primary and standby.
    StoreFailover,
}

impl DrillKind {
    pub const ALL: [DrillKind; 5] = [
        DrillKind::KillNode,
        DrillKind::RestartGateway,
        DrillKind::StoreOutage,
        DrillKind::DrainCycle,
        DrillKind::FreezeNode,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DrillKind::KillNode => "kill-node",
            DrillKind::RestartGateway => "restart-gateway",
            DrillKind::StoreOutage => "store-outage",
            DrillKind::DrainCycle => "drain-cycle",
            DrillKind::FreezeNode => "freeze-node",
            DrillKind::DiskFull => "disk-full",
            DrillKind::StoreFailover => "store-failover",
        }
    }

    pub fn parse(name: &str) -> Option<DrillKind> {
        DrillKind::ALL
            .into_iter()
            .chain([DrillKind::DiskFull, DrillKind::StoreFailover])
            .find(|k| k.name() == name)
    }

    fn prefix(self) -> &'static str {
        match self {
            DrillKind::KillNode => "kn",
            DrillKind::RestartGateway => "rg",
            DrillKind::StoreOutage => "so",
            DrillKind::DrainCycle => "dc",
            DrillKind::FreezeNode => "fz",
            DrillKind::DiskFull => "df",
            DrillKind::StoreFailover => "sf",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DrillSettings {
    /// Bets per second during the drill (open model).
    pub rate: f64,
    pub players: usize,
    /// How long the load runs; the fault comes `fault_after` into it.
    pub load: Duration,
    pub fault_after: Duration,
    /// How long the store stays unavailable (store-outage); how long after the kill the
    /// standby is promoted (store-failover).
    pub outage: Duration,
    /// The stack must be whole again within this after the fault.
    pub recover_within: Duration,
    /// Fail the drill when players saw more errors than this.
    pub max_errors: Option<u64>,
    /// Every n-th acknowledged bet is replayed with its key (0 = never).
    pub replay_every: u64,
    /// Every n-th blackjack round is left open for the bank checks to resume (0 = never).
    pub abandon_every: u64,
}

impl Default for DrillSettings {
    fn default() -> Self {
        DrillSettings {
            rate: 50.0,
            players: 20,
            load: Duration::from_secs(12),
            fault_after: Duration::from_secs(3),
            outage: Duration::from_secs(3),
            recover_within: Duration::from_secs(30),
            max_errors: None,
            replay_every: 10,
            abandon_every: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub detail: String,
    /// Since the load started.
    pub at_ms: u64,
    pub lasted_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadFigures {
    pub requests: u64,
    pub bets: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The slowest request.
    pub max_ms: f64,
    /// Non-2xx answers, refused connections, connections reset under a request, other
    /// transport failures, and bets never acknowledged after every retry with their key.
    #[serde(flatten)]
    pub failures: Failures,
    pub websocket_reconnects: u64,
    /// Times a player was left without a WebSocket for more than a second.
    pub players_without_socket_over_1s: u64,
}

/// What a drill found; POSTed as JSON to the control plane when asked.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub drill: DrillKind,
    /// "pass" or "fail".
    pub verdict: &'static str,
    pub reasons: Vec<String>,
    pub started_unix_ms: u64,
    pub fault: Fault,
    /// Failed requests the simulated players saw, over the whole load and after the fault.
    pub player_visible_errors: u64,
    pub errors_after_fault: u64,
    /// From the fault until the stack was whole and no request failed or stalled (> 1 s)
    /// any more; `None` when it did not recover in time.
    pub time_to_recover_ms: Option<u64>,
    pub load: LoadFigures,
    pub bank: BankReport,
    /// The store-failover drill's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverFigures>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn signal(pid: i32, signal: i32) -> Result<(), LoadError> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(LoadError::io(
            format!("signalling pid {pid}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

async fn wait_gone(pid: i32, within: Duration) -> Result<(), LoadError> {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() > deadline {
            return Err(LoadError::Stack(format!(
                "pid {pid} did not stop within {within:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// An ops call's answer read as `T`: its type in `croupier_web::wire`.
async fn ops<T: DeserializeOwned>(
    http: &HttpClient,
    stack: &Stack,
    call: Call<'_>,
) -> Result<T, LoadError> {
    let url = call.url.clone();
    let answer = http.send(0, call.token(&stack.ops_token)).await?;
    if !answer.is_success() {
        return Err(LoadError::Http {
            url,
            reason: format!("{} {}", answer.status, answer.json()),
        });
    }
    answer.read().ok_or_else(|| LoadError::Http {
        url,
        reason: format!("unexpected answer {}", answer.json()),
    })
}

fn put(url: String, body: &impl serde::Serialize) -> Call<'static> {
    let mut call = Call::post(url, body);
    call.method = hyper::Method::PUT;
    call
}

/// Drains and undrains each node in turn, at the gateway and on the node.
async fn drain_cycle(stack: &Stack, http: &HttpClient) -> Result<String, LoadError> {
    let mut done = Vec::new();
    for (i, name) in (0..).zip(stack.node_names()) {
        let admin = format!("{}/admin/nodes/{name}", stack.admin());
        let drain = format!("{}/ops/drain", stack.node_url(i));
        let draining = SetNodeState {
            state: NodeState::Draining,
        };
        ops::<Nodes>(http, stack, put(admin.clone(), &draining)).await?;
        let start = SetDrain { draining: true };
        ops::<DrainReport>(http, stack, Call::post(drain.clone(), &start)).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let report: DrainReport = ops(http, stack, Call::get(drain.clone())).await?;
            if report.in_flight_requests == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stop = SetDrain { draining: false };
        ops::<DrainReport>(http, stack, Call::post(drain, &stop)).await?;
        let active = SetNodeState {
            state: NodeState::Active,
        };
        ops::<Nodes>(http, stack, put(admin, &active)).await?;
        stack.wait_whole(Duration::from_secs(10)).await?;
        done.push(name.clone());
    }
    Ok(format!(
        "drained and undrained {} in turn (gateway state and node drain)",
        done.join(", ")
    ))
}

/// Makes the ledger unavailable for `outage`: a PostgreSQL server is stopped for real (as by
/// a crash) and started again; a SQLite file has its write lock held.
async fn store_outage(stack: &Stack, outage: Duration) -> Result<String, LoadError> {
    match (stack.store(), &stack.store_server) {
        (StoreLocation::Sqlite(db), _) => hold_sqlite_lock(db, outage).await,
        (StoreLocation::Postgres(_), Some(server)) => restart_postgres(server, outage).await,
        (StoreLocation::Postgres(_), None) => Err(LoadError::Config(
            "store-outage on PostgreSQL restarts the server, so it needs the drill's own cluster \
             (run the drill with --backend postgres, not --attach)"
                .into(),
        )),
    }
}

/// Crashes the PostgreSQL server (`pg_ctl stop -m immediate`), keeps it down for `outage`,
/// starts it again (crash recovery) and waits until it accepts connections. The load goes
/// on meanwhile: `pg_ctl` runs outside the runtime's workers.
async fn restart_postgres(server: &PgCluster, outage: Duration) -> Result<String, LoadError> {
    let stopped = Instant::now();
    tokio::task::block_in_place(|| server.stop("immediate"))?;
    tokio::time::sleep(outage).await;
    tokio::task::block_in_place(|| {
        server.start()?;
        server.wait_accepting(Duration::from_secs(30))
    })?;
    Ok(format!(
        "PostgreSQL on port {} was stopped with -m immediate (a crash), kept down {} ms and \
         started again; it accepted connections after {} ms",
        server.port(),
        outage.as_millis(),
        stopped.elapsed().as_millis()
    ))
}

/// Holds the SQLite ledger's write lock for `outage`.
async fn hold_sqlite_lock(db: std::path::PathBuf, outage: Duration) -> Result<String, LoadError> {
    tokio::task::spawn_blocking(move || -> Result<(), LoadError> {
        let conn = croupier_ledger::sqlite::connect(&db, false)?;
        conn.execute_batch("BEGIN EXCLUSIVE")
            .map_err(croupier_ledger::LedgerError::from)?;
        std::thread::sleep(outage);
        conn.execute_batch("COMMIT")
            .map_err(croupier_ledger::LedgerError::from)?;
        Ok(())
    })
    .await
    .map_err(|e| LoadError::Stack(format!("the outage task failed: {e}")))??;
    Ok(format!(
        "the ledger's write lock was held for {} ms (every writer blocked, reads went on)",
        outage.as_millis()
    ))
}

/// Injects the fault; returns what was done (and, for store-failover, its timings).
async fn inject(
    kind: DrillKind,
    stack: &Stack,
    settings: &DrillSettings,
    shared: &run::Shared,
) -> Result<(String, Option<Failover>), LoadError> {
    if kind == DrillKind::StoreFailover {
        let failover = failover::kill_and_promote(stack, shared, settings.outage).await?;
        return Ok((failover.detail.clone(), Some(failover)));
    }
    inject_other(kind, stack, settings).await.map(|d| (d, None))
}

async fn inject_other(
    kind: DrillKind,
    stack: &Stack,
    settings: &DrillSettings,
) -> Result<String, LoadError> {
    let http = HttpClient::new(1, Duration::from_secs(10))?;
    match kind {
        DrillKind::KillNode => {
            let pid = stack
                .node_pid(0)
                .ok_or_else(|| LoadError::Stack("node-1's process was not found".into()))?;
            signal(pid, libc::SIGKILL)?;
            Ok(format!("kill -9 of node-1 (pid {pid})"))
        }
        DrillKind::RestartGateway => {
            let pid = stack
                .gateway_pid()
                .ok_or_else(|| LoadError::Stack("the gateway's process was not found".into()))?;
            signal(pid, libc::SIGTERM)?;
            wait_gone(pid, Duration::from_secs(30)).await?;
            Ok(format!(
                "the gateway (pid {pid}) was stopped with SIGTERM; the supervisor starts a new one"
            ))
        }
        DrillKind::StoreOutage => store_outage(stack, settings.outage).await,
        DrillKind::DrainCycle => drain_cycle(stack, &http).await,
        DrillKind::FreezeNode => crate::freeze::freeze_node(stack).await,
        DrillKind::DiskFull => {
            crate::disk_full::fill_and_free(stack, settings.outage.max(crate::disk_full::MIN_HOLD))
                .await
        }
        DrillKind::StoreFailover => Err(LoadError::Config(
            "store-failover is injected with the load's statistics".into(),
        )),
    }
}

/// Runs one drill against `stack`.
pub async fn run(
    kind: DrillKind,
    stack: &Stack,
    settings: &DrillSettings,
) -> Result<DrillReport, LoadError> {
    let started_unix_ms = unix_ms();
    let running = run::start(load_config(kind, stack, settings))?;
    let shared = running.shared.clone();
    // The fault comes `fault_after` into the load itself, after the players signed in.
    while !shared.stats.lock().measuring() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(settings.fault_after).await;
    let fault_at = Instant::now();
    let (detail, failover_fault) = inject(kind, stack, settings, &shared).await?;
    let fault_ended = Instant::now();
    let whole = stack.wait_whole(settings.recover_within).await;
    let result = running.finish().await?;
    let recovery = Recovery::of(&shared, fault_at, whole.as_ref().ok());
    let mut reasons = Vec::new();
    if kind == DrillKind::DiskFull {
        reasons.extend(disk_full_reasons(stack, &shared, fault_at, fault_ended).await);
    }
    if let Err(e) = &whole {
        reasons.push(format!("did not recover: {e}"));
        // Give it the same time again so the bank checks can reach the players' API.
        let _ = stack.wait_whole(settings.recover_within).await;
    }
    let mut history = result.history;
    let http = HttpClient::new(1, Duration::from_secs(15))?;
    let bank = bank::check(&stack.store(), &mut history, &stack.gateway(), &http).await?;
    let failover = failover_fault.map(|fault| {
        let (figures, why) = failover::judge(&fault, fault_at, &shared, &bank);
        reasons.extend(why);
        figures
    });
    if failover.is_none() {
        reasons.extend(bank_reasons(&bank));
    }
    let summary = result.summary;
    reasons.extend(judge_kind(kind, &summary));
    reasons.extend(judge_errors(settings.max_errors, summary.errors));
    Ok(DrillReport {
        drill: kind,
        verdict: if reasons.is_empty() { "pass" } else { "fail" },
        reasons,
        started_unix_ms,
        fault: Fault {
            detail,
            at_ms: fault_at
                .saturating_duration_since(recovery.load_start)
                .as_millis() as u64,
            lasted_ms: fault_ended.duration_since(fault_at).as_millis() as u64,
        },
        player_visible_errors: summary.errors,
        errors_after_fault: recovery.errors_after_fault,
        time_to_recover_ms: recovery.time_to_recover_ms,
        load: LoadFigures::of(&summary),
        bank,
        failover,
    })
}

/// The drill's load: an open model at the drill's rate, its players named for the drill.
fn load_config(kind: DrillKind, stack: &Stack, settings: &DrillSettings) -> LoadConfig {
    let mut config = LoadConfig::new(
        stack.gateway(),
        Model::Open {
            rate: settings.rate,
            new_players_per_s: 0.0,
        },
    );
    config.players = settings.players;
    config.duration = settings.load;
    config.replay_every = settings.replay_every;
    config.abandon_every = settings.abandon_every;
    config.player_prefix = format!("{}{}", kind.prefix(), run::default_prefix());
    config
}

/// How the players fared from the fault on.
struct Recovery {
    load_start: Instant,
    errors_after_fault: u64,
    /// From the fault until the stack was whole again and players stopped seeing trouble.
    time_to_recover_ms: Option<u64>,
}

impl Recovery {
    fn of(shared: &run::Shared, fault_at: Instant, whole_at: Option<&Instant>) -> Self {
        let stats = shared.stats.lock();
        let last_trouble = stats.last_trouble_since(fault_at).map(|i| i.at);
        Recovery {
            load_start: stats.start,
            errors_after_fault: stats.failures_between(fault_at, Instant::now()),
            time_to_recover_ms: whole_at.map(|back| {
                let recovered = last_trouble.map_or(*back, |t| t.max(*back));
                recovered.duration_since(fault_at).as_millis() as u64
            }),
        }
    }
}

/// What a full disk must not do to the players, and the incident it must open.
async fn disk_full_reasons(
    stack: &Stack,
    shared: &run::Shared,
    fault_at: Instant,
    fault_ended: Instant,
) -> Vec<String> {
    let mut reasons = {
        let stats = shared.stats.lock();
        let after: Vec<&crate::stats::Incident> = stats
            .incidents
            .iter()
            .filter(|i| i.at >= fault_at)
            .collect();
        crate::disk_full::check_errors(&after, fault_ended)
    };
    reasons.extend(crate::disk_full::check_incident(stack).await);
    reasons
}

/// The bank checks that failed (a failover drill judges them itself).
fn bank_reasons(bank: &BankReport) -> impl Iterator<Item = String> + '_ {
    bank.checks.iter().filter(|c| !c.ok).map(|check| {
        format!(
            "bank check {} failed: {}",
            check.name,
            check.failures.first().cloned().unwrap_or_default()
        )
    })
}

/// More player-visible errors than the operator allows.
fn judge_errors(max_errors: Option<u64>, errors: u64) -> Option<String> {
    max_errors
        .filter(|max| errors > *max)
        .map(|max| format!("{errors} player-visible errors, more than the {max} allowed"))
}

impl LoadFigures {
    fn of(summary: &crate::report::Summary) -> Self {
        LoadFigures {
            requests: summary.requests,
            bets: summary.bets,
            errors: summary.errors,
            p50_ms: summary.latency_ms.p50,
            p99_ms: summary.latency_ms.p99,
            max_ms: summary.latency_ms.max,
            failures: summary.failures.clone(),
            websocket_reconnects: summary.websockets.reconnects,
            players_without_socket_over_1s: summary.websockets.gaps_over_1s,
        }
    }
}

/// What a drill's own fault promises the players, beyond the bank checks: a restarted
/// gateway refuses no connection, a frozen node costs no player over a second.
fn judge_kind(kind: DrillKind, summary: &crate::report::Summary) -> Option<String> {
    match kind {
        DrillKind::RestartGateway if summary.failures.refused_connections > 0 => Some(format!(
            "{} connections refused while the gateway restarted (the supervisor holds its sockets)",
            summary.failures.refused_connections
        )),
        DrillKind::FreezeNode => crate::freeze::judge(summary.latency_ms.max),
        _ => None,
    }
}

/// POSTs a drill report to the control plane (`url`, with the ops token); the HTTP status.
pub async fn send_report(url: &str, token: &str, report: &DrillReport) -> Result<u16, LoadError> {
    let body = serde_json::to_value(report).map_err(|e| LoadError::Config(e.to_string()))?;
    let http = HttpClient::new(1, Duration::from_secs(10))?;
    Ok(http
        .send(0, Call::post(url, &body).token(token))
        .await?
        .status)
}
