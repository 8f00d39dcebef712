//! Which build is running: the crate version plus the first 12 hex digits of the BLAKE3 hash
//! of the executable itself, so two builds of the same version (a rolling update's new
//! binary, a rollback's old one) are told apart. `/healthz` reports it. BLAKE3 rather than
//! SHA-256: the release binary is over 100 MB and every node start hashes it (0.44 s with
//! SHA-256 here).

use std::path::Path;
use std::sync::OnceLock;

/// `<crate version>+<hash>` of the executable at `path`.
pub fn version_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut file, &mut hasher)?;
    let digest = hasher.finalize().to_hex();
    Ok(format!("{}+{}", env!("CARGO_PKG_VERSION"), &digest[..12]))
}

/// This process's build, computed once.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        std::env::current_exe()
            .and_then(|exe| version_of(&exe))
            .unwrap_or_else(|_| env!("CARGO_PKG_VERSION").to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_more_is_another_build() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, b"build one").unwrap();
        let first = version_of(&path).unwrap();
        assert!(first.starts_with(concat!(env!("CARGO_PKG_VERSION"), "+")));
        assert_eq!(first.len(), env!("CARGO_PKG_VERSION").len() + 13);
        std::fs::write(&path, b"build one!").unwrap();
        assert_ne!(version_of(&path).unwrap(), first);
        assert!(version().contains('+'), "the test binary hashes itself");
    }
}
