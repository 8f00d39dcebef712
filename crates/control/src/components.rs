//! The player-facing components (the wallet, each game, the lobby) and their state, derived
//! from the active incidents: the status page, the JSON and Atom feeds and the uptime rollups
//! all read it from here. An incident on `games` touches every game.

use std::collections::HashMap;

use serde::Serialize;

use crate::catalog::{COMPONENTS, affects};
use crate::state::{Incident, Uptime};
use croupier_monitor::severity::Severity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Operational,
    Degraded,
    PartialOutage,
    MajorOutage,
}

impl Level {
    /// Whether players can use the component (the uptime bars count these seconds as up).
    pub fn is_up(self) -> bool {
        self <= Level::Degraded
    }

    pub fn label(self) -> &'static str {
        match self {
            Level::Operational => "Operational",
            Level::Degraded => "Degraded performance",
            Level::PartialOutage => "Partial outage",
            Level::MajorOutage => "Major outage",
        }
    }
}

/// The state an open incident of `severity` puts its components in.
pub fn severity_level(severity: Severity) -> Level {
    match severity {
        Severity::Critical => Level::MajorOutage,
        Severity::Major => Level::PartialOutage,
        Severity::Minor => Level::Degraded,
    }
}

/// The worst state the active incidents put `component` in.
pub fn level(active: &[Incident], component: &str) -> Level {
    active
        .iter()
        .filter(|i| {
            i.status != crate::state::IncidentStatus::Resolved && affects(&i.component, component)
        })
        .map(|i| severity_level(i.severity))
        .max()
        .unwrap_or(Level::Operational)
}

/// Seconds of up/observed per component, gathered each second and written in batches.
#[derive(Debug, Default)]
pub struct UptimeAccumulator {
    pending: HashMap<&'static str, Uptime>,
}

impl UptimeAccumulator {
    /// Counts one second of every component at `now_s`, except those in a maintenance
    /// window (left out of the figures).
    pub fn observe(&mut self, now_s: i64, active: &[Incident], in_maintenance: &[&str]) {
        for (id, _) in COMPONENTS {
            if in_maintenance.contains(&id) {
                continue;
            }
            let up = level(active, id).is_up();
            let entry = self.pending.entry(id).or_insert(Uptime {
                start_s: now_s,
                up_s: 0,
                total_s: 0,
            });
            entry.up_s += i64::from(up);
            entry.total_s += 1;
        }
    }

    /// Hands over what was gathered when a batch is due (every ten seconds, and never across
    /// a minute boundary, so each batch falls in one bucket of every resolution).
    pub fn due(&mut self, now_s: i64) -> Option<Vec<(String, Uptime)>> {
        let started = self.pending.values().next()?.start_s;
        let crosses_minute = now_s / 60 != started / 60;
        if now_s - started < 10 && !crosses_minute {
            return None;
        }
        Some(
            self.pending
                .drain()
                .map(|(id, uptime)| (id.to_owned(), uptime))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(component: &str, severity: Severity) -> Incident {
        Incident {
            id: 1,
            title: "t".into(),
            component: component.into(),
            severity,
            status: crate::state::IncidentStatus::Investigating,
            alert_key: None,
            opened_ms: 0,
            resolved_ms: None,
            eta_ms: None,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn a_games_incident_touches_every_game_and_the_worst_wins() {
        let active = [
            incident("games", Severity::Major),
            incident("dice", Severity::Critical),
        ];
        assert_eq!(level(&active, "dice"), Level::MajorOutage);
        assert_eq!(level(&active, "slot"), Level::PartialOutage);
        assert_eq!(level(&active, "wallet"), Level::Operational);
        assert!(Level::Degraded.is_up() && !Level::PartialOutage.is_up());
    }

    #[test]
    fn uptime_batches_never_straddle_a_minute() {
        let mut acc = UptimeAccumulator::default();
        let outage = [incident("lobby", Severity::Major)];
        acc.observe(55, &[], &[]);
        assert!(acc.due(56).is_none());
        acc.observe(57, &outage, &["lobby"]);
        acc.observe(59, &outage, &[]);
        let batch = acc.due(60).expect("a minute boundary flushes");
        let lobby = batch.iter().find(|(c, _)| c == "lobby").unwrap().1;
        assert_eq!((lobby.start_s, lobby.up_s, lobby.total_s), (55, 1, 2));
        assert!(acc.due(61).is_none(), "nothing left");
    }
}
