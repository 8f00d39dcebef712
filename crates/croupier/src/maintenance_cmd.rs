//! `croupier maintenance`: rolling updates and maintenance windows through the control plane.
//! `run` starts a rolling update and follows it step by step until it succeeds (exit 0) or
//! stops and rolls back (exit 1); `schedule`, `list` and `cancel` manage windows.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use croupier_web::wire::control::{Created, NewRollout, NewWindow, Rollout, RolloutStatus};

use crate::console::{errln, outln};
use crate::control_client::{Connection, json};
use crate::ctl_cmd::parse_duration;

#[derive(Args)]
pub struct MaintenanceArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: MaintenanceCommand,
}

#[derive(Subcommand)]
enum MaintenanceCommand {
    /// A rolling update: every node, a batch at a time, drained, updated, smoke-tested and
    /// undrained; stops and rolls back on the first failure.
    Run {
        /// The new build (a croupier binary).
        #[arg(long)]
        binary: std::path::PathBuf,
        /// Nodes updated together.
        #[arg(long, default_value_t = 1)]
        batch_size: usize,
        /// How long to wait for a drained node's requests and rounds in flight, e.g. 30s.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        drain_deadline: u64,
        /// First run the smoke test on a staging node started from the newest backup.
        #[arg(long)]
        staging: bool,
        /// Nodes that must stay eligible on every gateway while a batch is out; a rollout
        /// that would leave fewer is refused, and a batch waits for them.
        #[arg(long, default_value_t = 1)]
        min_eligible: usize,
    },
    /// Plan a window: one-off (--at) or recurring (--cron, --timezone).
    Schedule {
        #[arg(long)]
        title: String,
        /// component:<wallet|dice|roulette|slot|blackjack|lobby|games> or node:<name>.
        #[arg(long)]
        scope: String,
        /// Start, as Unix milliseconds or RFC 3339 (2026-12-01T03:00:00Z).
        #[arg(long, conflicts_with = "cron")]
        at: Option<String>,
        /// Cron expression (minute hour day month weekday), e.g. "0 3 * * SUN".
        #[arg(long)]
        cron: Option<String>,
        /// IANA time zone of the cron expression.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Planned duration, e.g. 30m.
        #[arg(long, value_parser = parse_duration)]
        duration: u64,
        /// When players are told ahead, e.g. 24h,15m.
        #[arg(long, value_delimiter = ',', value_parser = parse_duration, default_value = "24h,15m")]
        announce: Vec<u64>,
    },
    /// Windows, with the next or current occurrence.
    List,
    /// Cancel a window.
    Cancel { id: i64 },
    /// Rolling updates, newest first, with their steps.
    Rollouts,
}

/// Seconds as the API takes them.
fn seconds(s: u64) -> anyhow::Result<i64> {
    i64::try_from(s).with_context(|| format!("{s} s is too long"))
}

/// Unix milliseconds from a number or an RFC 3339 time.
fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let time = chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("'{text}' is neither Unix milliseconds nor RFC 3339"))?;
    Ok(time.timestamp_millis())
}

pub fn run(args: MaintenanceArgs) -> anyhow::Result<()> {
    let client = args.connection.client()?;
    match args.command {
        MaintenanceCommand::Run {
            binary,
            batch_size,
            drain_deadline,
            staging,
            min_eligible,
        } => {
            let binary = std::fs::canonicalize(&binary)
                .with_context(|| format!("{} is not there", binary.display()))?;
            let body = NewRollout {
                binary: binary
                    .to_str()
                    .with_context(|| format!("{} is not UTF-8", binary.display()))?
                    .to_owned(),
                batch_size: Some(batch_size),
                drain_deadline_s: Some(drain_deadline),
                staging: Some(staging),
                min_eligible: Some(min_eligible),
            };
            let started: Created = client.read("POST", "/api/v1/rollouts", Some(json(&body)))?;
            let id = started.id;
            errln!("rolling update #{id} of {} started", binary.display());
            follow(&client, id)
        }
        MaintenanceCommand::Schedule {
            title,
            scope,
            at,
            cron,
            timezone,
            duration,
            announce,
        } => {
            let (starts_ms, cron, timezone) = match (at, cron) {
                (Some(at), None) => (Some(parse_time(&at)?), None, None),
                (None, Some(cron)) => (None, Some(cron), Some(timezone)),
                _ => bail!("give --at or --cron"),
            };
            let body = NewWindow {
                title,
                scope,
                starts_ms,
                cron,
                timezone,
                duration_s: seconds(duration)?,
                announce_s: Some(
                    announce
                        .into_iter()
                        .map(seconds)
                        .collect::<Result<_, _>>()?,
                ),
            };
            client.print("POST", "/api/v1/maintenance", Some(json(&body)))
        }
        MaintenanceCommand::List => client.print("GET", "/api/v1/maintenance", None),
        MaintenanceCommand::Cancel { id } => {
            client.print("DELETE", &format!("/api/v1/maintenance/{id}"), None)
        }
        MaintenanceCommand::Rollouts => client.print("GET", "/api/v1/rollouts", None),
    }
}

/// Prints each new step until the rollout ends; an error when it did not succeed.
fn follow(client: &crate::control_client::Client, id: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut shown = 0;
    loop {
        let rollout: Rollout = client.read("GET", &format!("/api/v1/rollouts/{id}"), None)?;
        for step in rollout.steps.get(shown..).unwrap_or_default() {
            let mark = if step.ok { "ok    " } else { "FAILED" };
            outln!(
                "{:>6.1}s {mark} {:<8} {:<11} {}",
                started.elapsed().as_secs_f64(),
                step.node,
                step.step,
                step.message
            )?;
        }
        shown = rollout.steps.len();
        match rollout.status {
            RolloutStatus::Running => std::thread::sleep(Duration::from_millis(250)),
            RolloutStatus::Succeeded => {
                outln!(
                    "rolling update #{id} succeeded in {:.1} s",
                    started.elapsed().as_secs_f64()
                )?;
                return Ok(());
            }
            other => bail!(
                "rolling update #{id} ended {}{}",
                other.as_str(),
                rollout
                    .incident_id
                    .map(|i| format!("; incident #{i} opened"))
                    .unwrap_or_default()
            ),
        }
    }
}
