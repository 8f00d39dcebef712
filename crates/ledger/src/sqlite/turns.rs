//! Turns at the ledger file for the writers of every process sharing it.
//!
//! SQLite serialises writers with its own lock, but a writer that finds it taken sleeps in
//! SQLite's busy handler (1, 2, 5 … 100 ms between tries) while the holder, which has more
//! work queued by then, takes the lock again the instant it lets go. Measured: a node writing
//! now and then beside a busy one waited 2.25 s for one bet. So the writers take turns on two
//! advisory file locks (`flock`) next to the ledger, before `BEGIN IMMEDIATE`:
//! - `<ledger>-writer` is held for a whole batch;
//! - `<ledger>-waiting` is held shared by every writer waiting for the first. A writer that
//!   has just let go of the first and finds the second held lets those writers go first: it
//!   waits until it can hold the second alone, which is once each of them has its turn.
//!
//! A writer that is not contended pays four `flock` calls per batch. A waiting writer polls
//! (50 µs, growing to 500 µs) so that its wait is bounded: a frozen process holding its turn
//! makes the others fail after the deadline instead of hanging with it. A frozen process that
//! was waiting (SIGSTOP while it held the second lock shared) never takes its turn: a writer
//! lets waiters go first for `HANDOFF_WAIT` at most, and when none came, stops letting them
//! for `SKIP_HANDOFFS` rather than pay that wait after every batch.

use std::cell::Cell;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::LedgerError;

const FIRST_POLL: Duration = Duration::from_micros(50);
const LONGEST_POLL: Duration = Duration::from_micros(500);
/// How long a writer waits for the waiting writers to take their turns after its own; a live
/// one polls every 500 µs at most.
const HANDOFF_WAIT: Duration = Duration::from_millis(20);
/// How long hand-offs are skipped once a waiting writer did not come (frozen).
const SKIP_HANDOFFS: Duration = Duration::from_secs(1);

pub struct WriterTurns {
    writer: File,
    waiting: File,
    deadline: Duration,
    skip_handoffs_until: Cell<Option<Instant>>,
}

/// `ledger.db` → `ledger.db-writer`.
fn beside(ledger: &Path, suffix: &str) -> PathBuf {
    let mut path = ledger.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

fn open_lock_file(path: &Path) -> Result<File, LedgerError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| LedgerError::Storage(format!("cannot open {}: {e}", path.display())))
}

impl WriterTurns {
    /// The turns of the writers of `ledger`; a writer waits at most `deadline` for its turn.
    pub fn open(ledger: &Path, deadline: Duration) -> Result<WriterTurns, LedgerError> {
        Ok(WriterTurns {
            writer: open_lock_file(&beside(ledger, "-writer"))?,
            waiting: open_lock_file(&beside(ledger, "-waiting"))?,
            deadline,
            skip_handoffs_until: Cell::new(None),
        })
    }

    /// Waits for this writer's turn; returns how long it waited.
    pub fn take(&self) -> Result<Duration, LedgerError> {
        let started = Instant::now();
        if try_lock(&self.writer)? {
            return Ok(Duration::ZERO);
        }
        self.waiting.lock_shared().map_err(storage)?;
        let taken = self.poll_for_writer(started);
        self.waiting.unlock().map_err(storage)?;
        taken.map(|()| started.elapsed())
    }

    fn poll_for_writer(&self, started: Instant) -> Result<(), LedgerError> {
        let mut pause = FIRST_POLL;
        loop {
            if try_lock(&self.writer)? {
                return Ok(());
            }
            if started.elapsed() > self.deadline {
                return Err(LedgerError::Unavailable(format!(
                    "another process has held the ledger's write turn for over {:?}",
                    self.deadline
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(LONGEST_POLL);
        }
    }

    /// Ends this writer's turn; when others are waiting, lets each of them take its turn
    /// before this writer can take another (unless a waiter seems frozen, see above).
    pub fn pass(&self) -> Result<(), LedgerError> {
        self.writer.unlock().map_err(storage)?;
        if try_lock(&self.waiting)? {
            return self.waiting.unlock().map_err(storage);
        }
        if self
            .skip_handoffs_until
            .get()
            .is_some_and(|until| Instant::now() < until)
        {
            return Ok(());
        }
        let started = Instant::now();
        let mut pause = FIRST_POLL;
        while !try_lock(&self.waiting)? {
            if started.elapsed() > HANDOFF_WAIT {
                tracing::warn!("a writer waiting for the ledger did not take its turn; frozen?");
                self.skip_handoffs_until
                    .set(Some(Instant::now() + SKIP_HANDOFFS));
                return Ok(());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(LONGEST_POLL);
        }
        self.waiting.unlock().map_err(storage)
    }
}

/// Takes `file`'s exclusive lock if it is free.
fn try_lock(file: &File) -> Result<bool, LedgerError> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(storage(e)),
    }
}

fn storage(e: io::Error) -> LedgerError {
    LedgerError::Storage(format!("the ledger's writer lock failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// Two opens of the same files lock like two processes (flock is per open file).
    #[test]
    fn a_writer_that_keeps_taking_turns_lets_a_waiting_one_in_after_one_turn() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger.db");
        let busy = WriterTurns::open(&ledger, Duration::from_secs(5)).unwrap();
        let quiet = WriterTurns::open(&ledger, Duration::from_secs(5)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let turns = Arc::new(AtomicU64::new(0));
        let hammer = {
            let (stop, turns) = (stop.clone(), turns.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    busy.take().unwrap();
                    turns.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    busy.pass().unwrap();
                }
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        // Counted in the busy writer's turns, not milliseconds: a loaded machine may stall
        // either thread, but an unfair lock lets the busy one go round many times.
        let mut most = 0;
        for _ in 0..20 {
            let before = turns.load(Ordering::SeqCst);
            quiet.take().unwrap();
            most = most.max(turns.load(Ordering::SeqCst) - before);
            quiet.pass().unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
        stop.store(true, Ordering::Relaxed);
        hammer.join().unwrap();
        assert!(
            most <= 2,
            "the busy writer took {most} turns while the quiet one waited"
        );
    }

    /// A process frozen while it waited (holding the waiting lock shared) never takes its
    /// turn: the others go on at full speed instead of waiting for it after every batch.
    #[test]
    fn a_frozen_waiter_does_not_slow_the_other_writers() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger.db");
        let frozen = WriterTurns::open(&ledger, Duration::from_secs(5)).unwrap();
        let live = WriterTurns::open(&ledger, Duration::from_secs(5)).unwrap();
        frozen.waiting.lock_shared().unwrap();
        let started = Instant::now();
        for _ in 0..100 {
            live.take().unwrap();
            live.pass().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_turn_held_past_the_deadline_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger.db");
        let frozen = WriterTurns::open(&ledger, Duration::from_secs(5)).unwrap();
        let other = WriterTurns::open(&ledger, Duration::from_millis(50)).unwrap();
        frozen.take().unwrap();
        let waited = Instant::now();
        assert!(matches!(other.take(), Err(LedgerError::Unavailable(_))));
        assert!(waited.elapsed() < Duration::from_secs(1));
        frozen.pass().unwrap();
        other.take().unwrap();
    }
}
