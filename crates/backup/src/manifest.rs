//! The manifest of a backup and where a backup's objects live in the target:
//! `backups/<id>/manifest` (sealed JSON), `backups/<id>/piece-NNNN` (the pieces it lists) and
//! `segments/<cut ms>.seg` (the shipped journal segments, one per cut, outside any backup).

use serde::{Deserialize, Serialize};

use crate::error::BackupError;
use crate::pieces::{self, PieceRef};
use crate::seal::BackupKey;
use crate::state::LedgerState;
use crate::target::Target;

pub const FORMAT: u32 = 1;
pub const BACKUPS: &str = "backups";
pub const SEGMENTS: &str = "segments";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// A whole copy of the store.
    Full,
    /// The rows changed since a full backup (its `parent`): one delta.
    Incremental,
}

impl BackupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incr",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub kind: BackupKind,
    pub parent: Option<String>,
    /// The cut the backup holds: the store exactly as committed at this instant.
    pub cut_ms: i64,
    pub written_ms: i64,
    /// Journal entries the pieces carry (1..=last for a full backup).
    pub first_seq: i64,
    pub last_seq: i64,
    /// Schema version, counts, totals and chain head of the store at the cut.
    pub state: LedgerState,
    pub key_id: String,
    pub pieces: Vec<PieceRef>,
}

pub fn backup_id(kind: BackupKind, cut_ms: i64) -> String {
    format!("{cut_ms:013}-{}", kind.as_str())
}

/// The cut and kind a backup id names.
pub fn parse_backup_id(id: &str) -> Option<(i64, BackupKind)> {
    let (cut, kind) = id.split_once('-')?;
    let kind = match kind {
        "full" => BackupKind::Full,
        "incr" => BackupKind::Incremental,
        _ => return None,
    };
    Some((cut.parse().ok()?, kind))
}

pub fn manifest_name(id: &str) -> String {
    format!("{BACKUPS}/{id}/manifest")
}

pub fn piece_name(id: &str, index: usize) -> String {
    format!("{BACKUPS}/{id}/piece-{index:04}")
}

pub fn segment_name(cut_ms: i64) -> String {
    format!("{SEGMENTS}/{cut_ms:013}.seg")
}

pub fn parse_segment_name(name: &str) -> Option<i64> {
    name.strip_prefix(SEGMENTS)?
        .strip_prefix('/')?
        .strip_suffix(".seg")?
        .parse()
        .ok()
}

impl Manifest {
    pub fn store(&self, target: &Target, key: &BackupKey) -> Result<(), BackupError> {
        pieces::put_unlisted(
            target,
            key,
            &manifest_name(&self.id),
            &serde_json::to_vec(self)?,
        )?;
        Ok(())
    }

    pub fn load(target: &Target, key: &BackupKey, id: &str) -> Result<Manifest, BackupError> {
        let name = manifest_name(id);
        let raw = pieces::get_unlisted(target, key, &name)?;
        let manifest: Manifest =
            serde_json::from_slice(&raw).map_err(|e| BackupError::CorruptPiece {
                name: name.clone(),
                reason: format!("not a manifest: {e}"),
            })?;
        if manifest.id != id || manifest.format != FORMAT {
            return Err(BackupError::CorruptPiece {
                name,
                reason: format!(
                    "manifest of {} (format {}) stored as {id}",
                    manifest.id, manifest.format
                ),
            });
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        let id = backup_id(BackupKind::Incremental, 1_700_000_000_123);
        assert_eq!(id, "1700000000123-incr");
        assert_eq!(
            parse_backup_id(&id),
            Some((1_700_000_000_123, BackupKind::Incremental))
        );
        assert_eq!(parse_backup_id("x-full"), None);
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("segments/abc.seg"), None);
    }
}

/// Property tests: whatever bytes a repository holds where a manifest or a segment should be
/// (sealed with the right key, so they reach the parser), loading them is a typed error or a
/// manifest, never a panic.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn repository() -> (tempfile::TempDir, Target, BackupKey) {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::open(&dir.path().display().to_string()).unwrap();
        (dir, target, BackupKey::from_bytes(&[7; 32]))
    }

    /// JSON-ish text: random bytes, or a manifest's own fields with random values.
    fn manifest_like() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            (any::<u32>(), "[a-z0-9-]{0,24}", any::<i64>(), "\\PC{0,40}").prop_map(
                |(format, id, cut, junk)| {
                    format!(
                        r#"{{"format":{format},"id":"{id}","kind":"full","parent":null,"cut_ms":{cut},"x":"{junk}"}}"#
                    )
                    .into_bytes()
                }
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn any_manifest_bytes_load_or_fail_typed(bytes in manifest_like()) {
            let (_dir, target, key) = repository();
            let id = backup_id(BackupKind::Full, 1_700_000_000_000);
            pieces::put_unlisted(&target, &key, &manifest_name(&id), &bytes).unwrap();
            let _ = Manifest::load(&target, &key, &id);
            let segment = segment_name(1_700_000_000_000);
            pieces::put_unlisted(&target, &key, &segment, &bytes).unwrap();
            let _ = crate::ship::load_segment(&target, &key, &segment);
        }

        #[test]
        fn unsealed_bytes_in_place_of_a_manifest_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let (_dir, target, key) = repository();
            let id = backup_id(BackupKind::Incremental, 1_700_000_000_001);
            target.put(&manifest_name(&id), bytes.clone()).unwrap();
            prop_assert!(Manifest::load(&target, &key, &id).is_err());
        }
    }
}
