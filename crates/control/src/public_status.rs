//! What players are told of the casino's health, in one value: each component's state
//! and 90-day uptime, the active incidents of player-facing components with their public
//! updates, and maintenance in progress or coming within a week. `/api/v1/status`, the
//! status page and its feeds all read it from here.

use serde_json::{Value, json};

use crate::catalog::{COMPONENTS, is_incident_component};
use crate::components::level;
use crate::state::StateError;
use crate::{Control, now_ms};

/// Days of uptime bars on the status page.
pub const UPTIME_DAYS: i64 = 90;

/// Scheduled maintenance shows on the status page this long ahead.
const UPCOMING_MS: i64 = 7 * 86_400_000;

/// The players' view: each component's state and 90-day uptime, and the active incidents.
pub fn public_status(control: &Control) -> Result<Value, StateError> {
    let active = control.state.incidents(true)?;
    let now_s = now_ms() / 1000;
    let from_s = now_s - now_s.rem_euclid(86_400) - (UPTIME_DAYS - 1) * 86_400;
    let mut components = Vec::new();
    for (id, name) in COMPONENTS {
        let days = control.state.uptime(id, 86_400, from_s)?;
        let (up, total) = days
            .iter()
            .fold((0, 0), |(u, t), d| (u + d.up_s, t + d.total_s));
        let level = level(&active, id);
        components.push(json!({
            "id": id, "name": name, "status": level, "status_label": level.label(),
            "uptime_90d": (total > 0).then(|| up as f64 / total as f64),
            "days": days,
        }));
    }
    // Incidents of internal components (security) are for operators only.
    let incidents: Vec<Value> = active
        .iter()
        .filter(|i| is_incident_component(&i.component))
        .map(|i| {
            json!({
                "id": i.id, "title": i.title, "component": i.component, "status": i.status,
                "severity": i.severity, "opened_ms": i.opened_ms, "eta_ms": i.eta_ms,
                "updates": i.timeline.iter().filter(|u| u.is_public()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let now = now_ms();
    let mut maintenance = Vec::new();
    for window in control.state.windows()? {
        let active_since = window.active_at(now);
        let next = window.next_start(now).filter(|n| *n - now < UPCOMING_MS);
        let Some(start) = active_since.or(next) else {
            continue;
        };
        let in_progress = active_since.is_some();
        if in_progress {
            for component in components.iter_mut() {
                if window
                    .scope
                    .components()
                    .contains(&component["id"].as_str().unwrap_or(""))
                {
                    component["status"] = json!("under_maintenance");
                    component["status_label"] = json!("Under maintenance");
                }
            }
        }
        maintenance.push(json!({
            "title": window.title, "scope": window.scope.text(), "starts_ms": start,
            "ends_ms": start + window.duration_s * 1000, "in_progress": in_progress,
        }));
    }
    Ok(
        json!({"components": components, "incidents": incidents, "maintenance": maintenance,
              "generated_ms": now}),
    )
}
