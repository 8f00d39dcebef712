//! What the alerts and the dashboard know of a deployment's backups, the same for every
//! backend: the last restore test, the last backup that failed, and whether a passing test is
//! overdue. `Proofs` keeps the record; `BackupHealth` is its verdict at an instant.

use serde::Serialize;

use crate::verify::VerifyReport;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BackupHealth {
    /// No restore test has run yet, and none is overdue.
    Pending,
    Ok {
        last_verify: VerifyReport,
    },
    /// The last restore test failed.
    Failed {
        last_verify: VerifyReport,
    },
    /// The last backup the schedule took failed (no later one succeeded): the newest state
    /// is not in the repository, whatever the last restore test said.
    BackupFailed {
        reason: String,
        failed_at_ms: i64,
        last_verify: Option<VerifyReport>,
    },
    /// No restore test passed within twice the verify interval.
    Overdue {
        last_verify: Option<VerifyReport>,
    },
}

/// The record the verdict comes from (times are the caller's clock, Unix ms).
#[derive(Debug, Clone)]
pub struct Proofs {
    verify_every_ms: i64,
    started_ms: i64,
    last_verify: Option<VerifyReport>,
    last_verify_ms: i64,
    /// When and why the last backup failed, until one succeeds.
    failed_backup: Option<(i64, String)>,
}

impl Proofs {
    pub fn new(verify_every_ms: i64, now_ms: i64) -> Proofs {
        Proofs {
            verify_every_ms,
            started_ms: now_ms,
            last_verify: None,
            last_verify_ms: now_ms,
            failed_backup: None,
        }
    }

    pub fn verified(&mut self, report: VerifyReport, now_ms: i64) {
        self.last_verify = Some(report);
        self.last_verify_ms = now_ms;
    }

    /// Seeds the last report (e.g. from the control plane's state after a restart).
    pub fn seed(&mut self, report: VerifyReport) {
        self.last_verify_ms = report.verified_at_ms;
        self.last_verify = Some(report);
    }

    pub fn backup_failed(&mut self, reason: String, now_ms: i64) {
        self.failed_backup = Some((now_ms, reason));
    }

    pub fn backup_succeeded(&mut self) {
        self.failed_backup = None;
    }

    pub fn last_verify(&self) -> Option<&VerifyReport> {
        self.last_verify.as_ref()
    }

    pub fn verify_due(&self, now_ms: i64) -> bool {
        self.last_verify.is_none() || now_ms - self.last_verify_ms >= self.verify_every_ms
    }

    /// A failed backup or restore test is failed; no passing test in twice the interval
    /// (counted from the start when there is none yet) is overdue.
    pub fn health(&self, now_ms: i64) -> BackupHealth {
        let limit = 2 * self.verify_every_ms;
        if let Some((failed_at_ms, reason)) = &self.failed_backup {
            return BackupHealth::BackupFailed {
                reason: reason.clone(),
                failed_at_ms: *failed_at_ms,
                last_verify: self.last_verify.clone(),
            };
        }
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
