//! The control plane's own state in SQLite: incidents with their timelines and the alerts
//! grouped into them, the alert history, silences, the operators' audit log, maintenance
//! windows and their announcements, rolling updates with their steps, and the uptime rollups
//! (1 min, 1 h, 1 d, kept a year). Small and rare writes: one connection behind a
//! mutex.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Params, Row, params};
use serde::Serialize;

use crate::maintenance::{Schedule, Scope, Window};
use croupier_monitor::severity::Severity;
pub use croupier_web::wire::control::IncidentStatus;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("control state: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no incident {0}")]
    NoIncident(i64),
}

/// A line of an incident's timeline: an [`IncidentStatus`] word, or [`ONCALL_LINE`]. Fields
/// in alphabetical order, the order the API has always sent them in.
#[derive(Debug, Clone, Serialize)]
pub struct Update {
    pub message: String,
    pub status: String,
    pub ts_ms: i64,
}

/// An incident with its timeline, as operators see it (fields in alphabetical order, the
/// order the API has always sent them in).
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub alert_key: Option<String>,
    pub component: String,
    pub eta_ms: Option<i64>,
    pub id: i64,
    pub opened_ms: i64,
    pub resolved_ms: Option<i64>,
    pub severity: Severity,
    pub status: IncidentStatus,
    pub timeline: Vec<Update>,
    pub title: String,
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
);
CREATE INDEX IF NOT EXISTS alert_history_by_key ON alert_history (alert_key, id);
CREATE TABLE IF NOT EXISTS incident_alerts (
    incident_id INTEGER NOT NULL, alert_key TEXT NOT NULL, firing INTEGER NOT NULL,
    PRIMARY KEY (incident_id, alert_key)
);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY, matcher TEXT NOT NULL, comment TEXT NOT NULL, created_by TEXT NOT NULL,
    starts_ms INTEGER NOT NULL, ends_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, detail TEXT NOT NULL, outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS maintenance_windows (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, scope TEXT NOT NULL, starts_ms INTEGER,
    cron TEXT, timezone TEXT, duration_s INTEGER NOT NULL, announce_s TEXT NOT NULL,
    created_by TEXT NOT NULL, created_ms INTEGER NOT NULL, cancelled_ms INTEGER
);
CREATE TABLE IF NOT EXISTS maintenance_announcements (
    window_id INTEGER NOT NULL, occurrence_ms INTEGER NOT NULL, lead_s INTEGER NOT NULL,
    sent_ms INTEGER NOT NULL, PRIMARY KEY (window_id, occurrence_ms, lead_s)
);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY, binary TEXT NOT NULL, batch_size INTEGER NOT NULL,
    created_by TEXT NOT NULL, started_ms INTEGER NOT NULL, finished_ms INTEGER,
    status TEXT NOT NULL, incident_id INTEGER
);
CREATE TABLE IF NOT EXISTS rollout_steps (
    id INTEGER PRIMARY KEY, rollout_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
    node TEXT NOT NULL, step TEXT NOT NULL, ok INTEGER NOT NULL, message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drill_reports (
    id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, drill TEXT NOT NULL, verdict TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS backup_pins (target TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, cut_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS backup_verifies (
    id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, ok INTEGER NOT NULL, report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rollups (
    component TEXT NOT NULL, resolution_s INTEGER NOT NULL, start_s INTEGER NOT NULL,
    up_s INTEGER NOT NULL, total_s INTEGER NOT NULL,
    PRIMARY KEY (component, resolution_s, start_s)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pages (
    id INTEGER PRIMARY KEY, incident_id INTEGER NOT NULL UNIQUE, level INTEGER NOT NULL,
    repeats INTEGER NOT NULL DEFAULT 0,
    person TEXT NOT NULL, status TEXT NOT NULL, opened_ms INTEGER NOT NULL,
    level_since_ms INTEGER NOT NULL, acked_by TEXT, acked_ms INTEGER, resolved_by TEXT,
    resolved_ms INTEGER
);
CREATE TABLE IF NOT EXISTS used_links (digest TEXT PRIMARY KEY, used_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subscribers (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, address TEXT NOT NULL, components TEXT NOT NULL,
    status TEXT NOT NULL, created_ms INTEGER NOT NULL, asked_ms INTEGER NOT NULL,
    confirmed_ms INTEGER, UNIQUE (kind, address)
);
CREATE TABLE IF NOT EXISTS delivery_cursor (id INTEGER PRIMARY KEY, timeline_id INTEGER NOT NULL);";

/// Adds a column a table made by an older build lacks (`CREATE TABLE IF NOT EXISTS` leaves
/// such a table as it was).
fn add_column(conn: &Connection, table: &str, column: &str, kind: &str) -> Result<(), StateError> {
    let present: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        params![table, column],
        |r| r.get(0),
    )?;
    if !present {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
    }
    Ok(())
}

/// Rollup resolutions: a minute, an hour, a day.
pub const ROLLUP_RESOLUTIONS: [i64; 3] = [60, 3_600, 86_400];
/// Rollups older than this are dropped.
pub const ROLLUP_KEPT_S: i64 = 366 * 86_400;

/// A silence (fields in alphabetical order, the order the API has always sent them in).
#[derive(Debug, Clone, Serialize)]
pub struct Silence {
    pub comment: String,
    pub created_by: String,
    pub ends_ms: i64,
    pub id: i64,
    /// Matches an alert key (`rule/target`) exactly, or by prefix when it ends in `*`, or every
    /// alert of a component as `component:<name>`.
    pub matcher: String,
    pub starts_ms: i64,
}

impl Silence {
    pub fn matches(&self, key: &str, component: &str, now_ms: i64) -> bool {
        if now_ms < self.starts_ms || now_ms >= self.ends_ms {
            return false;
        }
        if let Some(wanted) = self.matcher.strip_prefix("component:") {
            return wanted == component;
        }
        match self.matcher.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == self.matcher,
        }
    }
}

/// A rolling update with its steps, and where it is: the control API's words
/// (`croupier_web::wire::control`), `croupier maintenance` reads them back.
pub use croupier_web::wire::control::{Rollout, RolloutStatus, RolloutStep};

/// An audit log line (fields in alphabetical order, the order the API has always sent them
/// in).
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub action: String,
    pub actor: String,
    pub detail: String,
    pub id: i64,
    pub outcome: String,
    pub subject: String,
    pub ts_ms: i64,
}

/// Seconds up and observed in one rollup bucket (fields in alphabetical order, the order
/// the status API has always sent them in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Uptime {
    pub start_s: i64,
    pub total_s: i64,
    pub up_s: i64,
}

impl State {
    pub fn open(path: &Path) -> Result<State, StateError> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        conn.execute_batch(SCHEMA)?;
        add_column(&conn, "pages", "repeats", "INTEGER NOT NULL DEFAULT 0")?;
        Ok(State(Mutex::new(conn)))
    }

    pub(crate) fn conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        self.0.lock()
    }

    /// Every row `sql` selects with `params`, each made into a `T` by `row`.
    pub(crate) fn rows<T>(
        &self,
        sql: &str,
        params: impl Params,
        row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, row)?;
        Ok(rows.collect::<Result<_, _>>()?)
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

    /// The alerts whose last transition was sent as firing (or silenced, or held by a
    /// maintenance window), not yet resolved: what the leader before a new one told the world.
    pub fn sent_alerts(&self) -> Result<HashSet<String>, StateError> {
        let conn = self.conn();
        let mut statement = conn.prepare_cached(
            "SELECT alert_key FROM alert_history WHERE id IN
               (SELECT max(id) FROM alert_history GROUP BY alert_key)
             AND event <> 'resolved'",
        )?;
        let keys = statement
            .query_map([], |r| r.get(0))?
            .collect::<Result<HashSet<String>, _>>()?;
        Ok(keys)
    }

    /// The open incident an alert is part of.
    pub fn open_incident_for_alert(&self, key: &str) -> Result<Option<i64>, StateError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT i.id FROM incidents i JOIN incident_alerts a ON a.incident_id = i.id
                 WHERE a.alert_key = ?1 AND i.status <> 'resolved' ORDER BY i.id DESC LIMIT 1",
                [key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The open incident that alerts on `component` are grouped into.
    pub fn open_alert_incident_for_component(
        &self,
        component: &str,
    ) -> Result<Option<i64>, StateError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id FROM incidents WHERE component = ?1 AND alert_key IS NOT NULL
                 AND status <> 'resolved' ORDER BY id DESC LIMIT 1",
                [component],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Marks an alert firing (or not) within an incident; returns how many of the
    /// incident's alerts still fire.
    pub fn set_incident_alert(
        &self,
        incident: i64,
        key: &str,
        firing: bool,
    ) -> Result<i64, StateError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO incident_alerts (incident_id, alert_key, firing) VALUES (?1, ?2, ?3)
             ON CONFLICT (incident_id, alert_key) DO UPDATE SET firing = excluded.firing",
            params![incident, key, firing],
        )?;
        Ok(conn.query_row(
            "SELECT count(*) FROM incident_alerts WHERE incident_id = ?1 AND firing = 1",
            [incident],
            |r| r.get(0),
        )?)
    }

    /// Raises an incident's severity to `severity` if that is worse.
    pub fn raise_severity(&self, id: i64, severity: Severity) -> Result<(), StateError> {
        self.conn().execute(
            "UPDATE incidents SET severity = ?2 WHERE id = ?1 AND
             (CASE severity WHEN 'critical' THEN 3 WHEN 'major' THEN 2 ELSE 1 END) <
             (CASE ?2 WHEN 'critical' THEN 3 WHEN 'major' THEN 2 ELSE 1 END)",
            params![id, severity.as_str()],
        )?;
        Ok(())
    }
}

/// The timeline status of on-call lines (who was paged, who acknowledged): operators see
/// them; the status page, its feeds and subscribers never do.
pub const ONCALL_LINE: &str = "oncall";

impl Update {
    /// Whether players may see it.
    pub fn is_public(&self) -> bool {
        self.status != ONCALL_LINE
    }
}

impl State {
    /// Adds an on-call line (`ONCALL_LINE`) to an incident's timeline.
    pub fn note_oncall(&self, id: i64, message: &str, ts_ms: i64) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO timeline (incident_id, ts_ms, status, message) VALUES (?1, ?2, ?3, ?4)",
            params![id, ts_ms, ONCALL_LINE, message],
        )?;
        Ok(())
    }

    /// One timeline line.
    pub fn timeline_line(&self, id: i64) -> Result<Option<Update>, StateError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT ts_ms, status, message FROM timeline WHERE id = ?1",
                [id],
                update,
            )
            .optional()?)
    }

    /// Adds a line to an incident's timeline without changing its status.
    pub fn note_incident(&self, id: i64, message: &str, ts_ms: i64) -> Result<(), StateError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO timeline (incident_id, ts_ms, status, message)
             SELECT id, ?2, status, ?3 FROM incidents WHERE id = ?1",
            params![id, ts_ms, message],
        )?;
        Ok(())
    }

    pub fn add_silence(
        &self,
        matcher: &str,
        comment: &str,
        created_by: &str,
        starts_ms: i64,
        ends_ms: i64,
    ) -> Result<i64, StateError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO silences (matcher, comment, created_by, starts_ms, ends_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![matcher, comment, created_by, starts_ms, ends_ms],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Ends a silence now; false when there is no such silence.
    pub fn expire_silence(&self, id: i64, now_ms: i64) -> Result<bool, StateError> {
        Ok(self.conn().execute(
            "UPDATE silences SET ends_ms = min(ends_ms, ?2) WHERE id = ?1",
            params![id, now_ms],
        )? == 1)
    }

    /// Silences not yet over.
    pub fn silences(&self, now_ms: i64) -> Result<Vec<Silence>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, matcher, comment, created_by, starts_ms, ends_ms FROM silences
             WHERE ends_ms > ?1 ORDER BY id",
        )?;
        Ok(stmt
            .query_map([now_ms], |r| {
                Ok(Silence {
                    id: r.get(0)?,
                    matcher: r.get(1)?,
                    comment: r.get(2)?,
                    created_by: r.get(3)?,
                    starts_ms: r.get(4)?,
                    ends_ms: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    /// Records an operator's action.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
        outcome: &str,
        ts_ms: i64,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO audit_log (ts_ms, actor, action, subject, detail, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![ts_ms, actor, action, subject, detail, outcome],
        )?;
        Ok(())
    }

    /// The newest audit entries first.
    pub fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, ts_ms, actor, action, subject, detail, outcome FROM audit_log
             ORDER BY id DESC LIMIT ?1",
        )?;
        Ok(stmt
            .query_map([limit], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    ts_ms: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    subject: r.get(4)?,
                    detail: r.get(5)?,
                    outcome: r.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    pub fn add_window(&self, window: &Window, now_ms: i64) -> Result<i64, StateError> {
        let (starts_ms, cron, timezone) = match &window.schedule {
            Schedule::Once { starts_ms } => (Some(*starts_ms), None, None),
            Schedule::Recurring { cron, timezone } => (None, Some(cron), Some(timezone)),
        };
        let conn = self.conn();
        conn.execute(
            "INSERT INTO maintenance_windows
             (title, scope, starts_ms, cron, timezone, duration_s, announce_s, created_by, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                window.title,
                window.scope.text(),
                starts_ms,
                cron,
                timezone,
                window.duration_s,
                serde_json::to_string(&window.announce_s).unwrap_or_default(),
                window.created_by,
                now_ms
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Cancels a window; false when there is no such window (or it was cancelled already).
    pub fn cancel_window(&self, id: i64, now_ms: i64) -> Result<bool, StateError> {
        Ok(self.conn().execute(
            "UPDATE maintenance_windows SET cancelled_ms = ?2 WHERE id = ?1 AND cancelled_ms IS NULL",
            params![id, now_ms],
        )? == 1)
    }

    /// Windows not cancelled.
    pub fn windows(&self) -> Result<Vec<Window>, StateError> {
        Ok(self
            .read_windows(true)?
            .into_iter()
            .map(|(window, _)| window)
            .collect())
    }

    /// Every window ever planned, with when it was cancelled (its occurrences before that
    /// happened, and were left out of the uptime figures): what SLA reports list.
    pub fn windows_ever(&self) -> Result<Vec<(Window, Option<i64>)>, StateError> {
        self.read_windows(false)
    }

    fn read_windows(&self, live_only: bool) -> Result<Vec<(Window, Option<i64>)>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, title, scope, starts_ms, cron, timezone, duration_s, announce_s, created_by,
             cancelled_ms FROM maintenance_windows WHERE (?1 = 0 OR cancelled_ms IS NULL) ORDER BY id",
        )?;
        let rows = stmt.query_map([i64::from(live_only)], |r| {
            Ok((
                (
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ),
                r.get::<_, i64>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, Option<i64>>(9)?,
            ))
        })?;
        let mut windows = Vec::new();
        for row in rows {
            let (
                (id, title, scope, starts_ms, cron, timezone),
                duration_s,
                announce,
                created_by,
                cancelled,
            ) = row?;
            let schedule = match (starts_ms, cron, timezone) {
                (Some(starts_ms), _, _) => Schedule::Once { starts_ms },
                (None, Some(cron), Some(timezone)) => Schedule::Recurring { cron, timezone },
                _ => continue,
            };
            let Ok(scope) = Scope::parse(&scope) else {
                continue;
            };
            let window = Window {
                id,
                title,
                scope,
                schedule,
                duration_s,
                announce_s: serde_json::from_str(&announce).unwrap_or_default(),
                created_by,
            };
            windows.push((window, cancelled));
        }
        Ok(windows)
    }

    /// Records an announcement; false when it was made already.
    pub fn mark_announced(
        &self,
        window: i64,
        occurrence_ms: i64,
        lead_s: i64,
        now_ms: i64,
    ) -> Result<bool, StateError> {
        Ok(self.conn().execute(
            "INSERT OR IGNORE INTO maintenance_announcements (window_id, occurrence_ms, lead_s, sent_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![window, occurrence_ms, lead_s, now_ms],
        )? == 1)
    }

    pub fn start_rollout(
        &self,
        binary: &str,
        batch_size: i64,
        created_by: &str,
        now_ms: i64,
    ) -> Result<i64, StateError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO rollouts (binary, batch_size, created_by, started_ms, status)
             VALUES (?1, ?2, ?3, ?4, 'running')",
            params![binary, batch_size, created_by, now_ms],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn rollout_step(
        &self,
        rollout: i64,
        node: &str,
        step: &str,
        ok: bool,
        message: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO rollout_steps (rollout_id, ts_ms, node, step, ok, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![rollout, now_ms, node, step, ok, message],
        )?;
        Ok(())
    }

    pub fn finish_rollout(
        &self,
        rollout: i64,
        status: RolloutStatus,
        incident: Option<i64>,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "UPDATE rollouts SET status = ?2, incident_id = ?3, finished_ms = ?4 WHERE id = ?1",
            params![rollout, status.as_str(), incident, now_ms],
        )?;
        Ok(())
    }

    /// Rollouts, newest first, with their steps.
    pub fn rollouts(&self, limit: i64) -> Result<Vec<Rollout>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, binary, batch_size, created_by, started_ms, finished_ms, status, incident_id
             FROM rollouts ORDER BY id DESC LIMIT ?1",
        )?;
        let mut rollouts: Vec<Rollout> = stmt
            .query_map([limit], |r| {
                Ok(Rollout {
                    id: r.get(0)?,
                    binary: r.get(1)?,
                    batch_size: r.get(2)?,
                    created_by: r.get(3)?,
                    started_ms: r.get(4)?,
                    finished_ms: r.get(5)?,
                    status: rollout_status_at(r, 6)?,
                    incident_id: r.get(7)?,
                    steps: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut steps = conn.prepare(
            "SELECT ts_ms, node, step, ok, message FROM rollout_steps WHERE rollout_id = ?1 ORDER BY id",
        )?;
        for rollout in &mut rollouts {
            rollout.steps = steps
                .query_map([rollout.id], |r| {
                    Ok(RolloutStep {
                        ts_ms: r.get(0)?,
                        node: r.get(1)?,
                        step: r.get(2)?,
                        ok: r.get(3)?,
                        message: r.get(4)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
        }
        Ok(rollouts)
    }

    /// Keeps a restore test's report (the backup catalog's proof).
    pub fn add_backup_verify(
        &self,
        report: &croupier_backup::VerifyReport,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO backup_verifies (ts_ms, ok, report) VALUES (?1, ?2, ?3)",
            params![
                report.verified_at_ms,
                report.ok,
                serde_json::to_string(report).unwrap_or_default()
            ],
        )?;
        Ok(())
    }

    /// Restore tests' reports, newest first.
    pub fn backup_verifies(
        &self,
        limit: i64,
    ) -> Result<Vec<croupier_backup::VerifyReport>, StateError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT report FROM backup_verifies ORDER BY id DESC LIMIT ?1")?;
        let reports: Vec<String> = stmt
            .query_map([limit], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(reports
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    /// Moves the pin of `target` (the newest state shipped there) forward to `pin`.
    pub fn pin_backup(&self, target: &str, pin: croupier_backup::Pin) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO backup_pins (target, last_seq, cut_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (target) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq), \
             cut_ms = max(cut_ms, excluded.cut_ms)",
            params![target, pin.last_seq, pin.cut_ms],
        )?;
        Ok(())
    }

    /// The pin of `target`, if anything was shipped there.
    pub fn backup_pin(&self, target: &str) -> Result<Option<croupier_backup::Pin>, StateError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT last_seq, cut_ms FROM backup_pins WHERE target = ?1",
                [target],
                |r| {
                    Ok(croupier_backup::Pin {
                        last_seq: r.get(0)?,
                        cut_ms: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn last_backup_verify(&self) -> Result<Option<croupier_backup::VerifyReport>, StateError> {
        Ok(self.backup_verifies(1)?.into_iter().next())
    }

    /// Keeps a failover drill's report (from `croupier drill --report-to`).
    pub fn add_drill_report(
        &self,
        drill: &str,
        verdict: &str,
        report: &serde_json::Value,
        now_ms: i64,
    ) -> Result<i64, StateError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO drill_reports (ts_ms, drill, verdict, report) VALUES (?1, ?2, ?3, ?4)",
            params![now_ms, drill, verdict, report.to_string()],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Drill reports, newest first.
    pub fn drill_reports(&self, limit: i64) -> Result<Vec<serde_json::Value>, StateError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, ts_ms, report FROM drill_reports ORDER BY id DESC LIMIT ?1")?;
        Ok(stmt
            .query_map([limit], |r| {
                let report: String = r.get(2)?;
                Ok(serde_json::json!({
                    "id": r.get::<_, i64>(0)?,
                    "received_ms": r.get::<_, i64>(1)?,
                    "report": serde_json::from_str::<serde_json::Value>(&report).unwrap_or_default(),
                }))
            })?
            .collect::<Result<_, _>>()?)
    }

    /// Adds observed seconds to every resolution's bucket of each component, and drops
    /// buckets older than a year.
    pub fn add_uptime(&self, at_s: i64, seconds: &[(String, Uptime)]) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (component, uptime) in seconds {
            for resolution in ROLLUP_RESOLUTIONS {
                tx.execute(
                    "INSERT INTO rollups (component, resolution_s, start_s, up_s, total_s)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (component, resolution_s, start_s)
                     DO UPDATE SET up_s = up_s + excluded.up_s, total_s = total_s + excluded.total_s",
                    params![
                        component,
                        resolution,
                        uptime.start_s - uptime.start_s.rem_euclid(resolution),
                        uptime.up_s,
                        uptime.total_s
                    ],
                )?;
            }
        }
        tx.execute(
            "DELETE FROM rollups WHERE start_s < ?1",
            [at_s - ROLLUP_KEPT_S],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A component's buckets of one resolution from `from_s` on, oldest first.
    pub fn uptime(
        &self,
        component: &str,
        resolution_s: i64,
        from_s: i64,
    ) -> Result<Vec<Uptime>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT start_s, up_s, total_s FROM rollups
             WHERE component = ?1 AND resolution_s = ?2 AND start_s >= ?3 ORDER BY start_s",
        )?;
        Ok(stmt
            .query_map(params![component, resolution_s, from_s], |r| {
                Ok(Uptime {
                    start_s: r.get(0)?,
                    up_s: r.get(1)?,
                    total_s: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    /// Seconds up and observed of a component in the buckets of one resolution that start in
    /// [from_s, to_s).
    pub fn uptime_sum(
        &self,
        component: &str,
        resolution_s: i64,
        from_s: i64,
        to_s: i64,
    ) -> Result<(i64, i64), StateError> {
        Ok(self.conn().query_row(
            "SELECT coalesce(sum(up_s), 0), coalesce(sum(total_s), 0) FROM rollups
             WHERE component = ?1 AND resolution_s = ?2 AND start_s >= ?3 AND start_s < ?4",
            params![component, resolution_s, from_s, to_s],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Incidents open at some time in [from_ms, to_ms), oldest first, without their timelines.
    pub fn incidents_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Incident>, StateError> {
        self.rows(
            &format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents
                 WHERE opened_ms < ?2 AND (resolved_ms IS NULL OR resolved_ms > ?1)
                 ORDER BY opened_ms, id"
            ),
            [from_ms, to_ms],
            incident,
        )
    }

    pub fn open_incident(
        &self,
        title: &str,
        component: &str,
        severity: Severity,
        alert_key: Option<&str>,
        message: &str,
        ts_ms: i64,
    ) -> Result<i64, StateError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO incidents (title, component, severity, status, alert_key, opened_ms)
             VALUES (?1, ?2, ?3, 'investigating', ?4, ?5)",
            params![title, component, severity.as_str(), alert_key, ts_ms],
        )?;
        let id = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO timeline (incident_id, ts_ms, status, message) VALUES (?1, ?2, 'investigating', ?3)",
            params![id, ts_ms, message],
        )?;
        if let Some(key) = alert_key {
            conn.execute(
                "INSERT INTO incident_alerts (incident_id, alert_key, firing) VALUES (?1, ?2, 1)",
                params![id, key],
            )?;
        }
        Ok(id)
    }

    /// Adds an update; `resolved` closes the incident.
    pub fn update_incident(
        &self,
        id: i64,
        status: IncidentStatus,
        message: &str,
        eta_ms: Option<i64>,
        ts_ms: i64,
    ) -> Result<(), StateError> {
        let status = status.as_str();
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
        let mut incidents = self.rows(
            &format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE (?1 = 0 OR status <> 'resolved')
                 ORDER BY id DESC LIMIT 200"
            ),
            [i64::from(active_only)],
            incident,
        )?;
        for incident in &mut incidents {
            incident.timeline = self.rows(
                "SELECT ts_ms, status, message FROM timeline WHERE incident_id = ?1 ORDER BY id",
                [incident.id],
                update,
            )?;
        }
        Ok(incidents)
    }
}

const INCIDENT_COLUMNS: &str =
    "id, title, component, severity, status, alert_key, opened_ms, resolved_ms, eta_ms";

/// An incident from the `INCIDENT_COLUMNS` of a row, without its timeline.
fn incident(r: &Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        title: r.get(1)?,
        component: r.get(2)?,
        severity: severity_at(r, 3)?,
        status: incident_status_at(r, 4)?,
        alert_key: r.get(5)?,
        opened_ms: r.get(6)?,
        resolved_ms: r.get(7)?,
        eta_ms: r.get(8)?,
        timeline: Vec::new(),
    })
}

/// The rollout status in column `i` of a row; another word is a conversion error.
fn rollout_status_at(r: &Row<'_>, i: usize) -> rusqlite::Result<RolloutStatus> {
    let word: String = r.get(i)?;
    RolloutStatus::parse(&word).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("no rollout status {word:?}").into(),
        )
    })
}

/// The incident status in column `i` of a row; another word is a conversion error.
fn incident_status_at(r: &Row<'_>, i: usize) -> rusqlite::Result<IncidentStatus> {
    let word: String = r.get(i)?;
    IncidentStatus::parse(&word).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("no incident status {word:?}").into(),
        )
    })
}

/// The severity in column `i` of a row; another word than the three is a conversion error.
fn severity_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Severity> {
    let word: String = r.get(i)?;
    Severity::parse(&word).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("no severity {word:?}").into(),
        )
    })
}

/// A timeline line from `ts_ms, status, message`.
fn update(r: &Row<'_>) -> rusqlite::Result<Update> {
    Ok(Update {
        ts_ms: r.get(0)?,
        status: r.get(1)?,
        message: r.get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_pin_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("control.db")).unwrap();
        assert_eq!(state.backup_pin("folder").unwrap(), None);
        let pin = |last_seq, cut_ms| croupier_backup::Pin { last_seq, cut_ms };
        state.pin_backup("folder", pin(10, 1_000)).unwrap();
        state.pin_backup("folder", pin(7, 900)).unwrap();
        assert_eq!(state.backup_pin("folder").unwrap(), Some(pin(10, 1_000)));
        state.pin_backup("folder", pin(12, 1_100)).unwrap();
        assert_eq!(state.backup_pin("folder").unwrap(), Some(pin(12, 1_100)));
        assert_eq!(state.backup_pin("elsewhere").unwrap(), None);
    }

    #[test]
    fn incidents_open_update_and_resolve_with_a_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("control.db")).unwrap();
        let id = state
            .open_incident(
                "node-2 down",
                "games",
                Severity::Major,
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
                IncidentStatus::Identified,
                "process crashed; restarting",
                Some(100),
                2,
            )
            .unwrap();
        state
            .update_incident(id, crate::state::IncidentStatus::Resolved, "back", None, 3)
            .unwrap();
        assert_eq!(state.open_incident_for_alert("down/node-2").unwrap(), None);
        let all = state.incidents(false).unwrap();
        assert_eq!(all[0].timeline.len(), 3);
        assert_eq!((all[0].resolved_ms, all[0].eta_ms), (Some(3), Some(100)));
        assert!(state.incidents(true).unwrap().is_empty());
        assert!(matches!(
            state.update_incident(99, crate::state::IncidentStatus::Resolved, "x", None, 4),
            Err(StateError::NoIncident(99))
        ));
    }

    #[test]
    fn alerts_on_one_component_group_into_one_incident() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("control.db")).unwrap();
        let id = state
            .open_incident(
                "down",
                "games",
                Severity::Major,
                Some("down/node-1"),
                "fired",
                1,
            )
            .unwrap();
        assert_eq!(
            state.open_alert_incident_for_component("games").unwrap(),
            Some(id)
        );
        assert_eq!(
            state
                .set_incident_alert(id, "latency_high/node-2", true)
                .unwrap(),
            2
        );
        assert_eq!(
            state
                .open_incident_for_alert("latency_high/node-2")
                .unwrap(),
            Some(id)
        );
        assert_eq!(
            state.set_incident_alert(id, "down/node-1", false).unwrap(),
            1
        );
        assert_eq!(
            state
                .set_incident_alert(id, "latency_high/node-2", false)
                .unwrap(),
            0
        );
        assert_eq!(
            state.open_alert_incident_for_component("wallet").unwrap(),
            None
        );
    }

    #[test]
    fn silences_match_by_key_prefix_or_component_while_active() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("control.db")).unwrap();
        let exact = state
            .add_silence("down/node-1", "deploy", "ana", 0, 100)
            .unwrap();
        state.add_silence("cpu_*", "noisy", "ana", 0, 100).unwrap();
        state
            .add_silence("component:lobby", "vendor", "ana", 50, 100)
            .unwrap();
        let active = state.silences(10).unwrap();
        let silenced = |key: &str, component: &str, now: i64| {
            active.iter().any(|s| s.matches(key, component, now))
        };
        assert!(silenced("down/node-1", "games", 10));
        assert!(!silenced("down/node-2", "games", 10));
        assert!(silenced("cpu_high/node-2", "games", 10));
        assert!(!silenced("down/gateway", "lobby", 10), "not started yet");
        assert!(silenced("down/gateway", "lobby", 60));
        assert!(!silenced("down/node-1", "games", 100), "over");
        assert!(state.expire_silence(exact, 20).unwrap());
        assert!(!state.expire_silence(999, 20).unwrap());
        assert_eq!(state.silences(30).unwrap().len(), 2);
    }

    #[test]
    fn a_pages_table_of_an_older_build_gets_its_repeats_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE pages (id INTEGER PRIMARY KEY, incident_id INTEGER NOT NULL UNIQUE,
                 level INTEGER NOT NULL, person TEXT NOT NULL, status TEXT NOT NULL,
                 opened_ms INTEGER NOT NULL, level_since_ms INTEGER NOT NULL, acked_by TEXT,
                 acked_ms INTEGER, resolved_by TEXT, resolved_ms INTEGER);
                 INSERT INTO pages VALUES (1, 7, 0, 'ana', 'open', 1, 1, NULL, NULL, NULL, NULL);",
            )
            .unwrap();
        let state = State::open(&path).unwrap();
        assert_eq!(state.page(1).unwrap().unwrap().repeats, 0);
        assert!(state.repeat_page(1, 1, "ana", 2).unwrap());
        drop(state);
        assert!(State::open(&path).is_ok(), "opens again once migrated");
    }

    #[test]
    fn uptime_rolls_up_into_minutes_hours_and_days_and_old_buckets_go() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("control.db")).unwrap();
        let day = 86_400;
        let add = |at: i64, up: i64, total: i64| {
            state
                .add_uptime(
                    at,
                    &[(
                        "wallet".into(),
                        Uptime {
                            start_s: at,
                            up_s: up,
                            total_s: total,
                        },
                    )],
                )
                .unwrap()
        };
        add(10 * day + 30, 10, 10);
        add(10 * day + 90, 5, 10);
        add(11 * day, 10, 10);
        assert_eq!(state.uptime("wallet", 60, 0).unwrap().len(), 3);
        let days = state.uptime("wallet", 86_400, 0).unwrap();
        assert_eq!(
            days,
            vec![
                Uptime {
                    start_s: 10 * day,
                    up_s: 15,
                    total_s: 20
                },
                Uptime {
                    start_s: 11 * day,
                    up_s: 10,
                    total_s: 10
                }
            ]
        );
        add(10 * day + ROLLUP_KEPT_S + 1, 1, 1);
        assert_eq!(
            state.uptime("wallet", 86_400, 0).unwrap()[0].start_s,
            11 * day
        );
    }
}
