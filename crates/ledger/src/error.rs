//! Ledger errors: refusals that leave the ledger untouched, and storage failures.

use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum LedgerError {
    #[error("insufficient funds: {account} has {balance}, needs {needed}")]
    InsufficientFunds {
        account: String,
        balance: i64,
        needed: i64,
    },
    #[error("idempotency key already used for a different request")]
    IdempotencyKeyReused,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid amount {0}: amounts are positive integers in minor units")]
    InvalidAmount(i64),
    /// The store cannot be reached or is locked; the request may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Storage(String),
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked};
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked | CannotOpen) => {
                LedgerError::Unavailable(e.to_string())
            }
            _ => LedgerError::Storage(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for LedgerError {
    fn from(e: serde_json::Error) -> Self {
        LedgerError::Storage(format!("stored JSON does not parse: {e}"))
    }
}
