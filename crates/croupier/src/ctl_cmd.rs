//! `croupier ctl`: the control plane's REST API from a terminal — status, alerts, SLOs,
//! incidents (open, update, postmortem), silences, nodes (drain, undrain), SLA reports, who is
//! on call and pages (ack, resolve), and the audit log.
//! Sends the API's request types (`croupier_web::wire::control`) and prints its JSON answers;
//! a refusal becomes an error carrying the API's message.

use anyhow::Context;
use clap::{Args, Subcommand};
use croupier_web::wire::admin::NodeState;
use croupier_web::wire::control::{IncidentUpdate, NewIncident, NewSilence, NodeStateChange};
use serde::Serialize;

use crate::console::out;
use crate::control_client::{Connection, json};

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
    Open(OpenArgs),
    /// Post an update to an incident; --status resolved closes it.
    Update(UpdateArgs),
    /// Print an incident's postmortem skeleton (Markdown).
    Postmortem { id: i64 },
    /// Silences not yet over.
    Silences,
    /// Silence alerts: an alert key (rule/target), a prefix ending in *, or component:<name>.
    Silence(SilenceArgs),
    /// End a silence now.
    Unsilence { id: i64 },
    /// The nodes as the gateways see them.
    Nodes,
    /// Drain a node on every gateway: no new work, rounds in flight finish.
    Drain { node: String },
    /// Put a drained node back in service.
    Undrain { node: String },
    /// The SLA report of a month (or --from/--to): targets, availability with planned
    /// maintenance left out, downtime, incidents, error budget, met or missed, service credit.
    Sla {
        /// A month, as 2026-11.
        #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present = "from")]
        month: Option<String>,
        /// Start: a date (2026-11-01, midnight UTC) or an RFC 3339 time.
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// End (exclusive), as --from.
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// json, csv or html (printable; open it in a browser and print to PDF).
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Who is on call now and next on each schedule, and the pages not resolved.
    Oncall,
    /// Pages, newest first.
    Pages,
    /// Acknowledge (stops the escalation) or resolve a page.
    Page {
        #[command(subcommand)]
        action: PageAction,
    },
    /// The audit log, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Addresses the control plane blocked for wrong ops tokens; `--lift ADDRESS` lifts one.
    Blocks {
        #[arg(long)]
        lift: Option<std::net::IpAddr>,
    },
}

#[derive(Args)]
struct OpenArgs {
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
}

impl OpenArgs {
    fn request(self) -> Request {
        let new = NewIncident {
            title: self.title,
            component: self.component,
            severity: self.severity,
            message: self.message,
        };
        Request::post("/api/v1/incidents", &new)
    }
}

#[derive(Args)]
struct UpdateArgs {
    id: i64,
    /// investigating, identified, monitoring or resolved.
    #[arg(long)]
    status: String,
    #[arg(long)]
    message: String,
    /// Expected fix, in minutes from now.
    #[arg(long)]
    eta_minutes: Option<i64>,
}

impl UpdateArgs {
    fn request(self) -> Request {
        let update = IncidentUpdate {
            status: self.status,
            message: self.message,
            eta_ms: self
                .eta_minutes
                .map(|m| croupier_control::now_ms() + m * 60_000),
        };
        Request::post(format!("/api/v1/incidents/{}/updates", self.id), &update)
    }
}

#[derive(Args)]
struct SilenceArgs {
    matcher: String,
    #[arg(long)]
    comment: String,
    /// How long, e.g. 90s, 30m, 2h, 1d.
    #[arg(long, value_parser = parse_duration)]
    duration: u64,
}

impl SilenceArgs {
    fn request(self) -> anyhow::Result<Request> {
        let new = NewSilence {
            matcher: self.matcher,
            comment: self.comment,
            duration_s: i64::try_from(self.duration).context("--duration is too long")?,
        };
        Ok(Request::post("/api/v1/silences", &new))
    }
}

#[derive(Subcommand)]
enum PageAction {
    /// Acknowledge: you are on it; nobody else is paged.
    Ack { id: i64 },
    /// Resolve the page (and its incident, if still open).
    Resolve { id: i64 },
}

/// Text for a query string: `+` (an RFC 3339 offset) and the few other characters that
/// would change its meaning are percent-encoded.
fn query_value(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '+' | '&' | '=' | '#' | '%' | ' ' => format!("%{:02X}", c as u32),
            c => c.to_string(),
        })
        .collect()
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

/// What a command asks of the control API.
struct Request {
    method: &'static str,
    path: String,
    /// The request's JSON.
    body: Option<String>,
    /// The answer is printed as it comes (Markdown, CSV, HTML), never read as JSON.
    text: bool,
}

impl Request {
    fn new(method: &'static str, path: impl Into<String>, body: Option<String>) -> Request {
        Request {
            method,
            path: path.into(),
            body,
            text: false,
        }
    }

    fn get(path: impl Into<String>) -> Request {
        Request::new("GET", path, None)
    }

    fn post(path: impl Into<String>, body: &impl Serialize) -> Request {
        Request::new("POST", path, Some(json(body)))
    }

    fn delete(path: impl Into<String>) -> Request {
        Request::new("DELETE", path, None)
    }

    fn printed_as_text(self) -> Request {
        Request { text: true, ..self }
    }
}

impl CtlCommand {
    fn request(self) -> anyhow::Result<Request> {
        Ok(match self {
            CtlCommand::Status => Request::get("/api/v1/status"),
            CtlCommand::Targets => Request::get("/api/v1/targets"),
            CtlCommand::Alerts => Request::get("/api/v1/alerts"),
            CtlCommand::Slos => Request::get("/api/v1/slos"),
            CtlCommand::Incidents => Request::get("/api/v1/incidents"),
            CtlCommand::Open(open) => open.request(),
            CtlCommand::Update(update) => update.request(),
            CtlCommand::Postmortem { id } => {
                Request::get(format!("/api/v1/incidents/{id}/postmortem")).printed_as_text()
            }
            CtlCommand::Silences => Request::get("/api/v1/silences"),
            CtlCommand::Silence(silence) => silence.request()?,
            CtlCommand::Unsilence { id } => Request::delete(format!("/api/v1/silences/{id}")),
            CtlCommand::Nodes => Request::get("/api/v1/nodes"),
            CtlCommand::Drain { node } => node_state(&node, NodeState::Draining),
            CtlCommand::Undrain { node } => node_state(&node, NodeState::Active),
            CtlCommand::Sla {
                month,
                from,
                to,
                format,
            } => sla_request(month, from, to, &format)?,
            CtlCommand::Oncall => Request::get("/api/v1/oncall"),
            CtlCommand::Pages => Request::get("/api/v1/pages"),
            CtlCommand::Page { action } => action.request(),
            CtlCommand::Audit { limit } => Request::get(format!("/api/v1/audit?limit={limit}")),
            CtlCommand::Blocks { lift: None } => Request::get("/api/v1/blocks"),
            CtlCommand::Blocks {
                lift: Some(address),
            } => Request::delete(format!("/api/v1/blocks/{address}")),
        })
    }
}

impl PageAction {
    fn request(self) -> Request {
        let (id, action) = match self {
            PageAction::Ack { id } => (id, "ack"),
            PageAction::Resolve { id } => (id, "resolve"),
        };
        Request::new("POST", format!("/api/v1/pages/{id}/{action}"), None)
    }
}

/// A node put in `state` on every gateway (drain, undrain).
fn node_state(node: &str, state: NodeState) -> Request {
    let body = NodeStateChange {
        state: state.as_str().to_owned(),
    };
    Request::new("PUT", format!("/api/v1/nodes/{node}"), Some(json(&body)))
}

/// The SLA report of a month, or from..to; CSV and HTML printed as they come.
fn sla_request(
    month: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: &str,
) -> anyhow::Result<Request> {
    let (from, to) = match (month, from, to) {
        (Some(month), _, _) => {
            let (first, next) = croupier_control::sla::month_bounds(&month)
                .with_context(|| format!("--month {month}: give a month as 2026-11"))?;
            (first.to_string(), next.to_string())
        }
        (None, Some(from), Some(to)) => (from, to),
        _ => anyhow::bail!("give --month, or --from and --to"),
    };
    let path = format!(
        "/api/v1/sla?from={}&to={}&format={}",
        query_value(&from),
        query_value(&to),
        query_value(format)
    );
    let request = Request::get(path);
    Ok(if format == "json" {
        request
    } else {
        request.printed_as_text()
    })
}

pub fn run(args: CtlArgs) -> anyhow::Result<()> {
    let client = args.connection.client()?;
    let request = args.command.request()?;
    if request.text {
        out!(
            "{}",
            client.call(request.method, &request.path, request.body)?
        )?;
        return Ok(());
    }
    client.print(request.method, &request.path, request.body)
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, query_value};

    #[test]
    fn query_values_keep_their_offsets() {
        assert_eq!(
            query_value("2026-11-01T00:00:00+01:00"),
            "2026-11-01T00:00:00%2B01:00"
        );
        assert_eq!(query_value("2026-11-01"), "2026-11-01");
    }

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
