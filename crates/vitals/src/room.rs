//! The room left on the filesystem that holds a data folder (statvfs of the folder itself, not
//! the fullest disk of the host: a ledger on its own small volume fills long before `/`), and
//! the bytes the folder's files take. Nodes, the gateway and the control plane export these
//! for their data folder; the control plane alerts on them, naming the folder.

use std::path::Path;

/// One look at a folder's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Size of the filesystem.
    pub size_bytes: u64,
    /// Bytes an unprivileged writer may still use (statvfs `f_bavail`).
    pub available_bytes: u64,
}

impl Room {
    /// Share of the filesystem in use, as `df` counts it for unprivileged writers.
    pub fn used_ratio(&self) -> f64 {
        if self.size_bytes == 0 {
            return 0.0;
        }
        1.0 - self.available_bytes as f64 / self.size_bytes as f64
    }
}

/// The room on the filesystem holding `folder`.
pub fn of(folder: &Path) -> std::io::Result<Room> {
    let stat = rustix::fs::statvfs(folder)?;
    let block = stat.f_frsize.max(1);
    Ok(Room {
        size_bytes: stat.f_blocks.saturating_mul(block),
        available_bytes: stat.f_bavail.saturating_mul(block),
    })
}

/// Bytes taken by the files under `folder` (allocated blocks, so sparse files count what they
/// really take), at most `max_entries` deep-first entries looked at: a bound on the work.
pub fn folder_bytes(folder: &Path, max_entries: usize) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut seen = 0;
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > max_entries {
                return total;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_has_room_and_its_files_count() {
        let dir = tempfile::tempdir().unwrap();
        let room = of(dir.path()).unwrap();
        assert!(room.size_bytes > 0 && room.available_bytes <= room.size_bytes);
        assert!((0.0..=1.0).contains(&room.used_ratio()));
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        std::fs::write(dir.path().join("logs/a.log"), vec![7u8; 64 * 1024]).unwrap();
        assert!(folder_bytes(dir.path(), 100) >= 64 * 1024);
        assert!(of(&dir.path().join("missing")).is_err());
    }
}
