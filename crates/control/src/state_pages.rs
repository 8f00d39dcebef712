//! Pages in control.db: one per incident that wakes someone, with the escalation level it
//! reached, how often its last level paged again, whom it went to last, and who acknowledged
//! and resolved it; and the signatures of page links already used (each link works once).

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use crate::state::{State, StateError};

/// A page (fields in alphabetical order, the order the API has always sent them in).
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub acked_by: Option<String>,
    pub acked_ms: Option<i64>,
    pub id: i64,
    pub incident_id: i64,
    /// 0 for the first level of the escalation policy.
    pub level: i64,
    pub level_since_ms: i64,
    pub opened_ms: i64,
    /// Whom it went to last.
    pub person: String,
    /// How many times the last level paged again.
    pub repeats: i64,
    pub resolved_by: Option<String>,
    pub resolved_ms: Option<i64>,
    /// open, acknowledged or resolved.
    pub status: String,
}

const COLUMNS: &str = "id, incident_id, level, repeats, person, status, opened_ms, level_since_ms, \
                       acked_by, acked_ms, resolved_by, resolved_ms";

fn page(r: &Row<'_>) -> rusqlite::Result<Page> {
    Ok(Page {
        id: r.get(0)?,
        incident_id: r.get(1)?,
        level: r.get(2)?,
        repeats: r.get(3)?,
        person: r.get(4)?,
        status: r.get(5)?,
        opened_ms: r.get(6)?,
        level_since_ms: r.get(7)?,
        acked_by: r.get(8)?,
        acked_ms: r.get(9)?,
        resolved_by: r.get(10)?,
        resolved_ms: r.get(11)?,
    })
}

impl State {
    /// Opens the incident's page at level 0 for `person`; none when it has one already.
    pub fn open_page(
        &self,
        incident_id: i64,
        person: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StateError> {
        let conn = self.conn();
        let added = conn.execute(
            "INSERT OR IGNORE INTO pages (incident_id, level, person, status, opened_ms, level_since_ms)
             VALUES (?1, 0, ?2, 'open', ?3, ?3)",
            params![incident_id, person, now_ms],
        )?;
        Ok((added == 1).then(|| conn.last_insert_rowid()))
    }

    /// Moves an open page from `level - 1` to `level`, paging `person`; false when it moved on
    /// or was acknowledged meanwhile.
    pub fn escalate_page(
        &self,
        id: i64,
        level: i64,
        person: &str,
        now_ms: i64,
    ) -> Result<bool, StateError> {
        Ok(self.conn().execute(
            "UPDATE pages SET level = ?2, person = ?3, level_since_ms = ?4
             WHERE id = ?1 AND status = 'open' AND level = ?2 - 1",
            params![id, level, person, now_ms],
        )? == 1)
    }

    /// Counts repeat `repeat` of an open page's last level, paging `person`; false when it
    /// was counted already or the page was acknowledged meanwhile.
    pub fn repeat_page(
        &self,
        id: i64,
        repeat: i64,
        person: &str,
        now_ms: i64,
    ) -> Result<bool, StateError> {
        Ok(self.conn().execute(
            "UPDATE pages SET repeats = ?2, person = ?3, level_since_ms = ?4
             WHERE id = ?1 AND status = 'open' AND repeats = ?2 - 1",
            params![id, repeat, person, now_ms],
        )? == 1)
    }

    /// Acknowledges an open page; false when it is not open.
    pub fn ack_page(&self, id: i64, by: &str, now_ms: i64) -> Result<bool, StateError> {
        Ok(self.conn().execute(
            "UPDATE pages SET status = 'acknowledged', acked_by = ?2, acked_ms = ?3
             WHERE id = ?1 AND status = 'open'",
            params![id, by, now_ms],
        )? == 1)
    }

    /// Resolves a page not resolved yet; false when it was.
    pub fn resolve_page(&self, id: i64, by: &str, now_ms: i64) -> Result<bool, StateError> {
        Ok(self.conn().execute(
            "UPDATE pages SET status = 'resolved', resolved_by = ?2, resolved_ms = ?3
             WHERE id = ?1 AND status <> 'resolved'",
            params![id, by, now_ms],
        )? == 1)
    }

    pub fn page(&self, id: i64) -> Result<Option<Page>, StateError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM pages WHERE id = ?1"),
                [id],
                page,
            )
            .optional()?)
    }

    /// Pages newest first: only those not resolved when `unresolved_only`.
    pub fn pages(&self, unresolved_only: bool, limit: i64) -> Result<Vec<Page>, StateError> {
        self.rows(
            &format!(
                "SELECT {COLUMNS} FROM pages WHERE (?1 = 0 OR status <> 'resolved')
                 ORDER BY id DESC LIMIT ?2"
            ),
            params![i64::from(unresolved_only), limit],
            page,
        )
    }

    /// Spends a link's signature; false when it was spent already.
    pub fn use_link(&self, signature: &str, now_ms: i64) -> Result<bool, StateError> {
        Ok(self.conn().execute(
            "INSERT OR IGNORE INTO used_links (digest, used_ms) VALUES (?1, ?2)",
            params![signature, now_ms],
        )? == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_escalates_until_acknowledged_and_links_work_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("control.db")).unwrap();
        let id = state.open_page(7, "ana", 1_000).unwrap().unwrap();
        assert_eq!(
            state.open_page(7, "ana", 2_000).unwrap(),
            None,
            "one page per incident"
        );
        assert!(state.escalate_page(id, 1, "ben", 3_000).unwrap());
        assert!(
            !state.escalate_page(id, 1, "ben", 3_500).unwrap(),
            "already there"
        );
        assert!(state.repeat_page(id, 1, "ben", 3_600).unwrap());
        assert!(
            !state.repeat_page(id, 1, "ben", 3_700).unwrap(),
            "counted once"
        );
        assert!(state.ack_page(id, "ben", 4_000).unwrap());
        assert!(
            !state.repeat_page(id, 2, "ben", 4_500).unwrap(),
            "acknowledged"
        );
        assert!(
            !state.escalate_page(id, 2, "carl", 5_000).unwrap(),
            "acknowledged"
        );
        assert!(!state.ack_page(id, "ana", 5_000).unwrap());
        assert_eq!(state.pages(true, 10).unwrap().len(), 1);
        assert!(state.resolve_page(id, "ben", 6_000).unwrap());
        let page = state.page(id).unwrap().unwrap();
        assert_eq!(
            (
                page.level,
                page.repeats,
                page.person.as_str(),
                page.acked_by.as_deref(),
                page.status.as_str()
            ),
            (1, 1, "ben", Some("ben"), "resolved")
        );
        assert!(state.pages(true, 10).unwrap().is_empty());
        assert!(state.use_link("abc", 1).unwrap());
        assert!(!state.use_link("abc", 2).unwrap());
    }
}
