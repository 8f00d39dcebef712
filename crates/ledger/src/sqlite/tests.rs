use std::sync::Arc;

use super::*;
use crate::integrity;
use crate::testkit::{self, grant, post_all, store_contract_tests};

/// A ledger file in its own temporary folder; every `open` is another store on that file.
struct TempLedger(tempfile::TempDir);

impl testkit::Opener for TempLedger {
    fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(SqliteConfig::new(self.0.path().join("ledger.db"))).unwrap())
    }
}

store_contract_tests!(async { TempLedger(tempfile::tempdir().unwrap()) });

/// The operator's history reads its own index (`schema::READ_INDEXES`), not every entry newer
/// than the page. Before: a scan of the journal by seq, so the cashier export of a past month
/// read every bet since.
#[tokio::test]
async fn the_operators_history_reads_its_index() {
    let ledger = TempLedger(tempfile::tempdir().unwrap());
    drop(testkit::Opener::open(&ledger));
    let raw = connect(&ledger.0.path().join("ledger.db"), true).unwrap();
    let plan: Vec<String> = raw
        .prepare(&format!("EXPLAIN QUERY PLAN {}", tx::operator_history()))
        .unwrap()
        .query_map(params![10, 10], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert!(plan[0].contains("journal_of_operator"), "{plan:?}");
}

#[tokio::test]
async fn journal_is_append_only_and_tampering_is_detected() {
    let ledger = TempLedger(tempfile::tempdir().unwrap());
    let store = testkit::Opener::open(&ledger);
    for _ in 0..3 {
        post_all(&*store, None, vec![grant("eve", 100)])
            .await
            .unwrap();
    }
    let raw = connect(&ledger.0.path().join("ledger.db"), false).unwrap();
    assert!(
        raw.execute("UPDATE journal SET amount = 1 WHERE seq = 2", [])
            .is_err()
    );
    assert!(
        raw.execute("DELETE FROM journal WHERE seq = 2", [])
            .is_err()
    );
    raw.execute_batch(
        "DROP TRIGGER journal_is_append_only_update;
         UPDATE journal SET amount = 1000 WHERE seq = 2;
         UPDATE balances SET balance = balance - 5 WHERE account = 'player:eve';",
    )
    .unwrap();
    let report = store.integrity().await.unwrap();
    assert!(!report.ok);
    assert!(report.violated(integrity::HASH_CHAIN), "{report:#?}");
    assert!(report.violated(integrity::PROJECTIONS), "{report:#?}");
    assert!(report.violated(integrity::SUM_ZERO), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_are_sealed_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let open = |seeds: crate::SeedVault| -> Result<Arc<dyn Store>, LedgerError> {
        let mut config = SqliteConfig::new(&db);
        config.seeds = seeds;
        Ok(Arc::new(SqliteStore::open(config)?) as Arc<dyn Store>)
    };
    let stored = |player: &str| -> Vec<String> {
        connect(&db, true)
            .unwrap()
            .prepare("SELECT server_seed FROM seeds WHERE player = ?1 ORDER BY id")
            .unwrap()
            .query_map([player], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    testkit::sealed_seeds::seeds_are_sealed_at_rest(&open, &stored).await;
}

/// Nodes started together (`croupier up`) open a ledger file that does not exist yet at the
/// same instant: each must open it, none may fail on another's half-made file.
#[test]
fn stores_opened_together_on_a_new_file_all_open() {
    for _ in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let start = Arc::new(std::sync::Barrier::new(3));
        let openers: Vec<_> = (0..3)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    SqliteStore::open(SqliteConfig::new(path)).map(|_| ())
                })
            })
            .collect();
        for opener in openers {
            opener.join().unwrap().unwrap();
        }
    }
}

/// Rows on the ledger's 1 KiB pages: an idempotency record (its answer is 400–900 bytes) and a
/// round (its state up to 500) fit their table's pages, and their keys' indexes hold the keys
/// alone. As WITHOUT ROWID tables (schema 3) every such row spilled onto overflow pages, and
/// each step of a key search read a whole overflow chain.
#[tokio::test]
async fn idempotency_records_and_rounds_need_no_overflow_pages() {
    let ledger = TempLedger(tempfile::tempdir().unwrap());
    drop(testkit::Opener::open(&ledger));
    let conn = connect(&ledger.0.path().join("ledger.db"), false).unwrap();
    let answer = "a".repeat(700);
    let state = "s".repeat(400);
    for i in 0..100 {
        conn.execute(
            "INSERT INTO idempotency (key, fingerprint, response, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![format!("player-{i}:{i:032x}"), "f".repeat(64), answer, i],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO rounds (id, player, game, status, stake, payout, bet, state, seed_id,
                 nonce, node, created_ms, updated_ms)
             VALUES (?1, 'p', 'blackjack', 'open', 10, NULL, '{}', ?2, 1, ?3, 'node-1', ?3, ?3)",
            params![format!("r_{i:032x}"), state, i],
        )
        .unwrap();
    }
    let overflow: i64 = conn
        .query_row(
            "SELECT count(*) FROM dbstat WHERE pagetype = 'overflow' AND (
                 name IN ('idempotency', 'rounds')
                 OR name LIKE 'sqlite_autoindex_idempotency%'
                 OR name LIKE 'sqlite_autoindex_rounds%')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        overflow, 0,
        "pages of overflow for 100 records and 100 rounds"
    );
}

/// A ledger of schema 3 (idempotency and rounds WITHOUT ROWID) opened by this build keeps
/// every record and round, and their indexes.
#[tokio::test]
async fn a_schema_3_ledger_keeps_its_records_and_rounds_when_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let conn = connect(&path, false).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
        )
        .unwrap();
        for (index, sql) in MIGRATIONS.iter().take(3).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, 0)",
                params![index as i64 + 1],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO idempotency VALUES ('p:k1', 'fp', '{\"answer\":1}', 5)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO rounds VALUES ('r_1', 'p', 'dice', 'open', 10, NULL, '{}', '{\"s\":1}',
                 1, 0, 'node-1', 5, 6)",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(SqliteConfig::new(path.clone())).unwrap();
    drop(store);
    let conn = connect(&path, true).unwrap();
    let record: (String, String, i64) = conn
        .query_row(
            "SELECT fingerprint, response, created_ms FROM idempotency WHERE key = 'p:k1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(record, ("fp".into(), "{\"answer\":1}".into(), 5));
    let round: (String, String, i64) = conn
        .query_row(
            "SELECT status, state, updated_ms FROM rounds WHERE id = 'r_1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(round, ("open".into(), "{\"s\":1}".into(), 6));
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name IN ('idempotency', 'rounds')
                 AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        indexes,
        ["idempotency_by_time", "rounds_by_player", "rounds_open"]
    );
    assert_eq!(schema::version(&conn).unwrap(), MIGRATIONS.len());
}

/// This process's POSIX locks on `path`, as the kernel lists them in `/proc/locks` (read
/// there so that the check itself opens no descriptor of the file: closing one would drop
/// the very locks it looks for), without the listing's ordinal, which changes as other
/// locks come and go. Each kind of lock once: POSIX locks are the process's, and two
/// connections reading at that instant list the same range twice (seen in CI), which says
/// nothing about whether the lock survived.
///
/// The listing is read several times and what each read shows is kept: the kernel hands it
/// out a page per read, by position in its list of every lock on the machine, and a lock
/// released before the position meanwhile (the tests running beside this one take and drop
/// locks all the time) moves every later line back one, so a read can skip a line (a
/// lock that was held all along was missing once, in a run of the whole suite).
fn locks_held_here(path: &std::path::Path) -> std::collections::BTreeSet<String> {
    (0..LISTING_READS)
        .flat_map(|_| locks_listed_once(path))
        .collect()
}

/// Reads of `/proc/locks` whose lines `locks_held_here` keeps.
const LISTING_READS: usize = 5;

fn locks_listed_once(path: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let inode = format!(":{}", std::fs::metadata(path).unwrap().ino());
    let pid = std::process::id().to_string();
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"POSIX")
                && fields.get(4) == Some(&pid.as_str())
                && fields.get(5).is_some_and(|file| file.ends_with(&inode))
        })
        .map(|line| {
            line.split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// SQLite's locks are POSIX locks, and closing any descriptor of a file drops every lock
/// the process holds on it. Housekeeping used to open the database file to sync it and
/// close it again: every connection of the node lost the shared lock that tells SQLite
/// another connection is on the file, and the next process to close its last connection
/// (a bank check, `croupier integrity`) took the exclusive lock, checkpointed and deleted
/// the WAL under the live nodes; connections opened after that saw the ledger without the
/// bets acknowledged since (seen in the drills). The locks now survive housekeeping and
/// the checkpoints' syncs.
#[tokio::test]
async fn housekeeping_and_checkpoints_leave_the_process_its_locks_on_the_ledger() {
    let ledger = TempLedger(tempfile::tempdir().unwrap());
    let path = ledger.0.path().join("ledger.db");
    let store = testkit::Opener::open(&ledger);
    post_all(&*store, None, vec![grant("eve", 100)])
        .await
        .unwrap();
    let held = locks_held_here(&path);
    assert!(
        !held.is_empty(),
        "an open store holds a shared lock; /proc/locks has:\n{}",
        std::fs::read_to_string("/proc/locks").unwrap_or_default()
    );
    store
        .housekeep(crate::retention::RetentionPolicy::default())
        .await
        .unwrap();
    assert_eq!(locks_held_here(&path), held, "after housekeeping");
    let conn = connect(&path, false).unwrap();
    checkpoint::catch_up(&conn).unwrap();
    drop(conn);
    assert_eq!(
        locks_held_here(&path),
        held,
        "after a checkpoint's catch-up"
    );
    post_all(&*store, None, vec![grant("eve", 1)])
        .await
        .unwrap();
}
