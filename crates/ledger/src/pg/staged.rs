//! What a batch has read and changed, kept in memory until it is flushed in one round of
//! statements at commit. Each operation's changes stay "pending" until the operation
//! succeeds (accept) or is refused (discard): the PostgreSQL counterpart of SQLite's
//! per-operation savepoint, without a round trip per savepoint.

use std::collections::HashMap;
use std::hash::Hash;

/// Rows by key: as first read from the database (locked where the caller took a lock), as
/// changed by accepted operations, and as changed by the running one.
pub struct Tracked<K, V> {
    /// What the database held (`None`: no such row) when the batch first read the key.
    loaded: HashMap<K, Option<V>>,
    accepted: HashMap<K, Option<V>>,
    pending: HashMap<K, Option<V>>,
}

impl<K, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Tracked {
            loaded: HashMap::new(),
            accepted: HashMap::new(),
            pending: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone + PartialEq> Tracked<K, V> {
    /// The current value: `None` when the batch has not read the key yet.
    pub fn get(&self, key: &K) -> Option<Option<&V>> {
        self.pending
            .get(key)
            .or_else(|| self.accepted.get(key))
            .or_else(|| self.loaded.get(key))
            .map(Option::as_ref)
    }

    /// Records what the database holds for `key` (first read only).
    pub fn load(&mut self, key: K, value: Option<V>) {
        self.loaded.entry(key).or_insert(value);
    }

    /// Sets `key` for the running operation. A key never loaded counts as absent before.
    pub fn set(&mut self, key: K, value: Option<V>) {
        self.loaded.entry(key.clone()).or_insert(None);
        self.pending.insert(key, value);
    }

    pub fn accept(&mut self) {
        self.accepted.extend(self.pending.drain());
    }

    pub fn discard(&mut self) {
        self.pending.clear();
    }

    /// Throws away every change, accepted ones included; what was read stays.
    pub fn forget_changes(&mut self) {
        self.accepted.clear();
        self.pending.clear();
    }

    /// Accepted changes: (key, as loaded, as now), only where they differ.
    pub fn changes(&self) -> impl Iterator<Item = (&K, Option<&V>, Option<&V>)> {
        self.accepted.iter().filter_map(|(key, now)| {
            let before = self.loaded.get(key).and_then(Option::as_ref);
            (before != now.as_ref()).then_some((key, before, now.as_ref()))
        })
    }

    /// Every key the batch read or set, its row there or not.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.loaded.keys()
    }

    /// Every known row as it is now (pending over accepted over loaded).
    pub fn current_values(&self) -> impl Iterator<Item = (&K, &V)> {
        self.loaded
            .keys()
            .filter_map(|k| self.get(k).flatten().map(|v| (k, v)))
    }
}

/// Rows appended by the batch: the running operation's rows can be thrown away.
pub struct Appended<T> {
    rows: Vec<T>,
    accepted: usize,
}

impl<T> Default for Appended<T> {
    fn default() -> Self {
        Appended {
            rows: Vec::new(),
            accepted: 0,
        }
    }
}

impl<T> Appended<T> {
    pub fn push(&mut self, row: T) {
        self.rows.push(row);
    }

    pub fn accept(&mut self) {
        self.accepted = self.rows.len();
    }

    pub fn discard(&mut self) {
        self.rows.truncate(self.accepted);
    }

    /// Throws away every row, accepted ones included.
    pub fn forget(&mut self) {
        self.rows.clear();
        self.accepted = 0;
    }

    /// Every row, pending ones included.
    pub fn all(&self) -> &[T] {
        &self.rows
    }

    /// The accepted rows.
    pub fn accepted(&self) -> &[T] {
        &self.rows[..self.accepted]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_discarded_operation_leaves_what_was_accepted() {
        let mut rows: Tracked<&str, i64> = Tracked::default();
        rows.load("a", Some(10));
        rows.set("a", Some(7));
        rows.accept();
        rows.set("a", Some(1));
        rows.set("b", Some(5));
        assert_eq!(rows.get(&"a"), Some(Some(&1)));
        rows.discard();
        assert_eq!(rows.get(&"a"), Some(Some(&7)));
        assert_eq!(rows.get(&"b"), Some(None));
        assert_eq!(rows.get(&"c"), None);
        let changes: Vec<_> = rows.changes().collect();
        assert_eq!(changes, vec![(&"a", Some(&10), Some(&7))]);
    }

    #[test]
    fn unchanged_values_are_not_changes() {
        let mut rows: Tracked<u8, i64> = Tracked::default();
        rows.load(1, Some(3));
        rows.set(1, Some(3));
        rows.accept();
        assert_eq!(rows.changes().count(), 0);
    }

    #[test]
    fn appended_rows_of_a_refused_operation_vanish() {
        let mut rows = Appended::default();
        rows.push(1);
        rows.accept();
        rows.push(2);
        assert_eq!(rows.all(), &[1, 2]);
        rows.discard();
        assert_eq!(rows.accepted(), &[1]);
        rows.forget();
        assert!(rows.all().is_empty());
    }

    #[test]
    fn forgotten_changes_leave_what_was_read() {
        let mut rows: Tracked<&str, i64> = Tracked::default();
        rows.load("a", Some(10));
        rows.set("a", Some(7));
        rows.accept();
        rows.set("b", Some(5));
        rows.forget_changes();
        assert_eq!(rows.get(&"a"), Some(Some(&10)));
        assert_eq!(rows.changes().count(), 0);
    }
}
