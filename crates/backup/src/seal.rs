//! Authenticated encryption of every stored piece: XChaCha20-Poly1305 with a random 192-bit
//! nonce and a 32-byte key that lives in a key file or an environment variable, never in the
//! repository. A sealed piece is a 48-byte header (magic, key id, nonce, length) and the
//! ciphertext; the header and the piece's name are authenticated with it, so a piece moved to
//! another name, cut short, flipped or sealed under another key is each told apart.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::error::BackupError;

const MAGIC: &[u8; 8] = b"CRPBAK01";
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
pub const HEADER_LEN: usize = 8 + KEY_ID_LEN + NONCE_LEN + 8;
pub const KEY_ENV: &str = "CROUPIER_BACKUP_KEY";
pub const KEY_FILE_ENV: &str = "CROUPIER_BACKUP_KEY_FILE";

/// The backup key: 32 bytes, written as 64 hex digits.
#[derive(Clone)]
pub struct BackupKey {
    cipher: XChaCha20Poly1305,
    id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupKey({})", self.id_hex())
    }
}

impl BackupKey {
    pub fn from_hex(text: &str) -> Result<BackupKey, BackupError> {
        let bytes = hex::decode(text.trim())
            .map_err(|e| BackupError::Key(format!("not hex digits: {e}")))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| BackupError::Key(format!("{} bytes, 32 expected", b.len())))?;
        Ok(BackupKey::from_bytes(&key))
    }

    pub fn from_bytes(key: &[u8; 32]) -> BackupKey {
        let derived = blake3::derive_key("croupier backup key id v1", key);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&derived[..KEY_ID_LEN]);
        BackupKey {
            cipher: XChaCha20Poly1305::new(key.into()),
            id,
        }
    }

    pub fn from_file(path: &Path) -> Result<BackupKey, BackupError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BackupError::Key(format!("cannot read {}: {e}", path.display())))?;
        BackupKey::from_hex(&text).map_err(|e| BackupError::Key(format!("{}: {e}", path.display())))
    }

    /// `CROUPIER_BACKUP_KEY` (hex) or else the file named by `CROUPIER_BACKUP_KEY_FILE`.
    pub fn from_env() -> Result<BackupKey, BackupError> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            return BackupKey::from_hex(&text);
        }
        match std::env::var(KEY_FILE_ENV) {
            Ok(path) => BackupKey::from_file(Path::new(&path)),
            Err(_) => Err(BackupError::Key(format!(
                "no key: set {KEY_ENV} (64 hex digits) or {KEY_FILE_ENV} (a file holding them)"
            ))),
        }
    }

    /// A fresh random key, as the 64 hex digits a key file holds.
    pub fn generate_hex() -> Result<String, BackupError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| BackupError::Key(format!("no randomness: {e}")))?;
        Ok(hex::encode(key))
    }

    /// A short public fingerprint of the key, stored in every piece's header.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// Encrypts `plain` as the piece called `name`.
    pub fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, BackupError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| BackupError::Key(format!("no randomness: {e}")))?;
        let body_len = (plain.len() + 16) as u64;
        let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body_len.to_le_bytes());
        let aad = [&out[..], name.as_bytes()].concat();
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| BackupError::Key("encryption failed".into()))?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts the piece called `name`, naming what is wrong with it if anything is.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, BackupError> {
        let truncated = |expected: u64| BackupError::TruncatedPiece {
            name: name.to_owned(),
            expected,
            actual: sealed.len() as u64,
        };
        let corrupt = |reason: &str| BackupError::CorruptPiece {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        if sealed.len() < HEADER_LEN {
            return Err(truncated(HEADER_LEN as u64));
        }
        let (header, body) = sealed.split_at(HEADER_LEN);
        if &header[..8] != MAGIC {
            return Err(corrupt("not a sealed croupier backup piece"));
        }
        let key_id = &header[8..8 + KEY_ID_LEN];
        if key_id != self.id {
            return Err(BackupError::WrongKey {
                name: name.to_owned(),
                found: hex::encode(key_id),
                ours: self.id_hex(),
            });
        }
        let nonce = &header[8 + KEY_ID_LEN..8 + KEY_ID_LEN + NONCE_LEN];
        let mut len = [0u8; 8];
        len.copy_from_slice(&header[HEADER_LEN - 8..]);
        let body_len = u64::from_le_bytes(len);
        match (body.len() as u64).cmp(&body_len) {
            std::cmp::Ordering::Less => return Err(truncated(HEADER_LEN as u64 + body_len)),
            std::cmp::Ordering::Greater => return Err(corrupt("bytes after the sealed body")),
            std::cmp::Ordering::Equal => {}
        }
        let aad = [header, name.as_bytes()].concat();
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| corrupt("authentication failed (altered bytes)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> BackupKey {
        BackupKey::from_bytes(&[byte; 32])
    }

    #[test]
    fn round_trip() {
        let sealed = key(1).seal("p", b"hello").unwrap();
        assert_eq!(key(1).open("p", &sealed).unwrap(), b"hello");
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let sealed = key(1).seal("p", b"hello world").unwrap();
        assert!(matches!(
            key(2).open("p", &sealed),
            Err(BackupError::WrongKey { .. })
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            key(1).open("p", &flipped),
            Err(BackupError::CorruptPiece { .. })
        ));
        assert!(matches!(
            key(1).open("p", &sealed[..sealed.len() - 3]),
            Err(BackupError::TruncatedPiece { .. })
        ));
        assert!(matches!(
            key(1).open("p", &sealed[..10]),
            Err(BackupError::TruncatedPiece { .. })
        ));
        assert!(matches!(
            key(1).open("other-name", &sealed),
            Err(BackupError::CorruptPiece { .. })
        ));
    }

    #[test]
    fn keys_parse_from_hex_only_at_the_right_length() {
        let text = BackupKey::generate_hex().unwrap();
        assert_eq!(text.len(), 64);
        assert!(BackupKey::from_hex(&text).is_ok());
        assert!(matches!(
            BackupKey::from_hex("abcd"),
            Err(BackupError::Key(_))
        ));
        assert!(matches!(
            BackupKey::from_hex("zz"),
            Err(BackupError::Key(_))
        ));
    }
}
