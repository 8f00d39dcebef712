//! The store contract as tests every backend must pass: each function takes a way to open the
//! backend under test (a second `open` stands for a second node process on the same ledger)
//! and checks one rule of `Store`/`LedgerTx`. The SQLite and PostgreSQL backends each run all
//! of them from their own test module.

use std::sync::Arc;

use crate::error::LedgerError;
use crate::integrity;
use crate::model::{Account, EntryKind, Transfer};
use crate::store::{Committed, Idempotency, LedgerTx, Store};

/// Opens the backend under test; every call reaches the same ledger.
pub trait Opener: Send + Sync {
    fn open(&self) -> Arc<dyn Store>;
}

impl<F: Fn() -> Arc<dyn Store> + Send + Sync> Opener for F {
    fn open(&self) -> Arc<dyn Store> {
        self()
    }
}

pub fn grant(player: &str, amount: i64) -> Transfer {
    Transfer {
        kind: EntryKind::Grant,
        round_id: None,
        debit: Account::House,
        credit: Account::player(player),
        amount,
    }
}

fn stake(player: &str, round: &str, amount: i64) -> Transfer {
    Transfer {
        kind: EntryKind::Stake,
        round_id: Some(round.into()),
        debit: Account::player(player),
        credit: Account::InRound,
        amount,
    }
}

/// A write whose operation only posts `transfers`.
pub async fn post_all(
    store: &dyn Store,
    key: Option<Idempotency>,
    transfers: Vec<Transfer>,
) -> Result<Committed<()>, LedgerError> {
    store
        .transact(key, move |tx| {
            transfers.iter().try_for_each(|t| tx.post(t))?;
            Ok::<_, LedgerError>(())
        })
        .await
}

pub async fn balance(store: &dyn Store, player: &str) -> i64 {
    let account = Account::player(player);
    store.read(move |tx| tx.balance(&account)).await.unwrap()
}

pub async fn assert_sound(store: &dyn Store) {
    let report = store.integrity().await.unwrap();
    assert!(report.ok, "{report:#?}");
}

pub async fn transfers_update_balances_and_keep_invariants(opener: &dyn Opener) {
    let store = opener.open();
    post_all(
        &*store,
        None,
        vec![grant("alice", 1_000), stake("alice", "r1", 100)],
    )
    .await
    .unwrap();
    assert_eq!(balance(&*store, "alice").await, 900);
    let report = store.integrity().await.unwrap();
    // r1 has a stake in the journal but no round row: the projection check must say so.
    assert!(report.violated(integrity::PROJECTIONS), "{report:#?}");
    assert!(!report.violated(integrity::SUM_ZERO));
    assert!(!report.violated(integrity::HASH_CHAIN));
}

pub async fn insufficient_funds_moves_nothing(opener: &dyn Opener) {
    let store = opener.open();
    post_all(&*store, None, vec![grant("bob", 50)])
        .await
        .unwrap();
    let refused = post_all(&*store, None, vec![stake("bob", "r", 51)]).await;
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

pub async fn a_failing_operation_is_rolled_back_whole(opener: &dyn Opener) {
    let store = opener.open();
    let failed = store
        .transact(None, |tx| {
            tx.post(&grant("carol", 500))?;
            Err::<(), _>(LedgerError::Conflict(
                "injected failure after a post".into(),
            ))
        })
        .await;
    assert!(failed.is_err());
    let panicked = store
        .transact(None, |tx| {
            tx.post(&grant("carol", 500))?;
            if tx.now_ms() > 0 {
                panic!("injected panic after a post");
            }
            Ok::<_, LedgerError>(())
        })
        .await;
    assert!(panicked.is_err());
    assert_eq!(balance(&*store, "carol").await, 0);
    post_all(&*store, None, vec![grant("carol", 7)])
        .await
        .unwrap();
    assert_eq!(balance(&*store, "carol").await, 7);
    assert_sound(&*store).await;
}

/// A refusal in the operation's own error type comes back as that type.
pub async fn an_operation_refuses_in_its_own_type(opener: &dyn Opener) {
    #[derive(Debug, PartialEq)]
    enum Mine {
        TooLate,
        Ledger(String),
    }
    impl From<LedgerError> for Mine {
        fn from(e: LedgerError) -> Self {
            Mine::Ledger(e.to_string())
        }
    }
    let store = opener.open();
    let refused = store
        .transact(None, |tx| {
            tx.post(&grant("gus", 5))?;
            Err::<(), _>(Mine::TooLate)
        })
        .await;
    assert_eq!(refused, Err(Mine::TooLate));
    assert_eq!(balance(&*store, "gus").await, 0);
}

pub async fn idempotency_key_replays_the_first_result_and_moves_nothing(opener: &dyn Opener) {
    let store = opener.open();
    let key = |fingerprint: &str| {
        Some(Idempotency {
            key: "dave:k1".into(),
            fingerprint: fingerprint.into(),
        })
    };
    let op = |tx: &mut dyn LedgerTx| {
        tx.post(&grant("dave", 10))?;
        Ok::<_, LedgerError>(format!("balance {}", tx.balance(&Account::player("dave"))?))
    };
    let first = store.transact(key("a"), op).await.unwrap();
    let again = store.transact(key("a"), op).await.unwrap();
    assert!(!first.is_replay() && again.is_replay());
    assert_eq!(first.value(), "balance 10");
    assert_eq!(first.value(), again.value());
    assert_eq!(balance(&*store, "dave").await, 10);
    let other = store.transact(key("b"), op).await;
    assert!(matches!(other, Err(LedgerError::IdempotencyKeyReused)));
    assert_eq!(balance(&*store, "dave").await, 10);
    assert_sound(&*store).await;
}

/// The same key sent twice at once (a client retrying through another node) moves money once.
pub async fn one_key_sent_at_once_through_two_stores_moves_money_once(opener: &dyn Opener) {
    let (one, two) = (opener.open(), opener.open());
    post_all(&*one, None, vec![grant("hal", 1_000)])
        .await
        .unwrap();
    let key = Some(Idempotency {
        key: "hal:once".into(),
        fingerprint: "f".into(),
    });
    let send = |store: Arc<dyn Store>| {
        let key = key.clone();
        tokio::spawn(async move { post_all(&*store, key, vec![stake("hal", "r-once", 300)]).await })
    };
    let tasks: Vec<_> = (0..6)
        .map(|i| send(if i % 2 == 0 { one.clone() } else { two.clone() }))
        .collect();
    let mut fresh = 0;
    for task in tasks {
        if !task.await.unwrap().unwrap().is_replay() {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(balance(&*one, "hal").await, 700);
}

pub async fn concurrent_writers_are_group_committed_on_one_chain(opener: &dyn Opener) {
    let store = opener.open();
    // A second store on the same ledger stands for a second node process.
    let other = opener.open();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            post_all(&*s, None, vec![grant(&format!("p{}", i % 10), 1)]).await
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

pub async fn reopen_keeps_data(opener: &dyn Opener) {
    {
        let store = opener.open();
        assert!(store.ready().await.unwrap());
        post_all(&*store, None, vec![grant("fay", 3)])
            .await
            .unwrap();
    }
    let store = opener.open();
    assert_eq!(balance(&*store, "fay").await, 3);
    assert_sound(&*store).await;
}

/// `Store::housekeep` removes expired sessions only, and a recent idempotency key still
/// replays afterwards (money is never moved twice by housekeeping).
pub async fn housekeeping_removes_expired_sessions_and_keeps_recent_keys(opener: &dyn Opener) {
    let store = opener.open();
    let now = crate::clock::now_ms();
    store
        .transact(None, move |tx| {
            tx.create_player("ivy")?;
            tx.insert_session("expired-hash", "ivy", 1_000)?;
            tx.insert_session("live-hash", "ivy", now + 3_600_000)
        })
        .await
        .unwrap();
    let key = Some(Idempotency {
        key: "ivy:k".into(),
        fingerprint: "f".into(),
    });
    post_all(&*store, key.clone(), vec![grant("ivy", 5)])
        .await
        .unwrap();
    let policy = crate::retention::RetentionPolicy::default();
    let report = store.housekeep(policy).await.unwrap();
    assert_eq!(
        (report.sessions_removed, report.idempotency_removed),
        (1, 0)
    );
    assert_eq!(store.housekeep(policy).await.unwrap().sessions_removed, 0);
    let live = store
        .read(|tx| tx.session_player("live-hash"))
        .await
        .unwrap();
    assert_eq!(live.as_deref(), Some("ivy"));
    let again = post_all(&*store, key, vec![grant("ivy", 5)]).await.unwrap();
    assert!(again.is_replay());
    assert_eq!(balance(&*store, "ivy").await, 5);
    assert_sound(&*store).await;
}

/// One `#[tokio::test]` per contract test, each on a fresh ledger: `$fresh` is an async
/// expression giving an `Opener`.
macro_rules! store_contract_tests {
    ($fresh:expr) => {
        store_contract_tests!(@each $fresh;
            transfers_update_balances_and_keep_invariants,
            insufficient_funds_moves_nothing,
            a_failing_operation_is_rolled_back_whole,
            an_operation_refuses_in_its_own_type,
            idempotency_key_replays_the_first_result_and_moves_nothing,
            one_key_sent_at_once_through_two_stores_moves_money_once,
            concurrent_writers_are_group_committed_on_one_chain,
            reopen_keeps_data,
            housekeeping_removes_expired_sessions_and_keeps_recent_keys
        );
    };
    (@each $fresh:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let opener = $fresh.await;
                $crate::testkit::$name(&opener).await;
            }
        )*
    };
}
pub(crate) use store_contract_tests;
