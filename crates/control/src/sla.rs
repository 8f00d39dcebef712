//! SLA statements an operator can sign: for each player-facing component over a month (or
//! any range), the target (the strictest SLO objective on it), the availability measured from
//! the stored uptime rollups (planned maintenance is left out of them, and the windows are
//! listed), downtime, the incidents with their durations and postmortem links, the error
//! budget used, met or missed, and the service credit the contract's tiers give. Every figure
//! comes from control.db, so a report on any day of the last year reads the same after
//! restarts. `sla_format` writes it as CSV and printable HTML.

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::AVAILABILITY_OBJECTIVE;
use crate::catalog::{COMPONENTS, GAMES, affects};
use crate::components::severity_level;
use crate::maintenance::Window;
use crate::state::{Incident, State, StateError};
use croupier_monitor::severity::Severity;
use croupier_monitor::slo::SloDef;

/// A row of the contract's credit table: availability below `below` percent earns
/// `credit_percent` of the month's fee. The largest credit whose tier applies wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditTier {
    pub below: f64,
    pub credit_percent: f64,
}

/// The credit `availability_percent` earns under `tiers` (0 when no tier applies).
pub fn credit(tiers: &[CreditTier], availability_percent: f64) -> f64 {
    tiers
        .iter()
        .filter(|t| availability_percent < t.below)
        .map(|t| t.credit_percent)
        .fold(0.0, f64::max)
}

/// A planned maintenance occurrence touching a component.
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceSpan {
    pub window_id: i64,
    pub title: String,
    pub scope: String,
    pub starts_ms: i64,
    pub ends_ms: i64,
    /// Minutes of it inside the report's range.
    pub minutes: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentSpan {
    pub id: i64,
    pub title: String,
    pub severity: Severity,
    pub status: crate::state::IncidentStatus,
    pub opened_ms: i64,
    pub resolved_ms: Option<i64>,
    /// Minutes of it inside the report's range (until now when still open).
    pub minutes: f64,
    /// Major and critical incidents take the component down; minor ones degrade it.
    pub counts_as_downtime: bool,
    pub postmortem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentReport {
    pub id: &'static str,
    pub name: &'static str,
    pub target_percent: f64,
    /// Minutes the control plane watched the component, maintenance left out.
    pub observed_minutes: f64,
    pub downtime_minutes: f64,
    /// Minutes of planned maintenance in the range (left out of the figures).
    pub maintenance_minutes: f64,
    /// Minutes nobody watched (the control plane was not running).
    pub unobserved_minutes: f64,
    /// Up over observed, in percent, rounded to 4 decimals; none without observed minutes.
    pub availability_percent: Option<f64>,
    /// Downtime the target allows over the observed minutes.
    pub error_budget_minutes: f64,
    pub error_budget_used_percent: Option<f64>,
    /// Availability at or above the target; none without observed minutes.
    pub met: Option<bool>,
    pub credit_percent: f64,
    pub maintenance: Vec<MaintenanceSpan>,
    pub incidents: Vec<IncidentSpan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub from_ms: i64,
    /// The end asked for; figures stop at `measured_until_ms` (now, for a range not over).
    pub to_ms: i64,
    pub measured_until_ms: i64,
    pub generated_ms: i64,
    pub credits: Vec<CreditTier>,
    pub components: Vec<ComponentReport>,
}

/// The first day of a month (`YYYY-MM`) and of the month after: a monthly report's range.
pub fn month_bounds(text: &str) -> Option<(NaiveDate, NaiveDate)> {
    let first = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()?;
    Some((first, first.checked_add_months(Months::new(1))?))
}

/// The strictest SLO objective on a component (an SLO on `games` covers every game); the
/// default availability objective when none is.
pub fn target(slos: &[SloDef], component: &str) -> f64 {
    slos.iter()
        .filter(|s| {
            s.component == component || (s.component == "games" && GAMES.contains(&component))
        })
        .map(|s| s.objective)
        .reduce(f64::max)
        .unwrap_or(AVAILABILITY_OBJECTIVE)
}

/// [from_s, to_s) (whole minutes) cut into pieces of whole rollup buckets, as coarse as each
/// piece allows: days in the middle, hours and minutes at the edges.
pub fn bucket_spans(from_s: i64, to_s: i64) -> Vec<(i64, i64, i64)> {
    fn cut(from: i64, to: i64, resolutions: &[i64], out: &mut Vec<(i64, i64, i64)>) {
        let Some((&resolution, finer)) = resolutions.split_first() else {
            return;
        };
        let (start, end) = (
            from + (resolution - from.rem_euclid(resolution)) % resolution,
            to - to.rem_euclid(resolution),
        );
        if start >= end {
            return cut(from, to, finer, out);
        }
        cut(from, start, finer, out);
        out.push((resolution, start, end));
        cut(end, to, finer, out);
    }
    let mut spans = Vec::new();
    cut(from_s, to_s, &[86_400, 3_600, 60], &mut spans);
    spans
}

/// Milliseconds covered by the union of `spans`, each clipped to [from, to).
fn covered_ms(spans: &mut [(i64, i64)], from: i64, to: i64) -> i64 {
    spans.sort_unstable();
    let (mut total, mut reach) = (0, from);
    for &(start, end) in spans.iter() {
        let (start, end) = (start.max(reach), end.min(to));
        if end > start {
            total += end - start;
            reach = end;
        }
    }
    total
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn minutes(ms: i64) -> f64 {
    round(ms as f64 / 60_000.0, 2)
}

/// The maintenance occurrences touching `component` in [from, until); a cancelled window's
/// occurrences end at its cancellation.
fn maintenance_of(
    windows: &[(Window, Option<i64>)],
    component: &str,
    from: i64,
    until: i64,
) -> Vec<MaintenanceSpan> {
    let mut spans = Vec::new();
    for (window, cancelled) in windows {
        if !window.scope.components().contains(&component) {
            continue;
        }
        let stop = cancelled.unwrap_or(i64::MAX);
        for start in window
            .occurrences(from, until)
            .into_iter()
            .filter(|s| *s < stop)
        {
            let end = (start + window.duration_s * 1000).min(stop);
            spans.push(MaintenanceSpan {
                window_id: window.id,
                title: window.title.clone(),
                scope: window.scope.text(),
                starts_ms: start,
                ends_ms: end,
                minutes: minutes(end.min(until) - start.max(from)),
            });
        }
    }
    spans
}

fn incident_span(incident: &Incident, from: i64, until: i64) -> IncidentSpan {
    let end = incident.resolved_ms.unwrap_or(until).min(until);
    IncidentSpan {
        id: incident.id,
        title: incident.title.clone(),
        severity: incident.severity,
        status: incident.status,
        opened_ms: incident.opened_ms,
        resolved_ms: incident.resolved_ms,
        minutes: minutes((end - incident.opened_ms.max(from)).max(0)),
        counts_as_downtime: !severity_level(incident.severity).is_up(),
        postmortem: format!("/api/v1/incidents/{}/postmortem", incident.id),
    }
}

/// The contract's terms a report applies: the SLOs (targets) and the credit tiers.
pub struct Terms<'a> {
    pub slos: &'a [SloDef],
    pub credits: &'a [CreditTier],
}

/// The report over [from_ms, to_ms) (whole minutes), measured until `now_ms` at the latest.
pub fn report(
    state: &State,
    terms: &Terms<'_>,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Result<Report, StateError> {
    let until = to_ms.min(now_ms - now_ms.rem_euclid(60_000)).max(from_ms);
    let windows = state.windows_ever()?;
    let incidents = state.incidents_between(from_ms, until)?;
    let mut components = Vec::new();
    for (id, name) in COMPONENTS {
        let (mut up_s, mut total_s) = (0, 0);
        for (resolution, start, end) in bucket_spans(from_ms / 1000, until / 1000) {
            let (up, total) = state.uptime_sum(id, resolution, start, end)?;
            (up_s, total_s) = (up_s + up, total_s + total);
        }
        let maintenance = maintenance_of(&windows, id, from_ms, until);
        let mut planned: Vec<(i64, i64)> = maintenance
            .iter()
            .map(|m| (m.starts_ms, m.ends_ms))
            .collect();
        let maintenance_ms = covered_ms(&mut planned, from_ms, until);
        let objective = target(terms.slos, id);
        let observed = total_s * 1000;
        let downtime = (total_s - up_s) * 1000;
        let availability = (total_s > 0).then(|| round(up_s as f64 / total_s as f64 * 100.0, 4));
        let budget_ms = (1.0 - objective) * observed as f64;
        components.push(ComponentReport {
            id,
            name,
            target_percent: round(objective * 100.0, 4),
            observed_minutes: minutes(observed),
            downtime_minutes: minutes(downtime),
            maintenance_minutes: minutes(maintenance_ms),
            unobserved_minutes: minutes((until - from_ms - observed - maintenance_ms).max(0)),
            availability_percent: availability,
            error_budget_minutes: round(budget_ms / 60_000.0, 2),
            error_budget_used_percent: (budget_ms > 0.0)
                .then(|| round(downtime as f64 / budget_ms * 100.0, 2)),
            met: availability.map(|a| a >= round(objective * 100.0, 4)),
            credit_percent: availability.map_or(0.0, |a| credit(terms.credits, a)),
            maintenance,
            incidents: incidents
                .iter()
                .filter(|i| affects(&i.component, id))
                .map(|i| incident_span(i, from_ms, until))
                .collect(),
        });
    }
    Ok(Report {
        from_ms,
        to_ms,
        measured_until_ms: until,
        generated_ms: now_ms,
        credits: terms.credits.to_vec(),
        components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_applicable_credit_wins() {
        let tiers = [
            CreditTier {
                below: 99.9,
                credit_percent: 10.0,
            },
            CreditTier {
                below: 99.0,
                credit_percent: 25.0,
            },
            CreditTier {
                below: 95.0,
                credit_percent: 100.0,
            },
        ];
        assert_eq!(credit(&tiers, 99.95), 0.0);
        assert_eq!(credit(&tiers, 99.9), 0.0, "at the line is not below it");
        assert_eq!(credit(&tiers, 99.8841), 10.0);
        assert_eq!(credit(&tiers, 98.0), 25.0);
        assert_eq!(credit(&tiers, 12.0), 100.0);
        assert_eq!(credit(&[], 12.0), 0.0);
    }

    #[test]
    fn months_run_to_the_first_of_the_next() {
        let (first, next) = month_bounds("2026-12").unwrap();
        assert_eq!(
            (first.to_string(), next.to_string()),
            ("2026-12-01".into(), "2027-01-01".into())
        );
        assert!(month_bounds("2026-13").is_none());
        assert!(month_bounds("November").is_none());
    }

    #[test]
    fn ranges_are_read_from_the_coarsest_whole_buckets() {
        let day = 86_400;
        assert_eq!(bucket_spans(0, 30 * day), vec![(day, 0, 30 * day)]);
        // 2 days, 1 h 2 min past midnight, to 3 days 5 min.
        let spans = bucket_spans(2 * day + 3_720, 3 * day + 300);
        assert_eq!(
            spans,
            vec![
                (60, 2 * day + 3_720, 2 * day + 7_200),
                (3_600, 2 * day + 7_200, 3 * day),
                (60, 3 * day, 3 * day + 300),
            ]
        );
        assert!(bucket_spans(600, 600).is_empty());
    }

    #[test]
    fn overlapping_windows_count_once_and_are_clipped() {
        let mut spans = [(50, 120), (0, 20), (100, 150), (200, 260)];
        assert_eq!(covered_ms(&mut spans, 10, 250), 10 + 100 + 50);
    }

    #[test]
    fn targets_come_from_the_strictest_slo_on_the_component() {
        let slos = croupier_monitor::slo::default_slos(0.995);
        assert_eq!(target(&slos, "dice"), 0.995);
        let mut stricter = slos.clone();
        stricter[1].objective = 0.9995; // the wallet's
        assert_eq!(target(&stricter, "wallet"), 0.9995);
        assert_eq!(target(&[], "lobby"), AVAILABILITY_OBJECTIVE);
    }
}
