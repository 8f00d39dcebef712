//! A consistent cut of the live store: a read snapshot pinned at an instant when no write
//! transaction is in flight. The cutter takes the write lock (`BEGIN IMMEDIATE`) for the
//! moment it takes to start the snapshot and read the clock, then lets writers go on; the
//! slow reads run on the pinned snapshot while play continues. Because every writer reads its
//! clock after taking the lock, rows committed after the cut carry times at or after the cut,
//! and rows in the snapshot carry times at or before it: "changed since cut C" is exact.

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    lock: Connection,
    read: Connection,
    /// How long the last cut held the write lock (writers waited at most this long).
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
            lock,
            read,
            last_lock_hold: Cell::new(Duration::ZERO),
        })
    }

    /// How long the last cut held the write lock.
    pub fn last_lock_hold(&self) -> Duration {
        self.last_lock_hold.get()
    }

    /// Runs `read` on a snapshot pinned at a cut; gives it the connection and the cut's time.
    pub fn with_cut<T>(
        &self,
        read: impl FnOnce(&Connection, i64) -> Result<T, BackupError>,
    ) -> Result<T, BackupError> {
        self.lock.execute_batch("BEGIN IMMEDIATE")?;
        let locked = Instant::now();
        let pinned = (|| {
            let cut_ms = now_ms();
            self.read.execute_batch("BEGIN")?;
            self.read
                .query_row("SELECT count(*) FROM schema_migrations", [], |_| Ok(()))?;
            Ok::<_, BackupError>(cut_ms)
        })();
        self.lock.execute_batch("ROLLBACK")?;
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
}
