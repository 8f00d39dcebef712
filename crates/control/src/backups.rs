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
    BackupHealth, BackupKey, BackupScheduler, Pin, Policy, SchedulerConfig, Shipper, Target,
};
use serde::Serialize;

use crate::lease::Leadership;
use crate::state::State;
use croupier_monitor::engine::AlertEvent;
use croupier_monitor::severity::Severity;

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
    /// The nodes' seed key file: a node started on a restore (staging) needs it to deal
    /// from the restored, sealed seeds. Backups never hold it.
    pub seed_key_file: Option<PathBuf>,
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
    /// The newest state shipped, kept in the control plane's state: restore tests must
    /// reach it (a repository that restores less has been rolled back).
    pub pinned: Option<Pin>,
}

/// How often the schedule is asked what is due.
const SCHEDULE_EVERY: Duration = Duration::from_secs(10);

/// Starts the backup thread; it runs until the process ends, and works only while this
/// control plane leads (one shipper and one schedule per deployment).
pub fn spawn(
    config: BackupConfig,
    state: Arc<State>,
    leadership: Arc<Leadership>,
) -> Arc<Mutex<BackupStatus>> {
    let status = Arc::new(Mutex::new(BackupStatus::default()));
    let shared = status.clone();
    std::thread::Builder::new()
        .name("backups".into())
        .spawn(move || {
            while !leadership.is_leader() {
                std::thread::sleep(crate::lease::POLL);
            }
            run(config, state, shared, &leadership)
        })
        .expect("a backup thread");
    status
}

fn set(status: &Mutex<BackupStatus>, change: impl FnOnce(&mut BackupStatus)) {
    change(&mut status.lock());
}

fn run(
    config: BackupConfig,
    state: Arc<State>,
    status: Arc<Mutex<BackupStatus>>,
    leadership: &Leadership,
) {
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
    if let Ok(Some(pin)) = state.backup_pin(&config.target) {
        scheduler.pin(pin);
        set(&status, |s| s.pinned = Some(pin));
    }
    let mut shipper: Option<Shipper> = None;
    let mut last_schedule: Option<Instant> = None;
    loop {
        if !leadership.is_leader() {
            // The lease was lost (a PostgreSQL lease whose session stopped answering): the
            // new leader ships and schedules; this one waits to lead again.
            shipper = None;
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
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
                Ok(shipped) => {
                    if let Some(shipped) = shipped {
                        pin(&state, &config.target, &mut scheduler, &status, &shipped);
                    }
                    set(&status, |s| s.last_cut_ms = Some(active.since_ms()));
                }
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

/// Pins what was just shipped: in the state (it survives restarts, and the repository
/// cannot rewrite it) and in the scheduler's next restore tests.
fn pin(
    state: &State,
    target: &str,
    scheduler: &mut BackupScheduler,
    status: &Mutex<BackupStatus>,
    shipped: &croupier_backup::Shipped,
) {
    let pin = Pin {
        last_seq: shipped.last_seq,
        cut_ms: shipped.cut_ms,
    };
    scheduler.pin(pin);
    if let Err(e) = state.pin_backup(target, pin) {
        tracing::error!(error = %e, "cannot pin the newest shipped state");
    }
    set(status, |s| {
        s.pinned = Some(s.pinned.map_or(pin, |old| old.max(pin)))
    });
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
}
