//! For bench/backup.sh: `fill-ledger` writes a large ledger (real dice rounds through the
//! store, group-committed, so it passes every invariant) quickly; `backup-rpo` measures the
//! data age of the shipped backups while a real node takes a steady bet load.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use croupier_ledger::sqlite::{SqliteConfig, SqliteStore};
use croupier_ledger::{Store, StoreLocation};
use serde_json::Value;

use crate::procs::{Process, croupier_binary, free_port, start_node};
use crate::report::new_histogram;
use crate::steady::SteadyBets;

/// Plays `rounds` dice rounds from `players` players straight into the store at `db`.
pub fn fill(db: &StoreLocation, rounds: u64, players: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let store: Arc<dyn Store> = match db {
        StoreLocation::Sqlite(path) => {
            let mut config = SqliteConfig::new(path);
            config.max_batch = 2048;
            Arc::new(SqliteStore::open(config)?)
        }
        StoreLocation::Postgres(_) => db.open("EUR")?,
    };
    let started = Instant::now();
    runtime.block_on(async {
        crate::store::sign_in_players(store.as_ref(), players).await?;
        let per_player = rounds.div_ceil(players as u64);
        let tasks: Vec<_> = (0..players)
            .map(|p| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0..per_player {
                        crate::store::dice_round(store.as_ref(), p, n, "fill").await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    })?;
    eprintln!(
        "filled {db} with {rounds} rounds in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The cut of the newest shipped segment in a local backup folder.
fn newest_cut(target: &Path) -> Option<i64> {
    std::fs::read_dir(target.join("segments"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".seg")?
                .parse::<i64>()
                .ok()
        })
        .max()
}

fn backup_command(binary: &Path, key: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("backup")
        .env("CROUPIER_BACKUP_KEY_FILE", key)
        .env("RUST_LOG", "warn");
    command
}

/// Steady bets at `rate` per second through a real node for `seconds`, shipping every
/// second; samples the data age (now minus the newest shipped cut) every 100 ms.
pub fn rpo(seconds: u64, rate: u64, croupier: Option<PathBuf>) -> anyhow::Result<()> {
    let binary = croupier_binary(croupier)?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let _node = start_node(&binary, dir.path(), port, "bench")?;
    let base = format!("http://127.0.0.1:{port}");
    let (key, target) = (dir.path().join("key"), dir.path().join("backups"));
    let db = dir.path().join("ledger.db");
    anyhow::ensure!(
        Command::new(&binary)
            .args(["backup", "keygen", "--out"])
            .arg(&key)
            .stdout(Stdio::null())
            .status()?
            .success()
    );
    anyhow::ensure!(
        backup_command(&binary, &key)
            .args(["snapshot", "--db"])
            .arg(&db)
            .arg("--target")
            .arg(&target)
            .stdout(Stdio::null())
            .status()?
            .success(),
        "snapshot failed"
    );
    let mut shipper = Process(
        backup_command(&binary, &key)
            .args(["ship", "--db"])
            .arg(&db)
            .arg("--target")
            .arg(&target)
            .args(["--seconds", &(seconds + 3).to_string()])
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let load = SteadyBets::start(&base, "p", 8, rate)?;
    // Let the shipper start, then sample.
    std::thread::sleep(Duration::from_secs(2));
    let mut ages = new_histogram();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if let Some(cut) = newest_cut(&target) {
            ages.record((now_ms() - cut).max(0) as u64)?;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let bets = load.stop().sent;
    let mut out = String::new();
    std::io::Read::read_to_string(
        shipper.0.stdout.as_mut().context("the shipper's output")?,
        &mut out,
    )?;
    anyhow::ensure!(shipper.0.wait()?.success(), "the shipper failed: {out}");
    let shipped: Value = serde_json::from_str(&out)?;
    println!(
        "rpo_bets_per_second {:.0}\nrpo_samples {}\nrpo_p50_ms {}\nrpo_p99_ms {}\nrpo_max_ms {}",
        bets as f64 / (seconds + 2) as f64,
        ages.len(),
        ages.value_at_quantile(0.5),
        ages.value_at_quantile(0.99),
        ages.max()
    );
    println!(
        "segments {}\ncut_write_lock_held_us_p50 {}\ncut_write_lock_held_us_max {}",
        shipped["segments"], shipped["lock_held_us_p50"], shipped["lock_held_us_max"]
    );
    // Restore + verify of that backup: the snapshot and every segment shipped since.
    let verify = backup_command(&binary, &key)
        .args(["verify", "--target"])
        .arg(&target)
        .arg("--scratch")
        .arg(dir.path())
        .output()?;
    let report: Value = serde_json::from_slice(&verify.stdout)?;
    anyhow::ensure!(report["ok"] == true, "verify failed: {report}");
    println!(
        "verify_segments_applied {}\nverify_rto_ms {}\nverify_rounds {}",
        report["segments_applied"], report["rto_ms"], report["state"]["counts"]["rounds"]
    );
    Ok(())
}
