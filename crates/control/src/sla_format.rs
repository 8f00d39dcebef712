//! An SLA report as people take it away: CSV (one row per component, for spreadsheets and
//! billing) and HTML that prints on A4 (a summary table, then each component's incidents with
//! postmortem links and its maintenance windows, then the credit table and how figures are
//! measured). The JSON form is the `sla::Report` itself.

use std::fmt::Write;

use crate::dates::{rfc3339, utc};
use crate::html::escape;
use crate::sla::{ComponentReport, Report};

fn percent(value: Option<f64>) -> String {
    value.map_or(String::new(), |v| format!("{v:.4}"))
}

fn met_text(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "missed",
        None => "no data",
    }
}

/// One CSV field, quoted when it must be (RFC 4180).
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

const CSV_HEADER: &str = "period_from,period_to,component,name,target_percent,availability_percent,met,\
observed_minutes,downtime_minutes,maintenance_minutes,unobserved_minutes,error_budget_minutes,\
error_budget_used_percent,credit_percent,incidents,maintenance_windows";

fn csv_row(report: &Report, c: &ComponentReport) -> String {
    let incidents: Vec<String> = c
        .incidents
        .iter()
        .map(|i| {
            format!(
                "#{} {} ({}, {:.2} min)",
                i.id, i.title, i.severity, i.minutes
            )
        })
        .collect();
    let windows: Vec<String> = c
        .maintenance
        .iter()
        .map(|m| {
            format!(
                "#{} {} {} ({:.2} min)",
                m.window_id,
                m.title,
                utc(m.starts_ms),
                m.minutes
            )
        })
        .collect();
    [
        rfc3339(report.from_ms),
        rfc3339(report.to_ms),
        c.id.to_owned(),
        c.name.to_owned(),
        format!("{:.4}", c.target_percent),
        percent(c.availability_percent),
        met_text(c.met).to_owned(),
        format!("{:.2}", c.observed_minutes),
        format!("{:.2}", c.downtime_minutes),
        format!("{:.2}", c.maintenance_minutes),
        format!("{:.2}", c.unobserved_minutes),
        format!("{:.2}", c.error_budget_minutes),
        c.error_budget_used_percent
            .map_or(String::new(), |u| format!("{u:.2}")),
        format!("{:.2}", c.credit_percent),
        incidents.join("; "),
        windows.join("; "),
    ]
    .iter()
    .map(|f| field(f))
    .collect::<Vec<_>>()
    .join(",")
}

pub fn csv(report: &Report) -> String {
    let mut out = format!("{CSV_HEADER}\r\n");
    for component in &report.components {
        out.push_str(&csv_row(report, component));
        out.push_str("\r\n");
    }
    out
}

/// Print rules: A4, no navigation, no table split across pages where it can be helped.
const PRINT_CSS: &str = "<style>
.sla{max-width:60rem;margin:0 auto;padding:1rem}
.sla table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
.sla th,.sla td{border:1px solid #ccc;padding:.25rem .4rem;text-align:left;font-size:.9rem}
.sla td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.sla .missed{color:#b00020;font-weight:bold}.sla .met{color:#0a6b2d}
.sla section{break-inside:avoid}
@page{size:A4;margin:14mm}
@media print{.no-print{display:none}body{background:#fff;color:#000;font-size:10pt}
.sla{max-width:none;padding:0}.sla a{color:#000;text-decoration:none}
.sla thead{display:table-header-group}.sla tr{break-inside:avoid}}
</style>";

fn summary_html(report: &Report) -> String {
    let mut html = String::from(
        "<table id=\"summary\"><thead><tr><th>Component</th><th>Target</th><th>Availability</th>\
         <th>Downtime (min)</th><th>Maintenance (min)</th><th>Error budget used</th><th>SLA</th>\
         <th>Service credit</th></tr></thead><tbody>",
    );
    for c in &report.components {
        let _ = write!(
            html,
            "<tr data-component=\"{id}\"><td>{name}</td><td class=\"n\">{target:.4} %</td>\
             <td class=\"n\">{availability}</td><td class=\"n\">{down:.2}</td><td class=\"n\">{maint:.2}</td>\
             <td class=\"n\">{used}</td><td class=\"{met}\">{met}</td><td class=\"n\">{credit:.2} %</td></tr>",
            id = c.id,
            name = escape(c.name),
            target = c.target_percent,
            availability = c
                .availability_percent
                .map_or("no data".to_owned(), |a| format!("{a:.4} %")),
            down = c.downtime_minutes,
            maint = c.maintenance_minutes,
            used = c
                .error_budget_used_percent
                .map_or("–".to_owned(), |u| format!("{u:.2} %")),
            met = met_text(c.met),
            credit = c.credit_percent,
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn component_html(c: &ComponentReport) -> String {
    let mut html = format!(
        "<section class=\"component\" data-component=\"{}\"><h2>{}</h2><p>Observed {:.2} min, \
         down {:.2} min, planned maintenance {:.2} min (left out), not observed {:.2} min; \
         error budget {:.2} min.</p>",
        c.id,
        escape(c.name),
        c.observed_minutes,
        c.downtime_minutes,
        c.maintenance_minutes,
        c.unobserved_minutes,
        c.error_budget_minutes
    );
    if c.incidents.is_empty() {
        html.push_str("<p>No incidents.</p>");
    } else {
        html.push_str(
            "<table class=\"incidents\"><thead><tr><th>Incident</th><th>Severity</th><th>Opened</th>\
             <th>Resolved</th><th>Minutes</th><th>Downtime</th><th>Postmortem</th></tr></thead><tbody>",
        );
        for i in &c.incidents {
            let _ = write!(
                html,
                "<tr><td>#{} {}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{:.2}</td><td>{}</td>\
                 <td><a href=\"{}\">postmortem</a></td></tr>",
                i.id,
                escape(&i.title),
                escape(i.severity.as_str()),
                utc(i.opened_ms),
                i.resolved_ms.map_or("open".to_owned(), utc),
                i.minutes,
                if i.counts_as_downtime {
                    "yes"
                } else {
                    "no (degraded)"
                },
                escape(&i.postmortem),
            );
        }
        html.push_str("</tbody></table>");
    }
    if !c.maintenance.is_empty() {
        html.push_str(
            "<table class=\"maintenance\"><thead><tr><th>Planned maintenance</th><th>Scope</th>\
             <th>From</th><th>To</th><th>Minutes</th></tr></thead><tbody>",
        );
        for m in &c.maintenance {
            let _ = write!(
                html,
                "<tr><td>#{} {}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{:.2}</td></tr>",
                m.window_id,
                escape(&m.title),
                escape(&m.scope),
                utc(m.starts_ms),
                utc(m.ends_ms),
                m.minutes
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</section>");
    html
}

/// The report's body (inside `html::page`).
pub fn html(report: &Report) -> String {
    let mut html = format!(
        "{PRINT_CSS}<main class=\"sla\"><p class=\"no-print\"><a href=\"/dashboard\">Dashboard</a> · \
         print this page for a PDF</p><h1>Service level report</h1><p id=\"period\">{} to {} \
         (measured until {}). Generated {}.</p>{}",
        utc(report.from_ms),
        utc(report.to_ms),
        utc(report.measured_until_ms),
        utc(report.generated_ms),
        summary_html(report)
    );
    for component in &report.components {
        html.push_str(&component_html(component));
    }
    html.push_str("<section><h2>Service credits</h2>");
    if report.credits.is_empty() {
        html.push_str("<p>The deployment file sets no credit tiers.</p>");
    } else {
        html.push_str("<table id=\"credits\"><thead><tr><th>Availability below</th><th>Credit</th></tr></thead><tbody>");
        for tier in &report.credits {
            let _ = write!(
                html,
                "<tr><td class=\"n\">{:.4} %</td><td class=\"n\">{:.2} %</td></tr>",
                tier.below, tier.credit_percent
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str(
        "<p>Availability is the share of observed seconds in which no major or critical incident \
         was open on the component; seconds inside planned maintenance windows are left out, and \
         so are seconds in which the control plane was not running. Figures are rounded to four \
         decimals before they are compared with the target and the credit tiers.</p></section></main>",
    );
    html
}
