//! The store contract as tests every backend must pass: each function takes a way to open the
//! backend under test (a second `open` stands for a second node process on the same ledger)
//! and checks one rule of `Store`/`LedgerTx`. The SQLite and PostgreSQL backends each run all
//! of them from their own test module.

use std::sync::Arc;

pub mod sealed_seeds;

use crate::error::LedgerError;
use crate::integrity;
use crate::model::{Account, EntryKind, Round, RoundStatus, Transfer};
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

/// A keyed operation that reads nothing before it writes (here: only the game status) is
/// answered from its record when sent again, through its own store or another one: the
/// record found when the key is claimed is never hidden by what an earlier run of the same
/// batch staged for it.
pub async fn a_keyed_operation_that_reads_nothing_is_replayed(opener: &dyn Opener) {
    let (one, two) = (opener.open(), opener.open());
    let key = || {
        Some(Idempotency {
            key: "ivy:blind".into(),
            fingerprint: "f".into(),
        })
    };
    let op = |tx: &mut dyn LedgerTx| {
        tx.set_game_status("slot", "maintenance")?;
        Ok::<_, LedgerError>("paused".to_owned())
    };
    let first = one.transact(key(), op).await.unwrap();
    assert!(!first.is_replay());
    for store in [&one, &two, &one] {
        let again = store.transact(key(), op).await.unwrap();
        assert!(again.is_replay(), "sent again, it ran again");
        assert_eq!(again.value(), "paused");
    }
    assert_sound(&*one).await;
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

/// The longest a quiet writer may wait in `a_quiet_writer_is_not_starved_by_a_busy_one`.
const QUIET_WRITER_BOUND: std::time::Duration = std::time::Duration::from_millis(400);

/// Two node processes share the store: one busy with a steady stream of writes, the other
/// writing now and then. The quiet one's writes wait for the busy one's batch at most,
/// never for a run of them (a writer that retakes the lock at once, or a busy handler
/// sleeping 1, 2, 5 … 100 ms between tries, made stalls of 1.6–2.3 s here). The bound is
/// `QUIET_WRITER_BOUND`: well under those, with room for a busy 2-core machine.
pub async fn a_quiet_writer_is_not_starved_by_a_busy_one(opener: &dyn Opener) {
    let (busy, quiet) = (opener.open(), opener.open());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammers: Vec<_> = (0..64)
        .map(|i| {
            let (store, stop) = (busy.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    post_all(&*store, None, vec![grant(&format!("busy{i}"), 1)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut worst = std::time::Duration::ZERO;
    for _ in 0..40 {
        let started = std::time::Instant::now();
        post_all(&*quiet, None, vec![grant("quiet", 1)])
            .await
            .unwrap();
        worst = worst.max(started.elapsed());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for hammer in hammers {
        hammer.await.unwrap();
    }
    assert!(
        worst < QUIET_WRITER_BOUND,
        "the quiet writer waited {worst:?}"
    );
    assert_eq!(balance(&*busy, "quiet").await, 40);
    assert_sound(&*busy).await;
}

/// A round of `stake` the player lost, as a game would write it: staked, settled, recorded.
fn lost_round(
    tx: &mut dyn LedgerTx,
    player: &str,
    id: &str,
    stake: i64,
) -> Result<(), LedgerError> {
    tx.post(&self::stake(player, id, stake))?;
    tx.post(&Transfer {
        kind: EntryKind::Settle,
        round_id: Some(id.into()),
        debit: Account::InRound,
        credit: Account::House,
        amount: stake,
    })?;
    let now = tx.now_ms();
    tx.insert_round(&Round {
        id: id.into(),
        player: player.into(),
        game: "dice".into(),
        status: RoundStatus::Settled,
        stake,
        payout: Some(0),
        bet: "{}".into(),
        state: "{}".into(),
        seed_id: 0,
        nonce: 0,
        node: "test".into(),
        created_ms: now,
        updated_ms: now,
    })
}

/// Many operations at once (so several share a batch), each reading the balance the ones
/// before it in the batch left and refusing when too little is left: exactly as many pass as
/// the money allows, whatever the batching and the reading ahead of the backend.
pub async fn operations_in_one_batch_see_each_others_changes(opener: &dyn Opener) {
    let store = opener.open();
    let players: Vec<String> = (0..5).map(|i| format!("batch-{i}")).collect();
    post_all(
        &*store,
        None,
        players.iter().map(|p| grant(p, 100)).collect(),
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (store, player) = (store.clone(), players[i % 5].clone());
        tasks.push(tokio::spawn(async move {
            store
                .transact(None, move |tx| {
                    let have = tx.balance(&Account::player(&player))?;
                    if have < 30 {
                        return Err(LedgerError::Conflict(format!("only {have} left")));
                    }
                    lost_round(tx, &player, &format!("r-{i}"), 30)
                })
                .await
        }));
    }
    let mut passed = 0;
    for task in tasks {
        passed += usize::from(task.await.unwrap().is_ok());
    }
    assert_eq!(passed, 15, "three stakes of 30 per player of 100");
    for player in &players {
        assert_eq!(balance(&*store, player).await, 10);
    }
    assert_sound(&*store).await;
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
    assert_eq!(live.map(|(player, _)| player).as_deref(), Some("ivy"));
    let again = post_all(&*store, key, vec![grant("ivy", 5)]).await.unwrap();
    assert!(again.is_replay());
    assert_eq!(balance(&*store, "ivy").await, 5);
    assert_sound(&*store).await;
}

/// `keep_newest_sessions` leaves a player their newest sessions only (whether opened in one
/// batch or several, through one store or another) and never touches another player's.
pub async fn a_player_keeps_only_the_newest_sessions(opener: &dyn Opener) {
    let (first, second) = (opener.open(), opener.open());
    let now = crate::clock::now_ms();
    first
        .transact(None, move |tx| {
            tx.create_player("kim")?;
            tx.create_player("lee")?;
            tx.insert_session("lee-0", "lee", now + 1_000)
        })
        .await
        .unwrap();
    for n in 0..5_i64 {
        let store = if n % 2 == 0 { &first } else { &second };
        store
            .transact(None, move |tx| {
                tx.insert_session(&format!("kim-{n}"), "kim", now + 10_000 + n)?;
                tx.keep_newest_sessions("kim", 3)
            })
            .await
            .unwrap();
    }
    let live = |hash: &'static str| {
        let store = first.clone();
        async move {
            store
                .read(move |tx| tx.session_player(hash))
                .await
                .unwrap()
                .is_some()
        }
    };
    let mut kept = Vec::new();
    for hash in ["kim-0", "kim-1", "kim-2", "kim-3", "kim-4", "lee-0"] {
        kept.push(live(hash).await);
    }
    assert_eq!(kept, [false, false, true, true, true, true]);
    assert_sound(&*first).await;
}

fn cashier(kind: EntryKind, player: &str, reference: Option<&str>, amount: i64) -> Transfer {
    let (debit, credit) = match kind {
        EntryKind::Deposit => (Account::Operator, Account::player(player)),
        _ => (Account::player(player), Account::Operator),
    };
    Transfer {
        kind,
        round_id: reference.map(str::to_owned),
        debit,
        credit,
        amount,
    }
}

/// Deposits and withdrawals against the operator account keep every invariant, their
/// idempotency record can be read back by key, and one without its transaction id is flagged.
pub async fn cashier_movements_keep_invariants_and_are_found_by_key(opener: &dyn Opener) {
    let store = opener.open();
    let key = Idempotency {
        key: "cashier:t1".into(),
        fingerprint: "deposit|jo|700".into(),
    };
    let moves = vec![
        cashier(EntryKind::Deposit, "jo", Some("t1"), 700),
        cashier(EntryKind::Withdraw, "jo", Some("t2"), 200),
    ];
    post_all(&*store, Some(key), moves).await.unwrap();
    assert_eq!(balance(&*store, "jo").await, 500);
    let operator = store.read(|tx| tx.balance(&Account::Operator)).await;
    assert_eq!(operator.unwrap(), -500);
    assert_sound(&*store).await;
    let record = store.read(|tx| tx.idempotency_record("cashier:t1")).await;
    assert_eq!(
        record.unwrap().map(|r| r.0).as_deref(),
        Some("deposit|jo|700")
    );
    let missing = store.read(|tx| tx.idempotency_record("cashier:t2")).await;
    assert_eq!(missing.unwrap(), None);
    let overdraw = post_all(
        &*store,
        None,
        vec![cashier(EntryKind::Withdraw, "jo", Some("t3"), 501)],
    );
    assert!(matches!(
        overdraw.await,
        Err(LedgerError::InsufficientFunds { .. })
    ));
    post_all(
        &*store,
        None,
        vec![cashier(EntryKind::Deposit, "jo", None, 1)],
    )
    .await
    .unwrap();
    let report = store.integrity().await.unwrap();
    assert!(report.violated(integrity::ROUND_ENTRIES), "{report:#?}");
    assert!(!report.violated(integrity::SUM_ZERO), "{report:#?}");
}

/// The operator account's history (the cashier export's read) is its entries alone, newest
/// first, page by page, however many other entries lie between them.
pub async fn the_operators_history_pages_through_its_entries_alone(opener: &dyn Opener) {
    let store = opener.open();
    for n in 0..5 {
        post_all(&*store, None, vec![grant("sam", 10), grant("ann", 10)])
            .await
            .unwrap();
        let reference = format!("t{n}");
        let deposit = cashier(EntryKind::Deposit, "sam", Some(&reference), 100 + n);
        post_all(&*store, None, vec![deposit]).await.unwrap();
    }
    let mut amounts = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .read(move |tx| tx.history(&Account::Operator, before, 2))
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        assert!(page.windows(2).all(|w| w[0].seq > w[1].seq));
        assert!(page.iter().all(|e| e.debit == Account::Operator));
        amounts.extend(page.iter().map(|e| e.amount));
    }
    assert_eq!(amounts, [104, 103, 102, 101, 100]);
    assert_sound(&*store).await;
}

/// An observer that panics on the first `left` batches it is told of.
struct PanicsFirst(std::sync::atomic::AtomicU32);

impl crate::observe::StoreObserver for PanicsFirst {
    fn batch(&self, _timings: &crate::observe::BatchTimings) {
        let left = self.0.load(std::sync::atomic::Ordering::SeqCst);
        if left > 0 {
            self.0.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            panic!("an observer bug");
        }
    }

    fn checkpoint(&self, _took: std::time::Duration) {}
}

/// A panic in a store's writer thread outside any operation (here the store's observer, told
/// of each batch after it is answered, panics for the first four) costs no write: each batch
/// is answered as committed and the writers go on. Before, the panic ended the writer's
/// thread; with the last writer gone every later write was refused, until a restart.
pub async fn a_writer_that_panics_goes_on(opener: &dyn Opener) {
    let store = opener.open();
    store.observe(Arc::new(PanicsFirst(4.into())));
    for _ in 0..6 {
        post_all(&*store, None, vec![grant("ann", 1)])
            .await
            .expect("a write after a writer's panic");
    }
    assert_eq!(balance(&*store, "ann").await, 6);
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
            a_keyed_operation_that_reads_nothing_is_replayed,
            concurrent_writers_are_group_committed_on_one_chain,
            a_quiet_writer_is_not_starved_by_a_busy_one,
            operations_in_one_batch_see_each_others_changes,
            reopen_keeps_data,
            housekeeping_removes_expired_sessions_and_keeps_recent_keys,
            a_player_keeps_only_the_newest_sessions,
            cashier_movements_keep_invariants_and_are_found_by_key,
            the_operators_history_pages_through_its_entries_alone,
            a_writer_that_panics_goes_on
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
