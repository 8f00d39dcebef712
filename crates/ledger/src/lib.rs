//! Croupier's money: a journal-first double-entry ledger. Every movement is a transfer between
//! two accounts appended to a hash-chained journal that is never updated or deleted; balances,
//! rounds and seeds are projections written in the same transaction. The `Store` trait hides
//! the backend (SQLite for one machine, PostgreSQL past it, chosen by a `StoreLocation`);
//! `integrity::check` verifies the invariants on any backend by replaying the journal.
// Denied, not forbidden: one module (`sqlite::file_sync`) reaches SQLite's own file handle.
#![deny(unsafe_code)]

pub mod chain;
pub mod clock;
pub mod error;
pub mod integrity;
pub mod locator;
pub mod model;
pub mod observe;
mod opened_seeds;
pub mod pg;
pub mod retention;
pub mod seed_seal;
pub mod sqlite;
pub mod store;
pub mod test_store;
#[cfg(test)]
mod testkit;

pub use error::LedgerError;
pub use integrity::{IntegrityReport, Violation};
pub use locator::StoreLocation;
pub use model::{Account, EntryKind, JournalEntry, Round, RoundStatus, Seed, Transfer};
pub use observe::{BatchTimings, PoolStatus, StoreObserver};
pub use seed_seal::{SeedKeys, SeedVault};
pub use store::{Committed, Idempotency, LedgerTx, Store};
