//! Caps on how many of something one key holds at once: connections per client address,
//! WebSockets per player or per address. A slot is taken with `try_take` and given back when
//! its `Held` is dropped, so a connection task that ends in any way (closed, cut, panicked)
//! frees its slot. Keys whose count falls to zero are forgotten, so memory follows the
//! clients connected now.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;

/// Counts per key, refusing a key past `max` (no cap when `max` is `None`).
pub struct Caps<K: Hash + Eq + Clone> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    max: Option<usize>,
}

/// One slot of a key; given back on drop.
pub struct Held<K: Hash + Eq + Clone> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Caps<K> {
    pub fn new(max: Option<usize>) -> Self {
        Caps {
            counts: Arc::new(Mutex::new(HashMap::new())),
            max,
        }
    }

    /// A slot for `key`, or `None` when it already holds `max`.
    pub fn try_take(&self, key: K) -> Option<Held<K>> {
        let mut counts = self.counts.lock();
        let count = counts.entry(key.clone()).or_insert(0);
        if self.max.is_some_and(|max| *count >= max) {
            return None;
        }
        *count += 1;
        Some(Held {
            counts: self.counts.clone(),
            key,
        })
    }

    /// Slots `key` holds now.
    pub fn count(&self, key: &K) -> usize {
        self.counts.lock().get(key).copied().unwrap_or(0)
    }

    pub fn max(&self) -> Option<usize> {
        self.max
    }
}

impl<K: Hash + Eq + Clone> Drop for Held<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_past_its_cap_is_refused_until_a_slot_is_given_back() {
        let caps = Caps::new(Some(2));
        let a = caps.try_take("a").unwrap();
        let _b = caps.try_take("a").unwrap();
        assert!(caps.try_take("a").is_none());
        assert!(
            caps.try_take("b").is_some(),
            "other keys have their own count"
        );
        drop(a);
        assert_eq!(caps.count(&"a"), 1);
        assert!(caps.try_take("a").is_some());
        let unlimited = Caps::new(None);
        let held: Vec<_> = (0..1000).filter_map(|_| unlimited.try_take(1)).collect();
        assert_eq!(held.len(), 1000);
        drop(held);
        assert_eq!(unlimited.count(&1), 0);
        assert!(
            unlimited.counts.lock().is_empty(),
            "idle keys are forgotten"
        );
    }
}
