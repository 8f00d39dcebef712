//! SLA reports from stored figures: last month is written into a control plane's state the
//! way its monitor loop writes it (each second through the real uptime accumulator, with the
//! real incidents and maintenance windows), with a planned wallet window, a daily slot window
//! in a time zone, a wallet outage, a dice outage, a minor games incident that only degrades,
//! and two hours in which nobody watched. `croupier control` then serves the month's report,
//! and the test compares it with figures computed by hand, in JSON, CSV (also through
//! `croupier ctl sla`) and HTML, before and after a restart. Debian's chromium (driven by
//! tests/browser/sla.mjs) signs in to the dashboard, follows its "last month" link and prints
//! the report to PDF; poppler's pdfinfo and pdftotext check the pages and the text.

mod common;

use std::path::Path;
use std::process::Command;

use chrono::{Datelike, Months, NaiveDate, Utc};
use common::*;
use croupier_control::components::UptimeAccumulator;
use croupier_control::maintenance::{Schedule, Scope, Window};
use croupier_control::state::{Incident, IncidentStatus, State, Uptime};
use croupier_monitor::severity::Severity;
use serde_json::Value;

const MINUTE: i64 = 60_000;

/// Last month: its first day's midnight (ms) and its number of days.
fn last_month() -> (NaiveDate, i64, i64) {
    let today = Utc::now().date_naive();
    let first = today.with_day(1).unwrap() - Months::new(1);
    let start = first
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let days = (first + Months::new(1) - first).num_days();
    (first, start, days)
}

fn window(title: &str, scope: &str, schedule: Schedule, minutes: i64) -> Window {
    Window {
        id: 0,
        title: title.into(),
        scope: Scope::parse(scope).unwrap(),
        schedule,
        duration_s: minutes * 60,
        announce_s: Vec::new(),
        created_by: "sla-test".into(),
    }
}

/// Writes the month into `state`: windows, incidents, and every second's uptime as the
/// monitor loop would have counted it (minus two unwatched hours on day 25).
fn seed_month(state: &State, start: i64, days: i64) {
    let day = |d: i64, hour: i64, minute: i64| {
        start + (d - 1) * 1_440 * MINUTE + (hour * 60 + minute) * MINUTE
    };
    let planned = [
        window(
            "Ledger storage upgrade",
            "component:wallet",
            Schedule::Once {
                starts_ms: day(15, 2, 0),
            },
            60,
        ),
        window(
            "Nightly slot reel sync",
            "component:slot",
            Schedule::Recurring {
                cron: "0 4 * * *".into(),
                timezone: "Europe/Malta".into(),
            },
            30,
        ),
    ];
    for w in &planned {
        state.add_window(w, start - 86_400_000).unwrap();
    }
    for (title, component, severity, opened, minutes) in [
        (
            "Wallet writes failing",
            "wallet",
            Severity::Major,
            day(10, 14, 0),
            50,
        ),
        (
            "Dice rounds refused",
            "dice",
            Severity::Critical,
            day(5, 8, 0),
            12,
        ),
        (
            "Games slow to load",
            "games",
            Severity::Minor,
            day(20, 10, 0),
            30,
        ),
    ] {
        let id = state
            .open_incident(title, component, severity, None, "opened", opened)
            .unwrap();
        state
            .update_incident(
                id,
                IncidentStatus::Resolved,
                "fixed",
                None,
                opened + minutes * MINUTE,
            )
            .unwrap();
    }
    let incidents: Vec<Incident> = state.incidents(false).unwrap();
    let windows: Vec<(i64, i64, Vec<&str>)> = planned
        .iter()
        .flat_map(|w| {
            w.occurrences(start, day(days + 1, 0, 0))
                .into_iter()
                .map(move |s| (s, s + w.duration_s * 1000, w.scope.components()))
        })
        .collect();
    let (unwatched_from, unwatched_to) = (day(25, 0, 0), day(25, 2, 0));
    let mut accumulator = UptimeAccumulator::default();
    let mut rows: Vec<(String, Uptime)> = Vec::new();
    for second in start / 1000..day(days + 1, 0, 0) / 1000 {
        let ms = second * 1000;
        if (unwatched_from..unwatched_to).contains(&ms) {
            continue;
        }
        let active: Vec<Incident> = incidents
            .iter()
            .filter(|i| i.opened_ms <= ms && i.resolved_ms.is_none_or(|r| ms < r))
            .map(|i| Incident {
                status: IncidentStatus::Investigating, // as it was then
                ..i.clone()
            })
            .collect();
        let in_maintenance: Vec<&str> = windows
            .iter()
            .filter(|(s, e, _)| (*s..*e).contains(&ms))
            .flat_map(|(_, _, c)| c.iter().copied())
            .collect();
        accumulator.observe(second, &active, &in_maintenance);
        if (second + 1) % 60 == 0 {
            rows.extend(accumulator.due(second + 1).into_iter().flatten());
        }
    }
    state.add_uptime(Utc::now().timestamp(), &rows).unwrap();
}

/// What a component's figures must be, worked out by hand from what was seeded.
struct Expected {
    id: &'static str,
    target: f64,
    observed_min: i64,
    down_min: i64,
    maintenance_min: i64,
}

impl Expected {
    fn availability(&self) -> String {
        format!(
            "{:.4}",
            (self.observed_min - self.down_min) as f64 / self.observed_min as f64 * 100.0
        )
    }

    fn budget_used(&self) -> String {
        let budget = (1.0 - self.target) * self.observed_min as f64;
        format!("{:.2}", self.down_min as f64 / budget * 100.0)
    }
}

fn expected(days: i64) -> Vec<Expected> {
    let month = days * 1_440;
    let watched = month - 120; // two unwatched hours on day 25
    vec![
        // 60 min of planned maintenance, 50 min down; target 99.95 % from the wallet's SLO.
        Expected {
            id: "wallet",
            target: 0.9995,
            observed_min: watched - 60,
            down_min: 50,
            maintenance_min: 60,
        },
        Expected {
            id: "dice",
            target: 0.999,
            observed_min: watched,
            down_min: 12,
            maintenance_min: 0,
        },
        // 30 min a night in maintenance; the minor games incident only degrades it.
        Expected {
            id: "slot",
            target: 0.999,
            observed_min: watched - 30 * days,
            down_min: 0,
            maintenance_min: 30 * days,
        },
        // No SLO names the lobby: the default 99.9 %.
        Expected {
            id: "lobby",
            target: 0.999,
            observed_min: watched,
            down_min: 0,
            maintenance_min: 0,
        },
    ]
}

const DEPLOYMENT: &str = r#"
[[slo]]
name = "availability"
component = "games"
objective = 0.999
source = "gateway"

[[slo]]
name = "wallet"
component = "wallet"
objective = 0.9995
source = { node_routes = ["/api/v1/wallet"] }

[[sla.credits]]
below = 99.9
credit_percent = 10

[[sla.credits]]
below = 99.0
credit_percent = 25
"#;

fn start_control(data: &Path, port: u16) -> Up {
    let control = control_with_config(data, port, &[]);
    let ready = format!("http://127.0.0.1:{port}/readyz");
    wait_for("the control plane", || {
        get(&ready, None).map(|r| r.0) == Ok(200)
    });
    control
}

fn check_json(report: &Value, days: i64) {
    for want in expected(days) {
        let c = report["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == want.id)
            .unwrap();
        let what = format!("{}: {c}", want.id);
        assert_eq!(
            c["observed_minutes"].as_f64(),
            Some(want.observed_min as f64),
            "{what}"
        );
        assert_eq!(
            c["downtime_minutes"].as_f64(),
            Some(want.down_min as f64),
            "{what}"
        );
        assert_eq!(
            c["maintenance_minutes"].as_f64(),
            Some(want.maintenance_min as f64),
            "{what}"
        );
        assert_eq!(c["unobserved_minutes"].as_f64(), Some(120.0), "{what}");
        assert_eq!(
            format!("{:.4}", c["availability_percent"].as_f64().unwrap()),
            want.availability(),
            "{what}"
        );
        assert_eq!(
            format!("{:.2}", c["error_budget_used_percent"].as_f64().unwrap()),
            want.budget_used(),
            "{what}"
        );
    }
    let component = |id: &str| {
        report["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone()
    };
    let wallet = component("wallet");
    assert_eq!(
        (wallet["met"].as_bool(), wallet["credit_percent"].as_f64()),
        (Some(false), Some(10.0))
    );
    assert_eq!(wallet["target_percent"].as_f64(), Some(99.95));
    assert_eq!(wallet["incidents"][0]["minutes"].as_f64(), Some(50.0));
    assert!(
        wallet["incidents"][0]["postmortem"]
            .as_str()
            .unwrap()
            .ends_with("/postmortem")
    );
    assert_eq!(wallet["maintenance"][0]["title"], "Ledger storage upgrade");
    let dice = component("dice");
    assert_eq!(
        (dice["met"].as_bool(), dice["credit_percent"].as_f64()),
        (Some(true), Some(0.0))
    );
    assert_eq!(
        dice["incidents"].as_array().unwrap().len(),
        2,
        "its own and the games one"
    );
    let slot = component("slot");
    assert_eq!(slot["availability_percent"].as_f64(), Some(100.0));
    assert_eq!(slot["maintenance"].as_array().unwrap().len() as i64, days);
    assert_eq!(slot["incidents"][0]["counts_as_downtime"], false);
}

fn check_csv(csv: &str, days: i64) {
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("period_from,period_to,component,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 7, "a header and six components: {csv}");
    for want in expected(days) {
        let row = lines
            .iter()
            .find(|l| l.split(',').nth(2) == Some(want.id))
            .unwrap();
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(fields[5], want.availability(), "{row}");
        assert_eq!(fields[7], format!("{}.00", want.observed_min), "{row}");
        assert_eq!(fields[8], format!("{}.00", want.down_min), "{row}");
        assert_eq!(fields[9], format!("{}.00", want.maintenance_min), "{row}");
        assert_eq!(fields[12], want.budget_used(), "{row}");
    }
    let wallet = lines.iter().find(|l| l.contains(",wallet,")).unwrap();
    assert!(
        wallet.contains(",missed,") && wallet.contains(",10.00,"),
        "{wallet}"
    );
    assert!(
        wallet.contains("Wallet writes failing (major, 50.00 min)"),
        "{wallet}"
    );
}

fn pdf_pages_and_text(pdf: &Path) -> (i64, String) {
    let info = Command::new("pdfinfo")
        .arg(pdf)
        .output()
        .expect("pdfinfo (poppler-utils) runs");
    let info = String::from_utf8_lossy(&info.stdout).to_string();
    let pages = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let text = Command::new("pdftotext")
        .arg(pdf)
        .arg("-")
        .output()
        .unwrap();
    // Table cells wrap: compare the words, whatever the line breaks.
    let text = String::from_utf8_lossy(&text.stdout);
    (pages, text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[test]
fn a_months_sla_report_matches_hand_computed_figures_in_json_csv_html_and_print() {
    require_browser();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    std::fs::write(data.join("deploy.toml"), DEPLOYMENT).unwrap();
    let (first, start, days) = last_month();
    seed_month(&State::open(&data.join("control.db")).unwrap(), start, days);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let month = format!("{:04}-{:02}", first.year(), first.month());
    let (from, to) = (first.to_string(), (first + Months::new(1)).to_string());
    let url = |format: &str| format!("{base}/api/v1/sla?from={from}&to={to}&format={format}");
    let mut control = start_control(data, port);
    let (status, report) = get(&url("json"), Some(OPS_TOKEN)).unwrap();
    assert_eq!(status, 200, "{report}");
    check_json(&report, days);
    let (status, csv) = get(&url("csv"), Some(OPS_TOKEN)).unwrap();
    assert_eq!(status, 200);
    check_csv(csv.as_str().unwrap(), days);
    let (status, html) = get(&url("html"), Some(OPS_TOKEN)).unwrap();
    let html = html.as_str().unwrap().to_owned();
    assert_eq!(status, 200);
    assert!(
        html.contains("Service level report") && html.contains("@media print"),
        "{html}"
    );
    assert!(
        html.contains(&format!("{} %", expected(days)[0].availability())),
        "{html}"
    );
    // Strangers and bad ranges are refused, with a JSON reason.
    assert_eq!(get(&url("json"), None).unwrap().0, 401);
    let (status, refusal) = get(
        &format!("{base}/api/v1/sla?from={to}&to={from}"),
        Some(OPS_TOKEN),
    )
    .unwrap();
    assert_eq!(
        (status, refusal["error"].as_str()),
        (400, Some("invalid_query"))
    );

    // The figures come from control.db: a restarted control plane says the same.
    drop(control);
    control = start_control(data, port);
    let (_, again) = get(&url("json"), Some(OPS_TOKEN)).unwrap();
    assert_eq!(again["components"], report["components"]);
    let ctl = croupier()
        .args([
            "ctl", "--url", &base, "sla", "--month", &month, "--format", "csv",
        ])
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .output()
        .unwrap();
    assert!(
        ctl.status.success(),
        "{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ctl.stdout), csv.as_str().unwrap());

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&out).unwrap();
    // The dashboard's link, printed to PDF by chromium.
    let seen = run_browser(
        "sla.mjs",
        &[
            "--control",
            &base,
            "--token",
            OPS_TOKEN,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(seen["rows"], 6, "{seen}");
    assert_eq!(
        seen["wallet"][2],
        format!("{} %", expected(days)[0].availability()),
        "{seen}"
    );
    assert_eq!(seen["wallet"][6], "missed", "{seen}");
    let (pages, text) = pdf_pages_and_text(&out.join("sla-report.pdf"));
    assert!(pages >= 1, "{pages} pages");
    for needle in [
        "Service level report",
        "Wallet writes failing",
        "Ledger storage upgrade",
        "Nightly slot reel sync",
        &expected(days)[0].availability(),
        "missed",
        "Service credits",
    ] {
        assert!(text.contains(needle), "{needle} not in the PDF:\n{text}");
    }
    assert!(
        !text.contains("print this page"),
        "the screen-only line is not printed"
    );
    drop(control);
}
