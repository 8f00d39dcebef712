//! The schedule of a PostgreSQL ledger's backups, the counterpart of the SQLite
//! `BackupScheduler`: the stanza is created once, a full backup is taken when there is none
//! or the newest is `full_every_ms` old, a differential when the newest backup of any kind is
//! `diff_every_ms` old (pgBackRest expires by `repo1-retention-full` after each), and a
//! restore test runs when due. WAL archiving is PostgreSQL's own `archive_command`, so there
//! is no shipping loop. Blocking: run it on a plain thread.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::BackupError;
use crate::health::{BackupHealth, Proofs};
use crate::pgbackrest::info::StanzaInfo;
use crate::pgbackrest::process::{PgBackrest, PgBackupType, RestoreTarget};
use crate::pgbackrest::restore_test::restore_test;
use crate::scheduler::RunOutcome;
use crate::verify::VerifyReport;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgSchedule {
    /// A full backup when the newest full is this old.
    pub full_every_ms: i64,
    /// A differential backup when the newest backup is this old.
    pub diff_every_ms: i64,
    /// How often a restore test runs.
    pub verify_every_ms: i64,
    /// Where restore tests build their scratch cluster (the cluster owner must reach it).
    pub scratch_dir: PathBuf,
    /// The ledger's database in the cluster.
    pub database: String,
}

pub struct PgBackrestScheduler {
    pgbackrest: PgBackrest,
    schedule: PgSchedule,
    proofs: Proofs,
    stanza_ready: bool,
}

/// What is due, from the repository's backups.
pub fn due(info: &StanzaInfo, now_ms: i64, schedule: &PgSchedule) -> Option<PgBackupType> {
    let full = info.newest(Some("full"));
    let newest = info.newest(None);
    match (full, newest) {
        (None, _) => Some(PgBackupType::Full),
        (Some(f), _) if now_ms - f.stop_ms() >= schedule.full_every_ms => Some(PgBackupType::Full),
        (_, Some(n)) if now_ms - n.stop_ms() >= schedule.diff_every_ms => Some(PgBackupType::Diff),
        _ => None,
    }
}

impl PgBackrestScheduler {
    pub fn new(pgbackrest: PgBackrest, schedule: PgSchedule, now_ms: i64) -> PgBackrestScheduler {
        PgBackrestScheduler {
            proofs: Proofs::new(schedule.verify_every_ms, now_ms),
            pgbackrest,
            schedule,
            stanza_ready: false,
        }
    }

    pub fn pgbackrest(&self) -> &PgBackrest {
        &self.pgbackrest
    }

    /// Seeds the last verify report (e.g. from the control plane's state after a restart).
    pub fn set_last_verify(&mut self, report: VerifyReport) {
        self.proofs.seed(report);
    }

    /// Takes and verifies whatever is due at `now_ms`; a failed backup is an error and makes
    /// the health `BackupFailed` until a backup succeeds.
    pub fn run_due(&mut self, now_ms: i64) -> Result<RunOutcome, BackupError> {
        let mut outcome = RunOutcome::default();
        if let Err(e) = self.take_due(now_ms, &mut outcome) {
            self.proofs.backup_failed(e.to_string(), now_ms);
            return Err(e);
        }
        if self.proofs.verify_due(now_ms) {
            let report = restore_test(
                &self.pgbackrest,
                &self.schedule.scratch_dir,
                &self.schedule.database,
                &RestoreTarget::Newest,
            );
            self.proofs.verified(report.clone(), now_ms);
            outcome.verify = Some(report);
        }
        Ok(outcome)
    }

    fn take_due(&mut self, now_ms: i64, outcome: &mut RunOutcome) -> Result<(), BackupError> {
        if !self.stanza_ready {
            self.pgbackrest.stanza_create()?;
            self.stanza_ready = true;
        }
        let before = self.pgbackrest.info()?;
        if let Some(kind) = due(&before, now_ms, &self.schedule) {
            self.pgbackrest.backup(kind)?;
            self.proofs.backup_succeeded();
            let after = self.pgbackrest.info()?;
            outcome.took = after.newest(None).map(|b| b.label.clone());
            outcome.pruned_backups = before
                .backup
                .iter()
                .filter(|old| !after.backup.iter().any(|b| b.label == old.label))
                .map(|b| b.label.clone())
                .collect();
            outcome.pgbackrest = Some(after);
        } else {
            outcome.pgbackrest = Some(before);
        }
        Ok(())
    }

    pub fn health(&self, now_ms: i64) -> BackupHealth {
        self.proofs.health(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgbackrest::info::parse_info;

    const HOUR: i64 = 3_600_000;

    fn schedule() -> PgSchedule {
        PgSchedule {
            full_every_ms: 7 * 24 * HOUR,
            diff_every_ms: 24 * HOUR,
            verify_every_ms: HOUR,
            scratch_dir: "/tmp".into(),
            database: "croupier".into(),
        }
    }

    fn info(backups: &[(&str, i64)]) -> StanzaInfo {
        let sets: Vec<String> = backups
            .iter()
            .map(|(kind, stop_s)| {
                format!(
                    r#"{{"label":"{stop_s}{kind}","type":"{kind}","timestamp":{{"start":{stop_s},"stop":{stop_s}}}}}"#
                )
            })
            .collect();
        let json = format!(
            r#"[{{"name":"croupier","status":{{"code":0,"message":"ok"}},"backup":[{}],"archive":[]}}]"#,
            sets.join(",")
        );
        parse_info(&json).unwrap().remove(0)
    }

    #[test]
    fn full_first_then_differentials_then_a_new_full() {
        let s = schedule();
        assert_eq!(due(&info(&[]), 0, &s), Some(PgBackupType::Full));
        let day_s = 86_400;
        let one_full = info(&[("full", 1_000_000)]);
        let after_full = 1_000_000_000;
        assert_eq!(due(&one_full, after_full + HOUR, &s), None);
        assert_eq!(
            due(&one_full, after_full + 24 * HOUR, &s),
            Some(PgBackupType::Diff)
        );
        let with_diffs = info(&[("full", 1_000_000), ("diff", 1_000_000 + 6 * day_s)]);
        assert_eq!(
            due(&with_diffs, after_full + 6 * 24 * HOUR + HOUR, &s),
            None
        );
        assert_eq!(
            due(&with_diffs, after_full + 7 * 24 * HOUR, &s),
            Some(PgBackupType::Full)
        );
    }
}
