//! `croupier loadtest`: simulated players against a players' address, with thresholds that
//! fail the run, a JSON summary and an HTML report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use croupier_ledger::StoreLocation;
use croupier_loadtest::bank::{self, BankReport};
use croupier_loadtest::history::History;
use croupier_loadtest::player::Game;
use croupier_loadtest::report::{self, Summary};
use croupier_loadtest::run::{self, LoadConfig, Model, Scenario};
use croupier_loadtest::threshold::Threshold;
use serde::Serialize;

use crate::console::outln;

#[derive(Clone, Copy, ValueEnum)]
enum ModelArg {
    /// Arrivals at --rate per second, whatever the server does.
    Open,
    /// --players each play, think --think-ms, and play again.
    Closed,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScenarioArg {
    /// Rounds of every game (blackjack to the end) and a WebSocket per player.
    Casino,
    /// GET /api/v1/lobby only (to compare with oha or wrk).
    Lobby,
}

#[derive(Args)]
pub struct LoadtestArgs {
    /// The players' address: the gateway (or a node). Repeat for each address of the same
    /// service (two gateways behind one name): players are spread over them and move to the
    /// next when a connection is refused or cut.
    #[arg(long = "target", default_value = "http://127.0.0.1:8000")]
    targets: Vec<String>,
    /// CA certificates (PEM) trusted for an https:// target (default: the system's roots).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "open")]
    model: ModelArg,
    #[arg(long, value_enum, default_value = "casino")]
    scenario: ScenarioArg,
    /// Open model: rounds (or lobby reads) per second once ramped up.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Open model: new players signing in per second during the run.
    #[arg(long, default_value_t = 0.0)]
    new_players_per_sec: f64,
    /// Players signed in at the start (closed model: the number of players looping).
    #[arg(long, default_value_t = 50)]
    players: usize,
    /// Closed model: pause between a player's rounds, in milliseconds.
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    #[arg(long, default_value_t = 0.0)]
    ramp_up_secs: f64,
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Games to play, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "dice,roulette,slot,blackjack"
    )]
    games: Vec<String>,
    /// Stake per bet in minor units (a multiple of 10).
    #[arg(long, default_value_t = 100)]
    stake: i64,
    /// Send every n-th acknowledged bet again with its key; it must come back as a replay
    /// (0 = never).
    #[arg(long, default_value_t = 20)]
    replay_every: u64,
    /// Leave every n-th blackjack round open, as a player walking away mid-hand would
    /// (0 = never); --check-ledger then resumes them through the API.
    #[arg(long, default_value_t = 0)]
    abandon_every: u64,
    /// Do not keep a WebSocket open per player.
    #[arg(long)]
    no_websockets: bool,
    /// Spread players over this many loopback source addresses (127.0.0.1, .2, …), so the
    /// gateway's per-address rate limit sees many clients.
    #[arg(long, default_value_t = 1)]
    source_addresses: u8,
    /// Open model: arrivals beyond this many requests in flight are dropped (and counted).
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Fail the run unless this holds, e.g. 'p99<50ms', 'errors<0.1%', 'bets_per_s>=500';
    /// repeat for each.
    #[arg(long = "threshold")]
    thresholds: Vec<String>,
    /// Write the summary as JSON here.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    report_html: Option<PathBuf>,
    /// After the run, check the ledger (a SQLite file path, `sqlite://PATH` or a
    /// `postgres://` URL) against the acknowledged bets (bank checks).
    #[arg(long)]
    check_ledger: Option<StoreLocation>,
    /// Worker threads of the generator (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

fn config(args: &LoadtestArgs) -> anyhow::Result<LoadConfig> {
    anyhow::ensure!(
        args.duration_secs.is_finite() && args.duration_secs > 0.0,
        "--duration-secs must be above zero"
    );
    anyhow::ensure!(
        args.ramp_up_secs.is_finite() && args.ramp_up_secs >= 0.0,
        "--ramp-up-secs must be zero or more"
    );
    let model = match args.model {
        ModelArg::Open => Model::Open {
            rate: args.rate,
            new_players_per_s: args.new_players_per_sec,
        },
        ModelArg::Closed => Model::Closed {
            think: Duration::from_millis(args.think_ms),
        },
    };
    let mut config = LoadConfig::new(&args.targets[0], model);
    config.also = args.targets[1..].to_vec();
    config.scenario = match args.scenario {
        ScenarioArg::Casino => Scenario::Casino,
        ScenarioArg::Lobby => Scenario::Lobby,
    };
    config.players = args.players;
    config.ramp = Duration::from_secs_f64(args.ramp_up_secs);
    config.duration = Duration::from_secs_f64(args.duration_secs);
    config.games = args
        .games
        .iter()
        .map(|g| {
            Game::parse(g.trim())
                .with_context(|| format!("unknown game '{g}' (dice, roulette, slot, blackjack)"))
        })
        .collect::<anyhow::Result<_>>()?;
    config.stake = args.stake;
    config.replay_every = args.replay_every;
    config.abandon_every = args.abandon_every;
    config.websockets = !args.no_websockets;
    config.tls.ca = args.tls_ca.clone();
    config.source_addresses = args.source_addresses;
    config.max_in_flight = args.max_in_flight;
    config.progress = !args.quiet;
    config.thresholds = args
        .thresholds
        .iter()
        .map(|t| Threshold::parse(t))
        .collect::<Result<_, _>>()?;
    Ok(config)
}

/// `--summary-json`: the run's summary, and the bank checks' report when they ran.
#[derive(Serialize)]
struct SummaryFile<'a> {
    #[serde(flatten)]
    summary: &'a Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    bank: Option<&'a BankReport>,
}

/// The bank checks of `--check-ledger` against the run's history.
async fn check_the_bank(
    db: &StoreLocation,
    args: &LoadtestArgs,
    history: &mut History,
) -> anyhow::Result<BankReport> {
    let tls = croupier_web::tls::ClientFiles {
        ca: args.tls_ca.clone(),
        identity: None,
        crl: None,
    };
    let http = croupier_loadtest::http::HttpClient::with_tls(1, Duration::from_secs(15), &tls)?;
    Ok(bank::check(db, history, &args.targets[0], &http).await?)
}

/// The bank checks, each said, and what they counted.
fn print_bank(report: &BankReport) -> std::io::Result<()> {
    for check in &report.checks {
        outln!(
            "bank check {}: {}{}",
            check.name,
            if check.ok { "ok" } else { "FAILED" },
            check
                .failures
                .first()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default()
        )?;
    }
    outln!(
        "bank: {} players; {} acknowledged requests named {} rounds; {} rounds in the ledger \
         ({} requests unanswered); {} open rounds resumed",
        report.players,
        report.acknowledged_requests,
        report.acknowledged_rounds,
        report.ledger_rounds,
        report.unanswered_requests,
        report.resumed_rounds
    )
}

/// The run's figures and each threshold's verdict.
fn print_summary(summary: &Summary) -> std::io::Result<()> {
    outln!(
        "{} requests ({:.1}/s), {} bets ({:.1}/s), {} errors ({:.3}%), {} dropped; latency from intended start p50 {:.2} ms p99 {:.2} ms max {:.2} ms; {:.0} requests per CPU-second",
        summary.requests,
        summary.rps,
        summary.bets,
        summary.bets_per_s,
        summary.errors,
        summary.error_percent,
        summary.dropped,
        summary.latency_ms.p50,
        summary.latency_ms.p99,
        summary.latency_ms.max,
        summary.requests_per_cpu_second
    )?;
    for verdict in &summary.thresholds {
        outln!(
            "  {} {} (actual {:.3})",
            if verdict.pass { "pass" } else { "FAIL" },
            verdict.threshold,
            verdict.actual
        )?;
    }
    Ok(())
}

pub fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    // One thread is a current-thread runtime: no work-stealing queues or cross-thread wake-ups
    // for a generator that must cost less than what it measures.
    let mut runtime = match args.threads {
        Some(0 | 1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.worker_threads(threads);
            runtime
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime.enable_all().build()?;
    let (summary, bank) = runtime.block_on(async {
        let mut result = run::run(config).await?;
        let bank = match &args.check_ledger {
            Some(db) => Some(check_the_bank(db, &args, &mut result.history).await?),
            None => None,
        };
        anyhow::Ok((result.summary, bank))
    })?;
    if let Some(path) = &args.summary_json {
        let file = SummaryFile {
            summary: &summary,
            bank: bank.as_ref(),
        };
        std::fs::write(path, serde_json::to_string_pretty(&file)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.report_html {
        std::fs::write(path, report::html(&summary))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // The files first: output that cannot be written must not cost them.
    let printed = bank
        .as_ref()
        .map_or(Ok(()), print_bank)
        .and_then(|()| print_summary(&summary));
    anyhow::ensure!(summary.pass, "thresholds failed");
    anyhow::ensure!(bank.is_none_or(|b| b.ok), "the bank checks failed");
    Ok(printed?)
}
