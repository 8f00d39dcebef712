//! The scheduler the control plane runs, on a real ledger and a real folder: a full backup
//! on an empty target, an incremental a day later, a full a week later, restore tests when
//! due, and health that turns to failed when a piece is damaged and to overdue when tests stop.

use std::path::Path;
use std::sync::Arc;

use croupier_backup::plan::DAY_MS;
use croupier_backup::{
    BackupHealth, BackupKey, BackupScheduler, Catalog, Pin, Policy, SchedulerConfig, cut::now_ms,
};
use croupier_games::GameId;
use croupier_ledger::sqlite::{SqliteConfig, SqliteStore};
use croupier_ledger::{Idempotency, Store};
use croupier_node::rounds::{self, NewRound, SESSION_TTL_MS};
use serde_json::json;

const HOUR_MS: i64 = 3_600_000;

fn play(runtime: &tokio::runtime::Runtime, store: &Arc<dyn Store>, from: u64, bets: u64) {
    for n in from..from + bets {
        let bet = json!({"target": 5000, "direction": "over"});
        let new = NewRound {
            id: rounds::new_round_id(),
            player: "p0".into(),
            stake: 10,
            bet: croupier_games::parse_bet(GameId::Dice, 10, bet).unwrap(),
            node: "test".into(),
        };
        let idem = Idempotency {
            key: format!("p0:{n}"),
            fingerprint: n.to_string(),
        };
        runtime
            .block_on(store.transact(Some(idem), move |tx| rounds::start_round(tx, &new)))
            .unwrap();
    }
}

fn config(dir: &Path) -> SchedulerConfig {
    SchedulerConfig {
        db: dir.join("ledger.db"),
        target: dir.join("backups").to_string_lossy().into_owned(),
        policy: Policy::default(),
        verify_every_ms: HOUR_MS,
        scratch_dir: dir.join("scratch"),
        session_ttl_ms: SESSION_TTL_MS,
    }
}

/// A SQLite ledger in `dir` with player p0 signed in, and a runtime to play on it.
fn ledger_with_a_player(dir: &Path) -> (tokio::runtime::Runtime, Arc<dyn Store>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.join("ledger.db"))).unwrap());
    runtime
        .block_on(store.transact(None, |tx| rounds::sign_in(tx, "p0", "t0")))
        .unwrap();
    (runtime, store)
}

#[test]
fn scheduler_takes_prunes_verifies_and_reports_health() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, store) = ledger_with_a_player(dir.path());
    play(&runtime, &store, 0, 20);
    let key = BackupKey::from_hex(&BackupKey::generate_hex().unwrap()).unwrap();
    let start = now_ms();
    let mut scheduler = BackupScheduler::new(config(dir.path()), key, start).unwrap();
    assert_eq!(scheduler.health(start), BackupHealth::Pending);

    let first = scheduler.run_due(start).unwrap();
    let full = first.took.expect("a full backup on an empty target");
    assert!(full.ends_with("-full"));
    let report = first.verify.expect("the first restore test runs at once");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.backup_id.as_deref(), Some(full.as_str()));
    assert!(matches!(scheduler.health(start), BackupHealth::Ok { .. }));

    // Within the hour: nothing due.
    let quiet = scheduler.run_due(start + HOUR_MS / 2).unwrap();
    assert!(quiet.took.is_none() && quiet.verify.is_none());

    // A day later: an incremental, and a restore test that goes through it.
    play(&runtime, &store, 20, 10);
    let day = scheduler.run_due(start + DAY_MS + 60_000).unwrap();
    let incremental = day.took.expect("an incremental a day later");
    assert!(incremental.ends_with("-incr"));
    let report = day.verify.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.backup_id.as_deref(), Some(incremental.as_str()));
    assert_eq!(report.state.unwrap().counts.rounds, 30);

    // Overdue when no restore test passed in twice the interval.
    assert!(matches!(
        scheduler.health(start + DAY_MS + 3 * HOUR_MS),
        BackupHealth::Overdue { .. }
    ));

    // A damaged piece of the full backup (every incremental needs it): the next restore test
    // fails, and health says so.
    let target = scheduler.target();
    let catalog = Catalog::load(target).unwrap();
    let piece = catalog
        .backups
        .iter()
        .find(|b| b.id == full)
        .unwrap()
        .objects
        .iter()
        .find(|o| o.ends_with("piece-0000"))
        .unwrap()
        .clone();
    target.put(&piece, b"garbage".to_vec()).unwrap();
    let failed = scheduler.run_due(start + DAY_MS + 2 * HOUR_MS).unwrap();
    let report = failed.verify.unwrap();
    assert!(!report.ok);
    assert!(
        report.reason.as_deref().unwrap().contains("piece-0000"),
        "{report:?}"
    );
    assert!(matches!(
        scheduler.health(start + DAY_MS + 2 * HOUR_MS),
        BackupHealth::Failed { .. }
    ));

    // A week later: a new full backup; the restore test passes again.
    let week = scheduler.run_due(start + 7 * DAY_MS + HOUR_MS).unwrap();
    assert!(week.took.unwrap().ends_with("-full"));
    assert!(week.verify.unwrap().ok);
}

#[test]
fn a_pinned_scheduler_fails_the_restore_test_of_a_rolled_back_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, store) = ledger_with_a_player(dir.path());
    play(&runtime, &store, 0, 10);
    let key = BackupKey::from_hex(&BackupKey::generate_hex().unwrap()).unwrap();
    let start = now_ms();
    let mut scheduler = BackupScheduler::new(config(dir.path()), key, start).unwrap();
    assert!(scheduler.run_due(start).unwrap().verify.unwrap().ok);
    // The control plane pinned a state the repository no longer holds (its newest pieces
    // were removed): the next restore test fails as a rollback, and health says so.
    let restored = scheduler.last_verify().unwrap().state.clone().unwrap();
    scheduler.pin(Pin {
        last_seq: restored.last_seq + 5,
        cut_ms: 0,
    });
    let later = start + 2 * HOUR_MS;
    let report = scheduler.run_due(later).unwrap().verify.unwrap();
    assert!(!report.ok);
    assert!(report.reason.unwrap().starts_with("rollback"));
    assert!(matches!(
        scheduler.health(later),
        BackupHealth::Failed { .. }
    ));
}

#[test]
fn a_backup_that_fails_is_backup_failed_until_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let key = BackupKey::from_hex(&BackupKey::generate_hex().unwrap()).unwrap();
    let start = now_ms();
    // No ledger file yet: the full backup the schedule takes fails.
    let mut scheduler = BackupScheduler::new(config(dir.path()), key, start).unwrap();
    let error = scheduler.run_due(start).unwrap_err().to_string();
    assert!(error.contains("no ledger file"), "{error}");
    match scheduler.health(start) {
        BackupHealth::BackupFailed { reason, .. } => assert_eq!(reason, error),
        other => panic!("not backup_failed: {other:?}"),
    }
    // The ledger is there again: the backup and its restore test pass, and health says so.
    let (runtime, store) = ledger_with_a_player(dir.path());
    play(&runtime, &store, 0, 3);
    let later = start + 1000;
    let outcome = scheduler.run_due(later).unwrap();
    assert!(outcome.took.is_some() && outcome.verify.unwrap().ok);
    assert!(matches!(scheduler.health(later), BackupHealth::Ok { .. }));
}
