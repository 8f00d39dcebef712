//! Room kept back for a component's own records on a full disk: a file of real (allocated)
//! blocks in its data folder, given back to the filesystem when a write of its own fails for
//! lack of space, so that the write can be retried and the incident that says why the disk is
//! full gets recorded; made again once the filesystem has room. The same trick as the ballast
//! files operators keep on database volumes.

use std::path::PathBuf;

use parking_lot::Mutex;

pub struct Reserve {
    path: PathBuf,
    bytes: u64,
    /// Serialises release and restore.
    busy: Mutex<()>,
}

impl Reserve {
    /// Keeps `bytes` at `path` (made now if there is room; otherwise on a later `restore`).
    pub fn keep(path: PathBuf, bytes: u64) -> Reserve {
        let reserve = Reserve {
            path,
            bytes,
            busy: Mutex::new(()),
        };
        reserve.restore();
        reserve
    }

    pub fn is_held(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.bytes)
    }

    /// Gives the room back to the filesystem; whether there was any to give.
    pub fn release(&self) -> bool {
        let _busy = self.busy.lock();
        let held = self.is_held();
        let _ = std::fs::remove_file(&self.path);
        if held {
            tracing::warn!(file = %self.path.display(), bytes = self.bytes, "disk full: released the reserve to record what happens");
        }
        held
    }

    /// Makes the reserve again when it is missing and the filesystem has four times its size
    /// free; a failed attempt leaves no partial file.
    pub fn restore(&self) {
        let _busy = self.busy.lock();
        if self.is_held() {
            return;
        }
        let Some(folder) = self.path.parent() else {
            return;
        };
        let roomy = crate::room::of(folder).is_ok_and(|r| r.available_bytes >= 4 * self.bytes);
        if !roomy {
            return;
        }
        let made = std::fs::File::create(&self.path).and_then(|file| {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, self.bytes)?;
            file.sync_all()
        });
        if made.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_held_released_once_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = Reserve::keep(dir.path().join("reserve"), 1024 * 1024);
        assert!(reserve.is_held());
        assert!(reserve.release());
        assert!(!reserve.release(), "nothing left to give");
        reserve.restore();
        assert!(reserve.is_held());
    }
}
