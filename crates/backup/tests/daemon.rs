//! The backup daemon outlives a pass that panics: before, one panic in a schedule pass (in
//! the scheduler, or in the owner's hooks that record its news) ended the daemon's thread,
//! and backups, shipping and restore tests stopped for good while the last health it told
//! (ok) stood.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use croupier_backup::daemon::Shipping;
use croupier_backup::{
    BackupDaemon, BackupError, BackupKey, BackupScheduler, DaemonHooks, Policy, RunOutcome,
    SchedulerConfig, cut::now_ms,
};
use croupier_ledger::Store;
use croupier_ledger::sqlite::{SqliteConfig, SqliteStore};
use croupier_node::rounds::{self, SESSION_TTL_MS};
use parking_lot::Mutex;

/// Hooks whose first `ran` panics; they count the passes and keep the failures told.
#[derive(Default)]
struct PanicsOnFirstPass {
    passes: AtomicU32,
    failures: Mutex<Vec<(&'static str, String)>>,
}

impl DaemonHooks for PanicsOnFirstPass {
    fn ran(&self, _outcome: &RunOutcome) {
        let pass = self.passes.fetch_add(1, Ordering::SeqCst);
        assert!(pass > 0, "injected panic while recording the first pass");
    }

    fn failed(&self, what: &'static str, error: &BackupError) {
        self.failures.lock().push((what, error.to_string()));
    }
}

#[test]
fn a_schedule_pass_that_panics_is_a_failed_pass_and_the_next_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(SqliteConfig::new(&db)).unwrap());
    runtime
        .block_on(store.transact(None, |tx| rounds::sign_in(tx, "p0", "t0")))
        .unwrap();
    let target = dir.path().join("backups").to_string_lossy().into_owned();
    let key = BackupKey::from_hex(&BackupKey::generate_hex().unwrap()).unwrap();
    let config = SchedulerConfig {
        db: db.clone(),
        target: target.clone(),
        policy: Policy::default(),
        verify_every_ms: 3_600_000,
        scratch_dir: dir.path().join("scratch"),
        session_ttl_ms: SESSION_TTL_MS,
    };
    let scheduler = BackupScheduler::new(config, key.clone(), now_ms()).unwrap();
    let shipping = Shipping {
        db,
        target,
        key,
        session_ttl_ms: SESSION_TTL_MS,
    };
    let daemon =
        BackupDaemon::sqlite(scheduler, shipping).schedule_every(Duration::from_millis(100));
    let hooks = Arc::new(PanicsOnFirstPass::default());
    let stop = Arc::new(AtomicBool::new(false));
    let running = {
        let (hooks, stop) = (hooks.clone(), stop.clone());
        std::thread::spawn(move || daemon.run(hooks, stop))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while hooks.passes.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    let ended = running.join();
    assert!(ended.is_ok(), "the daemon's thread died of the panic");
    assert!(
        hooks.passes.load(Ordering::SeqCst) >= 3,
        "no pass after the panic"
    );
    let failures = hooks.failures.lock().clone();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "schedule");
    assert!(failures[0].1.contains("panicked"), "{failures:?}");
}
