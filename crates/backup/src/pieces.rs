//! How bytes become stored pieces and back: zstd, then sealing (see `seal`), then a BLAKE3
//! checksum of what is stored, listed with its size in the manifest. Reading a piece back
//! checks presence, size, checksum and authentication in that order, so the error names the
//! first thing wrong.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use crate::error::BackupError;
use crate::seal::BackupKey;
use crate::target::Target;

const ZSTD_LEVEL: i32 = 3;

thread_local! {
    /// Each thread's zstd context, kept between pieces. A new one per piece (what
    /// `zstd::bulk::compress` makes) allocates and zeroes its tables, about a megabyte at
    /// this level, which the shipper did every second: the kernel's page zeroing was a sixth
    /// of its CPU under load.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// `raw`, compressed with this thread's kept context.
fn compress(raw: &[u8]) -> Result<Vec<u8>, BackupError> {
    COMPRESSOR.with_borrow_mut(|kept| {
        let compressor = match kept {
            Some(compressor) => compressor,
            None => kept.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        Ok(compressor.compress(raw)?)
    })
}

/// A stored piece as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRef {
    pub name: String,
    /// Bytes stored (sealed, compressed).
    pub size: u64,
    /// Bytes before compression.
    pub raw_size: u64,
    pub blake3: String,
}

/// Compresses, seals and stores `raw` as `name`.
pub fn put(
    target: &Target,
    key: &BackupKey,
    name: &str,
    raw: &[u8],
) -> Result<PieceRef, BackupError> {
    let compressed = compress(raw)?;
    let sealed = key.seal(name, &compressed)?;
    let piece = PieceRef {
        name: name.to_owned(),
        size: sealed.len() as u64,
        raw_size: raw.len() as u64,
        blake3: blake3::hash(&sealed).to_hex().to_string(),
    };
    target.put(name, sealed)?;
    Ok(piece)
}

/// Fetches a listed piece and gives back its raw bytes.
pub fn get(target: &Target, key: &BackupKey, piece: &PieceRef) -> Result<Vec<u8>, BackupError> {
    let sealed = target
        .get(&piece.name)?
        .ok_or_else(|| BackupError::MissingPiece {
            name: piece.name.clone(),
        })?;
    let actual = sealed.len() as u64;
    if actual < piece.size {
        return Err(BackupError::TruncatedPiece {
            name: piece.name.clone(),
            expected: piece.size,
            actual,
        });
    }
    let checksum = blake3::hash(&sealed).to_hex().to_string();
    if actual != piece.size || checksum != piece.blake3 {
        return Err(BackupError::CorruptPiece {
            name: piece.name.clone(),
            reason: format!(
                "BLAKE3 {checksum} over {actual} bytes, the manifest lists {} over {}",
                piece.blake3, piece.size
            ),
        });
    }
    decompress(
        &piece.name,
        &key.open(&piece.name, &sealed)?,
        piece.raw_size,
    )
}

/// Compresses, seals and stores a piece nothing lists (a manifest, a segment).
pub fn put_unlisted(
    target: &Target,
    key: &BackupKey,
    name: &str,
    raw: &[u8],
) -> Result<u64, BackupError> {
    let sealed = key.seal(name, &compress(raw)?)?;
    let size = sealed.len() as u64;
    target.put(name, sealed)?;
    Ok(size)
}

/// Fetches a piece nothing lists; its own sealed header says how long it must be.
pub fn get_unlisted(target: &Target, key: &BackupKey, name: &str) -> Result<Vec<u8>, BackupError> {
    let sealed = target.get(name)?.ok_or_else(|| BackupError::MissingPiece {
        name: name.to_owned(),
    })?;
    let compressed = key.open(name, &sealed)?;
    zstd::stream::decode_all(compressed.as_slice()).map_err(|e| BackupError::CorruptPiece {
        name: name.to_owned(),
        reason: format!("zstd: {e}"),
    })
}

fn decompress(name: &str, compressed: &[u8], raw_size: u64) -> Result<Vec<u8>, BackupError> {
    let raw = zstd::bulk::decompress(compressed, raw_size as usize).map_err(|e| {
        BackupError::CorruptPiece {
            name: name.to_owned(),
            reason: format!("zstd: {e}"),
        }
    })?;
    if raw.len() as u64 != raw_size {
        return Err(BackupError::CorruptPiece {
            name: name.to_owned(),
            reason: format!("{} bytes after zstd, {raw_size} listed", raw.len()),
        });
    }
    Ok(raw)
}
