//! Croupier's money: a journal-first double-entry ledger. Every movement is a transfer between
//! two accounts appended to a hash-chained journal that is never updated or deleted; balances,
//! rounds and seeds are projections written in the same transaction. The `Store` trait hides
//! the backend (SQLite here, PostgreSQL next); `integrity::check` verifies the invariants on
//! any backend by replaying the journal.

pub mod chain;
pub mod error;
pub mod integrity;
pub mod model;
pub mod retention;
pub mod sqlite;
pub mod store;

pub use error::LedgerError;
pub use integrity::{IntegrityReport, Violation};
pub use model::{Account, EntryKind, JournalEntry, Round, RoundStatus, Seed, Transfer};
pub use store::{Committed, Idempotency, LedgerTx, Store, TxOp};
