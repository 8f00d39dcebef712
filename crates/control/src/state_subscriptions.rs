//! Status-page subscribers in control.db: an e-mail address or a webhook, the components
//! chosen (none: all), pending until the signed confirmation link is used; removed, address
//! and all, when they unsubscribe. Also the delivery cursor: the last timeline line sent.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use crate::state::{State, StateError};

#[derive(Debug, Clone, Serialize)]
pub struct Subscriber {
    pub id: i64,
    /// email or webhook.
    pub kind: String,
    pub address: String,
    /// The components chosen; empty for all.
    pub components: Vec<String>,
    /// pending or active.
    pub status: String,
    pub created_ms: i64,
}

impl Subscriber {
    /// Whether news about `components` (an incident's or a window's) is for this subscriber.
    pub fn wants(&self, components: &[&str]) -> bool {
        self.components.is_empty()
            || components
                .iter()
                .any(|c| self.components.iter().any(|s| s == c))
    }
}

fn subscriber(r: &Row<'_>) -> rusqlite::Result<Subscriber> {
    let components: String = r.get(3)?;
    Ok(Subscriber {
        id: r.get(0)?,
        kind: r.get(1)?,
        address: r.get(2)?,
        components: components
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
        status: r.get(4)?,
        created_ms: r.get(5)?,
    })
}

const COLUMNS: &str = "id, kind, address, components, status, created_ms";

impl State {
    /// Adds a pending subscriber, or returns the one with this address (its choice of
    /// components replaced while still pending); none when it was asked for too lately.
    pub fn add_subscriber(
        &self,
        kind: &str,
        address: &str,
        components: &[String],
        now_ms: i64,
        min_gap_ms: i64,
    ) -> Result<Option<Subscriber>, StateError> {
        let conn = self.conn();
        let existing: Option<(i64, i64)> = conn
            .query_row(
                "SELECT id, asked_ms FROM subscribers WHERE kind = ?1 AND address = ?2",
                params![kind, address],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match existing {
            Some((_, asked)) if now_ms - asked < min_gap_ms => return Ok(None),
            Some((id, _)) => conn.execute(
                "UPDATE subscribers SET asked_ms = ?2,
                 components = CASE status WHEN 'pending' THEN ?3 ELSE components END WHERE id = ?1",
                params![id, now_ms, components.join(",")],
            )?,
            None => conn.execute(
                "INSERT INTO subscribers (kind, address, components, status, created_ms, asked_ms)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
                params![kind, address, components.join(","), now_ms],
            )?,
        };
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM subscribers WHERE kind = ?1 AND address = ?2"),
                params![kind, address],
                subscriber,
            )
            .optional()?)
    }

    pub fn subscriber(&self, id: i64) -> Result<Option<Subscriber>, StateError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM subscribers WHERE id = ?1"),
                [id],
                subscriber,
            )
            .optional()?)
    }

    /// Activates a pending subscriber; false when it was not pending.
    pub fn confirm_subscriber(&self, id: i64, now_ms: i64) -> Result<bool, StateError> {
        Ok(self.conn().execute(
            "UPDATE subscribers SET status = 'active', confirmed_ms = ?2 WHERE id = ?1 AND status = 'pending'",
            params![id, now_ms],
        )? == 1)
    }

    /// Forgets a subscriber; false when there was none.
    pub fn remove_subscriber(&self, id: i64) -> Result<bool, StateError> {
        Ok(self
            .conn()
            .execute("DELETE FROM subscribers WHERE id = ?1", [id])?
            == 1)
    }

    /// Subscribers, oldest first: only confirmed ones when `active_only`.
    pub fn subscribers(&self, active_only: bool) -> Result<Vec<Subscriber>, StateError> {
        self.rows(
            &format!(
                "SELECT {COLUMNS} FROM subscribers WHERE (?1 = 0 OR status = 'active') ORDER BY id"
            ),
            [i64::from(active_only)],
            subscriber,
        )
    }

    /// Timeline lines after the delivery cursor (which starts at the newest line, so history
    /// is not sent), with their incident's id; moves the cursor past them.
    pub fn undelivered_lines(&self) -> Result<Vec<(i64, i64)>, StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO delivery_cursor (id, timeline_id)
             SELECT 1, coalesce(max(id), 0) FROM timeline",
            [],
        )?;
        let cursor: i64 = tx.query_row(
            "SELECT timeline_id FROM delivery_cursor WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        let lines: Vec<(i64, i64)> = {
            let mut stmt = tx.prepare(
                "SELECT id, incident_id FROM timeline WHERE id > ?1 ORDER BY id LIMIT 100",
            )?;
            stmt.query_map([cursor], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        if let Some((last, _)) = lines.last() {
            tx.execute(
                "UPDATE delivery_cursor SET timeline_id = ?1 WHERE id = 1",
                [last],
            )?;
        }
        tx.commit()?;
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use croupier_monitor::severity::Severity;

    #[test]
    fn subscribers_confirm_once_choose_components_and_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("control.db")).unwrap();
        let dice = vec!["dice".to_owned()];
        let s = state
            .add_subscriber("email", "p@example.com", &dice, 1_000, 60_000)
            .unwrap()
            .unwrap();
        assert!(
            state
                .add_subscriber("email", "p@example.com", &dice, 2_000, 60_000)
                .unwrap()
                .is_none(),
            "asked again too soon"
        );
        assert!(s.wants(&["dice", "slot"]) && !s.wants(&["wallet"]));
        assert!(state.subscribers(true).unwrap().is_empty());
        assert!(state.confirm_subscriber(s.id, 3_000).unwrap());
        assert!(!state.confirm_subscriber(s.id, 4_000).unwrap());
        assert_eq!(state.subscribers(true).unwrap().len(), 1);
        assert!(state.remove_subscriber(s.id).unwrap());
        assert!(state.subscriber(s.id).unwrap().is_none());
    }

    #[test]
    fn the_cursor_starts_at_the_newest_line_and_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("control.db")).unwrap();
        state
            .open_incident("old", "dice", Severity::Major, None, "before", 1)
            .unwrap();
        assert!(state.undelivered_lines().unwrap().is_empty(), "no history");
        let id = state
            .open_incident("new", "dice", Severity::Major, None, "opened", 2)
            .unwrap();
        assert_eq!(state.undelivered_lines().unwrap().len(), 1);
        state
            .update_incident(id, crate::state::IncidentStatus::Resolved, "fixed", None, 3)
            .unwrap();
        assert_eq!(state.undelivered_lines().unwrap().len(), 1);
        assert!(state.undelivered_lines().unwrap().is_empty());
    }
}
