//! The control plane's backup duty: on a thread of its own it runs the one backup daemon of
//! `croupier-backup` (the same one `croupier backup run` runs): for a SQLite ledger, shipping
//! each second and the schedule (weekly full, daily incremental, retention, restore tests);
//! for a PostgreSQL ledger, pgBackRest's full and differential backups and restore tests into
//! a scratch cluster. Every restore test's report is kept in the state; a failed backup or
//! restore test, or an overdue one, becomes an alert (`backup_failed`, `backup_overdue`) like
//! any other, and `/api/v1/backups` and the dashboard show the last results.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use parking_lot::Mutex;

use croupier_backup::daemon::Shipping;
use croupier_backup::pgbackrest::scheduler::PgSchedule;
use croupier_backup::pgbackrest::{PgBackrest, PgBackrestConfig, PgBackrestScheduler, StanzaInfo};
use croupier_backup::{
    BackupDaemon, BackupError, BackupHealth, BackupKey, BackupScheduler, DaemonHooks, Pin, Policy,
    RunOutcome, SchedulerConfig, Shipped,
};
use serde::Serialize;

use crate::lease::Leadership;
use crate::state::State;
use croupier_monitor::engine::AlertEvent;
use croupier_monitor::severity::Severity;

/// Which ledger the control plane backs up, and how.
#[derive(Debug, Clone)]
pub enum BackupLedger {
    /// A SQLite ledger file, shipped and backed up by Croupier itself.
    Sqlite {
        db: PathBuf,
        /// A folder or `s3://bucket/prefix`.
        target: String,
        key: BackupKey,
        policy: Policy,
        session_ttl_ms: i64,
    },
    /// A PostgreSQL ledger, backed up by pgBackRest (`schedule.verify_every_ms` and
    /// `schedule.scratch_dir` are this config's own).
    Postgres {
        pgbackrest: PgBackrestConfig,
        schedule: PgSchedule,
    },
}

/// What the control plane backs up, where, and how often it proves it.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub ledger: BackupLedger,
    pub verify_every: Duration,
    pub scratch_dir: PathBuf,
    /// The nodes' seed key file: a node started on a restore (staging) needs it to deal
    /// from the restored, sealed seeds. Backups never hold it.
    pub seed_key_file: Option<PathBuf>,
}

impl BackupConfig {
    /// The repository's location, as the reports name it.
    pub fn target(&self) -> String {
        match &self.ledger {
            BackupLedger::Sqlite { target, .. } => target.clone(),
            BackupLedger::Postgres { pgbackrest, .. } => pgbackrest.repo_location(),
        }
    }
}

/// What the dashboard and the alerts read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupStatus {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    pub health: Option<BackupHealth>,
    /// The newest shipped cut (SQLite).
    pub last_cut_ms: Option<i64>,
    /// The newest backup taken by the schedule.
    pub last_backup: Option<String>,
    /// The last error of the schedule or the shipping, if the last attempt failed.
    pub error: Option<String>,
    /// The newest state shipped, kept in the control plane's state: restore tests must
    /// reach it (a repository that restores less has been rolled back).
    pub pinned: Option<Pin>,
    /// The repository as `pgbackrest info` showed it last (PostgreSQL).
    pub pgbackrest: Option<StanzaInfo>,
}

/// Starts the backup thread; it runs until the process ends, and works only while this
/// control plane leads (one shipper and one schedule per deployment).
pub fn spawn(
    config: BackupConfig,
    state: Arc<State>,
    leadership: Arc<Leadership>,
) -> Arc<Mutex<BackupStatus>> {
    let status = Arc::new(Mutex::new(BackupStatus {
        backend: match config.ledger {
            BackupLedger::Sqlite { .. } => "sqlite",
            BackupLedger::Postgres { .. } => "postgres",
        },
        ..BackupStatus::default()
    }));
    let hooks = Arc::new(Hooks {
        state,
        status: status.clone(),
        leadership,
        target: config.target(),
    });
    std::thread::Builder::new()
        .name("backups".into())
        .spawn(move || {
            while !hooks.leadership.is_leader() {
                std::thread::sleep(crate::lease::POLL);
            }
            let daemon = loop {
                match daemon(&config, &hooks) {
                    Ok(daemon) => break daemon,
                    Err(e) => {
                        // Nothing can be backed up (no data folder, a stanza that cannot be
                        // written): as much a failed backup as one pgBackRest refused.
                        hooks.failed("schedule", &e);
                        hooks.health(BackupHealth::BackupFailed {
                            reason: e.to_string(),
                            failed_at_ms: crate::now_ms(),
                            last_verify: None,
                        });
                        std::thread::sleep(croupier_backup::daemon::SCHEDULE_EVERY);
                    }
                }
            };
            daemon.run(hooks, Arc::new(AtomicBool::new(false)));
        })
        .expect("a backup thread");
    status
}

/// The daemon for `config`, seeded with what the state remembers (the last restore test,
/// the newest state shipped).
fn daemon(config: &BackupConfig, hooks: &Hooks) -> Result<BackupDaemon, BackupError> {
    let last_verify = hooks.state.last_backup_verify().ok().flatten();
    match &config.ledger {
        BackupLedger::Sqlite {
            db,
            target,
            key,
            policy,
            session_ttl_ms,
        } => {
            let scheduler_config = SchedulerConfig {
                db: db.clone(),
                target: target.clone(),
                policy: policy.clone(),
                verify_every_ms: config.verify_every.as_millis() as i64,
                scratch_dir: config.scratch_dir.clone(),
                session_ttl_ms: *session_ttl_ms,
            };
            let mut scheduler =
                BackupScheduler::new(scheduler_config, key.clone(), crate::now_ms())?;
            if let Some(last) = last_verify {
                scheduler.set_last_verify(last);
            }
            if let Ok(Some(pin)) = hooks.state.backup_pin(target) {
                scheduler.pin(pin);
                hooks.status.lock().pinned = Some(pin);
            }
            let shipping = Shipping {
                db: db.clone(),
                target: target.clone(),
                key: key.clone(),
                session_ttl_ms: *session_ttl_ms,
            };
            Ok(BackupDaemon::sqlite(scheduler, shipping))
        }
        BackupLedger::Postgres {
            pgbackrest,
            schedule,
        } => {
            let schedule = PgSchedule {
                verify_every_ms: config.verify_every.as_millis() as i64,
                scratch_dir: config.scratch_dir.clone(),
                ..schedule.clone()
            };
            let mut scheduler = PgBackrestScheduler::new(
                PgBackrest::new(pgbackrest.clone())?,
                schedule,
                crate::now_ms(),
            );
            if let Some(last) = last_verify {
                scheduler.set_last_verify(last);
            }
            Ok(BackupDaemon::postgres(scheduler))
        }
    }
}

/// What the daemon's news does here: the state keeps restore tests and pins, the status
/// keeps the rest for the dashboard and the alerts.
struct Hooks {
    state: Arc<State>,
    status: Arc<Mutex<BackupStatus>>,
    leadership: Arc<Leadership>,
    target: String,
}

impl DaemonHooks for Hooks {
    /// The lease was lost (a PostgreSQL lease whose session stopped answering): the new
    /// leader ships and schedules; this one waits to lead again.
    fn active(&self) -> bool {
        self.leadership.is_leader()
    }

    fn ran(&self, outcome: &RunOutcome) {
        if let Some(report) = &outcome.verify
            && let Err(e) = self.state.add_backup_verify(report)
        {
            tracing::error!(error = %e, "cannot record a restore test");
        }
        let mut status = self.status.lock();
        if outcome.took.is_some() {
            status.last_backup = outcome.took.clone();
        }
        if outcome.pgbackrest.is_some() {
            status.pgbackrest = outcome.pgbackrest.clone();
        }
        status.error = None;
    }

    /// Pins what was just shipped: in the state (it survives restarts, and the repository
    /// cannot rewrite it) and on the status.
    fn shipped(&self, shipped: &Shipped, since_ms: i64) {
        let pin = Pin {
            last_seq: shipped.last_seq,
            cut_ms: shipped.cut_ms,
        };
        if let Err(e) = self.state.pin_backup(&self.target, pin) {
            tracing::error!(error = %e, "cannot pin the newest shipped state");
        }
        let mut status = self.status.lock();
        status.pinned = Some(status.pinned.map_or(pin, |old| old.max(pin)));
        status.last_cut_ms = Some(since_ms);
    }

    fn failed(&self, what: &'static str, error: &BackupError) {
        tracing::warn!(error = %error, "backup {what}");
        self.status.lock().error = Some(error.to_string());
    }

    fn health(&self, health: BackupHealth) {
        self.status.lock().health = Some(health);
    }
}

/// Turns the backups' health into alert transitions: `backup_failed` while the last restore
/// test failed, `backup_overdue` while none passed in time.
#[derive(Debug, Default)]
pub struct BackupAlerts {
    firing: Option<&'static str>,
    since_s: u64,
}

impl BackupAlerts {
    /// Takes on the backup alert sent as firing, if any (`sent` holds the keys): what a new
    /// leader does before its first evaluation.
    pub fn assume(&mut self, sent: &std::collections::HashSet<String>, now_s: u64) {
        let firing = ["backup_failed", "backup_overdue"]
            .into_iter()
            .find(|rule| sent.contains(&format!("{rule}/backups")));
        if firing != self.firing {
            self.firing = firing;
            self.since_s = now_s;
        }
    }

    pub fn evaluate(&mut self, now_s: u64, health: Option<&BackupHealth>) -> Vec<AlertEvent> {
        let now = match health {
            Some(BackupHealth::Failed { .. } | BackupHealth::BackupFailed { .. }) => {
                Some("backup_failed")
            }
            Some(BackupHealth::Overdue { .. }) => Some("backup_overdue"),
            _ => None,
        };
        if now == self.firing {
            return Vec::new();
        }
        let event = |rule: &str, firing: bool, since_s: u64| AlertEvent {
            detail: None,
            key: format!("{rule}/backups"),
            rule: rule.into(),
            target: "backups".into(),
            // Unproven backups put the players' money at risk: the wallet's priority. Players
            // lose nothing yet, so it is an operators' component, not on the status page.
            severity: Severity::Critical,
            component: "backups".into(),
            firing,
            since_s,
            value: None,
        };
        let mut events = Vec::new();
        if let Some(old) = self.firing {
            events.push(event(old, false, self.since_s));
        }
        if let Some(new) = now {
            self.since_s = now_s;
            events.push(event(new, true, now_s));
        }
        self.firing = now;
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use croupier_backup::VerifyReport;

    fn report(ok: bool) -> VerifyReport {
        VerifyReport {
            ok,
            reason: (!ok).then(|| "piece 0 of x: checksum mismatch".into()),
            target: "data/backups".into(),
            verified_at_ms: 0,
            backup_id: None,
            cut_ms: None,
            segments_applied: 0,
            rto_ms: 10,
            rpo_seconds: Some(1.0),
            state: None,
        }
    }

    #[test]
    fn a_failed_restore_test_fires_and_a_passing_one_resolves() {
        let mut alerts = BackupAlerts::default();
        assert!(alerts.evaluate(1, Some(&BackupHealth::Pending)).is_empty());
        let failed = BackupHealth::Failed {
            last_verify: report(false),
        };
        let fired = alerts.evaluate(2, Some(&failed));
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].key.as_str(), fired[0].firing, fired[0].severity),
            ("backup_failed/backups", true, Severity::Critical)
        );
        assert!(alerts.evaluate(3, Some(&failed)).is_empty());
        let overdue = BackupHealth::Overdue { last_verify: None };
        let moved = alerts.evaluate(4, Some(&overdue));
        assert_eq!(
            moved
                .iter()
                .map(|e| (e.rule.as_str(), e.firing))
                .collect::<Vec<_>>(),
            vec![("backup_failed", false), ("backup_overdue", true)]
        );
        let ok = BackupHealth::Ok {
            last_verify: report(true),
        };
        let resolved = alerts.evaluate(5, Some(&ok));
        assert_eq!((resolved.len(), resolved[0].firing), (1, false));
    }

    #[test]
    fn a_failed_backup_fires_backup_failed_too() {
        let mut alerts = BackupAlerts::default();
        let failed = BackupHealth::BackupFailed {
            reason: "pgbackrest backup failed: unable to open repo".into(),
            failed_at_ms: 1_000,
            last_verify: Some(report(true)),
        };
        let fired = alerts.evaluate(1, Some(&failed));
        assert_eq!(
            fired
                .iter()
                .map(|e| (e.key.as_str(), e.firing))
                .collect::<Vec<_>>(),
            vec![("backup_failed/backups", true)]
        );
        let ok = BackupHealth::Ok {
            last_verify: report(true),
        };
        assert!(!alerts.evaluate(2, Some(&ok))[0].firing);
    }
}
