//! Secrets at rest: the data folder holds the ledger (with the unrevealed server seeds, from
//! which the next outcomes can be computed), the ops token, the backup and launch keys,
//! backups and logs. Only their owner may read them: `croupier up`, `node` and `control` set
//! the umask to 077 (so every file they and their children create is 0600, every folder
//! 0700) and repair what is already there, with a warning per path they had to tighten.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Group and other permission bits: none may be set on anything in the data folder.
const OPEN_TO_OTHERS: u32 = 0o077;

/// From now on, files this process and its children create are private to their owner.
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(OPEN_TO_OTHERS));
}

/// Takes group and other permissions off `folder` and everything under it (symbolic links
/// are not followed); returns how many paths were repaired.
pub fn lock_down(folder: &Path) -> std::io::Result<usize> {
    let mut repaired = 0;
    let mut pending = vec![folder.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Gone since its folder was listed: a sibling process's journal or temporary file
            // (nodes started together share the folder). Nothing left to tighten.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path != folder => continue,
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & OPEN_TO_OTHERS != 0 {
            let tight = mode & 0o7777 & !OPEN_TO_OTHERS;
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(tight)) {
                Ok(()) => {}
                // Gone between its look-up and its repair (as above).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && path != folder => continue,
                Err(e) => return Err(e),
            }
            tracing::warn!(
                path = %path.display(), was = format!("{:o}", mode & 0o7777), now = format!("{tight:o}"),
                "a data file was readable by other users; repaired"
            );
            repaired += 1;
        }
        if meta.is_dir() {
            pending.extend(listing(&path, path != folder)?);
        }
    }
    Ok(repaired)
}

/// The paths in `folder`; none when it may vanish (`may_vanish`) and has.
fn listing(folder: &Path, may_vanish: bool) -> std::io::Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_vanish => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut paths = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => paths.push(entry.path()),
            // The folder went while it was being read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_vanish => break,
            Err(e) => return Err(e),
        }
    }
    Ok(paths)
}

/// `private_umask` and `lock_down` of `folder` (created if missing), for a command's start.
pub fn secure_data_folder(folder: &Path) -> anyhow::Result<()> {
    private_umask();
    std::fs::create_dir_all(folder)?;
    lock_down(folder).map_err(|e| anyhow::anyhow!("securing {}: {e}", folder.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn looser_modes_are_repaired_and_tight_ones_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("backups")).unwrap();
        for (file, m) in [
            ("ledger.db", 0o644),
            ("backups/seg", 0o666),
            ("ops-token", 0o600),
        ] {
            std::fs::write(data.join(file), b"x").unwrap();
            std::fs::set_permissions(data.join(file), std::fs::Permissions::from_mode(m)).unwrap();
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(data.join("backups"), std::fs::Permissions::from_mode(0o775))
            .unwrap();
        assert_eq!(lock_down(&data).unwrap(), 4);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("backups")), 0o700);
        assert_eq!(mode(&data.join("ledger.db")), 0o600);
        assert_eq!(mode(&data.join("backups/seg")), 0o600);
        assert_eq!(lock_down(&data).unwrap(), 0, "nothing left to repair");
    }

    /// Nodes started together secure the folder while their siblings make and remove
    /// journal files in it: a file gone mid-walk is not an error.
    #[test]
    fn files_that_vanish_during_the_walk_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (data, stop) = (data.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for n in 0..20 {
                        let sub = data.join(format!("tmp-{n}"));
                        std::fs::create_dir_all(&sub).unwrap();
                        std::fs::write(sub.join("journal"), b"x").unwrap();
                    }
                    for n in 0..20 {
                        std::fs::remove_dir_all(data.join(format!("tmp-{n}"))).unwrap();
                    }
                }
            })
        };
        let failures = (0..2_000).filter(|_| lock_down(&data).is_err()).count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
        assert_eq!(failures, 0);
        assert!(
            lock_down(&dir.path().join("missing")).is_err(),
            "the folder itself must exist"
        );
    }
}
