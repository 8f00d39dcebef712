use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::integrity;
use crate::model::{Account, EntryKind, Transfer};
use crate::store::LedgerTx;

fn open(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(SqliteConfig::new(dir.path().join("ledger.db"))).unwrap())
}

fn grant(player: &str, amount: i64) -> Transfer {
    Transfer {
        kind: EntryKind::Grant,
        round_id: None,
        debit: Account::House,
        credit: Account::player(player),
        amount,
    }
}

async fn balance(store: &dyn Store, player: &str) -> i64 {
    let account = Account::player(player);
    store.read(move |tx| tx.balance(&account)).await.unwrap()
}

async fn assert_sound(store: &dyn Store) {
    let report = store.integrity().await.unwrap();
    assert!(report.ok, "{report:#?}");
}

#[tokio::test]
async fn transfers_update_balances_and_keep_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .transact(None, |tx| {
            tx.post(&grant("alice", 1_000))?;
            tx.post(&Transfer {
                kind: EntryKind::Stake,
                round_id: Some("r1".into()),
                debit: Account::player("alice"),
                credit: Account::InRound,
                amount: 100,
            })?;
            Ok(json!(null))
        })
        .await
        .unwrap();
    assert_eq!(balance(&*store, "alice").await, 900);
    let report = store.integrity().await.unwrap();
    // r1 has a stake in the journal but no round row: the projection check must say so.
    assert!(report.violated(integrity::PROJECTIONS), "{report:#?}");
    assert!(!report.violated(integrity::SUM_ZERO));
    assert!(!report.violated(integrity::HASH_CHAIN));
}

#[tokio::test]
async fn insufficient_funds_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .transact(None, |tx| tx.post(&grant("bob", 50)).map(|_| json!(null)))
        .await
        .unwrap();
    let refused = store
        .transact(None, |tx| {
            tx.post(&Transfer {
                kind: EntryKind::Stake,
                round_id: Some("r".into()),
                debit: Account::player("bob"),
                credit: Account::InRound,
                amount: 51,
            })?;
            Ok(json!(null))
        })
        .await;
    assert!(matches!(
        refused,
        Err(LedgerError::InsufficientFunds {
            balance: 50,
            needed: 51,
            ..
        })
    ));
    assert_eq!(balance(&*store, "bob").await, 50);
    assert_sound(&*store).await;
}

#[tokio::test]
async fn a_failing_operation_is_rolled_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let failed = store
        .transact(None, |tx| {
            tx.post(&grant("carol", 500))?;
            Err(LedgerError::Conflict(
                "injected failure after a post".into(),
            ))
        })
        .await;
    assert!(failed.is_err());
    let panicked = store
        .transact(None, |tx| {
            tx.post(&grant("carol", 500))?;
            panic!("injected panic after a post");
        })
        .await;
    assert!(panicked.is_err());
    assert_eq!(balance(&*store, "carol").await, 0);
    store
        .transact(None, |tx| tx.post(&grant("carol", 7)).map(|_| json!(null)))
        .await
        .unwrap();
    assert_eq!(balance(&*store, "carol").await, 7);
    assert_sound(&*store).await;
}

#[tokio::test]
async fn idempotency_key_replays_the_first_result_and_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = |fingerprint: &str| {
        Some(Idempotency {
            key: "dave:k1".into(),
            fingerprint: fingerprint.into(),
        })
    };
    let op = |tx: &mut dyn LedgerTx| {
        let entry = tx.post(&grant("dave", 10))?;
        Ok(json!({"seq": entry.seq}))
    };
    let first = store.transact(key("a"), op).await.unwrap();
    let again = store.transact(key("a"), op).await.unwrap();
    assert!(!first.is_replay() && again.is_replay());
    assert_eq!(first.value(), again.value());
    assert_eq!(balance(&*store, "dave").await, 10);
    let other = store.transact(key("b"), op).await;
    assert!(matches!(other, Err(LedgerError::IdempotencyKeyReused)));
    assert_eq!(balance(&*store, "dave").await, 10);
    assert_sound(&*store).await;
}

#[tokio::test]
async fn concurrent_writers_are_group_committed_on_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // A second store on the same file stands for a second node process.
    let other = open(&dir);
    let mut tasks = Vec::new();
    for i in 0..400 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            s.transact(None, move |tx| {
                tx.post(&grant(&format!("p{}", i % 10), 1))
                    .map(|_| json!(null))
            })
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let report = store.integrity().await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.entries, 400);
    assert_eq!(balance(&*other, "p3").await, 40);
}

#[tokio::test]
async fn journal_is_append_only_and_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for _ in 0..3 {
        store
            .transact(None, |tx| tx.post(&grant("eve", 100)).map(|_| json!(null)))
            .await
            .unwrap();
    }
    let raw = connect(&dir.path().join("ledger.db"), false).unwrap();
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

#[tokio::test]
async fn ready_after_migrations_and_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        assert!(store.ready().await.unwrap());
        store
            .transact(None, |tx| tx.post(&grant("fay", 3)).map(|_| json!(null)))
            .await
            .unwrap();
    }
    let store = open(&dir);
    assert_eq!(balance(&*store, "fay").await, 3);
    assert_sound(&*store).await;
}
