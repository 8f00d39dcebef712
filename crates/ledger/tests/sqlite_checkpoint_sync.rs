//! The SQLite store's checkpointer syncs what it copied before it waits for the writers'
//! turn. An integration test because it asks the kernel (`cachestat`, an unsafe system call
//! the ledger crate itself forbids) how much of the database file is not yet on the disk.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use croupier_ledger::sqlite::turns::WriterTurns;
use croupier_ledger::sqlite::{SqliteConfig, SqliteStore, connect};

/// Pages of `file` in the page cache that are not yet on the disk (Linux 6.5's `cachestat`).
#[allow(unsafe_code)]
fn unsynced_pages(file: &File) -> u64 {
    #[repr(C)]
    struct Range {
        offset: u64,
        length: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct CacheStat {
        cache: u64,
        dirty: u64,
        writeback: u64,
        evicted: u64,
        recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    let whole_file = Range {
        offset: 0,
        length: 0,
    };
    let mut stat = CacheStat::default();
    // SAFETY: cachestat reads one `Range` and writes one `CacheStat` (the kernel's layouts),
    // both alive for the call; the descriptor is open.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &whole_file as *const Range,
            &mut stat as *mut CacheStat,
            0u32,
        )
    };
    assert_eq!(rc, 0, "cachestat: {}", std::io::Error::last_os_error());
    stat.dirty + stat.writeback
}

/// Blocks until some writer of `db` waits for the write turn (it holds `-waiting` shared).
fn until_a_writer_waits_for_the_turn(db: &Path) {
    let mut waiting = db.as_os_str().to_owned();
    waiting.push("-waiting");
    let waiting = File::open(waiting).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while waiting.try_lock().is_ok() {
        waiting.unlock().unwrap();
        assert!(
            Instant::now() < until,
            "no writer came to wait for the turn"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SQLite syncs the database file only in a checkpoint that reaches the WAL's end; writers
/// appending meanwhile, or here a reader on an older snapshot, stop it short. Such a pass's
/// pages are synced before the checkpointer waits for the writers' turn, not by the pass
/// under the turn while every writer waits: when it waits, nothing of the file is left to
/// write to the disk. On the old code, the 500 KiB copied up to the reader's snapshot were
/// (127 pages of 4 KiB).
#[test]
fn what_a_checkpoint_copied_is_synced_before_it_waits_for_the_writers_turn() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let writer = connect(&db, false).unwrap();
    writer
        .execute_batch(
            "PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE filler (n INTEGER PRIMARY KEY, bytes BLOB NOT NULL)",
        )
        .unwrap();
    // About one 1 KiB page per row: 500 frames per fill.
    let fill = |from: i64| {
        writer.execute_batch("BEGIN").unwrap();
        for n in from..from + 500 {
            writer
                .execute("INSERT INTO filler VALUES (?1, zeroblob(900))", [n])
                .unwrap();
        }
        writer.execute_batch("COMMIT").unwrap();
    };
    fill(0);
    let reader = connect(&db, true).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    reader
        .query_row("SELECT count(*) FROM filler", [], |_| Ok(()))
        .unwrap();
    fill(500);
    // The store's checkpointer makes its first pass a second after it opens; by then the
    // test holds the turn, so the pass copies up to the reader's snapshot and waits.
    let mut config = SqliteConfig::new(&db);
    config.wal_restart_frames = 100;
    let store = SqliteStore::open(config).unwrap();
    let held = WriterTurns::open(&db, Duration::from_secs(30)).unwrap();
    held.take().unwrap();
    until_a_writer_waits_for_the_turn(&db);
    assert_eq!(unsynced_pages(&File::open(&db).unwrap()), 0);
    reader.execute_batch("COMMIT").unwrap();
    held.pass().unwrap();
    drop(store);
}
