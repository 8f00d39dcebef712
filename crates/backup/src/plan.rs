//! The schedule and retention planner: given what the target holds and the time, what to take
//! now (a weekly full, a daily incremental, as configured) and what to delete (keeping the
//! newest backup of each of the last N days, M weeks and K months, the parents the kept
//! incrementals need, and the shipped segments of the point-in-time window). Pure: no I/O.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::catalog::{BackupEntry, Catalog};
use crate::manifest::BackupKind;

pub const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// A full backup when the newest full is this old.
    pub full_every_ms: i64,
    /// An incremental backup when the newest backup of any kind is this old.
    pub incremental_every_ms: i64,
    pub keep_daily: usize,
    pub keep_weekly: usize,
    pub keep_monthly: usize,
    /// How far back point-in-time restore to the second reaches (shipped segments kept).
    pub keep_segments_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            full_every_ms: 7 * DAY_MS,
            incremental_every_ms: DAY_MS,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 12,
            keep_segments_ms: 7 * DAY_MS,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub take: Option<BackupKind>,
    pub prune_backups: Vec<String>,
    pub prune_segments: Vec<String>,
}

fn day(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Weeks start on Monday (1970-01-01 was a Thursday).
fn week(ms: i64) -> i64 {
    (day(ms) + 3).div_euclid(7)
}

/// "YYYY-MM" in UTC.
fn month(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339(at).to_string()[..7].to_owned()
}

pub fn plan(catalog: &Catalog, now_ms: i64, policy: &Policy) -> Plan {
    let complete: Vec<&BackupEntry> = catalog.backups.iter().filter(|b| b.complete).collect();
    let keep = kept(&complete, policy);
    let newest_complete_cut = complete.last().map(|b| b.cut_ms).unwrap_or(i64::MIN);
    let prune_backups = catalog
        .backups
        .iter()
        .filter(|b| {
            if b.complete {
                !keep.contains(b.id.as_str())
            } else {
                // Interrupted: pieces without a manifest, older than a finished backup.
                b.cut_ms < newest_complete_cut
            }
        })
        .map(|b| b.id.clone())
        .collect();
    let oldest_kept_cut = complete
        .iter()
        .find(|b| keep.contains(b.id.as_str()))
        .map(|b| b.cut_ms)
        .unwrap_or(i64::MIN);
    let segment_floor = (now_ms - policy.keep_segments_ms).max(oldest_kept_cut);
    let prune_segments = catalog
        .segments
        .iter()
        .filter(|s| s.cut_ms < segment_floor)
        .map(|s| s.name.clone())
        .collect();
    Plan {
        take: due(&complete, now_ms, policy),
        prune_backups,
        prune_segments,
    }
}

/// The backup to take now, if any: a full when there is none or the newest is old enough,
/// else an incremental when the newest backup is.
fn due(complete: &[&BackupEntry], now_ms: i64, policy: &Policy) -> Option<BackupKind> {
    let newest_full = complete.iter().rev().find(|b| b.kind == BackupKind::Full);
    match (newest_full, complete.last()) {
        (None, _) => Some(BackupKind::Full),
        (Some(full), _) if now_ms - full.cut_ms >= policy.full_every_ms => Some(BackupKind::Full),
        (_, Some(newest)) if now_ms - newest.cut_ms >= policy.incremental_every_ms => {
            Some(BackupKind::Incremental)
        }
        _ => None,
    }
}

/// The complete backups retention keeps: the newest of each of the last days, weeks and
/// months, the newest full, and the full each kept incremental was taken against.
fn kept<'a>(complete: &[&'a BackupEntry], policy: &Policy) -> BTreeSet<&'a str> {
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    let mut keep_newest_per = |count: usize, bucket: &dyn Fn(i64) -> String| {
        let mut buckets = BTreeSet::new();
        for backup in complete.iter().rev() {
            if buckets.len() == count && !buckets.contains(&bucket(backup.cut_ms)) {
                break;
            }
            if buckets.insert(bucket(backup.cut_ms)) {
                keep.insert(backup.id.as_str());
            }
        }
    };
    keep_newest_per(policy.keep_daily, &|ms| day(ms).to_string());
    keep_newest_per(policy.keep_weekly, &|ms| week(ms).to_string());
    keep_newest_per(policy.keep_monthly, &month);
    let fulls = || complete.iter().rev().filter(|b| b.kind == BackupKind::Full);
    if let Some(full) = fulls().next() {
        keep.insert(full.id.as_str());
    }
    // An incremental needs the full backup it was taken against: the newest full before it.
    let parents: Vec<&str> = complete
        .iter()
        .filter(|b| b.kind == BackupKind::Incremental && keep.contains(b.id.as_str()))
        .filter_map(|incr| fulls().find(|b| b.cut_ms < incr.cut_ms))
        .map(|b| b.id.as_str())
        .collect();
    keep.extend(parents);
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{BackupEntry, SegmentEntry};
    use crate::manifest::backup_id;

    const HOUR: i64 = 3_600_000;
    /// 2026-01-05 00:00 UTC, a Monday.
    const MONDAY: i64 = 1_767_571_200_000;

    fn backup(kind: BackupKind, cut_ms: i64) -> BackupEntry {
        BackupEntry {
            id: backup_id(kind, cut_ms),
            kind,
            cut_ms,
            complete: true,
            objects: Vec::new(),
            bytes: 0,
        }
    }

    fn policy(daily: usize, weekly: usize, monthly: usize) -> Policy {
        Policy {
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
            ..Policy::default()
        }
    }

    /// The history a daily schedule with weekly fulls leaves after `days` days.
    fn history(days: i64) -> Catalog {
        let backups = (0..days)
            .map(|d| {
                let kind = if d % 7 == 0 {
                    BackupKind::Full
                } else {
                    BackupKind::Incremental
                };
                backup(kind, MONDAY + d * DAY_MS + HOUR)
            })
            .collect();
        Catalog {
            backups,
            segments: Vec::new(),
        }
    }

    #[test]
    fn calendar_buckets() {
        assert_eq!(week(MONDAY), week(MONDAY + 6 * DAY_MS + 23 * HOUR));
        assert_ne!(week(MONDAY), week(MONDAY - 1));
        assert_eq!(month(MONDAY), "2026-01");
        assert_eq!(month(MONDAY - 5 * DAY_MS), "2025-12");
    }

    #[test]
    fn an_empty_target_gets_a_full_backup() {
        let plan = plan(&Catalog::default(), MONDAY, &Policy::default());
        assert_eq!(plan.take, Some(BackupKind::Full));
        assert!(plan.prune_backups.is_empty());
    }

    #[test]
    fn daily_incrementals_and_weekly_fulls() {
        let catalog = history(3);
        let last = catalog.backups.last().unwrap().cut_ms;
        let p = Policy::default();
        assert_eq!(plan(&catalog, last + HOUR, &p).take, None);
        assert_eq!(
            plan(&catalog, last + DAY_MS, &p).take,
            Some(BackupKind::Incremental)
        );
        let catalog = history(7);
        let last = catalog.backups.last().unwrap().cut_ms;
        assert_eq!(
            plan(&catalog, last + DAY_MS, &p).take,
            Some(BackupKind::Full)
        );
    }

    #[test]
    fn retention_keeps_daily_weekly_monthly_and_needed_parents() {
        let catalog = history(70);
        let now = catalog.backups.last().unwrap().cut_ms + HOUR;
        let plan = plan(&catalog, now, &policy(3, 2, 2));
        let kept: Vec<&BackupEntry> = catalog
            .backups
            .iter()
            .filter(|b| !plan.prune_backups.contains(&b.id))
            .collect();
        let kept_days: Vec<i64> = kept.iter().map(|b| (b.cut_ms - MONDAY) / DAY_MS).collect();
        // Daily: days 67-69. Weekly (weeks start on days 56, 63): 69 and 62. Monthly: 69
        // (March 15) and 54 (February 28). Parents of those incrementals: the fulls of days
        // 63, 56 and 49.
        assert_eq!(kept_days, vec![49, 54, 56, 62, 63, 67, 68, 69]);
        for b in &kept {
            if b.kind == BackupKind::Incremental {
                let parent = kept
                    .iter()
                    .rev()
                    .find(|p| p.kind == BackupKind::Full && p.cut_ms < b.cut_ms);
                assert!(parent.is_some(), "{} lost its parent", b.id);
            }
        }
    }

    #[test]
    fn segments_outside_the_window_and_interrupted_backups_go() {
        let mut catalog = history(10);
        let now = catalog.backups.last().unwrap().cut_ms + HOUR;
        let mut interrupted = backup(BackupKind::Full, MONDAY + 2 * HOUR);
        interrupted.id.push_str("-x");
        interrupted.complete = false;
        catalog.backups.insert(0, interrupted.clone());
        catalog.segments = [now - 8 * DAY_MS, now - 2 * DAY_MS, now - 1000]
            .iter()
            .map(|&cut_ms| SegmentEntry {
                name: format!("segments/{cut_ms}.seg"),
                cut_ms,
                bytes: 1,
            })
            .collect();
        let plan = plan(&catalog, now, &policy(30, 0, 0));
        assert!(plan.prune_backups.contains(&interrupted.id));
        assert_eq!(plan.prune_segments, vec![catalog.segments[0].name.clone()]);
    }
}
