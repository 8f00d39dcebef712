//! Whole-process backups: a real node takes bets from several threads while `croupier backup
//! snapshot` and `croupier backup ship` run; restores to the newest state and to three chosen
//! instants equal the source there, pass every invariant, and damaged pieces are named. The
//! same against a real S3-compatible server (moto) started by the test.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use croupier_ledger::Store;
use croupier_ledger::sqlite::{SqliteConfig, SqliteStore};
use serde_json::Value;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The source read through the ledger crate: every balance, and the balances the journal
/// gives after entry `upto` (all when `None`).
struct Source {
    runtime: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
}

impl Source {
    fn open(db: &Path) -> Source {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(SqliteConfig::new(db)).unwrap());
        Source { runtime, store }
    }

    fn balances(&self) -> BTreeMap<String, i64> {
        let all = self
            .runtime
            .block_on(self.store.read(|tx| tx.all_balances()))
            .unwrap();
        all.into_iter().map(|(a, _, b)| (a, b)).collect()
    }

    fn balances_after(&self, upto: i64) -> BTreeMap<String, i64> {
        self.runtime
            .block_on(self.store.read(move |tx| {
                let mut balances = BTreeMap::new();
                tx.for_each_entry(&mut |e| {
                    if e.seq <= upto {
                        *balances.entry(e.debit.to_string()).or_insert(0) -= e.amount;
                        *balances.entry(e.credit.to_string()).or_insert(0) += e.amount;
                    }
                    Ok(())
                })?;
                Ok(balances)
            }))
            .unwrap()
    }
}

fn restored_balances(db: &Path) -> BTreeMap<String, i64> {
    Source::open(db).balances()
}

fn backup(args: &[&str], key_file: &Path, envs: &[(&str, String)]) -> Output {
    let mut command = croupier();
    command
        .arg("backup")
        .args(args)
        .env("CROUPIER_BACKUP_KEY_FILE", key_file)
        .env("RUST_LOG", "warn");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn ok_json(output: Output) -> Value {
    assert!(
        output.status.success(),
        "croupier backup failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn failure(output: Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn keygen(dir: &Path) -> PathBuf {
    let key = dir.join("backup.key");
    let output = croupier()
        .args(["backup", "keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(output.status.success());
    key
}

/// Bets from one thread per player until stopped; a pause (the write side of the lock)
/// waits for bets in flight and holds new ones back.
struct Play {
    stop: Arc<AtomicBool>,
    gate: Arc<RwLock<()>>,
    threads: Vec<thread::JoinHandle<u64>>,
}

impl Play {
    fn start(node: &Node, players: &[&str]) -> Play {
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(RwLock::new(()));
        let threads = players
            .iter()
            .map(|player| {
                let token = sign_in(node, player);
                let (stop, gate, base) = (stop.clone(), gate.clone(), node.base.clone());
                let player = player.to_string();
                thread::spawn(move || {
                    let mut bets = 0;
                    for i in 0..20_000 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let _open = gate.read();
                        let (status, body) = post(
                            &format!("{base}/api/v1/rounds"),
                            Some(&token),
                            Some(&format!("{player}-{i}")),
                            &dice_bet(10),
                        )
                        .unwrap();
                        assert_eq!(status, 201, "{body}");
                        bets += 1;
                    }
                    bets
                })
            })
            .collect();
        Play {
            stop,
            gate,
            threads,
        }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.threads.into_iter().map(|t| t.join().unwrap()).sum()
    }
}

fn wait_exit(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the shipper did not stop in time");
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(child.wait().unwrap().success(), "the shipper failed");
}

#[test]
fn backup_under_live_play_restores_and_points_in_time_match_the_source() {
    if sqlite_only(
        "croupier backup ships and restores a SQLite ledger; a PostgreSQL ledger is backed up by pgBackRest",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let node = Node::start(data, "n1");
    let db = ledger_path(data);
    let db_arg = db.to_str().unwrap();
    let target = data.join("backups");
    let target_arg = target.to_str().unwrap();
    let key = keygen(data);
    let play = Play::start(&node, &["alice", "bob", "carol"]);
    thread::sleep(Duration::from_millis(500));

    let snapshot = ok_json(backup(
        &["snapshot", "--db", db_arg, "--target", target_arg],
        &key,
        &[],
    ));
    let mut shipper = croupier()
        .args(["backup", "ship", "--db", db_arg, "--target", target_arg])
        .args(["--every-ms", "250", "--seconds", "13"])
        .env("CROUPIER_BACKUP_KEY_FILE", &key)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let source = Source::open(&db);
    let mut instants = Vec::new();
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(1500));
        let paused = play.gate.write();
        // A quiet second: the shipper cuts at least once after the last bet.
        thread::sleep(Duration::from_millis(1000));
        instants.push((now_ms(), source.balances()));
        thread::sleep(Duration::from_millis(20));
        drop(paused);
    }
    thread::sleep(Duration::from_millis(500));
    let bets = play.stop();
    assert!(bets > 30, "only {bets} bets were played");
    wait_exit(&mut shipper, Duration::from_secs(30));
    let final_balances = source.balances();

    // Newest: every bet acknowledged before the last cut, every invariant.
    let newest = data.join("restored/newest.db");
    let restored = ok_json(backup(
        &[
            "restore",
            "--target",
            target_arg,
            "--into",
            newest.to_str().unwrap(),
        ],
        &key,
        &[],
    ));
    assert!(restored["segments_applied"].as_u64().unwrap() >= 3);
    integrity_cli(&newest);
    assert_eq!(restored_balances(&newest), final_balances);

    // Three chosen instants.
    for (i, (at, expected)) in instants.iter().enumerate() {
        let dest = data.join(format!("restored/at-{i}.db"));
        let out = ok_json(backup(
            &[
                "restore",
                "--target",
                target_arg,
                "--into",
                dest.to_str().unwrap(),
                "--at",
                &at.to_string(),
            ],
            &key,
            &[],
        ));
        assert!(out["cut_ms"].as_i64().unwrap() <= *at);
        integrity_cli(&dest);
        assert_eq!(&restored_balances(&dest), expected, "instant {i}");
    }

    // The snapshot alone, taken under play: the source as it was at its last entry.
    let at_snapshot = data.join("restored/snapshot.db");
    let out = ok_json(backup(
        &[
            "restore",
            "--target",
            target_arg,
            "--into",
            at_snapshot.to_str().unwrap(),
            "--at",
            &snapshot["cut_ms"].to_string(),
        ],
        &key,
        &[],
    ));
    assert_eq!(out["backup_id"], snapshot["id"]);
    integrity_cli(&at_snapshot);
    let last_seq = snapshot["journal"][1].as_i64().unwrap();
    assert_eq!(
        restored_balances(&at_snapshot),
        source.balances_after(last_seq)
    );

    // Verify reports RTO and RPO; damage and misuse are refused with named causes.
    let scratch = data.join("scratch");
    let report = ok_json(backup(
        &[
            "verify",
            "--target",
            target_arg,
            "--scratch",
            scratch.to_str().unwrap(),
        ],
        &key,
        &[],
    ));
    assert_eq!(report["ok"], true);
    assert!(report["rto_ms"].as_u64().is_some());
    assert!(report["rpo_seconds"].as_f64().is_some());
    // A pin past what the repository holds (entries shipped, then removed) is a rollback.
    let restored_seq = report["state"]["last_seq"].as_i64().unwrap();
    let pinned = (restored_seq + 1).to_string();
    let rolled_back = failure(backup(
        &[
            "verify",
            "--target",
            target_arg,
            "--scratch",
            scratch.to_str().unwrap(),
            "--pinned-seq",
            &pinned,
        ],
        &key,
        &[],
    ));
    assert!(rolled_back.contains("rollback"), "{rolled_back}");
    let again = failure(backup(
        &[
            "restore",
            "--target",
            target_arg,
            "--into",
            newest.to_str().unwrap(),
        ],
        &key,
        &[],
    ));
    assert!(again.contains("already exists"), "{again}");
    let other_key = data.join("other.key");
    let output = croupier()
        .args(["backup", "keygen", "--out"])
        .arg(&other_key)
        .output()
        .unwrap();
    assert!(output.status.success());
    let wrong = failure(backup(
        &["restore", "--target", target_arg, "--into", "x.db"],
        &other_key,
        &[],
    ));
    assert!(wrong.contains("another key"), "{wrong}");
    let id = snapshot["id"].as_str().unwrap();
    let piece = target.join(format!("backups/{id}/piece-0000"));
    let mut bytes = std::fs::read(&piece).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&piece, &bytes).unwrap();
    let verify = backup(
        &[
            "verify",
            "--target",
            target_arg,
            "--scratch",
            scratch.to_str().unwrap(),
        ],
        &key,
        &[],
    );
    let report: Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("piece-0000 is corrupt"),
        "{report}"
    );
    assert!(!verify.status.success());
    drop(node);
}

#[test]
fn backups_to_s3_compatible_storage_restore_and_verify() {
    if sqlite_only(
        "croupier backup ships and restores a SQLite ledger; a PostgreSQL ledger is backed up by pgBackRest",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let moto = Moto::start(&data.join("moto.log"));
    moto.create_bucket("croupier-backups");
    let env = [
        ("AWS_ENDPOINT", moto.endpoint.clone()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    let node = Node::start(data, "n1");
    let db = ledger_path(data);
    let db_arg = db.to_str().unwrap();
    let key = keygen(data);
    let target = "s3://croupier-backups/ledger";
    let play = Play::start(&node, &["dan", "erin"]);
    thread::sleep(Duration::from_millis(300));
    ok_json(backup(
        &["snapshot", "--db", db_arg, "--target", target],
        &key,
        &env,
    ));
    thread::sleep(Duration::from_millis(300));
    play.stop();
    let shipped = ok_json(backup(
        &["ship", "--db", db_arg, "--target", target, "--seconds", "1"],
        &key,
        &env,
    ));
    assert!(shipped["segments"].as_u64().unwrap() >= 1, "{shipped}");
    let listed = ok_json(backup(&["list", "--target", target], &key, &env));
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1, "{listed}");

    let scratch = data.join("scratch");
    let report = ok_json(backup(
        &[
            "verify",
            "--target",
            target,
            "--scratch",
            scratch.to_str().unwrap(),
        ],
        &key,
        &env,
    ));
    assert_eq!(report["ok"], true, "{report}");
    let dest = data.join("restored.db");
    ok_json(backup(
        &[
            "restore",
            "--target",
            target,
            "--into",
            dest.to_str().unwrap(),
        ],
        &key,
        &env,
    ));
    integrity_cli(&dest);
    assert_eq!(restored_balances(&dest), Source::open(&db).balances());
    drop(node);
}

#[test]
fn backup_run_takes_verifies_and_reports_and_bad_input_is_refused() {
    if sqlite_only(
        "croupier backup ships and restores a SQLite ledger; a PostgreSQL ledger is backed up by pgBackRest",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let node = Node::start(data, "n1");
    let db = ledger_path(data);
    let db_arg = db.to_str().unwrap();
    let target = data.join("backups");
    let target_arg = target.to_str().unwrap();
    let key = keygen(data);
    let token = sign_in(&node, "grace");
    for i in 0..5 {
        played(&node, &token, &format!("g{i}"), 10);
    }

    let scratch = data.join("scratch");
    let health = ok_json(backup(
        &[
            "run",
            "--db",
            db_arg,
            "--target",
            target_arg,
            "--scratch",
            scratch.to_str().unwrap(),
            "--seconds",
            "2",
        ],
        &key,
        &[],
    ));
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["last_verify"]["ok"], true);
    let listed = ok_json(backup(&["list", "--target", target_arg], &key, &[]));
    assert_eq!(listed["backups"][0]["kind"], "full", "{listed}");

    let into = data.join("never.db");
    let into_arg = into.to_str().unwrap();
    for (args, expected) in [
        (
            vec![
                "restore", "--target", target_arg, "--into", into_arg, "--at", "soon",
            ],
            "not Unix milliseconds nor an RFC 3339 time",
        ),
        (
            vec![
                "restore",
                "--target",
                target_arg,
                "--into",
                into_arg,
                "--at",
                "2000-01-01T00:00:00Z",
            ],
            "no backup covers",
        ),
        (
            vec!["snapshot", "--db", "no-such.db", "--target", target_arg],
            "no ledger file at no-such.db",
        ),
        (
            vec!["list", "--target", "ftp://somewhere/x"],
            "only s3:// URLs and folder paths",
        ),
    ] {
        let message = failure(backup(&args, &key, &[]));
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    assert!(!into.exists());
    let output = croupier()
        .args(["backup", "verify", "--target", target_arg])
        .env_remove("CROUPIER_BACKUP_KEY_FILE")
        .env_remove("CROUPIER_BACKUP_KEY")
        .output()
        .unwrap();
    let message = failure(output);
    assert!(message.contains("CROUPIER_BACKUP_KEY"), "{message}");
    drop(node);
}
