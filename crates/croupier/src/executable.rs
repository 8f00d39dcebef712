//! What a restart through the supervisor may start, checked before the running child is
//! stopped: a regular file with an execute bit that is a script (`#!`) or an ELF executable.
//! Anything else (a data file, a folder, `/dev/zero`, a FIFO) would have stopped a serving
//! node only to fail starting its replacement, or hung the reading thread.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A file the supervisor may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executable {
    /// A `#!` script: it runs another executable, whose version only that one reports.
    Script,
    /// An ELF executable: its own version can be checked.
    Binary,
}

/// What `path` is, or why it cannot be started.
pub fn check(path: &Path) -> Result<Executable, String> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(format!("{shown} is not executable (no execute permission)"));
    }
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let read = file
        .read(&mut magic)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    match &magic[..read] {
        [b'#', b'!', ..] => Ok(Executable::Script),
        b"\x7fELF" => Ok(Executable::Binary),
        _ => Err(format!("{shown} is neither a script nor an ELF executable")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &[u8], mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn scripts_and_binaries_pass_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let script = file(dir.path(), "run", b"#!/bin/sh\nexec sleep 9\n", 0o755);
        assert_eq!(check(&script), Ok(Executable::Script));
        let current = std::env::current_exe().unwrap();
        assert_eq!(check(&current), Ok(Executable::Binary));
        let not_executable = file(dir.path(), "data", b"#!/bin/sh\n", 0o644);
        assert!(
            check(&not_executable)
                .unwrap_err()
                .contains("not executable")
        );
        let text = file(dir.path(), "text", b"hello", 0o755);
        assert!(check(&text).unwrap_err().contains("neither"));
        let empty = file(dir.path(), "empty", b"", 0o755);
        assert!(check(&empty).is_err());
        assert!(
            check(dir.path())
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(
            check(Path::new("/dev/zero"))
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(
            check(&dir.path().join("missing"))
                .unwrap_err()
                .contains("cannot read")
        );
    }
}
