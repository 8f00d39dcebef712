//! Restoring into a new store: the newest backup at or before the chosen instant (its parent
//! first, for an incremental one), then the shipped segments up to that instant, each checked
//! against what it claims; then every ledger invariant. The work happens in a temporary file
//! beside the destination, renamed into place only when all checks pass, and a destination
//! that exists is refused: a restore never writes over a store.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::Connection;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::error::BackupError;
use crate::manifest::{BackupKind, Manifest};
use crate::pieces;
use crate::progress::Progress;
use crate::seal::BackupKey;
use crate::ship::load_segment;
use crate::state::LedgerState;
use crate::target::Target;

#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub backup_id: String,
    /// The cut the restored store holds: the store as committed at this instant.
    pub cut_ms: i64,
    pub segments_applied: usize,
    pub state: LedgerState,
    pub elapsed_ms: u64,
}

/// Removes the temporary file (and its WAL) unless the restore went through.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

fn exists_with_side_files(path: &Path) -> bool {
    ["", "-wal", "-shm"].iter().any(|suffix| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        Path::new(&p).exists()
    })
}

/// Restores the state at `at_ms` (the newest shipped cut at or before it; the newest of all
/// when `None`) into the new file `dest`: find the backup, materialise it in a scratch file,
/// replay the segments after it, verify the invariants, then move the file into place.
pub fn restore(
    target: &Target,
    key: &BackupKey,
    dest: &Path,
    at_ms: Option<i64>,
    progress: &dyn Progress,
) -> Result<Restored, BackupError> {
    let started = Instant::now();
    if exists_with_side_files(dest) {
        return Err(BackupError::TargetExists(dest.display().to_string()));
    }
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let catalog = Catalog::load(target)?;
    let manifest = find(target, key, &catalog, at_ms)?;
    let scratch = scratch_beside(dest, dir)?;
    let conn = materialise(target, key, &manifest, &scratch.0, progress)?;
    let (cut_ms, applied) = replay(target, key, &catalog, &manifest, at_ms, &conn, progress)?;
    let state = verify(&conn)?;
    drop(conn);
    commit(&scratch.0, dest, dir)?;
    Ok(Restored {
        backup_id: manifest.id,
        cut_ms,
        segments_applied: applied,
        state,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// The manifest of the newest backup at or before `at_ms`.
fn find(
    target: &Target,
    key: &BackupKey,
    catalog: &Catalog,
    at_ms: Option<i64>,
) -> Result<Manifest, BackupError> {
    let entry = catalog.newest_at(at_ms).ok_or_else(|| {
        BackupError::NotCovered(match at_ms {
            Some(at) => format!(
                "instant {at} ms: no backup that old in {}",
                target.location()
            ),
            None => format!("a restore: {} holds no backup", target.location()),
        })
    })?;
    Manifest::load(target, key, &entry.id)
}

/// A temporary file beside `dest`, removed unless the restore goes through.
fn scratch_beside(dest: &Path, dir: &Path) -> Result<Scratch, BackupError> {
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ledger.db".into());
    let scratch = Scratch(dir.join(format!(".{file_name}.restoring-{}", std::process::id())));
    if exists_with_side_files(&scratch.0) {
        return Err(BackupError::TargetExists(scratch.0.display().to_string()));
    }
    Ok(scratch)
}

/// The backup itself in `path`: its full backup, and its delta when it is incremental, each
/// checked against the state its manifest recorded.
fn materialise(
    target: &Target,
    key: &BackupKey,
    manifest: &Manifest,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Connection, BackupError> {
    let full = match (manifest.kind, &manifest.parent) {
        (BackupKind::Full, _) => manifest.clone(),
        (BackupKind::Incremental, Some(parent)) => Manifest::load(target, key, parent)?,
        (BackupKind::Incremental, None) => {
            return Err(BackupError::CorruptPiece {
                name: crate::manifest::manifest_name(&manifest.id),
                reason: "an incremental backup without a parent".into(),
            });
        }
    };
    write_full(target, key, &full, path, progress)?;
    let conn = Connection::open(path)?;
    // No fsync per applied segment: the file is synced once, after every check, before the
    // rename; a crash before that leaves only the temporary file, which is never used.
    conn.execute_batch("PRAGMA synchronous = OFF")?;
    check_state(&conn, &full)?;
    if manifest.kind == BackupKind::Incremental {
        let raw = pieces::get(target, key, &manifest.pieces[0])?;
        let delta: crate::delta::Delta =
            serde_json::from_slice(&raw).map_err(|e| BackupError::CorruptPiece {
                name: manifest.pieces[0].name.clone(),
                reason: format!("not a delta: {e}"),
            })?;
        apply_in_tx(&conn, &delta)?;
        check_state(&conn, manifest)?;
    }
    Ok(conn)
}

/// Applies the shipped segments after the backup up to `at_ms`, each continuing the one
/// before and ending on the chain head it recorded; (cut reached, segments applied).
fn replay(
    target: &Target,
    key: &BackupKey,
    catalog: &Catalog,
    manifest: &Manifest,
    at_ms: Option<i64>,
    conn: &Connection,
    progress: &dyn Progress,
) -> Result<(i64, usize), BackupError> {
    let mut cut_ms = manifest.cut_ms;
    let mut applied = 0;
    let segments: Vec<_> = catalog
        .segments
        .iter()
        .filter(|s| s.cut_ms > manifest.cut_ms && at_ms.is_none_or(|at| s.cut_ms <= at))
        .collect();
    progress.begin("apply segments", segments.len() as u64);
    for segment in segments {
        let delta = load_segment(target, key, &segment.name)?;
        if delta.since_ms > cut_ms || delta.cut_ms != segment.cut_ms {
            return Err(BackupError::SegmentGap {
                detail: format!(
                    "the store reaches cut {cut_ms} ms but {} starts at {} ms (a segment is missing)",
                    segment.name, delta.since_ms
                ),
            });
        }
        apply_in_tx(conn, &delta)?;
        let head = crate::state::chain_head(conn)?;
        if head != (delta.last_seq, delta.chain_head.clone()) {
            return Err(BackupError::Mismatch {
                what: format!("the hash-chain head of {}", segment.name),
                expected: format!("{} at entry {}", delta.chain_head, delta.last_seq),
                found: format!("{} at entry {}", head.1, head.0),
            });
        }
        cut_ms = delta.cut_ms;
        applied += 1;
        progress.advance(applied as u64);
    }
    progress.end();
    Ok((cut_ms, applied))
}

/// Every ledger invariant on the restored file; its state when they hold.
fn verify(conn: &Connection) -> Result<LedgerState, BackupError> {
    let currency = LedgerState::read(conn)?
        .totals
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| "EUR".into());
    let report = croupier_ledger::sqlite::check_integrity(conn, &currency)?;
    if !report.ok {
        return Err(BackupError::invariants(&report));
    }
    let state = LedgerState::read(conn)?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    Ok(state)
}

/// Syncs the verified file and renames it to `dest` (never over an existing store).
fn commit(scratch: &Path, dest: &Path, dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(scratch)?.sync_all()?;
    if exists_with_side_files(dest) {
        return Err(BackupError::TargetExists(dest.display().to_string()));
    }
    std::fs::rename(scratch, dest)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn write_full(
    target: &Target,
    key: &BackupKey,
    full: &Manifest,
    path: &Path,
    progress: &dyn Progress,
) -> Result<(), BackupError> {
    use std::io::Write;
    let total: u64 = full.pieces.iter().map(|p| p.raw_size).sum();
    progress.begin("fetch, check, unseal", total);
    let mut file = std::fs::File::create(path)?;
    let mut done = 0;
    for piece in &full.pieces {
        let raw = pieces::get(target, key, piece)?;
        file.write_all(&raw)?;
        done += raw.len() as u64;
        progress.advance(done);
    }
    file.sync_all()?;
    progress.end();
    Ok(())
}

fn apply_in_tx(conn: &Connection, delta: &crate::delta::Delta) -> Result<(), BackupError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match delta.apply(conn) {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The restored store must be exactly what the manifest recorded at its cut.
fn check_state(conn: &Connection, manifest: &Manifest) -> Result<(), BackupError> {
    let found = LedgerState::read(conn)?;
    match found.difference(&manifest.state) {
        None => Ok(()),
        Some((what, expected, found)) => Err(BackupError::Mismatch {
            what: format!("{} of manifest {}", what, manifest.id),
            expected,
            found,
        }),
    }
}
