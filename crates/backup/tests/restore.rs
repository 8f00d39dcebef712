//! Backups of a real ledger written through the store while bets run: full and incremental
//! backups, shipped segments, restores to the newest state and to chosen instants, and every
//! kind of damage to the stored pieces named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use croupier_backup::manifest::{manifest_name, piece_name};
use croupier_backup::{
    BackupError, BackupKey, Catalog, Manifest, Pin, Shipper, Silent, Target, restore, take_full,
    take_incremental, verify,
};
use croupier_games::GameId;
use croupier_ledger::sqlite::{SqliteConfig, SqliteStore};
use croupier_ledger::{Idempotency, Store};
use croupier_node::rounds::{self, NewRound, SESSION_TTL_MS};
use rusqlite::Connection;
use serde_json::json;

struct Ledger {
    runtime: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    db: PathBuf,
}

impl Ledger {
    fn open(dir: &Path, players: usize) -> Ledger {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let db = dir.join("ledger.db");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(SqliteConfig::new(&db)).unwrap());
        for p in 0..players {
            runtime
                .block_on(store.transact(None, move |tx| {
                    rounds::sign_in(tx, &format!("p{p}"), &format!("t{p}"))
                }))
                .unwrap();
        }
        Ledger { runtime, store, db }
    }

    fn bet(&self, player: usize, n: u64) {
        let bet = json!({"target": 5000, "direction": "over"});
        let new = NewRound {
            id: rounds::new_round_id(),
            player: format!("p{player}"),
            stake: 10,
            bet: croupier_games::parse_bet(GameId::Dice, 10, bet).unwrap(),
            node: "test".into(),
        };
        let idem = Idempotency {
            key: format!("p{player}:{n}"),
            fingerprint: n.to_string(),
        };
        self.runtime
            .block_on(
                self.store
                    .transact(Some(idem), move |tx| rounds::start_round(tx, &new)),
            )
            .unwrap();
    }

    fn rotate(&self, player: usize) {
        self.runtime
            .block_on(self.store.transact(None, move |tx| {
                rounds::rotate_seed(tx, &format!("p{player}"), None)
            }))
            .unwrap();
    }

    fn balances(&self) -> BTreeMap<String, i64> {
        balances_of(&self.db)
    }
}

fn balances_of(db: &Path) -> BTreeMap<String, i64> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT account, balance FROM balances")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every row of the tables a restore must bring back, as text, for exact comparison.
fn rows_of(db: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let conn = Connection::open(db).unwrap();
    let mut all = BTreeMap::new();
    for (table, order) in [
        ("journal", "seq"),
        ("balances", "account"),
        ("rounds", "id"),
        ("seeds", "id"),
        ("players", "id"),
        ("sessions", "token_hash"),
        ("idempotency", "key"),
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
            .unwrap();
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let values: Vec<String> = (0..columns)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect();
                Ok(values.join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        all.insert(table, rows);
    }
    all
}

fn key() -> BackupKey {
    BackupKey::from_hex(&BackupKey::generate_hex().unwrap()).unwrap()
}

/// Bets from a background thread until stopped.
struct Play {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Play {
    fn start(ledger: Arc<Ledger>, players: usize, first: u64) -> Play {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = first;
            while !flag.load(Ordering::Relaxed) {
                ledger.bet((n as usize) % players, n);
                n += 1;
            }
            n
        });
        Play {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn backup_under_play_restores_exactly_and_to_chosen_instants() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path(), 6));
    let target = Target::open(dir.path().join("backups").to_str().unwrap()).unwrap();
    let key = key();

    let play = Play::start(ledger.clone(), 6, 0);
    std::thread::sleep(Duration::from_millis(300));
    let full = take_full(&ledger.db, &target, &key, &Silent).unwrap();
    let mut shipper = Shipper::resume(&ledger.db, &target, &key, SESSION_TTL_MS).unwrap();
    let mut n = play.stop();
    assert!(full.state.counts.rounds > 0, "bets ran before the snapshot");

    // Three instants: play, ship under play, stop, ship the quiet state, record it.
    let mut instants = Vec::new();
    for i in 0..3 {
        let play = Play::start(ledger.clone(), 6, n);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(150));
            shipper.ship_once(&target, &key).unwrap();
        }
        n = play.stop();
        ledger.rotate(i);
        std::thread::sleep(Duration::from_millis(5));
        shipper
            .ship_once(&target, &key)
            .unwrap()
            .expect("changes shipped");
        std::thread::sleep(Duration::from_millis(5));
        instants.push((croupier_backup::cut::now_ms(), rows_of(&ledger.db)));
        std::thread::sleep(Duration::from_millis(5));
    }

    for (i, (at, expected)) in instants.iter().enumerate() {
        let dest = dir.path().join(format!("pitr-{i}.db"));
        let restored = restore(&target, &key, &dest, Some(*at), &Silent).unwrap();
        assert!(restored.cut_ms <= *at);
        assert_eq!(&rows_of(&dest), expected, "instant {i}");
    }
    let newest = dir.path().join("newest.db");
    let restored = restore(&target, &key, &newest, None, &Silent).unwrap();
    assert_eq!(rows_of(&newest), instants[2].1);
    assert_eq!(balances_of(&newest), ledger.balances());
    assert!(restored.segments_applied >= 4);
    let report =
        croupier_ledger::sqlite::check_integrity(&Connection::open(&newest).unwrap(), "EUR")
            .unwrap();
    assert!(report.ok, "{report:?}");

    // The snapshot alone: exactly the source at the snapshot's cut.
    let at_snapshot = dir.path().join("at-snapshot.db");
    let restored = restore(&target, &key, &at_snapshot, Some(full.cut_ms), &Silent).unwrap();
    assert_eq!(restored.cut_ms, full.cut_ms);
    assert_eq!(restored.state, full.state);

    // Never over an existing store.
    assert!(matches!(
        restore(&target, &key, &newest, None, &Silent),
        Err(BackupError::TargetExists(_))
    ));

    let report = verify(&target, &key, dir.path(), None, None, &Silent);
    assert!(report.ok, "{report:?}");
    assert_eq!(report.cut_ms, Some(restored_cut(&target, &key)));
    assert!(report.rpo_seconds.unwrap() < 60.0);
}

fn restored_cut(target: &Target, key: &BackupKey) -> i64 {
    let catalog = Catalog::load(target).unwrap();
    let last = catalog.segments.last().unwrap();
    croupier_backup::ship::load_segment(target, key, &last.name)
        .unwrap()
        .cut_ms
}

#[test]
fn incremental_backup_restores_the_state_at_its_cut() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 3);
    let target = Target::open(dir.path().join("backups").to_str().unwrap()).unwrap();
    let key = key();
    for n in 0..30 {
        ledger.bet(n % 3, n as u64);
    }
    let full = take_full(&ledger.db, &target, &key, &Silent).unwrap();
    for n in 30..80 {
        ledger.bet(n % 3, n as u64);
    }
    ledger.rotate(1);
    let incremental = take_incremental(&ledger.db, &target, &key, SESSION_TTL_MS).unwrap();
    assert_eq!(incremental.parent.as_deref(), Some(full.id.as_str()));
    assert_eq!(incremental.first_seq, full.last_seq + 1);
    let expected = rows_of(&ledger.db);
    for n in 80..90 {
        ledger.bet(n % 3, n as u64);
    }
    let dest = dir.path().join("restored.db");
    let restored = restore(&target, &key, &dest, None, &Silent).unwrap();
    assert_eq!(restored.backup_id, incremental.id);
    assert_eq!(rows_of(&dest), expected);
}

/// A store with a full backup and two segments after it.
fn backed_up(dir: &Path, key: &BackupKey) -> (Target, Manifest, Vec<String>) {
    let ledger = Ledger::open(dir, 2);
    let target = Target::open(dir.join("backups").to_str().unwrap()).unwrap();
    for n in 0..20 {
        ledger.bet(n % 2, n as u64);
    }
    let full = take_full(&ledger.db, &target, key, &Silent).unwrap();
    let mut shipper = Shipper::resume(&ledger.db, &target, key, SESSION_TTL_MS).unwrap();
    let mut segments = Vec::new();
    for round in 0..2 {
        for n in 0..5 {
            ledger.bet(n % 2, 100 + round * 10 + n as u64);
        }
        std::thread::sleep(Duration::from_millis(3));
        segments.push(shipper.ship_once(&target, key).unwrap().unwrap().name);
    }
    (target, full, segments)
}

fn object_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("backups").join(name)
}

fn restore_err(dir: &Path, target: &Target, key: &BackupKey) -> BackupError {
    let dest = dir.join(format!("r-{}.db", rounds::random_hex(4)));
    let err = restore(target, key, &dest, None, &Silent).unwrap_err();
    assert!(!dest.exists(), "a failed restore leaves no store behind");
    err
}

#[test]
fn each_kind_of_damage_is_caught_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let (target, full, segments) = backed_up(dir.path(), &key);
    let piece = object_path(dir.path(), &piece_name(&full.id, 0));
    let original = std::fs::read(&piece).unwrap();

    // Wrong key.
    let err = restore_err(dir.path(), &target, &self::key());
    assert!(matches!(err, BackupError::WrongKey { .. }), "{err}");

    // A flipped byte in a piece.
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x40;
    std::fs::write(&piece, &flipped).unwrap();
    let err = restore_err(dir.path(), &target, &key);
    assert!(
        matches!(&err, BackupError::CorruptPiece { name, .. } if name.ends_with("piece-0000")),
        "{err}"
    );

    // A truncated piece.
    std::fs::write(&piece, &original[..original.len() - 100]).unwrap();
    let err = restore_err(dir.path(), &target, &key);
    assert!(matches!(err, BackupError::TruncatedPiece { .. }), "{err}");

    // A missing piece.
    std::fs::remove_file(&piece).unwrap();
    let err = restore_err(dir.path(), &target, &key);
    assert!(
        matches!(&err, BackupError::MissingPiece { name } if name.ends_with("piece-0000")),
        "{err}"
    );
    std::fs::write(&piece, &original).unwrap();

    // A missing segment in the middle of the chain.
    let first_segment = object_path(dir.path(), &segments[0]);
    let saved = std::fs::read(&first_segment).unwrap();
    std::fs::remove_file(&first_segment).unwrap();
    let err = restore_err(dir.path(), &target, &key);
    assert!(matches!(err, BackupError::SegmentGap { .. }), "{err}");
    std::fs::write(&first_segment, &saved).unwrap();

    // A flipped byte in the manifest.
    let manifest_path = object_path(dir.path(), &manifest_name(&full.id));
    let manifest_bytes = std::fs::read(&manifest_path).unwrap();
    let mut flipped = manifest_bytes.clone();
    *flipped.last_mut().unwrap() ^= 1;
    std::fs::write(&manifest_path, &flipped).unwrap();
    let err = restore_err(dir.path(), &target, &key);
    assert!(
        matches!(&err, BackupError::CorruptPiece { name, .. } if name.ends_with("manifest")),
        "{err}"
    );

    // A manifest (validly sealed) whose chain head is not the data's.
    let mut forged = full.clone();
    forged.state.chain_head = "0".repeat(64);
    forged.store(&target, &key).unwrap();
    let err = restore_err(dir.path(), &target, &key);
    assert!(
        matches!(&err, BackupError::Mismatch { what, .. } if what.contains("hash-chain head")),
        "{err}"
    );
    std::fs::write(&manifest_path, &manifest_bytes).unwrap();

    // Whole again: the restore goes through, and verify says so.
    let report = verify(&target, &key, dir.path(), None, None, &Silent);
    assert!(report.ok, "{report:?}");
    assert_eq!(report.segments_applied, 2);
    let broken = verify(&target, &self::key(), dir.path(), None, None, &Silent);
    assert!(!broken.ok);
    assert!(broken.reason.unwrap().contains("another key"));
}

#[test]
fn a_repository_missing_its_newest_segment_fails_a_pinned_verify_as_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let ledger = Ledger::open(dir.path(), 2);
    let target = Target::open(dir.path().join("backups").to_str().unwrap()).unwrap();
    for n in 0..10 {
        ledger.bet(n % 2, n as u64);
    }
    take_full(&ledger.db, &target, &key, &Silent).unwrap();
    let mut shipper = Shipper::resume(&ledger.db, &target, &key, SESSION_TTL_MS).unwrap();
    let mut newest = None;
    for round in 0..2 {
        for n in 0..5 {
            ledger.bet(n % 2, 100 + round * 10 + n as u64);
        }
        std::thread::sleep(Duration::from_millis(3));
        newest = shipper.ship_once(&target, &key).unwrap();
    }
    let newest = newest.unwrap();
    let pin = Pin {
        last_seq: newest.last_seq,
        cut_ms: newest.cut_ms,
    };
    let whole = verify(&target, &key, dir.path(), None, Some(&pin), &Silent);
    assert!(whole.ok, "{whole:?}");

    // Whoever can write the repository removes its newest segment: the rest still restores,
    // chains and keeps every invariant, only older. Unpinned, verify calls that a success.
    std::fs::remove_file(object_path(dir.path(), &newest.name)).unwrap();
    let unpinned = verify(&target, &key, dir.path(), None, None, &Silent);
    assert!(unpinned.ok && unpinned.state.unwrap().last_seq < pin.last_seq);
    let pinned = verify(&target, &key, dir.path(), None, Some(&pin), &Silent);
    assert!(!pinned.ok);
    let reason = pinned.reason.unwrap();
    assert!(reason.starts_with("rollback"), "{reason}");
}

impl Ledger {
    /// Starts a blackjack hand; its status afterwards ("open" unless dealt a natural).
    fn deal(&self, player: usize, id: &str) -> String {
        let new = NewRound {
            id: id.to_owned(),
            player: format!("p{player}"),
            stake: 10,
            bet: croupier_games::parse_bet(GameId::Blackjack, 10, json!(null)).unwrap(),
            node: "test".into(),
        };
        let answer = self
            .runtime
            .block_on(
                self.store
                    .transact(None, move |tx| rounds::start_round(tx, &new)),
            )
            .unwrap();
        answer.value().round.status.as_str().to_owned()
    }

    fn hit(&self, player: usize, id: &str) -> String {
        let id = id.to_owned();
        let answer = self
            .runtime
            .block_on(self.store.transact(None, move |tx| {
                rounds::act(
                    tx,
                    &format!("p{player}"),
                    &id,
                    croupier_games::blackjack::Action::Hit,
                    "test",
                )
            }))
            .unwrap();
        answer.value().round.status.as_str().to_owned()
    }
}

#[test]
fn an_open_blackjack_hand_is_restored_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 1);
    let target = Target::open(dir.path().join("backups").to_str().unwrap()).unwrap();
    let key = key();
    take_full(&ledger.db, &target, &key, &Silent).unwrap();
    let mut shipper = Shipper::resume(&ledger.db, &target, &key, SESSION_TTL_MS).unwrap();
    let mut checked = Vec::new();
    let mut hit_and_still_open = false;
    for hand in 0..40 {
        let id = rounds::new_round_id();
        std::thread::sleep(Duration::from_millis(2));
        let dealt = ledger.deal(0, &id);
        std::thread::sleep(Duration::from_millis(2));
        shipper.ship_once(&target, &key).unwrap();
        checked.push((croupier_backup::cut::now_ms(), rows_of(&ledger.db)));
        if dealt != "open" {
            continue; // a natural: settled at once
        }
        // A hit moves no money while the hand stays open: only the round's state changes.
        let mut status = ledger.hit(0, &id);
        while status == "open" {
            hit_and_still_open = true;
            std::thread::sleep(Duration::from_millis(2));
            shipper.ship_once(&target, &key).unwrap();
            checked.push((croupier_backup::cut::now_ms(), rows_of(&ledger.db)));
            status = ledger.hit(0, &id);
        }
        if hit_and_still_open && hand >= 3 {
            break;
        }
    }
    assert!(hit_and_still_open, "no hand stayed open after a hit");
    for (i, (at, expected)) in checked.iter().enumerate() {
        let dest = dir.path().join(format!("step-{i}.db"));
        restore(&target, &key, &dest, Some(*at), &Silent).unwrap();
        assert_eq!(&rows_of(&dest), expected, "step {i}");
    }
}
