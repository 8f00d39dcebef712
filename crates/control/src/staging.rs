//! The rehearsal before a rolling update touches production: the newest backup is restored
//! into a scratch store (every piece and invariant checked on the way), the new build is
//! started on it as a staging node on the loopback, and the same smoke test runs against it
//! (lobby, a real test bet, integrity). The staging node and its store are removed after.

use std::path::Path;
use std::process::Stdio;

use crate::Control;
use crate::backups::{BackupConfig, BackupLedger};
use croupier_monitor::engine::{Kind, Target};

/// A free loopback port.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Restores the newest backup into `dir/ledger.db`; what it restored.
async fn restore_newest(backup: &BackupConfig, dir: &Path) -> Result<String, String> {
    let BackupLedger::Sqlite { target, key, .. } = &backup.ledger else {
        return Err(
            "the rehearsal stages from a SQLite ledger's backups; a PostgreSQL \
                    ledger's pgBackRest backups are proven by the restore tests instead"
                .into(),
        );
    };
    let (target, key, dest) = (target.clone(), key.clone(), dir.join("ledger.db"));
    tokio::task::spawn_blocking(move || {
        let target = croupier_backup::Target::open(&target).map_err(|e| e.to_string())?;
        let restored =
            croupier_backup::restore(&target, &key, &dest, None, &croupier_backup::Silent)
                .map_err(|e| e.to_string())?;
        Ok(format!(
            "restored backup {} at cut {} ({} segments) in {} ms",
            restored.backup_id, restored.cut_ms, restored.segments_applied, restored.elapsed_ms
        ))
    })
    .await
    .map_err(|e| e.to_string())?
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
    let mut steps = vec![restore_newest(backup, dir.path()).await?];
    let port = free_port().map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["node", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--node-id", "staging"])
        .args(control.config.test_players.node_args())
        .arg("--data")
        .arg(dir.path());
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
    steps.push(smoke?);
    Ok(steps)
}
