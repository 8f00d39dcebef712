//! What a backend tells about each batch it commits, so the node can export where a bet's
//! time goes (waiting in the queue, running the operations, committing) and how batches and
//! retries behave. The ledger stays free of any metrics library: the node plugs in an
//! observer.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One batch, from the moment its oldest operation was queued until its commit ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchTimings {
    /// Operations in the batch.
    pub jobs: usize,
    /// How long the oldest operation waited in the queue before its writer took its turn.
    pub queue_wait: Duration,
    /// How long the writer waited for its turn at the store while another process wrote
    /// (SQLite: the file's write turn; zero where the backend has no such turn).
    pub turn_wait: Duration,
    /// Running the operations: reads, locks, game logic (last attempt).
    pub build: Duration,
    /// Writing the changes and committing: the flush, the fsync (last attempt).
    pub commit: Duration,
    /// Attempts after the first (a lost connection, a deadlock, a server restart).
    pub retries: u32,
    /// Whether the batch committed.
    pub committed: bool,
    /// The store's writers taking turns as the batch was built (PostgreSQL: one while another
    /// node writes to the database, all otherwise; SQLite: its one writer).
    pub writers_in_turn: usize,
}

/// One of a store's connection pools at one moment (PostgreSQL: its readers, its writers'
/// connections, its standby readers), for the node to export: a pool whose connections are
/// all busy and has callers waiting is where reads queue before they time out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// `readers`, `writers` or `standby_readers`.
    pub pool: &'static str,
    /// The connections it may open.
    pub max: usize,
    /// The connections open now, idle or in use.
    pub open: usize,
    /// Open and idle.
    pub idle: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

pub trait StoreObserver: Send + Sync {
    fn batch(&self, timings: &BatchTimings);

    /// A WAL checkpoint that copied pages back into the database file, run beside the
    /// writer (SQLite only), and how long it took.
    fn checkpoint(&self, took: Duration);
}

/// The observer a store reports to, set once after the store is opened.
#[derive(Clone, Default)]
pub struct ObserverSlot(Arc<OnceLock<Arc<dyn StoreObserver>>>);

impl ObserverSlot {
    pub fn set(&self, observer: Arc<dyn StoreObserver>) {
        let _ = self.0.set(observer);
    }

    pub fn report(&self, timings: &BatchTimings) {
        if let Some(observer) = self.0.get() {
            observer.batch(timings);
        }
    }

    pub fn report_checkpoint(&self, took: Duration) {
        if let Some(observer) = self.0.get() {
            observer.checkpoint(took);
        }
    }
}
