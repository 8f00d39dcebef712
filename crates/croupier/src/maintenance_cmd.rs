//! `croupier maintenance`: rolling updates and maintenance windows through the control plane.
//! `run` starts a rolling update and follows it step by step until it succeeds (exit 0) or
//! stops and rolls back (exit 1); `schedule`, `list` and `cancel` manage windows.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::control_client::Connection;
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
            let started: Value = serde_json::from_str(&client.call(
                "POST",
                "/api/v1/rollouts",
                Some(json!({"binary": binary, "batch_size": batch_size,
                    "drain_deadline_s": drain_deadline, "staging": staging,
                    "min_eligible": min_eligible})),
            )?)?;
            let id = started["id"].as_i64().context("a rollout id")?;
            eprintln!("rolling update #{id} of {} started", binary.display());
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
            let mut body = json!({"title": title, "scope": scope, "duration_s": duration, "announce_s": announce});
            match (at, cron) {
                (Some(at), None) => body["starts_ms"] = json!(parse_time(&at)?),
                (None, Some(cron)) => {
                    body["cron"] = json!(cron);
                    body["timezone"] = json!(timezone);
                }
                _ => bail!("give --at or --cron"),
            }
            client.print("POST", "/api/v1/maintenance", Some(body))
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
        let rollout: Value =
            serde_json::from_str(&client.call("GET", &format!("/api/v1/rollouts/{id}"), None)?)?;
        let steps = rollout["steps"].as_array().cloned().unwrap_or_default();
        for step in &steps[shown..] {
            let mark = if step["ok"] == true {
                "ok    "
            } else {
                "FAILED"
            };
            println!(
                "{:>6.1}s {mark} {:<8} {:<11} {}",
                started.elapsed().as_secs_f64(),
                step["node"].as_str().unwrap_or(""),
                step["step"].as_str().unwrap_or(""),
                step["message"].as_str().unwrap_or("")
            );
        }
        shown = steps.len();
        match rollout["status"].as_str() {
            Some("running") => std::thread::sleep(Duration::from_millis(250)),
            Some("succeeded") => {
                println!(
                    "rolling update #{id} succeeded in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            other => bail!(
                "rolling update #{id} ended {}{}",
                other.unwrap_or("?"),
                rollout["incident_id"]
                    .as_i64()
                    .map(|i| format!("; incident #{i} opened"))
                    .unwrap_or_default()
            ),
        }
    }
}
