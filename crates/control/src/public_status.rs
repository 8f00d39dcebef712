//! What players are told of the casino's health, in one value: each component's state
//! and 90-day uptime, the active incidents of player-facing components with their public
//! updates, and maintenance in progress or coming within a week. `/api/v1/status`, the
//! status page and its feeds all read it from here. Fields are in alphabetical order, the
//! order `/api/v1/status` has always sent them in.

use serde::Serialize;

use crate::catalog::{COMPONENTS, is_incident_component};
use crate::components::{Level, level};
use crate::state::{IncidentStatus, StateError, Update, Uptime};
use crate::{Control, now_ms};
use croupier_monitor::severity::Severity;

/// Days of uptime bars on the status page.
pub const UPTIME_DAYS: i64 = 90;

/// Scheduled maintenance shows on the status page this long ahead.
const UPCOMING_MS: i64 = 7 * 86_400_000;

/// A component's state as players see it: its incidents' level, or maintenance in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    Operational,
    Degraded,
    PartialOutage,
    MajorOutage,
    UnderMaintenance,
}

impl ComponentState {
    /// The word sent (and the status page's CSS class).
    pub const fn as_str(self) -> &'static str {
        match self {
            ComponentState::Operational => "operational",
            ComponentState::Degraded => "degraded",
            ComponentState::PartialOutage => "partial_outage",
            ComponentState::MajorOutage => "major_outage",
            ComponentState::UnderMaintenance => "under_maintenance",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ComponentState::Operational => Level::Operational.label(),
            ComponentState::Degraded => Level::Degraded.label(),
            ComponentState::PartialOutage => Level::PartialOutage.label(),
            ComponentState::MajorOutage => Level::MajorOutage.label(),
            ComponentState::UnderMaintenance => "Under maintenance",
        }
    }
}

impl From<Level> for ComponentState {
    fn from(level: Level) -> Self {
        match level {
            Level::Operational => ComponentState::Operational,
            Level::Degraded => ComponentState::Degraded,
            Level::PartialOutage => ComponentState::PartialOutage,
            Level::MajorOutage => ComponentState::MajorOutage,
        }
    }
}

/// One player-facing component.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// Its daily uptime, oldest first (days without data left out).
    pub days: Vec<Uptime>,
    pub id: &'static str,
    pub name: &'static str,
    pub status: ComponentState,
    pub status_label: &'static str,
    /// Up over observed seconds of the last 90 days; `null` before any.
    pub uptime_90d: Option<f64>,
}

/// An active incident as players see it: only its public updates.
#[derive(Debug, Clone, Serialize)]
pub struct PublicIncident {
    pub component: String,
    pub eta_ms: Option<i64>,
    pub id: i64,
    pub opened_ms: i64,
    pub severity: Severity,
    pub status: IncidentStatus,
    pub title: String,
    pub updates: Vec<Update>,
}

/// Maintenance in progress or starting within a week.
#[derive(Debug, Clone, Serialize)]
pub struct PublicWindow {
    pub ends_ms: i64,
    pub in_progress: bool,
    pub scope: String,
    pub starts_ms: i64,
    pub title: String,
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct PublicStatus {
    pub components: Vec<Component>,
    pub generated_ms: i64,
    pub incidents: Vec<PublicIncident>,
    pub maintenance: Vec<PublicWindow>,
}

/// The players' view: each component's state and 90-day uptime, and the active incidents.
pub fn public_status(control: &Control) -> Result<PublicStatus, StateError> {
    let active = control.state.incidents(true)?;
    let now_s = now_ms() / 1000;
    let from_s = now_s - now_s.rem_euclid(86_400) - (UPTIME_DAYS - 1) * 86_400;
    let mut components = Vec::new();
    for (id, name) in COMPONENTS {
        let days = control.state.uptime(id, 86_400, from_s)?;
        let (up, total) = days
            .iter()
            .fold((0, 0), |(u, t), d| (u + d.up_s, t + d.total_s));
        let status = ComponentState::from(level(&active, id));
        components.push(Component {
            days,
            id,
            name,
            status,
            status_label: status.label(),
            uptime_90d: (total > 0).then(|| up as f64 / total as f64),
        });
    }
    // Incidents of internal components (security) are for operators only.
    let incidents = active
        .into_iter()
        .filter(|i| is_incident_component(&i.component))
        .map(|i| PublicIncident {
            updates: i.timeline.into_iter().filter(Update::is_public).collect(),
            component: i.component,
            eta_ms: i.eta_ms,
            id: i.id,
            opened_ms: i.opened_ms,
            severity: i.severity,
            status: i.status,
            title: i.title,
        })
        .collect();
    let now = now_ms();
    let mut maintenance = Vec::new();
    let windows = control.state.windows()?.into_iter();
    for window in windows.filter(|w| w.scope.players_see()) {
        let active_since = window.active_at(now);
        let next = window.next_start(now).filter(|n| *n - now < UPCOMING_MS);
        let Some(start) = active_since.or(next) else {
            continue;
        };
        let in_progress = active_since.is_some();
        if in_progress {
            let scope = window.scope.components();
            for component in components.iter_mut().filter(|c| scope.contains(&c.id)) {
                component.status = ComponentState::UnderMaintenance;
                component.status_label = component.status.label();
            }
        }
        maintenance.push(PublicWindow {
            ends_ms: start + window.duration_s * 1000,
            in_progress,
            scope: window.scope.text(),
            starts_ms: start,
            title: window.title,
        });
    }
    Ok(PublicStatus {
        components,
        generated_ms: now,
        incidents,
        maintenance,
    })
}
