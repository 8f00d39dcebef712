//! Server seeds this process has sealed or opened, kept so that a player's next bets skip the
//! decryption. Every bet opens its player's sealed seed (`seed_seal`), on PostgreSQL twice
//! (a batch's operations run once to find the rows they need, then for real), and the opening
//! (the cipher's key setup, XChaCha20-Poly1305, the hex, the authenticated data) took a sixth
//! of a PostgreSQL writer thread's CPU under load.
//!
//! Kept in this process's memory only, never written anywhere: whoever can read that memory
//! can read the seed keys in it as well, so remembering what they opened gives nothing more
//! away. An entry is found by the sealed text (a random nonce makes each sealing's text its
//! own) and used only for the same player and published hash, the data the sealing
//! authenticates: a sealed seed moved to another row still goes to the cipher, and fails there.

use std::collections::HashMap;

use parking_lot::Mutex;

/// Seeds kept at most (about 450 bytes each); past that the memory starts over, and a seed
/// no longer kept costs one decryption again.
const KEPT: usize = 16_384;

struct Opened {
    player: String,
    hash: String,
    clear: String,
}

/// Sealed seed text → its player, published hash and clear server seed.
#[derive(Default)]
pub struct OpenedSeeds(Mutex<HashMap<String, Opened>>);

impl std::fmt::Debug for OpenedSeeds {
    /// How many, never what: a clear seed must not reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenedSeeds({} kept)", self.0.lock().len())
    }
}

impl OpenedSeeds {
    /// The clear seed of `stored`, if this process sealed or opened it for this player and
    /// published hash.
    pub fn get(&self, player: &str, hash: &str, stored: &str) -> Option<String> {
        let seeds = self.0.lock();
        let opened = seeds.get(stored)?;
        (opened.player == player && opened.hash == hash).then(|| opened.clear.clone())
    }

    /// Remembers that `stored`, sealed for `player` and `hash`, opens to `clear`.
    pub fn keep(&self, player: &str, hash: &str, stored: &str, clear: &str) {
        let mut seeds = self.0.lock();
        if seeds.len() >= KEPT {
            seeds.clear();
        }
        let opened = Opened {
            player: player.to_owned(),
            hash: hash.to_owned(),
            clear: clear.to_owned(),
        };
        seeds.insert(stored.to_owned(), opened);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_seed_is_given_only_for_its_own_player_and_hash() {
        let seeds = OpenedSeeds::default();
        seeds.keep("alice", "h", "sealed1:k:00", "secret");
        assert_eq!(
            seeds.get("alice", "h", "sealed1:k:00").as_deref(),
            Some("secret")
        );
        assert_eq!(seeds.get("bob", "h", "sealed1:k:00"), None);
        assert_eq!(seeds.get("alice", "other", "sealed1:k:00"), None);
        assert_eq!(seeds.get("alice", "h", "sealed1:k:01"), None);
        assert!(!format!("{seeds:?}").contains("secret"));
    }

    #[test]
    fn the_memory_is_bounded() {
        let seeds = OpenedSeeds::default();
        for i in 0..=KEPT {
            seeds.keep("p", "h", &i.to_string(), "c");
        }
        assert!(seeds.0.lock().len() <= KEPT);
        assert_eq!(seeds.get("p", "h", &KEPT.to_string()).as_deref(), Some("c"));
    }
}
