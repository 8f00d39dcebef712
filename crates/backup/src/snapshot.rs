//! Taking backups of the live store without stopping play. A full backup copies the file
//! with SQLite's online backup API from a snapshot pinned at a cut, then cuts the copy into
//! pieces (zstd, sealed, checksummed) and writes the manifest last. An incremental backup is
//! one delta: every row changed since its parent full backup's cut.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

use crate::catalog::Catalog;
use crate::cut::{Cutter, now_ms};
use crate::delta;
use crate::error::BackupError;
use crate::manifest::{BackupKind, FORMAT, Manifest, backup_id, piece_name};
use crate::pieces;
use crate::progress::Progress;
use crate::seal::BackupKey;
use crate::state::{LedgerState, chain_head};
use crate::target::Target;

/// Raw bytes of the store per piece: small enough to hold in memory, large enough to be few.
const PIECE_BYTES: usize = 32 << 20;
/// Pages copied per backup step (1 KiB pages: 16 MiB per step).
const STEP_PAGES: i32 = 16_384;

/// Copies the store at a cut and uploads it as a full backup.
pub fn take_full(
    db: &Path,
    target: &Target,
    key: &BackupKey,
    progress: &dyn Progress,
) -> Result<Manifest, BackupError> {
    let cutter = Cutter::open(db)?;
    let scratch = tempfile::Builder::new()
        .prefix(".croupier-snapshot-")
        .tempdir_in(
            db.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )?;
    let copy_path = scratch.path().join("copy.db");
    let (cut_ms, state) = cutter.with_cut(|live, cut_ms| {
        let state = LedgerState::read(live)?;
        copy_pages(live, &copy_path, progress)?;
        Ok((cut_ms, state))
    })?;
    drop(cutter);
    {
        let copy = Connection::open(&copy_path)?;
        copy.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        let (last_seq, head) = chain_head(&copy)?;
        if (last_seq, &head) != (state.last_seq, &state.chain_head) {
            return Err(BackupError::Mismatch {
                what: "the copy and the snapshot it was taken from".into(),
                expected: state.chain_head.clone(),
                found: head,
            });
        }
    }
    let id = backup_id(BackupKind::Full, cut_ms);
    let pieces = upload_file(&copy_path, &id, target, key, progress)?;
    let manifest = Manifest {
        format: FORMAT,
        id,
        kind: BackupKind::Full,
        parent: None,
        cut_ms,
        written_ms: now_ms(),
        first_seq: 1,
        last_seq: state.last_seq,
        state,
        key_id: key.id_hex(),
        pieces,
    };
    manifest.store(target, key)?;
    Ok(manifest)
}

/// The online backup API, from the pinned snapshot into a new file.
fn copy_pages(live: &Connection, to: &Path, progress: &dyn Progress) -> Result<(), BackupError> {
    let mut copy = Connection::open(to)?;
    // A scratch file: it is checked and uploaded, never trusted across a crash.
    copy.execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = OFF")?;
    let backup = Backup::new(live, &mut copy)?;
    let mut started = false;
    loop {
        let step = backup.step(STEP_PAGES)?;
        let p = backup.progress();
        if !started {
            progress.begin("copy pages", p.pagecount.max(0) as u64);
            started = true;
        }
        progress.advance((p.pagecount - p.remaining).max(0) as u64);
        match step {
            StepResult::Done => break,
            StepResult::More => {}
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    progress.end();
    Ok(())
}

fn upload_file(
    path: &Path,
    id: &str,
    target: &Target,
    key: &BackupKey,
    progress: &dyn Progress,
) -> Result<Vec<pieces::PieceRef>, BackupError> {
    let mut file = std::fs::File::open(path)?;
    let total = file.metadata()?.len();
    progress.begin("compress, seal, upload", total);
    let mut pieces = Vec::new();
    let mut buffer = vec![0u8; PIECE_BYTES];
    let mut done = 0u64;
    loop {
        let mut filled = 0;
        while filled < buffer.len() {
            let n = file.read(&mut buffer[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        pieces.push(pieces::put(
            target,
            key,
            &piece_name(id, pieces.len()),
            &buffer[..filled],
        )?);
        done += filled as u64;
        progress.advance(done);
    }
    progress.end();
    Ok(pieces)
}

/// Stores the rows changed since the newest full backup as an incremental backup.
pub fn take_incremental(
    db: &Path,
    target: &Target,
    key: &BackupKey,
    session_ttl_ms: i64,
) -> Result<Manifest, BackupError> {
    let catalog = Catalog::load(target)?;
    let parent = catalog.newest_full().ok_or_else(|| {
        BackupError::NotCovered("an incremental backup: no full backup yet".into())
    })?;
    let parent = Manifest::load(target, key, &parent.id)?;
    let cutter = Cutter::open(db)?;
    let (delta, state) = cutter.with_cut(|live, cut_ms| {
        let delta = delta::read(
            live,
            parent.cut_ms,
            cut_ms,
            parent.last_seq + 1,
            session_ttl_ms,
        )?;
        Ok((delta, LedgerState::read(live)?))
    })?;
    let id = backup_id(BackupKind::Incremental, delta.cut_ms);
    let piece = pieces::put(
        target,
        key,
        &piece_name(&id, 0),
        &serde_json::to_vec(&delta)?,
    )?;
    let manifest = Manifest {
        format: FORMAT,
        id,
        kind: BackupKind::Incremental,
        parent: Some(parent.id),
        cut_ms: delta.cut_ms,
        written_ms: now_ms(),
        first_seq: delta.from_seq,
        last_seq: delta.last_seq,
        state,
        key_id: key.id_hex(),
        pieces: vec![piece],
    };
    manifest.store(target, key)?;
    Ok(manifest)
}
