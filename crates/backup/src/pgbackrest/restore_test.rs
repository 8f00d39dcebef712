//! The proof of a PostgreSQL ledger's backups: `pgbackrest restore` of the newest state into
//! a scratch data folder, that cluster started on a free loopback port (archiving off, no
//! synchronous standby to wait for), recovery to the end of the archived WAL, then every
//! ledger invariant (`integrity::check`, the same code the SQLite path runs). The report is
//! the SQLite path's `VerifyReport`: RTO = restore, start, recovery and checks; RPO = the
//! newest restored journal entry against the time the test began. The scratch cluster is
//! stopped and its folder removed whatever happened.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use croupier_ledger::{IntegrityReport, StoreLocation};

use crate::cut::now_ms;
use crate::error::BackupError;
use crate::pgbackrest::process::{PgBackrest, RestoreTarget, as_owner, output_of};
use crate::state::{Counts, LedgerState};
use crate::verify::VerifyReport;

/// How long a restored cluster may take to start and finish recovery.
const RECOVERY_LIMIT: Duration = Duration::from_secs(120);

/// Where the PostgreSQL server binaries are: `CROUPIER_PG_BIN`, or the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
pub fn server_bin() -> Result<PathBuf, BackupError> {
    if let Ok(dir) = std::env::var("CROUPIER_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| BackupError::Tool {
            command: "pg_ctl".into(),
            detail: "no PostgreSQL server binaries in /usr/lib/postgresql (set CROUPIER_PG_BIN)"
                .into(),
        })
}

/// A restored cluster running from a scratch folder; stopped and removed when dropped.
pub struct ScratchCluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    user: String,
}

impl ScratchCluster {
    /// Restores `target` into a new folder under `scratch_dir` and starts it; returns once
    /// recovery is over and the cluster accepts writes.
    pub fn restore(
        pgbackrest: &PgBackrest,
        scratch_dir: &Path,
        target: &RestoreTarget,
    ) -> Result<ScratchCluster, BackupError> {
        let (port, bin) = (free_port()?, server_bin()?);
        let made_here = !scratch_dir.exists();
        std::fs::create_dir_all(scratch_dir)?;
        // A folder made here may be 0700 (the control plane's umask is 077): the cluster's
        // owner must enter it. A folder that was there is the operator's to set.
        if let (true, Some((uid, gid))) = (made_here, pgbackrest.owner()) {
            std::os::unix::fs::chown(scratch_dir, Some(uid), Some(gid))?;
        }
        // Kept past the temporary value: the cluster's `Drop` removes it.
        let dir = tempfile::Builder::new()
            .prefix(".croupier-pg-restore-")
            .tempdir_in(scratch_dir)?
            .keep();
        let cluster = ScratchCluster {
            port,
            bin,
            owner: pgbackrest.owner(),
            user: pgbackrest.config().pg_user.clone(),
            dir,
        };
        if let Some((uid, gid)) = cluster.owner {
            std::os::unix::fs::chown(&cluster.dir, Some(uid), Some(gid))?;
        }
        pgbackrest.restore(&cluster.data(), target)?;
        cluster.start()?;
        cluster.wait_promoted()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{database}",
            self.user, self.port
        )
    }

    fn tool(&self, program: &str) -> Command {
        let mut cmd = as_owner(Command::new(self.bin.join(program)), self.owner);
        cmd.env_remove("PGUSER").env_remove("PGPASSWORD");
        cmd
    }

    fn start(&self) -> Result<(), BackupError> {
        // The restored postgresql.conf is the primary's: archiving into the live repository
        // and waiting for its standby must not happen from a scratch copy.
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c archive_mode=off -c synchronous_standby_names='' -c hot_standby=on",
            self.port,
            self.dir.display()
        );
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .args([
                "-w",
                "-t",
                &RECOVERY_LIMIT.as_secs().to_string(),
                "-o",
                &options,
            ])
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .arg("start");
        output_of(cmd, "pg_ctl start (restored cluster)").map(drop)
    }

    /// Runs one SQL statement with psql on the `postgres` database; its output, trimmed.
    pub fn sql(&self, statement: &str) -> Result<String, BackupError> {
        let mut cmd = self.tool("psql");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", &self.user, "-d", "postgres", "-Atc", statement]);
        Ok(output_of(cmd, "psql (restored cluster)")?.trim().to_owned())
    }

    /// Waits until recovery has replayed the archive and the cluster left recovery.
    fn wait_promoted(&self) -> Result<(), BackupError> {
        let deadline = Instant::now() + RECOVERY_LIMIT;
        loop {
            match self.sql("SELECT pg_is_in_recovery()") {
                Ok(answer) if answer == "f" => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                _ if Instant::now() > deadline => {
                    return Err(BackupError::Tool {
                        command: "recovery of the restored cluster".into(),
                        detail: format!("still in recovery after {RECOVERY_LIMIT:?}"),
                    });
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "30", "-m", "immediate", "stop"]);
        let _ = cmd.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16, BackupError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// What the restored ledger holds: the invariants' report and its newest entry (seq, time).
pub fn check_ledger(url: &str) -> Result<(IntegrityReport, Option<(i64, i64)>), BackupError> {
    let store = StoreLocation::Postgres(url.to_owned()).open("EUR")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let checked = runtime.block_on(store.read(|tx| {
        let mut newest = None;
        tx.for_each_entry(&mut |entry| {
            newest = Some((entry.seq, entry.ts_ms));
            Ok(())
        })?;
        Ok((croupier_ledger::integrity::check(tx)?, newest))
    }))?;
    Ok(checked)
}

/// Restores the newest state (or the state at a time `target`) into a scratch cluster under
/// `scratch_dir`, checks the ledger in `database`, and reports. Failure is a report, not an
/// error.
pub fn restore_test(
    pgbackrest: &PgBackrest,
    scratch_dir: &Path,
    database: &str,
    target: &RestoreTarget,
) -> VerifyReport {
    let verified_at_ms = now_ms();
    let started = Instant::now();
    let before_ms = match target {
        RestoreTarget::Newest => i64::MAX,
        RestoreTarget::At(at_ms) => *at_ms,
    };
    let backup_id = pgbackrest.info().ok().and_then(|info| {
        info.backup
            .iter()
            .filter(|b| b.stop_ms() <= before_ms)
            .max_by_key(|b| b.timestamp.stop)
            .map(|b| b.label.clone())
    });
    let outcome = ScratchCluster::restore(pgbackrest, scratch_dir, target)
        .and_then(|cluster| check_ledger(&cluster.url(database)));
    let rto_ms = started.elapsed().as_millis() as u64;
    let outcome = outcome.and_then(|(report, newest)| {
        if report.ok {
            Ok((report, newest))
        } else {
            Err(BackupError::invariants(&report))
        }
    });
    let target = pgbackrest.config().repo_location();
    match outcome {
        Ok((report, newest)) => VerifyReport {
            ok: true,
            reason: None,
            target,
            verified_at_ms,
            backup_id,
            cut_ms: newest.map(|(_, ts)| ts),
            segments_applied: 0,
            rto_ms,
            rpo_seconds: newest.map(|(_, ts)| (verified_at_ms - ts).max(0) as f64 / 1000.0),
            state: Some(state_of(&report, newest)),
        },
        Err(e) => VerifyReport {
            ok: false,
            reason: Some(e.to_string()),
            target,
            verified_at_ms,
            backup_id,
            cut_ms: None,
            segments_applied: 0,
            rto_ms,
            rpo_seconds: None,
            state: None,
        },
    }
}

/// The summary the dashboard shows, from what the check counted.
fn state_of(report: &IntegrityReport, newest: Option<(i64, i64)>) -> LedgerState {
    LedgerState {
        last_seq: newest.map_or(0, |(seq, _)| seq),
        chain_head: report.chain_head.clone(),
        counts: Counts {
            journal: report.entries as i64,
            accounts: report.accounts as i64,
            rounds: report.rounds as i64,
            ..Counts::default()
        },
        ..LedgerState::default()
    }
}
