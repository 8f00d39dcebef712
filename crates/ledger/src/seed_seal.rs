//! Unrevealed server seeds sealed at rest. Whoever reads an unrevealed server seed can compute
//! the player's next outcomes, so a copy of the ledger (the SQLite file, a PostgreSQL dump,
//! a backup) must not give them away. A store opened with `SeedKeys` stores each new server
//! seed as `sealed1:<key id>:<hex(nonce | ciphertext)>`, XChaCha20-Poly1305 under a 32-byte
//! key that lives in a file beside the ledger, never in it; the player and the seed's
//! published hash are authenticated with it, so a sealed seed moved to another row does not
//! open. A revealed seed is written back in clear (players verify their rounds with it).
//!
//! The key file holds one key per line (64 hex digits; `#` starts a comment): the first seals,
//! every line opens. Opening a store re-seals what the first key did not seal (clear seeds of
//! an older build, seeds of an older key); a seed whose key is not in the file stops the
//! store from opening, unless the operator chose to retire such seeds (`retire_lost`): then
//! each is revealed as unreadable and its player gets a fresh seed.

use std::path::Path;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::error::LedgerError;
use crate::model::Seed;
use crate::opened_seeds::OpenedSeeds;

const PREFIX: &str = "sealed1";
const NONCE_LEN: usize = 24;
const KEY_ID_LEN: usize = 4;

fn key_error(what: impl Into<String>) -> LedgerError {
    LedgerError::Storage(format!("seed key: {}", what.into()))
}

/// One 32-byte key and its public id (the first bytes of a hash of it).
#[derive(Clone)]
struct SeedKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl SeedKey {
    fn from_hex(text: &str) -> Result<SeedKey, LedgerError> {
        let bytes = hex::decode(text).map_err(|e| key_error(format!("not hex digits: {e}")))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| key_error(format!("{} bytes, 32 expected", b.len())))?;
        let digest = Sha256::new()
            .chain_update(b"croupier seed key id v1")
            .chain_update(key)
            .finalize();
        Ok(SeedKey {
            id: hex::encode(&digest[..KEY_ID_LEN]),
            cipher: XChaCha20Poly1305::new((&key).into()),
        })
    }
}

/// The keys of a seed key file: the first seals, all open.
#[derive(Clone)]
pub struct SeedKeys {
    keys: Vec<SeedKey>,
    retire_lost: bool,
}

impl std::fmt::Debug for SeedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        write!(f, "SeedKeys({ids:?})")
    }
}

impl SeedKeys {
    /// Parses a key file's text: one key per line, the sealing key first.
    pub fn from_text(text: &str) -> Result<SeedKeys, LedgerError> {
        let keys = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default().trim())
            .filter(|line| !line.is_empty())
            .map(SeedKey::from_hex)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(key_error("the key file holds no key"));
        }
        Ok(SeedKeys {
            keys,
            retire_lost: false,
        })
    }

    pub fn from_file(path: &Path) -> Result<SeedKeys, LedgerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| key_error(format!("cannot read {}: {e}", path.display())))?;
        SeedKeys::from_text(&text).map_err(|e| key_error(format!("{}: {e}", path.display())))
    }

    /// Whether opening a store retires the seeds sealed with a key no longer in the file
    /// (after the key was lost) instead of refusing to open.
    pub fn retiring_lost_seeds(mut self, retire: bool) -> SeedKeys {
        self.retire_lost = retire;
        self
    }

    /// The id of the key that seals.
    pub fn sealing_id(&self) -> &str {
        &self.keys[0].id
    }

    fn aad(player: &str, hash: &str) -> Vec<u8> {
        format!("croupier seed v1|{player}|{hash}").into_bytes()
    }

    fn seal(&self, player: &str, hash: &str, clear: &str) -> Result<String, LedgerError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| key_error(format!("no randomness: {e}")))?;
        let aad = Self::aad(player, hash);
        let payload = Payload {
            msg: clear.as_bytes(),
            aad: &aad,
        };
        let sealed = key
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .map_err(|_| key_error("encryption failed"))?;
        Ok(format!(
            "{PREFIX}:{}:{}{}",
            key.id,
            hex::encode(nonce),
            hex::encode(sealed)
        ))
    }

    fn open(&self, player: &str, hash: &str, stored: &str) -> Result<String, LedgerError> {
        let (id, body) = sealed_parts(stored).ok_or_else(|| key_error("not a sealed seed"))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| missing_key(player, id))?;
        let bytes = hex::decode(body).map_err(|_| key_error("a sealed seed is not hex"))?;
        if bytes.len() <= NONCE_LEN {
            return Err(key_error("a sealed seed is cut short"));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let aad = Self::aad(player, hash);
        let payload = Payload {
            msg: sealed,
            aad: &aad,
        };
        let clear = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| key_error(format!("the seed of {player} does not open (altered?)")))?;
        String::from_utf8(clear).map_err(|_| key_error("a sealed seed is not text"))
    }
}

fn missing_key(player: &str, id: &str) -> LedgerError {
    key_error(format!(
        "the seed of {player} is sealed with key {id}, which is not in this process's seed key file"
    ))
}

/// The key id and body of a sealed seed; `None` for a seed in clear.
fn sealed_parts(stored: &str) -> Option<(&str, &str)> {
    let rest = stored.strip_prefix(PREFIX)?.strip_prefix(':')?;
    rest.split_once(':')
}

/// Whether a stored server seed is sealed (rather than in clear).
pub fn is_sealed(stored: &str) -> bool {
    sealed_parts(stored).is_some()
}

/// What a store does with seeds: seal them with `SeedKeys`, or (no keys: tools and tests that
/// never deal seeds) keep them as given. Cheap to clone; clones share what they opened.
#[derive(Clone, Debug, Default)]
pub struct SeedVault(Option<Arc<Sealer>>);

/// The keys, and the seeds they sealed or opened in this process (`opened_seeds`).
#[derive(Debug)]
struct Sealer {
    keys: SeedKeys,
    opened: OpenedSeeds,
}

/// What opening a store does with one unrevealed seed.
#[derive(Debug, PartialEq, Eq)]
pub enum Reseal {
    /// Sealed with the sealing key already.
    Keep,
    /// Store this text instead (the seed sealed with the sealing key).
    Rewrite(String),
    /// Sealed with a key not in the file, and retiring such seeds was asked for.
    Retire,
}

impl SeedVault {
    pub fn sealed(keys: SeedKeys) -> SeedVault {
        SeedVault(Some(Arc::new(Sealer {
            keys,
            opened: OpenedSeeds::default(),
        })))
    }

    /// Whether seeds are sealed by this store.
    pub fn seals(&self) -> bool {
        self.0.is_some()
    }

    /// A new unrevealed seed as stored: sealed when this vault has keys.
    pub fn to_stored(&self, player: &str, hash: &str, clear: &str) -> Result<String, LedgerError> {
        let Some(sealer) = &self.0 else {
            return Ok(clear.to_owned());
        };
        let stored = sealer.keys.seal(player, hash, clear)?;
        sealer.opened.keep(player, hash, &stored, clear);
        Ok(stored)
    }

    /// `seed` with its server seed in clear, as callers of the store see it.
    pub fn opened(&self, mut seed: Seed) -> Result<Seed, LedgerError> {
        let Some((id, _)) = sealed_parts(&seed.server_seed) else {
            return Ok(seed);
        };
        let sealer = self
            .0
            .as_ref()
            .ok_or_else(|| missing_key(&seed.player, id))?;
        let (player, hash) = (&seed.player, &seed.server_seed_hash);
        seed.server_seed = match sealer.opened.get(player, hash, &seed.server_seed) {
            Some(clear) => clear,
            None => {
                let clear = sealer.keys.open(player, hash, &seed.server_seed)?;
                sealer.opened.keep(player, hash, &seed.server_seed, &clear);
                clear
            }
        };
        Ok(seed)
    }

    /// What to do with an unrevealed `seed` (as stored) when the store opens; a seed whose
    /// key is missing is an error unless retiring is asked for.
    pub fn reseal(&self, seed: &Seed) -> Result<Reseal, LedgerError> {
        let Some(Sealer { keys, .. }) = self.0.as_deref() else {
            return Ok(Reseal::Keep);
        };
        if let Some((id, _)) = sealed_parts(&seed.server_seed) {
            if id == keys.sealing_id() {
                return Ok(Reseal::Keep);
            }
            if !keys.keys.iter().any(|k| k.id == id) {
                return if keys.retire_lost {
                    Ok(Reseal::Retire)
                } else {
                    Err(missing_key(&seed.player, id))
                };
            }
        }
        let clear = self.opened(seed.clone())?.server_seed;
        self.to_stored(&seed.player, &seed.server_seed_hash, &clear)
            .map(Reseal::Rewrite)
    }

    /// The id of the sealing key, for a pass that skips what it already sealed.
    pub fn sealing_prefix(&self) -> Option<String> {
        self.0
            .as_ref()
            .map(|sealer| format!("{PREFIX}:{}:", sealer.keys.sealing_id()))
    }
}

/// What sealing a store's unrevealed seeds changed when it opened: seeds sealed again (they
/// were clear, or sealed with an older key), seeds retired for a lost key.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    pub resealed: usize,
    pub retired: usize,
}

impl ResealReport {
    /// A warning when anything changed (an operator wants to know seeds were retired).
    pub fn log(&self) {
        if self.resealed > 0 || self.retired > 0 {
            tracing::warn!(
                resealed = self.resealed,
                retired = self.retired,
                "unrevealed server seeds sealed with the current seed key"
            );
        }
    }
}

/// A fresh server seed and its published hash, for a seed that replaces a retired one
/// (hex of 32 random bytes; the hash is the games' `server_seed_hash`: SHA-256, hex).
pub fn fresh_server_seed() -> Result<(String, String), LedgerError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| key_error(format!("no randomness: {e}")))?;
    let seed = hex::encode(bytes);
    let hash = hex::encode(Sha256::digest(seed.as_bytes()));
    Ok((seed, hash))
}

/// A fresh key file's text (64 hex digits and a newline).
pub fn generate_key_hex() -> Result<String, LedgerError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| key_error(format!("no randomness: {e}")))?;
    Ok(format!("{}\n", hex::encode(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn seed(stored: &str) -> Seed {
        Seed {
            id: 1,
            player: "alice".into(),
            server_seed: stored.into(),
            server_seed_hash: "h".into(),
            client_seed: "c".into(),
            next_nonce: 0,
            created_ms: 0,
            revealed_ms: None,
        }
    }

    fn vault(text: &str) -> SeedVault {
        SeedVault::sealed(SeedKeys::from_text(text).unwrap())
    }

    #[test]
    fn a_sealed_seed_opens_only_with_its_key_and_row() {
        let v1 = vault(K1);
        let stored = v1.to_stored("alice", "h", "secret").unwrap();
        assert!(is_sealed(&stored) && !stored.contains("secret"));
        assert_eq!(v1.opened(seed(&stored)).unwrap().server_seed, "secret");
        // Another process with the key, which never saw it sealed, opens it too.
        assert_eq!(
            vault(K1).opened(seed(&stored)).unwrap().server_seed,
            "secret"
        );
        assert!(vault(K2).opened(seed(&stored)).is_err());
        assert!(SeedVault::default().opened(seed(&stored)).is_err());
        // Moved to another row, it does not open, though this vault sealed and opened it.
        let moved = Seed {
            player: "bob".into(),
            ..seed(&stored)
        };
        assert!(v1.opened(moved).is_err());
        let rehashed = Seed {
            server_seed_hash: "another".into(),
            ..seed(&stored)
        };
        assert!(v1.opened(rehashed).is_err());
        let mut flipped = stored.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert!(v1.opened(seed(&flipped)).is_err());
        assert_eq!(v1.opened(seed("clear")).unwrap().server_seed, "clear");
    }

    #[test]
    fn opening_reseals_clear_and_older_seeds_and_refuses_lost_ones() {
        let rotated = vault(&format!("{K2}\n# the old one\n{K1}\n"));
        let under_k1 = vault(K1).to_stored("alice", "h", "s").unwrap();
        let Reseal::Rewrite(text) = rotated.reseal(&seed(&under_k1)).unwrap() else {
            panic!("a seed of the older key is resealed");
        };
        assert!(text.starts_with(&rotated.sealing_prefix().unwrap()));
        assert_eq!(rotated.opened(seed(&text)).unwrap().server_seed, "s");
        assert!(matches!(
            rotated.reseal(&seed("clear")),
            Ok(Reseal::Rewrite(_))
        ));
        assert_eq!(rotated.reseal(&seed(&text)).unwrap(), Reseal::Keep);
        let lost = vault(K2);
        assert!(lost.reseal(&seed(&under_k1)).is_err());
        let retiring =
            SeedVault::sealed(SeedKeys::from_text(K2).unwrap().retiring_lost_seeds(true));
        assert_eq!(retiring.reseal(&seed(&under_k1)).unwrap(), Reseal::Retire);
    }

    #[test]
    fn bad_key_files_are_refused() {
        assert!(SeedKeys::from_text("").is_err());
        assert!(SeedKeys::from_text("# nothing\n").is_err());
        assert!(SeedKeys::from_text("abcd").is_err());
        assert!(SeedKeys::from_text("zz").is_err());
        assert!(SeedKeys::from_text(&generate_key_hex().unwrap()).is_ok());
    }
}
