//! The backup scheduler the control plane runs: on each `run_due(now)` it takes the backup
//! the plan says is due (weekly full, daily incremental), prunes by the retention policy, and
//! runs `verify` when that is due, keeping the last report for the dashboard and the alerts
//! (`health`: failed or overdue). Blocking: call it from a plain thread or `spawn_blocking`.
//! Continuous shipping is a separate loop (`Shipper`), run each second beside it by the
//! `daemon`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::BackupError;
use crate::health::{BackupHealth, Proofs};
use crate::manifest::BackupKind;
use crate::pin::Pin;
use crate::plan::{Plan, Policy, plan};
use crate::progress::Silent;
use crate::seal::BackupKey;
use crate::snapshot::{take_full, take_incremental};
use crate::target::Target;
use crate::verify::{VerifyReport, verify};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// The live ledger file.
    pub db: PathBuf,
    /// A folder or `s3://bucket/prefix`.
    pub target: String,
    pub policy: Policy,
    /// How often a restore test runs.
    pub verify_every_ms: i64,
    /// Where restore tests build their scratch store (deleted after each).
    pub scratch_dir: PathBuf,
    /// The sessions' lifetime (see `delta::read`).
    pub session_ttl_ms: i64,
}

/// Deletes what `plan` says to prune. A backup's manifest goes first, so a backup deleted
/// halfway is seen as interrupted, never as complete with pieces missing.
pub fn execute_prune(target: &Target, catalog: &Catalog, plan: &Plan) -> Result<(), BackupError> {
    for backup in catalog
        .backups
        .iter()
        .filter(|b| plan.prune_backups.contains(&b.id))
    {
        let mut objects = backup.objects.clone();
        objects.sort_by_key(|name| !name.ends_with("/manifest"));
        for name in objects {
            target.delete(&name)?;
        }
    }
    for name in &plan.prune_segments {
        target.delete(name)?;
    }
    Ok(())
}

/// What one `run_due` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunOutcome {
    pub took: Option<String>,
    pub pruned_backups: Vec<String>,
    pub pruned_segments: usize,
    pub verify: Option<VerifyReport>,
    /// The repository as `pgbackrest info` showed it after this run (PostgreSQL ledgers).
    pub pgbackrest: Option<crate::pgbackrest::StanzaInfo>,
}

pub struct BackupScheduler {
    config: SchedulerConfig,
    target: Target,
    key: BackupKey,
    proofs: Proofs,
    /// The newest state shipped, which a restore test must reach.
    pin: Option<Pin>,
}

impl BackupScheduler {
    pub fn new(
        config: SchedulerConfig,
        key: BackupKey,
        now_ms: i64,
    ) -> Result<BackupScheduler, BackupError> {
        let target = Target::open(&config.target)?;
        Ok(BackupScheduler {
            proofs: Proofs::new(config.verify_every_ms, now_ms),
            config,
            target,
            key,
            pin: None,
        })
    }

    /// Moves the pin the restore tests must reach forward to `pin` (never back).
    pub fn pin(&mut self, pin: Pin) {
        self.pin = Some(self.pin.map_or(pin, |old| old.max(pin)));
    }

    /// Seeds the last verify report (e.g. from the control plane's catalog after a restart).
    pub fn set_last_verify(&mut self, report: VerifyReport) {
        self.proofs.seed(report);
    }

    pub fn last_verify(&self) -> Option<&VerifyReport> {
        self.proofs.last_verify()
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Takes, prunes and verifies whatever is due at `now_ms`.
    pub fn run_due(&mut self, now_ms: i64) -> Result<RunOutcome, BackupError> {
        let mut outcome = RunOutcome::default();
        let catalog = Catalog::load(&self.target)?;
        let due = plan(&catalog, now_ms, &self.config.policy);
        if let Some(kind) = due.take {
            let taken = match kind {
                BackupKind::Full => take_full(&self.config.db, &self.target, &self.key, &Silent),
                BackupKind::Incremental => take_incremental(
                    &self.config.db,
                    &self.target,
                    &self.key,
                    self.config.session_ttl_ms,
                ),
            };
            match taken {
                Ok(manifest) => {
                    self.proofs.backup_succeeded();
                    outcome.took = Some(manifest.id);
                }
                Err(e) => {
                    self.proofs.backup_failed(e.to_string(), now_ms);
                    return Err(e);
                }
            }
        }
        let catalog = Catalog::load(&self.target)?;
        let prune = plan(&catalog, now_ms, &self.config.policy);
        execute_prune(&self.target, &catalog, &prune)?;
        outcome.pruned_backups = prune.prune_backups;
        outcome.pruned_segments = prune.prune_segments.len();
        if self.proofs.verify_due(now_ms) {
            std::fs::create_dir_all(&self.config.scratch_dir)?;
            let report = verify(
                &self.target,
                &self.key,
                &self.config.scratch_dir,
                None,
                self.pin.as_ref(),
                &Silent,
            );
            self.proofs.verified(report.clone(), now_ms);
            outcome.verify = Some(report);
        }
        Ok(outcome)
    }

    /// The verdict the alerts read (see `Proofs::health`).
    pub fn health(&self, now_ms: i64) -> BackupHealth {
        self.proofs.health(now_ms)
    }
}
