//! `croupier drill`: failover drills against a `croupier up` stack (started here, or attached
//! to), each under load and bounded in time, ending with the bank checks and a verdict.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use croupier_ledger::StoreLocation;
use croupier_loadtest::disk_full;
use croupier_loadtest::drill::{self, DrillKind, DrillReport, DrillSettings};
use croupier_loadtest::layout::Layout;
use croupier_loadtest::pgcluster::{PgCluster, Replication};
use croupier_loadtest::stack::{Stack, StackSpec};

use crate::console::{errln, outln};

#[derive(Args)]
pub struct DrillArgs {
    /// kill-node, restart-gateway, store-outage, drain-cycle, freeze-node (node-1 stopped
    /// with SIGSTOP for 4 s: fails when a player waited over a second), or all; or disk-full (alone:
    /// it mounts a 64 MiB tmpfs on the data folder, so it needs root, and skips without); or
    /// store-failover (alone: the ledger on a PostgreSQL primary and a streaming standby the
    /// drill creates on --pg-port and the next port; the primary is SIGKILLed and the standby
    /// promoted).
    drill: String,
    /// store-failover: replicate asynchronously (the default is synchronous), to see how many
    /// acknowledged bets a failover then loses.
    #[arg(long = "async")]
    asynchronous: bool,
    /// Data folder of the stack (created when the drill starts the stack).
    #[arg(long, default_value = "drill-data")]
    data: PathBuf,
    /// Use a stack already running with these ports and data folder instead of starting one.
    #[arg(long)]
    attach: bool,
    /// The ledger's backend when the drill starts the stack: `sqlite` (a file in the data
    /// folder) or `postgres` (a PostgreSQL cluster the drill creates with initdb in
    /// <data>/pg, on --pg-port, so store-outage can crash and restart it for real).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    backend: String,
    /// Port of the drill's own PostgreSQL cluster (--backend postgres).
    #[arg(long, default_value_t = 5499)]
    pg_port: u16,
    /// With --attach: the ledger of the running stack, when it is not <data>/ledger.db.
    #[arg(long)]
    store: Option<StoreLocation>,
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    #[arg(long, default_value_t = 7101)]
    first_node_port: u16,
    /// Players' port; the gateway's admin port is the next one.
    #[arg(long, default_value_t = 8100)]
    gateway_port: u16,
    #[arg(long, default_value_t = 8180)]
    control_port: u16,
    /// Bets per second during each drill.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    #[arg(long, default_value_t = 20)]
    players: usize,
    /// Seconds of load per drill.
    #[arg(long, default_value_t = 12.0)]
    load_secs: f64,
    /// Seconds into the load when the fault comes.
    #[arg(long, default_value_t = 3.0)]
    fault_after_secs: f64,
    /// store-outage: milliseconds the ledger stays locked (over 10 000, writers give up with 503).
    /// store-failover: milliseconds from the kill to the promotion (the HA manager noticing;
    /// over 3 000, writers give up and players get 503 until the promotion).
    #[arg(long, default_value_t = 3_000)]
    outage_ms: u64,
    /// Seconds the stack has to be whole again after the fault.
    #[arg(long, default_value_t = 30.0)]
    recover_within_secs: f64,
    /// Fail a drill whose players saw more errors than this.
    #[arg(long)]
    max_errors: Option<u64>,
    /// Replay every n-th acknowledged bet with its key (0 = never).
    #[arg(long, default_value_t = 10)]
    replay_every: u64,
    /// Leave every n-th blackjack round open, for the bank checks to resume (0 = never).
    #[arg(long, default_value_t = 3)]
    abandon_every: u64,
    /// Write the reports (a JSON array) here.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// POST each report as JSON to this URL (the control plane's drills endpoint, e.g.
    /// http://127.0.0.1:8080/api/v1/drills) with the ops token.
    #[arg(long)]
    report_to: Option<String>,
}

/// Starts the stack on a PostgreSQL primary and a streaming standby made for the drill, the
/// nodes on a multi-host URL naming both.
async fn start_failover_stack(
    mut spec: StackSpec,
    pg_port: u16,
    replication: Replication,
    ready: Duration,
) -> anyhow::Result<Stack> {
    let dir = pg_folder(&spec.layout.data);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let standby_port = pg_port
        .checked_add(1)
        .context("--pg-port is the last port")?;
    let (primary, standby) = tokio::task::spawn_blocking(move || {
        PgCluster::primary_and_standby(&dir, pg_port, standby_port, replication)
    })
    .await??;
    // The primary first, then the standby: the nodes find whichever accepts writes.
    let url = PgCluster::read_write_url(&[&primary, &standby]);
    spec.layout.store = Some(StoreLocation::Postgres(url));
    let mut stack = Stack::start(spec, ready).await?;
    stack.store_server = Some(primary);
    stack.store_standby = Some((standby, replication));
    Ok(stack)
}

/// Where the drill's PostgreSQL clusters live: beside the stack's data folder, never in it,
/// since `up` makes that folder private to its owner and the server runs as another user.
fn pg_folder(data: &std::path::Path) -> PathBuf {
    let mut folder = data.as_os_str().to_owned();
    folder.push("-pg");
    PathBuf::from(folder)
}

/// Starts the stack on its backend; for PostgreSQL, on a cluster made for the drill.
async fn start_stack(
    mut spec: StackSpec,
    backend: &str,
    pg_port: u16,
    ready: Duration,
) -> anyhow::Result<Stack> {
    if backend != "postgres" {
        return Ok(Stack::start(spec, ready).await?);
    }
    let dir = pg_folder(&spec.layout.data);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let cluster = tokio::task::spawn_blocking(move || PgCluster::create(&dir, pg_port)).await??;
    spec.layout.store = Some(StoreLocation::Postgres(cluster.url()));
    let mut stack = Stack::start(spec, ready).await?;
    stack.store_server = Some(cluster);
    Ok(stack)
}

fn secs(value: f64, name: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        value.is_finite() && value >= 0.0,
        "{name} must be zero or more"
    );
    Ok(Duration::from_secs_f64(value))
}

/// The drills asked for: one by name, or `all`.
fn kinds(drill_name: &str) -> anyhow::Result<Vec<DrillKind>> {
    if drill_name == "all" {
        return Ok(DrillKind::ALL.to_vec());
    }
    let kind = DrillKind::parse(drill_name).with_context(|| {
        format!(
            "unknown drill '{drill_name}': kill-node, restart-gateway, store-outage, drain-cycle, \
             freeze-node, all, \
             disk-full or store-failover"
        )
    })?;
    Ok(vec![kind])
}

/// The load and timing of each drill; the disk-full drill loads long enough to see play
/// resume after the disk is freed.
fn settings(args: &DrillArgs, disk_full: bool) -> anyhow::Result<DrillSettings> {
    let mut load = secs(args.load_secs, "--load-secs")?;
    let fault_after = secs(args.fault_after_secs, "--fault-after-secs")?;
    let outage = Duration::from_millis(args.outage_ms);
    if disk_full {
        anyhow::ensure!(
            !args.attach,
            "the disk-full drill starts its own stack on a small filesystem"
        );
        // Load on both sides of the full disk, and long enough after it to see play resume.
        let hold = outage.max(disk_full::MIN_HOLD);
        load = load.max(fault_after + hold + disk_full::RESUME_WITHIN * 2);
    }
    let settings = DrillSettings {
        rate: args.rate,
        players: args.players,
        load,
        fault_after,
        outage,
        recover_within: secs(args.recover_within_secs, "--recover-within-secs")?,
        max_errors: args.max_errors,
        replay_every: args.replay_every,
        abandon_every: args.abandon_every,
    };
    anyhow::ensure!(
        settings.fault_after < settings.load,
        "the fault must come before the load ends"
    );
    Ok(settings)
}

/// The stack the drills run against: this binary's `up` with the given ports and folder.
fn spec(args: &DrillArgs) -> anyhow::Result<StackSpec> {
    Ok(StackSpec {
        bin: std::env::current_exe()?,
        layout: Layout {
            nodes: args.nodes,
            first_node_port: args.first_node_port,
            gateway_port: args.gateway_port,
            control_port: args.control_port,
            store: args.store.clone(),
            ..Layout::new(std::path::absolute(&args.data)?)
        },
    })
}

/// Attaches to the running stack, or starts one on the drills' backend.
async fn stack_for(
    args: &DrillArgs,
    spec: StackSpec,
    failover_drill: bool,
) -> anyhow::Result<Stack> {
    let ready = Duration::from_secs(60);
    if args.attach {
        return Ok(Stack::attach(spec, ready).await?);
    }
    if !failover_drill {
        return start_stack(spec, &args.backend, args.pg_port, ready).await;
    }
    let replication = if args.asynchronous {
        Replication::Async
    } else {
        Replication::Sync
    };
    start_failover_stack(spec, args.pg_port, replication, ready).await
}

/// One drill's outcome on stderr, as it ends.
fn print_report(report: &DrillReport) {
    let name = report.drill.name();
    if let Some(f) = &report.failover {
        errln!(
            "drill {name}: write outage {} ms (promoted after {} ms), {} errors other than \
             503, {} acknowledged bets lost ({:?} replication)",
            f.write_outage_ms
                .map_or("-".to_owned(), |ms| ms.to_string()),
            f.promoted_ms,
            f.non_503_errors,
            f.acknowledged_bets_lost,
            f.replication
        );
    }
    let seen = &report.load.failures;
    errln!(
        "drill {name}: {} ({} player-visible errors: {} non-2xx answers, {} refused and {} \
         reset connections, {} bets never acknowledged; slowest request {:.0} ms; \
         recovered in {} ms, bank checks {})",
        report.verdict,
        report.player_visible_errors,
        seen.non_2xx_answers,
        seen.refused_connections,
        seen.reset_connections,
        seen.bets_never_acknowledged,
        report.load.max_ms,
        report
            .time_to_recover_ms
            .map_or("-".to_owned(), |ms| ms.to_string()),
        if report.bank.ok { "ok" } else { "FAILED" }
    );
}

/// Sends a report to `--report-to`; a failure is a warning, never the drill's verdict.
async fn send_report(url: &str, stack: &Stack, report: &DrillReport) {
    match drill::send_report(url, &stack.ops_token, report).await {
        Ok(status) if (200..300).contains(&status) => {}
        Ok(status) => errln!("warning: {url} answered {status} to the drill report"),
        Err(e) => errln!("warning: could not send the drill report: {e}"),
    }
}

/// Runs each drill in turn against `stack`, reporting as each ends.
async fn run_drills(
    kinds: Vec<DrillKind>,
    stack: &Stack,
    settings: &DrillSettings,
    report_to: Option<&str>,
) -> anyhow::Result<Vec<DrillReport>> {
    let mut reports = Vec::new();
    for kind in kinds {
        errln!("drill {}: running", kind.name());
        let report = drill::run(kind, stack, settings).await?;
        print_report(&report);
        if let Some(url) = report_to {
            send_report(url, stack, &report).await;
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Writes (and prints) the reports; fails when a drill did, else when printing failed.
fn conclude(reports: &[DrillReport], report_json: Option<&std::path::Path>) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(reports)?;
    if let Some(path) = report_json {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    let printed = outln!("{json}");
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.verdict != "pass")
        .map(|r| r.drill.name())
        .collect();
    anyhow::ensure!(failed.is_empty(), "drill(s) failed: {}", failed.join(", "));
    Ok(printed?)
}

pub fn run(args: DrillArgs) -> anyhow::Result<()> {
    let kinds = kinds(&args.drill)?;
    let disk_full = kinds.contains(&DrillKind::DiskFull);
    let failover_drill = kinds.contains(&DrillKind::StoreFailover);
    anyhow::ensure!(
        !(failover_drill && args.attach),
        "the store-failover drill starts its own stack on its own primary and standby"
    );
    let settings = settings(&args, disk_full)?;
    let spec = spec(&args)?;
    let _mounted = if disk_full {
        match disk_full::mount(&spec.layout.data) {
            Ok(mounted) => Some(mounted),
            Err(e) => {
                errln!("drill disk-full: {e}");
                return Ok(());
            }
        }
    } else {
        None
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let reports = runtime.block_on(async {
        let mut stack = stack_for(&args, spec, failover_drill).await?;
        let reports = run_drills(kinds, &stack, &settings, args.report_to.as_deref()).await?;
        stack.stop();
        anyhow::Ok(reports)
    })?;
    conclude(&reports, args.report_json.as_deref())
}
