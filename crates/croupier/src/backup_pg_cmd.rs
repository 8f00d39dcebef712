//! `croupier backup … --pg-data DIR`: the backup commands for a ledger on PostgreSQL, through
//! pgBackRest (run as a real process, as the cluster's owner). `--target` is pgBackRest's
//! repository (a folder or `s3://bucket/path`); no Croupier key is needed (pgBackRest's own
//! `repo1-cipher-*` settings encrypt a repository, see docs/backups.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use croupier_backup::cut::now_ms;
use croupier_backup::pgbackrest::process::PgBackupType;
use croupier_backup::pgbackrest::restore_test::restore_test;
use croupier_backup::pgbackrest::scheduler::PgSchedule;
use croupier_backup::pgbackrest::{
    PgBackrest, PgBackrestConfig, PgBackrestScheduler, Repo, RestoreTarget,
};
use croupier_backup::{BackupDaemon, BackupHealth, DaemonHooks, RunOutcome};
use serde_json::json;

use crate::console::outln;

/// The cluster of a PostgreSQL ledger and the stanza Croupier writes for it.
#[derive(Args, Clone)]
pub struct PgArgs {
    /// A ledger on PostgreSQL: its cluster's data folder. With it, the command drives
    /// pgBackRest and the target is pgBackRest's repository.
    #[arg(long)]
    pub pg_data: Option<PathBuf>,
    /// The cluster's port.
    #[arg(long, default_value_t = 5432)]
    pub pg_port: u16,
    /// The folder of the cluster's Unix socket.
    #[arg(long, default_value = "/var/run/postgresql")]
    pub pg_socket: PathBuf,
    /// The ledger's database, which restore tests check.
    #[arg(long, default_value = "croupier")]
    pub pg_database: String,
    /// Where Croupier writes the stanza's pgbackrest.conf (archive_command names it, so the
    /// cluster's owner must be able to read it).
    #[arg(long, default_value = "/etc/pgbackrest/croupier.conf")]
    pub pgbackrest_conf: PathBuf,
    #[arg(long, default_value = "croupier")]
    pub stanza: String,
    /// Full backups kept (repo1-retention-full); differentials go with their full.
    #[arg(long, default_value_t = 2)]
    pub retention_full: u32,
}

impl PgArgs {
    /// The stanza for repository `target`, every path made absolute (pgBackRest wants them
    /// so); `None` without `--pg-data`.
    pub fn config(&self, target: &str) -> anyhow::Result<Option<PgBackrestConfig>> {
        let Some(data) = &self.pg_data else {
            return Ok(None);
        };
        let repo = match Repo::parse(target)? {
            Repo::Folder(path) => Repo::Folder(std::path::absolute(path)?),
            s3 => s3,
        };
        let mut config = PgBackrestConfig::new(
            &std::path::absolute(&self.pgbackrest_conf)?,
            &std::path::absolute(data)?,
            self.pg_port,
            &std::path::absolute(&self.pg_socket)?,
            repo,
        );
        config.stanza = self.stanza.clone();
        config.retention_full = self.retention_full;
        Ok(Some(config))
    }
}

impl PgArgs {
    /// The same flags for another `croupier` process (`up` hands them to its control plane),
    /// paths made absolute; none without `--pg-data`.
    pub fn to_args(&self) -> anyhow::Result<Vec<String>> {
        let Some(data) = &self.pg_data else {
            return Ok(Vec::new());
        };
        let path = |p: &Path| -> anyhow::Result<String> {
            Ok(std::path::absolute(p)?.display().to_string())
        };
        Ok(vec![
            "--pg-data".into(),
            path(data)?,
            "--pg-port".into(),
            self.pg_port.to_string(),
            "--pg-socket".into(),
            path(&self.pg_socket)?,
            "--pg-database".into(),
            self.pg_database.clone(),
            "--pgbackrest-conf".into(),
            path(&self.pgbackrest_conf)?,
            "--stanza".into(),
            self.stanza.clone(),
            "--retention-full".into(),
            self.retention_full.to_string(),
        ])
    }
}

/// Where restore tests of a PostgreSQL ledger build their scratch cluster by default: the
/// cluster's owner must reach it, so not inside a private data folder.
pub fn default_scratch() -> PathBuf {
    std::env::temp_dir().join("croupier-pg-restore-tests")
}

fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Writes the stanza and prints the `postgresql.conf` lines of WAL archiving into it.
pub fn setup(config: PgBackrestConfig, archive_timeout_s: u32) -> anyhow::Result<()> {
    let settings = config.archive_settings(archive_timeout_s);
    let pgbackrest = PgBackrest::new(config)?;
    print(&json!({
        "pgbackrest_conf": pgbackrest.config().conf_path,
        "stanza": pgbackrest.config().stanza,
        "postgresql_conf": settings,
    }))
}

/// A full (or differential) backup now; prints the repository's newest backup.
pub fn snapshot(config: PgBackrestConfig, differential: bool) -> anyhow::Result<()> {
    let pgbackrest = PgBackrest::new(config)?;
    pgbackrest.stanza_create()?;
    let started = std::time::Instant::now();
    pgbackrest.backup(if differential {
        PgBackupType::Diff
    } else {
        PgBackupType::Full
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let info = pgbackrest.info()?;
    print(&json!({"backup": info.newest(None), "seconds": seconds}))
}

/// Restores into a new data folder `into` (not started): the newest state, or at `at_ms`.
pub fn restore(config: PgBackrestConfig, into: &Path, at_ms: Option<i64>) -> anyhow::Result<()> {
    let pgbackrest = PgBackrest::new(config)?;
    let target = at_ms.map_or(RestoreTarget::Newest, RestoreTarget::At);
    pgbackrest
        .restore(into, &target)
        .with_context(|| format!("restoring into {}", into.display()))?;
    print(&json!({"restored_into": into, "at_ms": at_ms,
                  "start_with": format!("pg_ctl -D {} start", into.display())}))
}

/// The restore test, printed; an error when it failed.
pub fn verify(
    config: PgBackrestConfig,
    database: &str,
    scratch: &Path,
    at_ms: Option<i64>,
) -> anyhow::Result<()> {
    let pgbackrest = PgBackrest::new(config)?;
    let target = at_ms.map_or(RestoreTarget::Newest, RestoreTarget::At);
    let report = restore_test(&pgbackrest, scratch, database, &target);
    print(&report)?;
    anyhow::ensure!(
        report.ok,
        "backup verify failed: {}",
        report.reason.unwrap_or_default()
    );
    Ok(())
}

/// `pgbackrest info` of the stanza, typed.
pub fn list(config: PgBackrestConfig) -> anyhow::Result<()> {
    print(&PgBackrest::new(config)?.info()?)
}

/// Logs what the daemon does (the control plane records it instead).
struct Logged;

impl DaemonHooks for Logged {
    fn ran(&self, outcome: &RunOutcome) {
        if outcome.took.is_some() || outcome.verify.is_some() {
            tracing::info!(took = ?outcome.took, verify = ?outcome.verify, "backup schedule");
        }
    }
    fn failed(&self, what: &'static str, error: &croupier_backup::BackupError) {
        tracing::warn!(error = %error, "backup {what}");
    }
}

/// Stops `stop` after `seconds` (never when 0).
pub fn stop_after(seconds: u64) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    if seconds > 0 {
        let flag = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(seconds));
            flag.store(true, Ordering::Relaxed);
        });
    }
    stop
}

/// The backup daemon on a PostgreSQL ledger; prints the health when it stops.
pub fn run(
    config: PgBackrestConfig,
    schedule: PgSchedule,
    schedule_every: Duration,
    seconds: u64,
) -> anyhow::Result<()> {
    let scheduler = PgBackrestScheduler::new(PgBackrest::new(config)?, schedule, now_ms());
    let health = BackupDaemon::postgres(scheduler)
        .schedule_every(schedule_every)
        .run(Arc::new(Logged), stop_after(seconds));
    finish(&health)
}

/// Prints the health; an error when the backups failed.
pub fn finish(health: &BackupHealth) -> anyhow::Result<()> {
    print(health)?;
    anyhow::ensure!(
        !matches!(
            health,
            BackupHealth::Failed { .. } | BackupHealth::BackupFailed { .. }
        ),
        "backups failed"
    );
    Ok(())
}

/// Logs for the SQLite daemon too.
pub fn logged() -> Arc<dyn DaemonHooks> {
    Arc::new(Logged)
}
