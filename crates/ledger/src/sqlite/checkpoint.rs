//! WAL checkpoints off the commit path.
//!
//! By default SQLite copies the WAL back into the database inside the `COMMIT` that crosses
//! the autocheckpoint threshold: that batch's players wait for it, and so does every other
//! process's writer waiting for its turn (measured: 35 ms for 24 MB of WAL on a quiet disk;
//! a busy stack writes that much in about a second). So the store's writer never
//! checkpoints; a thread beside it does, in two steps:
//! - a PASSIVE checkpoint once a second, without the write turn: it copies what it can
//!   while writers keep committing, and never waits. Each pass writes every page changed
//!   since the last one, and the hot pages (the house's row, the journal's last leaf and its
//!   indexes' last leaves) change with every bet: with a pass every 200 ms in each of the
//!   three processes sharing the file, the checkpoints wrote 0.67–0.75x as many bytes as the
//!   WAL itself (at 600 bets/s, 120–135 MB against 180 MB in 12 s); once a second,
//!   0.26–0.28x (47–49 MB), the players' latency unchanged (`docs/benchmarks.md`);
//! - once the WAL holds more than `restart_frames`, the same with the write turn held (`turns`):
//!   only the frames since the last pass are left to copy, so the turn is short, and the WAL
//!   is then wholly in the database when the next writer starts, which is when SQLite
//!   rewinds the WAL to its beginning. Without this step, with several processes writing, a
//!   writer never started on a wholly copied WAL and the WAL grew without end (500 MB in a
//!   minute, when this was first tried).
//!
//! Before it takes the turn, a pass catches up (`catch_up`): it syncs the database file and
//! copies once more what the writers appended meanwhile. SQLite syncs the database only in a
//! pass that ends at the WAL's end as it stands when the pass finishes; while players play,
//! writers append during the pass without the turn (or a reader on an older snapshot stops
//! it short), so the pass under the turn used to sync every page copied in the last second
//! while every writer waited: 4–26 ms at 2 000 bets/s, and the players' p99 with it
//! (`docs/benchmarks.md`). Caught up first, the pass under the turn copies and syncs a few
//! milliseconds' frames (1–4 ms). The catch-up syncs whatever the pass's result says: the
//! result counts the frames the pass set out to copy, not the end it finished at.
//!
//! Each pass that copied frames is reported to the store's observer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::connect;
use super::file_sync::sync_database_file;
use super::turns::WriterTurns;
use crate::error::LedgerError;
use crate::observe::ObserverSlot;

/// How often a checkpoint runs (in each process sharing the file).
pub const EVERY: Duration = Duration::from_millis(1000);

/// The checkpoint thread; it stops when this is dropped (with the store).
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts the checkpoints of `ledger`; `restart_frames` is the WAL length (in frames,
    /// about a page each) past which a pass takes the write turn so the WAL can rewind.
    pub fn start(
        ledger: &Path,
        restart_frames: i64,
        turns: WriterTurns,
        observer: ObserverSlot,
    ) -> Result<Checkpointer, LedgerError> {
        let conn = connect(ledger, false)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let passes = Passes {
            conn,
            turns,
            restart_frames,
            observer,
        };
        std::thread::Builder::new()
            .name("ledger-checkpoint".into())
            .spawn(move || passes.run(&stopped))
            .map_err(|e| LedgerError::Storage(format!("cannot start checkpoints: {e}")))?;
        Ok(Checkpointer { _stop: stop })
    }
}

struct Passes {
    conn: Connection,
    turns: WriterTurns,
    restart_frames: i64,
    observer: ObserverSlot,
}

impl Passes {
    /// Passes every `EVERY` until stopped. A pass that panics (the store's observer, told of
    /// each checkpoint, is outside this crate) gives up the write turn if it held it and the
    /// next pass runs as usual: an ended thread would let the WAL grow until the disk fills.
    fn run(&self, stopped: &mpsc::Receiver<()>) {
        let mut last = WalState::default();
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
            match catch_unwind(AssertUnwindSafe(|| self.pass(last))) {
                Ok(Ok(now)) => last = now,
                Ok(Err(e)) => tracing::warn!(error = %e, "WAL checkpoint failed; retried shortly"),
                Err(_) => {
                    tracing::error!("a WAL checkpoint pass panicked; the next runs shortly");
                    if let Err(e) = self.turns.pass() {
                        tracing::error!(error = %e, "cannot pass the ledger's write turn");
                    }
                }
            }
        }
    }

    /// One pass: copy without the turn, then, if the WAL has grown long, catch up and copy
    /// the rest with the turn.
    fn pass(&self, last: WalState) -> Result<WalState, LedgerError> {
        let mut now = self.timed(last, || passive_checkpoint(&self.conn))?;
        if now.frames > self.restart_frames {
            now = self.timed(now, || catch_up(&self.conn))?;
            self.turns.take()?;
            let copied = self.timed(now, || passive_checkpoint(&self.conn));
            self.turns.pass()?;
            now = copied?;
        }
        Ok(now)
    }

    /// Runs a checkpoint; reports its duration when it copied frames.
    fn timed(
        &self,
        before: WalState,
        checkpoint: impl FnOnce() -> Result<WalState, LedgerError>,
    ) -> Result<WalState, LedgerError> {
        let started = Instant::now();
        let now = checkpoint()?;
        if now.copied > 0 && now != before {
            self.observer.report_checkpoint(started.elapsed());
        }
        Ok(now)
    }
}

/// Frames in the WAL, and how many of them are in the database file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalState {
    pub frames: i64,
    pub copied: i64,
}

/// Run without the write turn, before a step that takes it: syncs the pages the last pass
/// copied, copies what the writers appended since, and syncs those, so that the step under
/// the turn has only what is appended from now on to copy and sync. The syncs go through
/// SQLite's own descriptor of the file (`file_sync`).
pub fn catch_up(conn: &Connection) -> Result<WalState, LedgerError> {
    sync_database_file(conn)?;
    let now = passive_checkpoint(conn)?;
    sync_database_file(conn)?;
    Ok(now)
}

/// Copies what it can of the WAL into the database file.
pub fn passive_checkpoint(conn: &Connection) -> Result<WalState, LedgerError> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(WalState {
            frames: r.get(1)?,
            copied: r.get(2)?,
        })
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{BatchTimings, StoreObserver};
    use crate::sqlite::{SqliteConfig, SqliteStore};
    use crate::testkit::{grant, post_all};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts checkpoints; panics on the first `panics` of them.
    #[derive(Default)]
    struct Checkpoints(AtomicUsize, usize);

    impl StoreObserver for Checkpoints {
        fn batch(&self, _: &BatchTimings) {}
        fn checkpoint(&self, _: Duration) {
            if self.0.fetch_add(1, Ordering::Relaxed) < self.1 {
                panic!("an observer bug");
            }
        }
    }

    /// The observer panics on the first two checkpoints: passes go on after them, and the WAL
    /// is copied back all the same. Before, the first panic ended the checkpoint thread and the
    /// WAL grew with every write from then on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoints_go_on_after_a_pass_panics() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let store: Arc<dyn crate::Store> =
            Arc::new(SqliteStore::open(SqliteConfig::new(&db)).unwrap());
        let seen = Arc::new(Checkpoints(AtomicUsize::new(0), 2));
        store.observe(seen.clone());
        for round in 0..3 {
            for i in 0..200 {
                post_all(&*store, None, vec![grant(&format!("p{}", i % 7), 1)])
                    .await
                    .unwrap();
            }
            tokio::time::sleep(EVERY * 3).await;
            assert!(seen.0.load(Ordering::Relaxed) > round, "round {round}");
        }
        let wal = passive_checkpoint(&connect(&db, false).unwrap()).unwrap();
        assert_eq!(wal.frames, wal.copied, "{wal:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_copied_back_beside_the_writer_not_in_its_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let store: Arc<dyn crate::Store> =
            Arc::new(SqliteStore::open(SqliteConfig::new(&db)).unwrap());
        let seen = Arc::new(Checkpoints::default());
        store.observe(seen.clone());
        for i in 0..300 {
            post_all(&*store, None, vec![grant(&format!("p{}", i % 7), 1)])
                .await
                .unwrap();
        }
        tokio::time::sleep(EVERY * 3).await;
        assert!(seen.0.load(Ordering::Relaxed) > 0, "no checkpoint ran");
        let wal = passive_checkpoint(&connect(&db, false).unwrap()).unwrap();
        assert_eq!(wal.frames, wal.copied, "{wal:?}");
    }

    /// Two processes (two stores on one file) write without pause: the WAL keeps rewinding
    /// instead of growing with everything written. Watched from a third connection every
    /// 10 ms, its size on average stays a fraction of the frames appended to it (a WAL that
    /// never rewinds holds half of them on average; rewound evenly R times, 1/(2(R+1))).
    /// Relative, and to the frames rather than the writes: how much is written between two
    /// rewinds depends on how fast the machine writes, and the frames per write on how
    /// large its batches are (a machine writing 284k grants in 1.6 s, in small batches,
    /// held 98.7k frames on average over 7 rewinds: a third of its writes, a sixteenth of
    /// its frames; with the step that holds the write turn taken out, 0–2 rewinds).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_several_writers_the_wal_rewinds_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let open = || -> Arc<dyn crate::Store> {
            let mut config = SqliteConfig::new(&db);
            config.wal_restart_frames = 200;
            Arc::new(SqliteStore::open(config).unwrap())
        };
        let stores = [open(), open()];
        let until = Instant::now() + EVERY * 8;
        let watcher = {
            let db = db.clone();
            std::thread::spawn(move || {
                let conn = connect(&db, false).unwrap();
                let (mut last, mut rewinds, mut sum, mut samples) = (0, 0, 0, 0i64);
                let mut appended = 0;
                while Instant::now() < until {
                    let frames = passive_checkpoint(&conn).unwrap().frames;
                    if frames < last {
                        rewinds += 1;
                        appended += frames;
                    } else {
                        appended += frames - last;
                    }
                    last = frames;
                    sum += frames;
                    samples += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                (rewinds, sum / samples.max(1), appended)
            })
        };
        let writers: Vec<_> = (0..32)
            .map(|i| {
                let store = stores[i % 2].clone();
                tokio::spawn(async move {
                    let mut written = 0;
                    while Instant::now() < until {
                        let player = format!("w{i}-{}", written % 5);
                        post_all(&*store, None, vec![grant(&player, 1)])
                            .await
                            .unwrap();
                        written += 1;
                    }
                    written
                })
            })
            .collect();
        let mut written = 0;
        for writer in writers {
            written += writer.await.unwrap();
        }
        let (rewinds, mean, appended) = watcher.join().unwrap();
        assert!(
            mean * 4 < appended,
            "the WAL held {mean} frames on average (rewound {rewinds} times) of {appended} \
             appended by {written} writes"
        );
        // Sampled every 10 ms, a rewind is missed when the WAL grew back past the last sample
        // meanwhile (CI saw 2 on a machine that wrote 223k grants in 1.6 s, where 9 are seen
        // here): the mean above is what bounds the WAL, this only says a rewind was seen.
        assert!(
            rewinds >= 1,
            "the WAL was rewound {rewinds} times in 1.6 s of {written} writes"
        );
        crate::testkit::assert_sound(&*stores[0]).await;
    }
}
