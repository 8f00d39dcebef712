//! Continuous shipping: every call to `ship_once` (the CLI calls it each second) takes a cut
//! and stores the rows changed since the previous one as a segment, so the newest restorable
//! state is about a second old. Segments chain: each starts where the one before ended (its
//! cut, its last journal entry), which is how a missing one is found.

use std::path::Path;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::cut::Cutter;
use crate::delta::{self, Delta};
use crate::error::BackupError;
use crate::manifest::{Manifest, segment_name};
use crate::pieces;
use crate::seal::BackupKey;
use crate::target::Target;

/// A segment is stored even with nothing changed once this long has passed, so the data age
/// of an idle store stays known.
pub const HEARTBEAT_MS: i64 = 60_000;

pub struct Shipper {
    cutter: Cutter,
    since_ms: i64,
    next_seq: i64,
    session_ttl_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Shipped {
    pub name: String,
    pub cut_ms: i64,
    /// The last journal entry the store had at the cut.
    pub last_seq: i64,
    pub entries: usize,
    pub bytes: u64,
    /// How long the cut held the write lock.
    pub lock_held_us: u64,
}

/// Reads a stored segment.
pub fn load_segment(target: &Target, key: &BackupKey, name: &str) -> Result<Delta, BackupError> {
    let raw = pieces::get_unlisted(target, key, name)?;
    serde_json::from_slice(&raw).map_err(|e| BackupError::CorruptPiece {
        name: name.to_owned(),
        reason: format!("not a segment: {e}"),
    })
}

impl Shipper {
    /// Goes on from the newest segment or backup in the target, whichever is newer.
    pub fn resume(
        db: &Path,
        target: &Target,
        key: &BackupKey,
        session_ttl_ms: i64,
    ) -> Result<Shipper, BackupError> {
        let catalog = Catalog::load(target)?;
        let backup = catalog.backups.iter().rev().find(|b| b.complete);
        let segment = catalog.segments.last();
        let (since_ms, next_seq) = match (backup, segment) {
            (None, _) => {
                return Err(BackupError::NotCovered(
                    "shipping: no backup to ship after; take a full snapshot first".into(),
                ));
            }
            (Some(b), Some(s)) if s.cut_ms > b.cut_ms => {
                let delta = load_segment(target, key, &s.name)?;
                (delta.cut_ms, delta.last_seq + 1)
            }
            (Some(b), _) => {
                let manifest = Manifest::load(target, key, &b.id)?;
                (manifest.cut_ms, manifest.last_seq + 1)
            }
        };
        Ok(Shipper {
            cutter: Cutter::open(db)?,
            since_ms,
            next_seq,
            session_ttl_ms,
        })
    }

    /// The cut the next segment starts at.
    pub fn since_ms(&self) -> i64 {
        self.since_ms
    }

    /// Ships one segment, unless nothing changed and the heartbeat is not due.
    pub fn ship_once(
        &mut self,
        target: &Target,
        key: &BackupKey,
    ) -> Result<Option<Shipped>, BackupError> {
        let (since, from, ttl) = (self.since_ms, self.next_seq, self.session_ttl_ms);
        let delta = self
            .cutter
            .with_cut(|live, cut_ms| delta::read(live, since, cut_ms, from, ttl))?;
        if delta.cut_ms <= since
            || (!delta.carries_changes() && delta.cut_ms - since < HEARTBEAT_MS)
        {
            return Ok(None);
        }
        let name = segment_name(delta.cut_ms);
        let bytes = pieces::put_unlisted(target, key, &name, &serde_json::to_vec(&delta)?)?;
        self.since_ms = delta.cut_ms;
        self.next_seq = delta.last_seq + 1;
        Ok(Some(Shipped {
            name,
            cut_ms: delta.cut_ms,
            last_seq: delta.last_seq,
            entries: delta.journal.len(),
            bytes,
            lock_held_us: self.cutter.last_lock_hold().as_micros() as u64,
        }))
    }
}
