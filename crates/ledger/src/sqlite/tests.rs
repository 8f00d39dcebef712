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
