//! The control plane's backup duty: on a thread of its own it ships the ledger's new rows
//! every second and runs the backup schedule (weekly full, daily incremental, retention,
//! restore tests) from `croupier-backup`; every restore test's report is kept in the state;
//! a failed or overdue restore test becomes an alert (`backup_failed`, `backup_overdue`) like
//! any other, and `/api/v1/backups` and the dashboard show the last results.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use croupier_backup::{
    BackupHealth, BackupKey, BackupScheduler, Policy, SchedulerConfig, Shipper, Target,
};
use serde::Serialize;

use crate::engine::AlertEvent;
use crate::state::State;

/// What the control plane backs up, where, and how often it proves it.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// The live ledger file.
    pub db: PathBuf,
    /// A folder or `s3://bucket/prefix`.
    pub target: String,
    pub key: BackupKey,
    pub verify_every: Duration,
    pub policy: Policy,
    pub scratch_dir: PathBuf,
    pub session_ttl_ms: i64,
}

/// What the dashboard and the alerts read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupStatus {
    pub health: Option<BackupHealth>,
    /// The newest shipped cut.
    pub last_cut_ms: Option<i64>,
    /// The newest backup taken by the schedule.
    pub last_backup: Option<String>,
    /// The last error of the schedule or the shipping, if the last attempt failed.
    pub error: Option<String>,
}

/// How often the schedule is asked what is due.
const SCHEDULE_EVERY: Duration = Duration::from_secs(10);

/// Starts the backup thread; it runs until the process ends.
pub fn spawn(config: BackupConfig, state: Arc<State>) -> Arc<Mutex<BackupStatus>> {
    let status = Arc::new(Mutex::new(BackupStatus::default()));
    let shared = status.clone();
    std::thread::Builder::new()
        .name("backups".into())
        .spawn(move || run(config, state, shared))
        .expect("a backup thread");
    status
}

fn set(status: &Mutex<BackupStatus>, change: impl FnOnce(&mut BackupStatus)) {
    change(&mut status.lock());
}

fn run(config: BackupConfig, state: Arc<State>, status: Arc<Mutex<BackupStatus>>) {
    let scheduler_config = SchedulerConfig {
        db: config.db.clone(),
        target: config.target.clone(),
        policy: config.policy.clone(),
        verify_every_ms: config.verify_every.as_millis() as i64,
        scratch_dir: config.scratch_dir.clone(),
        session_ttl_ms: config.session_ttl_ms,
    };
    let (mut scheduler, target) = loop {
        let opened = BackupScheduler::new(
            scheduler_config.clone(),
            config.key.clone(),
            crate::now_ms(),
        )
        .and_then(|s| Ok((s, Target::open(&config.target)?)));
        match opened {
            Ok(opened) => break opened,
            Err(e) => {
                set(&status, |s| s.error = Some(e.to_string()));
                std::thread::sleep(SCHEDULE_EVERY);
            }
        }
    };
    if let Ok(Some(last)) = state.last_backup_verify() {
        scheduler.set_last_verify(last);
    }
    let mut shipper: Option<Shipper> = None;
    let mut last_schedule: Option<Instant> = None;
    loop {
        if last_schedule.is_none_or(|at| at.elapsed() >= SCHEDULE_EVERY) {
            last_schedule = Some(Instant::now());
            match scheduler.run_due(crate::now_ms()) {
                Ok(outcome) => {
                    if let Some(report) = &outcome.verify
                        && let Err(e) = state.add_backup_verify(report)
                    {
                        tracing::error!(error = %e, "cannot record a restore test");
                    }
                    set(&status, |s| {
                        if outcome.took.is_some() {
                            s.last_backup = outcome.took.clone();
                        }
                        s.error = None;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "backup schedule");
                    set(&status, |s| s.error = Some(e.to_string()));
                }
            }
        }
        if shipper.is_none() {
            shipper = Shipper::resume(&config.db, &target, &config.key, config.session_ttl_ms).ok();
        }
        if let Some(active) = &mut shipper {
            match active.ship_once(&target, &config.key) {
                Ok(_) => set(&status, |s| s.last_cut_ms = Some(active.since_ms())),
                Err(e) => {
                    tracing::warn!(error = %e, "shipping");
                    set(&status, |s| s.error = Some(e.to_string()));
                    shipper = None;
                }
            }
        }
        let health = scheduler.health(crate::now_ms());
        set(&status, |s| s.health = Some(health));
        std::thread::sleep(Duration::from_secs(1));
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
    pub fn evaluate(&mut self, now_s: u64, health: Option<&BackupHealth>) -> Vec<AlertEvent> {
        let now = match health {
            Some(BackupHealth::Failed { .. }) => Some("backup_failed"),
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
            severity: "critical".into(),
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
            (
                fired[0].key.as_str(),
                fired[0].firing,
                fired[0].severity.as_str()
            ),
            ("backup_failed/backups", true, "critical")
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
}
