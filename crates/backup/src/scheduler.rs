//! The backup scheduler the control plane runs: on each `run_due(now)` it takes the backup
//! the plan says is due (weekly full, daily incremental), prunes by the retention policy, and
//! runs `verify` when that is due, keeping the last report for the dashboard and the alerts
//! (`health`: failed or overdue). Blocking: call it from a plain thread or `spawn_blocking`.
//! Continuous shipping is a separate loop (`Shipper`), run each second by `croupier backup
//! run` next to it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::BackupError;
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
}

/// What the alerts and the dashboard need to know.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BackupHealth {
    /// No restore test has run yet, and none is overdue.
    Pending,
    Ok {
        last_verify: VerifyReport,
    },
    Failed {
        last_verify: VerifyReport,
    },
    /// No restore test passed within twice the verify interval.
    Overdue {
        last_verify: Option<VerifyReport>,
    },
}

pub struct BackupScheduler {
    config: SchedulerConfig,
    target: Target,
    key: BackupKey,
    started_ms: i64,
    last_verify: Option<VerifyReport>,
    /// The `now_ms` of the run that made the last report (the caller's clock).
    last_verify_ms: i64,
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
            config,
            target,
            key,
            started_ms: now_ms,
            last_verify: None,
            last_verify_ms: now_ms,
            pin: None,
        })
    }

    /// Moves the pin the restore tests must reach forward to `pin` (never back).
    pub fn pin(&mut self, pin: Pin) {
        self.pin = Some(self.pin.map_or(pin, |old| old.max(pin)));
    }

    /// Seeds the last verify report (e.g. from the control plane's catalog after a restart).
    pub fn set_last_verify(&mut self, report: VerifyReport) {
        self.last_verify_ms = report.verified_at_ms;
        self.last_verify = Some(report);
    }

    pub fn last_verify(&self) -> Option<&VerifyReport> {
        self.last_verify.as_ref()
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
            let manifest = match kind {
                BackupKind::Full => take_full(&self.config.db, &self.target, &self.key, &Silent)?,
                BackupKind::Incremental => take_incremental(
                    &self.config.db,
                    &self.target,
                    &self.key,
                    self.config.session_ttl_ms,
                )?,
            };
            outcome.took = Some(manifest.id);
        }
        let catalog = Catalog::load(&self.target)?;
        let prune = plan(&catalog, now_ms, &self.config.policy);
        execute_prune(&self.target, &catalog, &prune)?;
        outcome.pruned_backups = prune.prune_backups;
        outcome.pruned_segments = prune.prune_segments.len();
        let verify_due = self.last_verify.is_none()
            || now_ms - self.last_verify_ms >= self.config.verify_every_ms;
        if verify_due {
            std::fs::create_dir_all(&self.config.scratch_dir)?;
            let report = verify(
                &self.target,
                &self.key,
                &self.config.scratch_dir,
                None,
                self.pin.as_ref(),
                &Silent,
            );
            self.last_verify = Some(report.clone());
            self.last_verify_ms = now_ms;
            outcome.verify = Some(report);
        }
        Ok(outcome)
    }

    /// Failed when the last restore test failed; overdue when none passed in twice the
    /// interval (counted from the scheduler's start when there is none yet).
    pub fn health(&self, now_ms: i64) -> BackupHealth {
        let limit = 2 * self.config.verify_every_ms;
        match &self.last_verify {
            Some(v) if !v.ok => BackupHealth::Failed {
                last_verify: v.clone(),
            },
            Some(v) if now_ms - self.last_verify_ms <= limit => BackupHealth::Ok {
                last_verify: v.clone(),
            },
            None if now_ms - self.started_ms <= limit => BackupHealth::Pending,
            other => BackupHealth::Overdue {
                last_verify: other.clone(),
            },
        }
    }
}
