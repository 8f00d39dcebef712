//! Maintenance windows: one-off (a start time) or recurring (a cron expression in a time
//! zone), each with a planned duration, on a player-facing component or on one node, and the
//! lead times at which players are told ahead (e.g. 24 h and 15 min). While a window is
//! active its alerts are held back (resolved messages still go out), its seconds are left out
//! of the uptime figures and SLOs, and a game's window puts that game in maintenance on every
//! node (players see the in-game notice).

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::catalog::is_incident_component;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WindowError {
    #[error("scope is component:<wallet|dice|roulette|slot|blackjack|lobby|games> or node:<name>")]
    Scope,
    #[error("give either starts_ms or cron (with timezone), not both or neither")]
    Schedule,
    #[error("cron '{0}' is not a cron expression: {1}")]
    Cron(String, String),
    #[error("unknown time zone '{0}' (an IANA name such as Europe/Malta)")]
    TimeZone(String),
    #[error("duration_s is between 60 and 86400")]
    Duration,
    #[error("announce_s holds lead times in seconds, each between 60 and 604800")]
    Leads,
    #[error("the window is over already: a one-off window must end after now")]
    Over,
}

/// What a window covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Component(String),
    Node(String),
}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, WindowError> {
        match text.split_once(':') {
            Some(("component", name)) if is_incident_component(name) => {
                Ok(Scope::Component(name.to_owned()))
            }
            Some(("node", name))
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                Ok(Scope::Node(name.to_owned()))
            }
            _ => Err(WindowError::Scope),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Scope::Component(name) => format!("component:{name}"),
            Scope::Node(name) => format!("node:{name}"),
        }
    }

    /// Whether players see it: it takes out one of their components. A node's window does
    /// not (the others carry on): it is the operators' alone, its node's name included.
    pub fn players_see(&self) -> bool {
        !self.components().is_empty()
    }

    /// The scope as players read it: its component's name.
    pub fn players_text(&self) -> &'static str {
        match self {
            Scope::Component(name) => crate::catalog::players_name(name).unwrap_or("our games"),
            Scope::Node(_) => "one of our servers",
        }
    }

    /// The player-facing components it takes out: the component (every game for `games`),
    /// none for a single node (the others carry on).
    pub fn components(&self) -> Vec<&str> {
        match self {
            Scope::Component(name) if name == "games" => crate::catalog::GAMES.to_vec(),
            Scope::Component(name) => vec![name.as_str()],
            Scope::Node(_) => Vec::new(),
        }
    }

    /// Whether an alert on `target` about `component` falls in this scope.
    pub fn covers_alert(&self, target: &str, component: &str) -> bool {
        match self {
            Scope::Node(name) => name == target,
            Scope::Component(name) => name == component || self.components().contains(&component),
        }
    }
}

/// The most occurrences of one window a report lists.
pub const MAX_OCCURRENCES: usize = 2_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Schedule {
    Once { starts_ms: i64 },
    Recurring { cron: String, timezone: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub id: i64,
    pub title: String,
    pub scope: Scope,
    pub schedule: Schedule,
    pub duration_s: i64,
    /// Lead times (seconds before the start) at which players are told.
    pub announce_s: Vec<i64>,
    pub created_by: String,
}

fn checked_cron(cron: &str) -> Result<Cron, WindowError> {
    Cron::from_str(cron).map_err(|e| WindowError::Cron(cron.to_owned(), e.to_string()))
}

fn checked_zone(zone: &str) -> Result<Tz, WindowError> {
    zone.parse::<Tz>()
        .map_err(|_| WindowError::TimeZone(zone.to_owned()))
}

fn to_ms<Z: TimeZone>(time: DateTime<Z>) -> i64 {
    time.timestamp_millis()
}

impl Window {
    /// Checks what an operator asked for.
    pub fn validate(&self) -> Result<(), WindowError> {
        if !(60..=86_400).contains(&self.duration_s) {
            return Err(WindowError::Duration);
        }
        if self.announce_s.len() > 5 || self.announce_s.iter().any(|l| !(60..=604_800).contains(l))
        {
            return Err(WindowError::Leads);
        }
        if let Schedule::Recurring { cron, timezone } = &self.schedule {
            checked_cron(cron)?;
            checked_zone(timezone)?;
        }
        Ok(())
    }

    /// A new window must still have something to cover at `now_ms` (checked on creation
    /// only: a stored window that ended is history, not an error).
    pub fn validate_new(&self, now_ms: i64) -> Result<(), WindowError> {
        self.validate()?;
        match self.schedule {
            Schedule::Once { starts_ms }
                if starts_ms.saturating_add(self.duration_s.saturating_mul(1000)) <= now_ms =>
            {
                Err(WindowError::Over)
            }
            _ => Ok(()),
        }
    }

    /// The start of the occurrence running at `now_ms`, if one is.
    pub fn active_at(&self, now_ms: i64) -> Option<i64> {
        let start = match &self.schedule {
            Schedule::Once { starts_ms } => *starts_ms,
            Schedule::Recurring { cron, timezone } => {
                let (cron, zone) = (checked_cron(cron).ok()?, checked_zone(timezone).ok()?);
                let now = zone.timestamp_millis_opt(now_ms).single()?;
                to_ms(cron.find_previous_occurrence(&now, true).ok()?)
            }
        };
        (start <= now_ms && now_ms < start + self.duration_s * 1000).then_some(start)
    }

    /// The next start after `now_ms`, if any.
    pub fn next_start(&self, now_ms: i64) -> Option<i64> {
        match &self.schedule {
            Schedule::Once { starts_ms } => (*starts_ms > now_ms).then_some(*starts_ms),
            Schedule::Recurring { cron, timezone } => {
                let (cron, zone) = (checked_cron(cron).ok()?, checked_zone(timezone).ok()?);
                let now = zone.timestamp_millis_opt(now_ms).single()?;
                cron.find_next_occurrence(&now, false).ok().map(to_ms)
            }
        }
    }

    /// Starts of the occurrences overlapping [from_ms, until_ms), oldest first; at most
    /// `MAX_OCCURRENCES` (a report over a year of a window every hour stays bounded).
    pub fn occurrences(&self, from_ms: i64, until_ms: i64) -> Vec<i64> {
        let length = self.duration_s * 1000;
        let overlaps = |start: i64| start < until_ms && start + length > from_ms;
        let (cron, timezone) = match &self.schedule {
            Schedule::Once { starts_ms } => {
                return Vec::from_iter(Some(*starts_ms).filter(|s| overlaps(*s)));
            }
            Schedule::Recurring { cron, timezone } => (cron, timezone),
        };
        let (Ok(cron), Ok(zone)) = (checked_cron(cron), checked_zone(timezone)) else {
            return Vec::new();
        };
        let Some(mut at) = zone.timestamp_millis_opt(from_ms - length).single() else {
            return Vec::new();
        };
        let mut starts = Vec::new();
        while starts.len() < MAX_OCCURRENCES {
            let Ok(next) = cron.find_next_occurrence(&at, false) else {
                break;
            };
            let start = next.timestamp_millis();
            if start >= until_ms {
                break;
            }
            if overlaps(start) {
                starts.push(start);
            }
            at = next;
        }
        starts
    }

    /// Announcements due at `now_ms`: (occurrence start, lead) pairs whose time has come
    /// and whose occurrence has not started yet.
    pub fn announcements_due(&self, now_ms: i64) -> Vec<(i64, i64)> {
        let Some(start) = self.next_start(now_ms) else {
            return Vec::new();
        };
        self.announce_s
            .iter()
            .filter(|lead| now_ms >= start - *lead * 1000)
            .map(|lead| (start, *lead))
            .collect()
    }
}

/// A start time in UTC for messages.
pub fn utc_text(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(schedule: Schedule) -> Window {
        Window {
            id: 1,
            title: "Patch Tuesday".into(),
            scope: Scope::parse("component:dice").unwrap(),
            schedule,
            duration_s: 1_800,
            announce_s: vec![86_400, 900],
            created_by: "ana".into(),
        }
    }

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn a_one_off_window_is_active_for_its_duration() {
        let w = window(Schedule::Once {
            starts_ms: ms("2026-12-01T03:00:00Z"),
        });
        assert_eq!(w.active_at(ms("2026-12-01T02:59:59Z")), None);
        assert_eq!(
            w.active_at(ms("2026-12-01T03:10:00Z")),
            Some(ms("2026-12-01T03:00:00Z"))
        );
        assert_eq!(w.active_at(ms("2026-12-01T03:30:00Z")), None);
        assert_eq!(w.next_start(ms("2026-12-01T03:10:00Z")), None);
    }

    #[test]
    fn a_recurring_window_follows_local_time_across_daylight_saving() {
        // Sundays at 03:00 in Malta: 01:00 UTC in summer time, 02:00 UTC in winter time.
        let w = window(Schedule::Recurring {
            cron: "0 3 * * SUN".into(),
            timezone: "Europe/Malta".into(),
        });
        w.validate().unwrap();
        assert_eq!(
            w.next_start(ms("2026-10-12T00:00:00Z")),
            Some(ms("2026-10-18T01:00:00Z"))
        );
        assert_eq!(
            w.next_start(ms("2026-10-26T00:00:00Z")),
            Some(ms("2026-11-01T02:00:00Z"))
        );
        assert_eq!(
            w.active_at(ms("2026-11-01T02:20:00Z")),
            Some(ms("2026-11-01T02:00:00Z"))
        );
        assert_eq!(w.active_at(ms("2026-11-01T02:40:00Z")), None);
    }

    #[test]
    fn occurrences_overlapping_a_range_follow_local_time() {
        let w = window(Schedule::Recurring {
            cron: "0 3 * * SUN".into(),
            timezone: "Europe/Malta".into(),
        });
        // October 2026: four Sundays in summer time (01:00 UTC), the 25th is the change.
        let starts = w.occurrences(ms("2026-10-04T01:10:00Z"), ms("2026-11-02T00:00:00Z"));
        assert_eq!(
            starts.first(),
            Some(&ms("2026-10-04T01:00:00Z")),
            "still running at the start"
        );
        assert_eq!(starts.last(), Some(&ms("2026-11-01T02:00:00Z")));
        assert_eq!(starts.len(), 5);
        let once = window(Schedule::Once {
            starts_ms: ms("2026-11-15T02:00:00Z"),
        });
        assert_eq!(
            once.occurrences(ms("2026-11-01T00:00:00Z"), ms("2026-12-01T00:00:00Z"))
                .len(),
            1
        );
        assert!(
            once.occurrences(ms("2026-11-15T02:30:00Z"), ms("2026-12-01T00:00:00Z"))
                .is_empty()
        );
    }

    #[test]
    fn announcements_come_at_each_lead_time() {
        let start = ms("2026-12-01T03:00:00Z");
        let w = window(Schedule::Once { starts_ms: start });
        assert!(w.announcements_due(start - 90_000_000).is_empty());
        assert_eq!(
            w.announcements_due(start - 86_000_000),
            vec![(start, 86_400)]
        );
        assert_eq!(
            w.announcements_due(start - 60_000),
            vec![(start, 86_400), (start, 900)]
        );
        assert!(
            w.announcements_due(start).is_empty(),
            "started: no more notice"
        );
    }

    #[test]
    fn bad_windows_are_named() {
        assert_eq!(Scope::parse("component:poker"), Err(WindowError::Scope));
        assert_eq!(Scope::parse("node:"), Err(WindowError::Scope));
        let mut w = window(Schedule::Recurring {
            cron: "every sunday".into(),
            timezone: "UTC".into(),
        });
        assert!(matches!(w.validate(), Err(WindowError::Cron(..))));
        w.schedule = Schedule::Recurring {
            cron: "0 3 * * *".into(),
            timezone: "Mars/Olympus".into(),
        };
        assert_eq!(
            w.validate(),
            Err(WindowError::TimeZone("Mars/Olympus".into()))
        );
        w.schedule = Schedule::Once { starts_ms: 0 };
        w.duration_s = 5;
        assert_eq!(w.validate(), Err(WindowError::Duration));
        w.duration_s = 600;
        w.announce_s = vec![1];
        assert_eq!(w.validate(), Err(WindowError::Leads));
    }

    #[test]
    fn scopes_cover_their_alerts() {
        let games = Scope::parse("component:games").unwrap();
        assert!(games.covers_alert("node-1", "games"));
        assert!(games.covers_alert("check-x", "slot"));
        assert!(!games.covers_alert("check-bet", "wallet"));
        let node = Scope::parse("node:node-2").unwrap();
        assert!(node.covers_alert("node-2", "games"));
        assert!(!node.covers_alert("node-1", "games"));
        assert!(node.components().is_empty());
    }
}
