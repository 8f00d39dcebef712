//! Housekeeping of the SQLite ledger (`Store::housekeep`): removes expired sessions and
//! idempotency records past the policy's period in small batches (each its own short
//! `BEGIN IMMEDIATE`, so bets wait milliseconds at most), then truncates the write-ahead log
//! once a checkpoint has copied it into the database, so the WAL stays bounded (about 16 MiB
//! between checkpoints) even after a burst or a long reader held it back. Runs on its own
//! connection on a blocking thread; the journal is never touched.

use std::path::Path;

use rusqlite::{Connection, params};

use super::{connect, now_ms};
use crate::error::LedgerError;
use crate::retention::{HousekeepReport, RetentionPolicy};

fn wal_bytes(db: &Path) -> u64 {
    std::fs::metadata(super::wal_path(db)).map_or(0, |m| m.len())
}

/// Deletes rows matching `condition` (on `key_column`) batch by batch; returns how many.
fn delete_in_batches(
    conn: &Connection,
    table: &str,
    key_column: &str,
    condition: &str,
    bound: i64,
    batch: u32,
) -> Result<u64, LedgerError> {
    let sql = format!(
        "DELETE FROM {table} WHERE {key_column} IN
         (SELECT {key_column} FROM {table} WHERE {condition} LIMIT ?2)"
    );
    let mut removed = 0;
    loop {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let outcome = conn.execute(&sql, params![bound, batch]);
        let deleted = match outcome {
            Ok(deleted) => {
                conn.execute_batch("COMMIT")?;
                deleted
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        };
        removed += deleted as u64;
        if deleted < batch as usize {
            return Ok(removed);
        }
    }
}

/// One housekeeping pass over the file at `db`.
pub fn housekeep(db: &Path, policy: &RetentionPolicy) -> Result<HousekeepReport, LedgerError> {
    let conn = connect(db, false)?;
    let now = now_ms();
    let batch = policy.batch_rows.max(1);
    let wal_bytes_before = wal_bytes(db);
    let sessions_removed = delete_in_batches(
        &conn,
        "sessions",
        "token_hash",
        "expires_ms < ?1",
        now - policy.session_grace_ms.max(0),
        batch,
    )?;
    let idempotency_removed = delete_in_batches(
        &conn,
        "idempotency",
        "key",
        "created_ms < ?1 AND key NOT LIKE 'cashier:%'",
        now - policy
            .idempotency_kept_ms
            .max(crate::retention::MIN_IDEMPOTENCY_KEPT_MS),
        batch,
    )?;
    // TRUNCATE waits (busy timeout) for writers, copies the WAL into the database and resets
    // it to zero bytes; when readers still need it, it is left as it is until the next pass.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    Ok(HousekeepReport {
        sessions_removed,
        idempotency_removed,
        wal_bytes_before,
        wal_bytes_after: wal_bytes(db),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::DAY_MS;

    #[test]
    fn expired_sessions_and_old_idempotency_records_go_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let store =
            crate::sqlite::SqliteStore::open(crate::sqlite::SqliteConfig::new(&db)).unwrap();
        let conn = connect(&db, false).unwrap();
        let now = now_ms();
        for (hash, expires) in [("old", now - 3_600_000), ("live", now + 3_600_000)] {
            conn.execute(
                "INSERT INTO sessions (token_hash, player, expires_ms) VALUES (?1, 'p', ?2)",
                params![hash, expires],
            )
            .unwrap();
        }
        for n in 0..5 {
            conn.execute(
                "INSERT INTO idempotency (key, fingerprint, response, created_ms) VALUES (?1, 'f', '{}', ?2)",
                params![format!("old-{n}"), now - 40 * DAY_MS],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO idempotency (key, fingerprint, response, created_ms) VALUES ('new', 'f', '{}', ?1)",
            [now - DAY_MS],
        )
        .unwrap();
        let policy = RetentionPolicy {
            batch_rows: 2,
            ..RetentionPolicy::default()
        };
        let report = housekeep(&db, &policy).unwrap();
        assert_eq!(
            (report.sessions_removed, report.idempotency_removed),
            (1, 5)
        );
        let left: Vec<String> = conn
            .prepare("SELECT token_hash FROM sessions UNION ALL SELECT key FROM idempotency")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, ["live", "new"]);
        assert_eq!(report.wal_bytes_after, 0, "the WAL was truncated");
        drop(store);
    }

    #[test]
    fn an_idempotency_period_under_a_day_is_refused() {
        assert!(RetentionPolicy::with_idempotency_days(0).is_err());
        assert_eq!(
            RetentionPolicy::with_idempotency_days(7)
                .unwrap()
                .idempotency_kept_ms,
            7 * DAY_MS
        );
    }
}
