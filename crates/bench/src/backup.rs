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
use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::procs::{Process, croupier_binary, free_port, start_node};
use crate::report::{new_histogram, or_dash};
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
    let backup = Backup {
        binary: &binary,
        key: dir.path().join("key"),
        db: dir.path().join("ledger.db"),
        target: dir.path().join("backups"),
    };
    backup.start_with_a_snapshot()?;
    let mut shipper = backup.ship_for(seconds + 3)?;
    let load = SteadyBets::start(&format!("http://127.0.0.1:{port}"), "p", 8, rate)?;
    // Let the shipper start, then sample.
    std::thread::sleep(Duration::from_secs(2));
    let ages = data_ages(&backup.target, Duration::from_secs(seconds))?;
    let bets = load.stop().sent;
    let shipped = shipped(&mut shipper)?;
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
        shipped.segments,
        or_dash(shipped.lock_held_us_p50.map(|us| us as f64), 0),
        or_dash(shipped.lock_held_us_max.map(|us| us as f64), 0)
    );
    let verified = backup.verify(dir.path())?;
    println!(
        "verify_segments_applied {}\nverify_rto_ms {}\nverify_rounds {}",
        verified.segments_applied,
        verified.rto_ms,
        verified.state.map_or(0, |state| state.counts.rounds)
    );
    Ok(())
}

/// A node's SQLite ledger `db` backed up to the folder `target` under the key file `key`.
struct Backup<'a> {
    binary: &'a Path,
    key: PathBuf,
    db: PathBuf,
    target: PathBuf,
}

impl Backup<'_> {
    /// A new key, and the full snapshot every shipped segment builds on.
    fn start_with_a_snapshot(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            Command::new(self.binary)
                .args(["backup", "keygen", "--out"])
                .arg(&self.key)
                .stdout(Stdio::null())
                .status()?
                .success(),
            "keygen failed"
        );
        anyhow::ensure!(
            self.command("snapshot")
                .stdout(Stdio::null())
                .status()?
                .success(),
            "snapshot failed"
        );
        Ok(())
    }

    /// `backup ship` for `seconds`, its summary on a pipe (`shipped`).
    fn ship_for(&self, seconds: u64) -> anyhow::Result<Process> {
        let child = self
            .command("ship")
            .args(["--seconds", &seconds.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        Ok(Process(child))
    }

    /// `backup verify` of the snapshot and every segment shipped since, restored in `scratch`.
    fn verify(&self, scratch: &Path) -> anyhow::Result<Verified> {
        let output = backup_command(self.binary, &self.key)
            .args(["verify", "--target"])
            .arg(&self.target)
            .arg("--scratch")
            .arg(scratch)
            .output()?;
        let verified: Verified = serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "verify's report: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })?;
        anyhow::ensure!(
            verified.ok,
            "verify failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        Ok(verified)
    }

    /// `backup <action> --db <db> --target <target>`.
    fn command(&self, action: &str) -> Command {
        let mut command = backup_command(self.binary, &self.key);
        command
            .args([action, "--db"])
            .arg(&self.db)
            .arg("--target")
            .arg(&self.target);
        command
    }
}

/// What `backup ship` prints when it ends.
#[derive(Deserialize)]
struct Shipped {
    segments: u64,
    /// How long the cuts held the write lock (none without a segment).
    lock_held_us_p50: Option<u64>,
    lock_held_us_max: Option<u64>,
}

/// What the benchmark reads of `backup verify`'s report.
#[derive(Deserialize)]
struct Verified {
    ok: bool,
    segments_applied: u64,
    rto_ms: u64,
    /// The restored ledger's state (absent when the verify failed).
    state: Option<VerifiedState>,
}

#[derive(Deserialize)]
struct VerifiedState {
    counts: VerifiedCounts,
}

#[derive(Deserialize)]
struct VerifiedCounts {
    rounds: u64,
}

/// The shipper's summary, once it has ended well.
fn shipped(shipper: &mut Process) -> anyhow::Result<Shipped> {
    let mut out = String::new();
    std::io::Read::read_to_string(
        shipper.0.stdout.as_mut().context("the shipper's output")?,
        &mut out,
    )?;
    anyhow::ensure!(shipper.0.wait()?.success(), "the shipper failed: {out}");
    serde_json::from_str(&out).with_context(|| format!("the shipper's summary: {out}"))
}

/// The data age (now minus the newest shipped cut in `target`), sampled every 100 ms for
/// `period`, in milliseconds.
fn data_ages(target: &Path, period: Duration) -> anyhow::Result<Histogram<u64>> {
    let mut ages = new_histogram();
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        if let Some(cut) = newest_cut(target) {
            ages.record((now_ms() - cut).max(0) as u64)?;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(ages)
}
