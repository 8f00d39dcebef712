//! Which build is running: the crate version plus the first 12 hex digits of the SHA-256 of
//! the executable itself, so two builds of the same version (a rolling update's new binary,
//! a rollback's old one) are told apart. `/healthz` reports it.

use std::path::Path;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// `<crate version>+<hash>` of the executable at `path`.
pub fn version_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    let digest = hex::encode(hasher.finalize());
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
