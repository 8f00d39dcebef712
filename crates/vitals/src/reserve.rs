//! Room kept back for a component's own records on a full disk: files of real (allocated)
//! blocks in its data folder, given back to the filesystem one at a time when a write of its
//! own fails for lack of space, so that the write can be retried and the incident that says
//! why the disk is full gets recorded even while something else keeps eating every freed
//! byte; made again once the filesystem has room. The same trick as the ballast files
//! operators keep on database volumes.

use std::path::PathBuf;

use parking_lot::Mutex;

/// Pieces the reserve is kept in: each failed write gives back one.
const PIECES: usize = 16;

pub struct Reserve {
    /// `<base>.<n>` for each piece.
    base: PathBuf,
    piece_bytes: u64,
    /// Serialises release and restore.
    busy: Mutex<()>,
}

impl Reserve {
    /// Keeps `bytes` in pieces next to `base`, made by the first `restore` (not here: a
    /// process serves first and makes its reserve after).
    pub fn keep(base: PathBuf, bytes: u64) -> Reserve {
        Reserve {
            base,
            piece_bytes: (bytes / PIECES as u64).max(4096),
            busy: Mutex::new(()),
        }
    }

    fn piece(&self, n: usize) -> PathBuf {
        let mut name = self.base.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn held(&self, n: usize) -> bool {
        std::fs::metadata(self.piece(n)).is_ok_and(|m| m.len() >= self.piece_bytes)
    }

    /// Pieces held now.
    pub fn pieces_held(&self) -> usize {
        (0..PIECES).filter(|&n| self.held(n)).count()
    }

    /// Gives one piece back to the filesystem; whether there was one to give.
    pub fn release(&self) -> bool {
        let _busy = self.busy.lock();
        let Some(n) = (0..PIECES).find(|&n| self.held(n)) else {
            return false;
        };
        let _ = std::fs::remove_file(self.piece(n));
        tracing::warn!(
            file = %self.piece(n).display(), bytes = self.piece_bytes,
            "disk full: gave back a piece of the reserve to record what happens"
        );
        true
    }

    /// Makes the missing pieces again when the filesystem has four times the whole reserve
    /// free; a failed attempt leaves no partial file.
    pub fn restore(&self) {
        let _busy = self.busy.lock();
        let missing: Vec<usize> = (0..PIECES).filter(|&n| !self.held(n)).collect();
        if missing.is_empty() {
            return;
        }
        let Some(folder) = self.base.parent() else {
            return;
        };
        let whole = self.piece_bytes * PIECES as u64;
        if !crate::room::of(folder).is_ok_and(|r| r.available_bytes >= 4 * whole) {
            return;
        }
        for n in missing {
            let path = self.piece(n);
            let made = std::fs::File::create(&path).and_then(|file| {
                rustix::fs::fallocate(
                    &file,
                    rustix::fs::FallocateFlags::empty(),
                    0,
                    self.piece_bytes,
                )?;
                file.sync_all()
            });
            if made.is_err() {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_held_given_back_piece_by_piece_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = Reserve::keep(dir.path().join("reserve"), 16 * 64 * 1024);
        assert_eq!(reserve.pieces_held(), 0, "made by the first restore");
        reserve.restore();
        assert_eq!(reserve.pieces_held(), PIECES);
        assert!(reserve.release());
        assert_eq!(reserve.pieces_held(), PIECES - 1);
        while reserve.release() {}
        assert_eq!(reserve.pieces_held(), 0);
        reserve.restore();
        assert_eq!(reserve.pieces_held(), PIECES);
    }
}
