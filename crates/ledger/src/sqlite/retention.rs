//! Housekeeping of the SQLite ledger (`Store::housekeep`): removes expired sessions and
//! idempotency records past the policy's period in small batches, then truncates the
//! write-ahead log once a checkpoint has copied it into the database, so the WAL stays
//! bounded (about 16 MiB between checkpoints) even after a burst or a long reader held it
//! back. Runs on its own connection on a blocking thread; the journal is never touched.
//!
//! Every write here takes the writers' turn (`turns`) like a batch does: each delete batch
//! is its own short transaction, and the truncation copies and syncs the WAL beside the
//! writers first (`checkpoint::catch_up`), so the turn covers the last frames only. Before,
//! both took SQLite's write lock beside the turn: the truncation held it while it copied and
//! synced up to a second of WAL, writers slept in SQLite's busy handler meanwhile, and each
//! pass (every node's, every ten minutes) showed as a p99 of 32–59 ms at 2 000 bets/s
//! against 7–20 ms between passes.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, params};

use super::checkpoint::{catch_up, passive_checkpoint};
use super::turns::WriterTurns;
use super::{BUSY_TIMEOUT, connect, now_ms};
use crate::error::LedgerError;
use crate::retention::{HousekeepReport, RetentionPolicy};

fn wal_bytes(db: &Path) -> u64 {
    std::fs::metadata(super::wal_path(db)).map_or(0, |m| m.len())
}

/// How long the truncation waits, in the writers' turn, for readers still on the WAL (or
/// another process's checkpoint) before it gives the turn back.
const TRUNCATE_WAIT: Duration = Duration::from_millis(5);
/// Tries at the truncation in one pass, the turn given back between them.
const TRUNCATE_TRIES: usize = 3;

/// Deletes rows matching `condition` (on `key_column`) batch by batch, each batch in the
/// writers' turn; returns how many.
fn delete_in_batches(
    conn: &Connection,
    turns: &WriterTurns,
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
        turns.take()?;
        let deleted = delete_batch(conn, &sql, bound, batch);
        turns.pass()?;
        let deleted = deleted?;
        removed += deleted as u64;
        if deleted < batch as usize {
            return Ok(removed);
        }
    }
}

fn delete_batch(
    conn: &Connection,
    sql: &str,
    bound: i64,
    batch: u32,
) -> Result<usize, LedgerError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match conn.execute(sql, params![bound, batch]) {
        Ok(deleted) => {
            conn.execute_batch("COMMIT")?;
            Ok(deleted)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e.into())
        }
    }
}

/// Truncates the WAL to nothing when it is wholly in the database and no reader is on it;
/// after `TRUNCATE_TRIES` busy tries, leaves it for the next pass (each rewind cuts it back
/// to 16 MiB meanwhile). TRUNCATE holds SQLite's write lock while it copies, syncs and waits
/// for readers, so it runs in the writers' turn, on what is left after catching up beside
/// them.
fn truncate_wal(conn: &Connection, turns: &WriterTurns) -> Result<(), LedgerError> {
    passive_checkpoint(conn)?;
    catch_up(conn)?;
    conn.busy_timeout(TRUNCATE_WAIT)?;
    for _ in 0..TRUNCATE_TRIES {
        turns.take()?;
        // Busy (readers on the WAL, another checkpoint) is the result row's first column.
        let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, bool>(0)
        });
        turns.pass()?;
        if !busy? {
            break;
        }
        std::thread::sleep(TRUNCATE_WAIT);
    }
    Ok(())
}

/// One housekeeping pass over the file at `db`.
pub fn housekeep(db: &Path, policy: &RetentionPolicy) -> Result<HousekeepReport, LedgerError> {
    let conn = connect(db, false)?;
    let turns = WriterTurns::open(db, BUSY_TIMEOUT)?;
    let now = now_ms();
    let batch = policy.batch_rows.max(1);
    let wal_bytes_before = wal_bytes(db);
    let sessions_removed = delete_in_batches(
        &conn,
        &turns,
        "sessions",
        "token_hash",
        "expires_ms < ?1",
        now - policy.session_grace_ms.max(0),
        batch,
    )?;
    let idempotency_removed = delete_in_batches(
        &conn,
        &turns,
        "idempotency",
        "key",
        "created_ms < ?1 AND key NOT LIKE 'cashier:%'",
        now - policy
            .idempotency_kept_ms
            .max(crate::retention::MIN_IDEMPOTENCY_KEPT_MS),
        batch,
    )?;
    truncate_wal(&conn, &turns)?;
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
    use crate::sqlite::{SqliteConfig, SqliteStore};

    /// A store on a new ledger in a temporary folder, and a connection of the test's own.
    fn open_ledger() -> (tempfile::TempDir, SqliteStore, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let store = SqliteStore::open(SqliteConfig::new(&db)).unwrap();
        (dir, store, connect(&db, false).unwrap())
    }

    #[test]
    fn expired_sessions_and_old_idempotency_records_go_and_the_rest_stays() {
        let (dir, store, conn) = open_ledger();
        let db = dir.path().join("ledger.db");
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

    /// Housekeeping writes in the writers' turn, as a batch does: while another writer holds
    /// the turn, nothing is deleted; once it is passed, the pass finishes. On the old code
    /// the deletes and the WAL's truncation took SQLite's lock beside the turn, and the
    /// expired session was gone at once.
    #[test]
    fn housekeeping_waits_for_the_writers_turn() {
        let (dir, store, conn) = open_ledger();
        let db = dir.path().join("ledger.db");
        conn.execute(
            "INSERT INTO sessions (token_hash, player, expires_ms) VALUES ('old', 'p', ?1)",
            [now_ms() - 3_600_000],
        )
        .unwrap();
        let held = WriterTurns::open(&db, Duration::from_secs(30)).unwrap();
        held.take().unwrap();
        let pass = {
            let db = db.clone();
            std::thread::spawn(move || housekeep(&db, &RetentionPolicy::default()))
        };
        std::thread::sleep(Duration::from_millis(300));
        let sessions: i64 = conn
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            sessions, 1,
            "housekeeping deleted without the writers' turn"
        );
        assert!(!pass.is_finished());
        held.pass().unwrap();
        let report = pass.join().unwrap().unwrap();
        assert_eq!(report.sessions_removed, 1);
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
