//! The node's background loops (the game-status and host-metrics refresh, the abandoned-round
//! sweep) outlive a panic in one of their rounds: before, the first panic ended the loop for
//! good, and the node went on answering with a game status frozen at that moment while its
//! health checks passed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use croupier_ledger::observe::StoreObserver;
use croupier_ledger::retention::{HousekeepReport, RetentionPolicy};
use croupier_ledger::store::{BoxFuture, ErasedCommitted, ReadOp, TxOp, WriteFailure};
use croupier_ledger::test_store::TestLedger;
use croupier_ledger::{Idempotency, LedgerError, Store};
use croupier_web::wire::ops::GameStatus;

/// A store whose first `panics` reads panic, as a bug in a loop's round would.
struct PanicsOnFirstReads {
    inner: Arc<dyn Store>,
    panics: AtomicU32,
}

impl Store for PanicsOnFirstReads {
    fn transact_erased(
        &self,
        idempotency: Option<Idempotency>,
        op: TxOp,
    ) -> BoxFuture<'_, Result<ErasedCommitted, WriteFailure>> {
        self.inner.transact_erased(idempotency, op)
    }

    fn read_boxed(&self, op: ReadOp) -> BoxFuture<'_, Result<(), LedgerError>> {
        let take = |left: u32| left.checked_sub(1);
        if let Ok(left) = self
            .panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
        {
            panic!("injected panic in a background read ({left} were left)");
        }
        self.inner.read_boxed(op)
    }

    fn ready(&self) -> BoxFuture<'_, Result<bool, LedgerError>> {
        self.inner.ready()
    }

    fn housekeep(
        &self,
        policy: RetentionPolicy,
    ) -> BoxFuture<'_, Result<HousekeepReport, LedgerError>> {
        self.inner.housekeep(policy)
    }

    fn observe(&self, observer: Arc<dyn StoreObserver>) {
        self.inner.observe(observer)
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[test]
fn the_game_status_refresh_goes_on_after_rounds_that_panic() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ledger = TestLedger::new(dir.path()).unwrap();
        let inner: Arc<dyn Store> = ledger.open().unwrap();
        inner
            .transact(None, |tx| tx.set_game_status("slot", "maintenance"))
            .await
            .unwrap();
        // More panics than the sweep's first rounds take: the refresh meets one at least.
        let store = Arc::new(PanicsOnFirstReads {
            inner,
            panics: AtomicU32::new(4),
        });
        let state = common::demo_state(store.clone(), &dir.path().join("keys"), "n1");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let serving = croupier_node::serve(listener, state.clone(), std::future::pending(), None);
        let serving = tokio::spawn(serving);
        let deadline = Instant::now() + Duration::from_secs(15);
        let seen = loop {
            let status = state.game_status.read().get("slot").copied();
            if status.is_some() || Instant::now() > deadline {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            store.panics.load(Ordering::SeqCst),
            0,
            "the panics happened"
        );
        assert_eq!(
            seen,
            Some(GameStatus::Maintenance),
            "the refresh stopped after a panic"
        );
        serving.abort();
    });
}
