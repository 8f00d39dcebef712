//! The rehearsal before a rolling update touches production: the newest backup is restored
//! into a scratch store (a SQLite ledger: every piece and invariant checked on the way; a
//! PostgreSQL one: pgBackRest's newest state in a scratch cluster), the new build is
//! started on it as a staging node on the loopback, and the same smoke test runs against it
//! (lobby, a real test bet, integrity). The staging node and its store are removed after.

use std::path::Path;
use std::process::Stdio;

use croupier_backup::pgbackrest::restore_test::ScratchCluster;
use croupier_backup::pgbackrest::{PgBackrest, RestoreTarget};

use crate::Control;
use crate::backups::{BackupConfig, BackupLedger};
use croupier_monitor::engine::{Kind, Target};

/// A free loopback port.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The restored ledger the staging node runs on. A PostgreSQL one is a scratch cluster on a
/// loopback port of its own (archiving off), stopped and removed when this is dropped.
enum Staged {
    Sqlite,
    Postgres(ScratchCluster, String),
}

impl Staged {
    /// The staging node's `--store`, when not the data folder's `ledger.db`.
    fn store_args(&self) -> Vec<String> {
        match self {
            Staged::Sqlite => Vec::new(),
            Staged::Postgres(cluster, database) => vec!["--store".into(), cluster.url(database)],
        }
    }
}

/// Restores the newest backup: a SQLite ledger into `dir/ledger.db`, a PostgreSQL one with
/// pgBackRest into a scratch cluster under the restore tests' folder. What it restored, and
/// where.
async fn restore_newest(backup: &BackupConfig, dir: &Path) -> Result<(Staged, String), String> {
    match &backup.ledger {
        BackupLedger::Sqlite { target, key, .. } => {
            let (target, key, dest) = (target.clone(), key.clone(), dir.join("ledger.db"));
            let restored = tokio::task::spawn_blocking(move || {
                let target = croupier_backup::Target::open(&target)?;
                croupier_backup::restore(&target, &key, &dest, None, &croupier_backup::Silent)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let what = format!(
                "restored backup {} at cut {} ({} segments) in {} ms",
                restored.backup_id, restored.cut_ms, restored.segments_applied, restored.elapsed_ms
            );
            Ok((Staged::Sqlite, what))
        }
        BackupLedger::Postgres {
            pgbackrest,
            schedule,
        } => {
            let (config, scratch) = (pgbackrest.clone(), schedule.scratch_dir.clone());
            let started = std::time::Instant::now();
            let cluster = tokio::task::spawn_blocking(move || {
                // The backup daemon wrote the stanza; the live cluster reads it.
                let pgbackrest = PgBackrest::written(config)?;
                ScratchCluster::restore(&pgbackrest, &scratch, &RestoreTarget::Newest)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("pgBackRest restore: {e}"))?;
            let what = format!(
                "restored the newest pgBackRest state (end of the archived WAL) into a scratch \
                 cluster on port {} in {} ms",
                cluster.port(),
                started.elapsed().as_millis()
            );
            Ok((Staged::Postgres(cluster, schedule.database.clone()), what))
        }
    }
}

/// Runs the rehearsal with `binary`; the steps it went through, or why it failed.
pub async fn rehearse(control: &Control, binary: &str) -> Result<Vec<String>, String> {
    let backup = control
        .config
        .backup
        .as_ref()
        .ok_or("no backups are configured, so there is nothing to stage from")?;
    let dir = tempfile::Builder::new()
        .prefix("croupier-staging-")
        .tempdir_in(&backup.scratch_dir)
        .or_else(|_| tempfile::tempdir())
        .map_err(|e| format!("a scratch folder: {e}"))?;
    let (staged, restored) = restore_newest(backup, dir.path()).await?;
    let mut steps = vec![restored];
    let port = free_port().map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["node", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--node-id", "staging"])
        .args(control.config.test_players.node_args())
        .arg("--data")
        .arg(dir.path())
        .args(staged.store_args());
    if let Some(seed_key) = &backup.seed_key_file {
        command.arg("--seed-key-file").arg(seed_key);
    }
    let mut node = command
        .env("CROUPIER_OPS_TOKEN", &control.config.ops_token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {binary}: {e}"))?;
    let staging = Target::new("staging", Kind::Node, &format!("http://127.0.0.1:{port}"));
    crate::node_probe::until_ready(control, &staging, || {
        let exited = node.try_wait().ok().flatten()?;
        Some(format!("the staging node exited ({exited})"))
    })
    .await?;
    steps.push(format!("staging node ready on port {port}"));
    let smoke = crate::node_probe::smoke_test(control, &staging).await;
    let _ = node.kill().await;
    let _ = node.wait().await;
    // A scratch cluster stops with pg_ctl: off the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(staged)).await;
    steps.push(smoke?);
    Ok(steps)
}
