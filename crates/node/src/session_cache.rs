//! The node's cache of token lookups: which player a token hash belongs to, trusted for
//! `TTL` (and never past the session's own expiry) without asking the store again.
//!
//! Bounded by design: entries past their `TTL` are swept once a round (`sweep`, from the
//! node's refresh loop), and at most `CAPACITY` are kept (past that a lookup is simply not
//! cached), so tokens used once — a flood of demo sign-ups, a day of normal play — never grow
//! it for the process's life. A sign-in forgets its player's entries through a per-player
//! index, not by scanning every entry under the lock every request needs.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long a node trusts a token it has looked up without asking the store again.
pub const TTL: Duration = Duration::from_secs(60);
/// Most token lookups kept at once.
pub const CAPACITY: usize = 100_000;

/// A cached lookup: whose token, when it was looked up, when the session expires (ms).
struct Entry {
    player: String,
    looked_up: Instant,
    expires_ms: i64,
}

#[derive(Default)]
struct Entries {
    by_hash: HashMap<String, Entry>,
    by_player: HashMap<String, HashSet<String>>,
}

impl Entries {
    fn remove(&mut self, hash: &str) {
        let Some(entry) = self.by_hash.remove(hash) else {
            return;
        };
        if let Some(hashes) = self.by_player.get_mut(&entry.player) {
            hashes.remove(hash);
            if hashes.is_empty() {
                self.by_player.remove(&entry.player);
            }
        }
    }
}

#[derive(Default)]
pub struct SessionCache {
    entries: Mutex<Entries>,
}

impl SessionCache {
    /// The player of `hash` when looked up less than `TTL` ago and not expired at `now_ms`.
    pub fn get(&self, hash: &str, now_ms: i64) -> Option<String> {
        let mut entries = self.entries.lock();
        let entry = entries.by_hash.get(hash)?;
        if entry.looked_up.elapsed() < TTL && now_ms < entry.expires_ms {
            return Some(entry.player.clone());
        }
        entries.remove(hash);
        None
    }

    /// Remembers a lookup (unless `CAPACITY` entries are kept already).
    pub fn insert(&self, hash: String, player: String, expires_ms: i64) {
        let mut entries = self.entries.lock();
        entries.remove(&hash);
        if entries.by_hash.len() >= CAPACITY {
            return;
        }
        entries
            .by_player
            .entry(player.clone())
            .or_default()
            .insert(hash.clone());
        let entry = Entry {
            player,
            looked_up: Instant::now(),
            expires_ms,
        };
        entries.by_hash.insert(hash, entry);
    }

    /// Forgets every cached token of `player` (a sign-in may have revoked some).
    pub fn forget_player(&self, player: &str) {
        let mut entries = self.entries.lock();
        let Some(hashes) = entries.by_player.remove(player) else {
            return;
        };
        for hash in hashes {
            entries.by_hash.remove(&hash);
        }
    }

    /// Drops the entries no lookup may use any more.
    pub fn sweep(&self, now_ms: i64) {
        let mut entries = self.entries.lock();
        let stale: Vec<String> = entries
            .by_hash
            .iter()
            .filter(|(_, e)| e.looked_up.elapsed() >= TTL || now_ms >= e.expires_ms)
            .map(|(hash, _)| hash.clone())
            .collect();
        for hash in stale {
            entries.remove(&hash);
        }
    }

    /// Entries kept now.
    pub fn len(&self) -> usize {
        self.entries.lock().by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LATER: i64 = i64::MAX;

    #[test]
    fn a_lookup_is_trusted_until_its_session_expires() {
        let cache = SessionCache::default();
        cache.insert("h1".into(), "alice".into(), 1_000);
        assert_eq!(cache.get("h1", 999).as_deref(), Some("alice"));
        assert_eq!(cache.get("h1", 1_000), None);
        assert!(cache.is_empty(), "an expired entry is dropped when seen");
    }

    #[test]
    fn a_sweep_drops_expired_entries_never_looked_up_again() {
        let cache = SessionCache::default();
        for n in 0..1_000 {
            cache.insert(format!("h{n}"), format!("p{n}"), 5_000);
        }
        cache.insert("live".into(), "bob".into(), LATER);
        cache.sweep(5_000);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("live", 5_000).as_deref(), Some("bob"));
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let cache = SessionCache::default();
        for n in 0..CAPACITY + 10 {
            cache.insert(format!("h{n}"), "p".into(), LATER);
        }
        assert_eq!(cache.len(), CAPACITY);
        assert_eq!(cache.get(&format!("h{}", CAPACITY + 5), 0), None);
    }

    #[test]
    fn forgetting_a_player_drops_their_tokens_only() {
        let cache = SessionCache::default();
        cache.insert("a1".into(), "alice".into(), LATER);
        cache.insert("a2".into(), "alice".into(), LATER);
        cache.insert("b1".into(), "bob".into(), LATER);
        cache.forget_player("alice");
        assert_eq!((cache.get("a1", 0), cache.get("a2", 0)), (None, None));
        assert_eq!(cache.get("b1", 0).as_deref(), Some("bob"));
        // A token looked up again for another player moves to that player.
        cache.insert("b1".into(), "carol".into(), LATER);
        cache.forget_player("bob");
        assert_eq!(cache.get("b1", 0).as_deref(), Some("carol"));
    }
}
