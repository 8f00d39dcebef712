//! The control plane's own state in SQLite: incidents with their timelines, and the alert
//! history. Small and rare writes: one connection behind a mutex.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("control state: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no incident {0}")]
    NoIncident(i64),
}

#[derive(Debug, Clone, Serialize)]
pub struct Update {
    pub ts_ms: i64,
    pub status: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: i64,
    pub title: String,
    pub component: String,
    pub severity: String,
    pub status: String,
    pub alert_key: Option<String>,
    pub opened_ms: i64,
    pub resolved_ms: Option<i64>,
    pub eta_ms: Option<i64>,
    pub timeline: Vec<Update>,
}

pub struct State(Mutex<Connection>);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, component TEXT NOT NULL, severity TEXT NOT NULL,
    status TEXT NOT NULL, alert_key TEXT, opened_ms INTEGER NOT NULL, resolved_ms INTEGER, eta_ms INTEGER
);
CREATE TABLE IF NOT EXISTS timeline (
    id INTEGER PRIMARY KEY, incident_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
    status TEXT NOT NULL, message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY, alert_key TEXT NOT NULL, event TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    value REAL
);";

impl State {
    pub fn open(path: &Path) -> Result<State, StateError> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(State(Mutex::new(conn)))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_alert(
        &self,
        key: &str,
        event: &str,
        ts_ms: i64,
        value: Option<f64>,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO alert_history (alert_key, event, ts_ms, value) VALUES (?1, ?2, ?3, ?4)",
            params![key, event, ts_ms, value],
        )?;
        Ok(())
    }

    pub fn open_incident_for_alert(&self, key: &str) -> Result<Option<i64>, StateError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id FROM incidents WHERE alert_key = ?1 AND status <> 'resolved'",
                [key],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn open_incident(
        &self,
        title: &str,
        component: &str,
        severity: &str,
        alert_key: Option<&str>,
        message: &str,
        ts_ms: i64,
    ) -> Result<i64, StateError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO incidents (title, component, severity, status, alert_key, opened_ms)
             VALUES (?1, ?2, ?3, 'investigating', ?4, ?5)",
            params![title, component, severity, alert_key, ts_ms],
        )?;
        let id = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO timeline (incident_id, ts_ms, status, message) VALUES (?1, ?2, 'investigating', ?3)",
            params![id, ts_ms, message],
        )?;
        Ok(id)
    }

    /// Adds an update; `resolved` closes the incident.
    pub fn update_incident(
        &self,
        id: i64,
        status: &str,
        message: &str,
        eta_ms: Option<i64>,
        ts_ms: i64,
    ) -> Result<(), StateError> {
        let conn = self.conn();
        let changed = conn.execute(
            "UPDATE incidents SET status = ?2, eta_ms = COALESCE(?3, eta_ms),
             resolved_ms = CASE WHEN ?2 = 'resolved' THEN ?4 ELSE resolved_ms END WHERE id = ?1",
            params![id, status, eta_ms, ts_ms],
        )?;
        if changed == 0 {
            return Err(StateError::NoIncident(id));
        }
        conn.execute(
            "INSERT INTO timeline (incident_id, ts_ms, status, message) VALUES (?1, ?2, ?3, ?4)",
            params![id, ts_ms, status, message],
        )?;
        Ok(())
    }

    /// Incidents, newest first; only unresolved ones when `active_only`.
    pub fn incidents(&self, active_only: bool) -> Result<Vec<Incident>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, title, component, severity, status, alert_key, opened_ms, resolved_ms, eta_ms
             FROM incidents WHERE (?1 = 0 OR status <> 'resolved') ORDER BY id DESC LIMIT 200",
        )?;
        let mut incidents: Vec<Incident> = stmt
            .query_map([i64::from(active_only)], |r| {
                Ok(Incident {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    component: r.get(2)?,
                    severity: r.get(3)?,
                    status: r.get(4)?,
                    alert_key: r.get(5)?,
                    opened_ms: r.get(6)?,
                    resolved_ms: r.get(7)?,
                    eta_ms: r.get(8)?,
                    timeline: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut updates = conn.prepare(
            "SELECT ts_ms, status, message FROM timeline WHERE incident_id = ?1 ORDER BY id",
        )?;
        for incident in &mut incidents {
            incident.timeline = updates
                .query_map([incident.id], |r| {
                    Ok(Update {
                        ts_ms: r.get(0)?,
                        status: r.get(1)?,
                        message: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
        }
        Ok(incidents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incidents_open_update_and_resolve_with_a_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("control.db")).unwrap();
        let id = state
            .open_incident(
                "node-2 down",
                "games",
                "major",
                Some("down/node-2"),
                "alert fired",
                1,
            )
            .unwrap();
        assert_eq!(
            state.open_incident_for_alert("down/node-2").unwrap(),
            Some(id)
        );
        state
            .update_incident(
                id,
                "identified",
                "process crashed; restarting",
                Some(100),
                2,
            )
            .unwrap();
        state
            .update_incident(id, "resolved", "back", None, 3)
            .unwrap();
        assert_eq!(state.open_incident_for_alert("down/node-2").unwrap(), None);
        let all = state.incidents(false).unwrap();
        assert_eq!(all[0].timeline.len(), 3);
        assert_eq!((all[0].resolved_ms, all[0].eta_ms), (Some(3), Some(100)));
        assert!(state.incidents(true).unwrap().is_empty());
        assert!(matches!(
            state.update_incident(99, "resolved", "x", None, 4),
            Err(StateError::NoIncident(99))
        ));
    }
}
