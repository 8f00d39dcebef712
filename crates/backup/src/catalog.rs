//! What a target holds, from object names alone (no piece is opened): the backups, by id,
//! and the shipped segments, by cut.

use std::collections::BTreeMap;

use crate::error::BackupError;
use crate::manifest::{
    BACKUPS, BackupKind, SEGMENTS, manifest_name, parse_backup_id, parse_segment_name,
};
use crate::target::Target;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupEntry {
    pub id: String,
    pub kind: BackupKind,
    pub cut_ms: i64,
    /// Whether its manifest is there (an interrupted backup has pieces but no manifest).
    pub complete: bool,
    /// Every object of the backup.
    pub objects: Vec<String>,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEntry {
    pub name: String,
    pub cut_ms: i64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Oldest first.
    pub backups: Vec<BackupEntry>,
    /// Oldest first.
    pub segments: Vec<SegmentEntry>,
}

impl Catalog {
    pub fn load(target: &Target) -> Result<Catalog, BackupError> {
        let mut backups: BTreeMap<String, BackupEntry> = BTreeMap::new();
        for (name, size) in target.list(BACKUPS)? {
            let Some(id) = name
                .strip_prefix(BACKUPS)
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|rest| rest.split('/').next())
            else {
                continue;
            };
            let Some((cut_ms, kind)) = parse_backup_id(id) else {
                continue;
            };
            let entry = backups.entry(id.to_owned()).or_insert_with(|| BackupEntry {
                id: id.to_owned(),
                kind,
                cut_ms,
                complete: false,
                objects: Vec::new(),
                bytes: 0,
            });
            entry.complete |= name == manifest_name(id);
            entry.objects.push(name);
            entry.bytes += size;
        }
        let segments = target
            .list(SEGMENTS)?
            .into_iter()
            .filter_map(|(name, bytes)| {
                parse_segment_name(&name).map(|cut_ms| SegmentEntry {
                    name,
                    cut_ms,
                    bytes,
                })
            })
            .collect();
        let mut backups: Vec<BackupEntry> = backups.into_values().collect();
        backups.sort_by_key(|b| b.cut_ms);
        Ok(Catalog { backups, segments })
    }

    /// The newest backup whose cut is at or before `at_ms` (any time when `None`).
    pub fn newest_at(&self, at_ms: Option<i64>) -> Option<&BackupEntry> {
        self.backups
            .iter()
            .rev()
            .find(|b| at_ms.is_none_or(|at| b.cut_ms <= at))
    }

    pub fn newest_full(&self) -> Option<&BackupEntry> {
        self.backups
            .iter()
            .rev()
            .find(|b| b.kind == BackupKind::Full && b.complete)
    }
}
