//! A consistent cut of the live store: a read snapshot pinned at an instant when no write
//! transaction is in flight. The cutter takes the writers' turn (`croupier_ledger::sqlite::
//! turns`) and then the write lock (`BEGIN IMMEDIATE`) for the moment it takes to start the
//! snapshot and read the clock, then lets writers go on; the slow reads run on the pinned
//! snapshot while play continues. Because every writer reads its clock after taking the lock,
//! rows committed after the cut carry times at or after the cut, and rows in the snapshot
//! carry times at or before it: "changed since cut C" is exact.
//!
//! The turn comes first, as for every writer of the file: a cutter that took SQLite's lock
//! beside it waited in SQLite's busy handler (sleeps growing to 100 ms) for a gap between
//! the writers' batches, which a busy ledger may not leave for seconds, and a writer that
//! came while the cutter held the lock slept there in its turn, every other writer queued
//! behind it.

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use croupier_ledger::sqlite::turns::WriterTurns;
use rusqlite::{Connection, OpenFlags};

use crate::error::BackupError;

const LOCK_WAIT: Duration = Duration::from_secs(10);

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub struct Cutter {
    turns: WriterTurns,
    lock: Connection,
    read: Connection,
    /// How long the last cut held the writers' turn (writers waited at most this long).
    last_lock_hold: Cell<Duration>,
}

impl Cutter {
    /// Opens the live ledger file (which must exist) for cuts.
    pub fn open(db: &Path) -> Result<Cutter, BackupError> {
        if !db.exists() {
            return Err(BackupError::NoLedger(db.display().to_string()));
        }
        let lock = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        lock.busy_timeout(LOCK_WAIT)?;
        let read = croupier_ledger::sqlite::connect(db, true)?;
        Ok(Cutter {
            turns: WriterTurns::open(db, LOCK_WAIT)?,
            lock,
            read,
            last_lock_hold: Cell::new(Duration::ZERO),
        })
    }

    /// How long the last cut held the writers' turn.
    pub fn last_lock_hold(&self) -> Duration {
        self.last_lock_hold.get()
    }

    /// Runs `read` on a snapshot pinned at a cut; gives it the connection and the cut's time.
    pub fn with_cut<T>(
        &self,
        read: impl FnOnce(&Connection, i64) -> Result<T, BackupError>,
    ) -> Result<T, BackupError> {
        self.turns.take()?;
        let locked = Instant::now();
        let pinned = self.pin();
        self.turns.pass()?;
        self.last_lock_hold.set(locked.elapsed());
        let cut_ms = match pinned {
            Ok(cut_ms) => cut_ms,
            Err(e) => {
                let _ = self.read.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        let result = read(&self.read, cut_ms);
        self.read.execute_batch("COMMIT")?;
        result
    }

    /// In the writers' turn: the read snapshot begun under the write lock, and the cut's time.
    fn pin(&self) -> Result<i64, BackupError> {
        self.lock.execute_batch("BEGIN IMMEDIATE")?;
        let pinned = (|| {
            let cut_ms = now_ms();
            self.read.execute_batch("BEGIN")?;
            self.read
                .query_row("SELECT count(*) FROM schema_migrations", [], |_| Ok(()))?;
            Ok::<_, BackupError>(cut_ms)
        })();
        self.lock.execute_batch("ROLLBACK")?;
        pinned
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use croupier_ledger::sqlite::{SqliteConfig, SqliteStore};

    use super::*;

    /// A cut waits for the writers' turn, as every writer of the file does: while another
    /// writer holds it, no snapshot is pinned; once it is passed, the cut is taken. On the
    /// old code the cutter took SQLite's lock beside the turn and cut at once.
    #[test]
    fn a_cut_waits_for_the_writers_turn() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let store = SqliteStore::open(SqliteConfig::new(&db)).unwrap();
        let held = WriterTurns::open(&db, Duration::from_secs(30)).unwrap();
        held.take().unwrap();
        let cut = {
            let db = db.clone();
            std::thread::spawn(move || Cutter::open(&db)?.with_cut(|_, cut_ms| Ok(cut_ms)))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !cut.is_finished(),
            "a cut was taken without the writers' turn"
        );
        let passed = now_ms();
        held.pass().unwrap();
        let cut_ms = cut.join().unwrap().unwrap();
        assert!(cut_ms >= passed, "the cut is after the turn was passed");
        drop(store);
    }
}
