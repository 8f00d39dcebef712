//! `croupier ctl`: the control plane's REST API from a terminal — status, alerts, SLOs,
//! incidents (open, update, postmortem), silences, nodes (drain, undrain) and the audit log.
//! Prints the API's JSON answers; a refusal becomes an error carrying the API's message.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::control_client::Connection;

#[derive(Args)]
pub struct CtlArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand)]
enum CtlCommand {
    /// What players see: components, uptime, active incidents.
    Status,
    /// Scraped targets and whether each answers.
    Targets,
    /// Pending and firing alerts.
    Alerts,
    /// SLOs with budget left and burn rates.
    Slos,
    /// Incidents, newest first.
    Incidents,
    /// Open an incident by hand (players are told at once).
    Open {
        #[arg(long)]
        title: String,
        /// wallet, dice, roulette, slot, blackjack, lobby, or games (all games).
        #[arg(long)]
        component: String,
        /// critical, major or minor.
        #[arg(long)]
        severity: String,
        #[arg(long)]
        message: String,
    },
    /// Post an update to an incident; --status resolved closes it.
    Update {
        id: i64,
        /// investigating, identified, monitoring or resolved.
        #[arg(long)]
        status: String,
        #[arg(long)]
        message: String,
        /// Expected fix, in minutes from now.
        #[arg(long)]
        eta_minutes: Option<i64>,
    },
    /// Print an incident's postmortem skeleton (Markdown).
    Postmortem { id: i64 },
    /// Silences not yet over.
    Silences,
    /// Silence alerts: an alert key (rule/target), a prefix ending in *, or component:<name>.
    Silence {
        matcher: String,
        #[arg(long)]
        comment: String,
        /// How long, e.g. 90s, 30m, 2h, 1d.
        #[arg(long, value_parser = parse_duration)]
        duration: u64,
    },
    /// End a silence now.
    Unsilence { id: i64 },
    /// The nodes as the gateways see them.
    Nodes,
    /// Drain a node on every gateway: no new work, rounds in flight finish.
    Drain { node: String },
    /// Put a drained node back in service.
    Undrain { node: String },
    /// The audit log, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// `90s`, `30m`, `2h`, `1d` (or bare seconds) as seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 30m"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("'{text}': the unit is s, m, h or d")),
    };
    Ok(n * scale)
}

pub fn run(args: CtlArgs) -> anyhow::Result<()> {
    let client = args.connection.client()?;
    match args.command {
        CtlCommand::Status => client.print("GET", "/api/v1/status", None),
        CtlCommand::Targets => client.print("GET", "/api/v1/targets", None),
        CtlCommand::Alerts => client.print("GET", "/api/v1/alerts", None),
        CtlCommand::Slos => client.print("GET", "/api/v1/slos", None),
        CtlCommand::Incidents => client.print("GET", "/api/v1/incidents", None),
        CtlCommand::Open {
            title,
            component,
            severity,
            message,
        } => client.print(
            "POST",
            "/api/v1/incidents",
            Some(json!({"title": title, "component": component, "severity": severity, "message": message})),
        ),
        CtlCommand::Update {
            id,
            status,
            message,
            eta_minutes,
        } => {
            let eta_ms = eta_minutes.map(|m| croupier_control::now_ms() + m * 60_000);
            client.print(
                "POST",
                &format!("/api/v1/incidents/{id}/updates"),
                Some(json!({"status": status, "message": message, "eta_ms": eta_ms})),
            )
        }
        CtlCommand::Postmortem { id } => {
            print!("{}", client.call("GET", &format!("/api/v1/incidents/{id}/postmortem"), None)?);
            Ok(())
        }
        CtlCommand::Silences => client.print("GET", "/api/v1/silences", None),
        CtlCommand::Silence {
            matcher,
            comment,
            duration,
        } => client.print(
            "POST",
            "/api/v1/silences",
            Some(json!({"matcher": matcher, "comment": comment, "duration_s": duration})),
        ),
        CtlCommand::Unsilence { id } => client.print("DELETE", &format!("/api/v1/silences/{id}"), None),
        CtlCommand::Nodes => client.print("GET", "/api/v1/nodes", None),
        CtlCommand::Drain { node } => client.print(
            "PUT",
            &format!("/api/v1/nodes/{node}"),
            Some(json!({"state": "draining"})),
        ),
        CtlCommand::Undrain { node } => client.print(
            "PUT",
            &format!("/api/v1/nodes/{node}"),
            Some(json!({"state": "active"})),
        ),
        CtlCommand::Audit { limit } => client.print("GET", &format!("/api/v1/audit?limit={limit}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1_800));
        assert_eq!(parse_duration("2h"), Ok(7_200));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert_eq!(parse_duration("45"), Ok(45));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
