//! How PostgreSQL failures map onto the ledger's errors. What a retry on another connection
//! (or after a moment) may cure is `Unavailable`: the connection is gone, the server is
//! starting, shutting down or read-only (a standby after a failover), out of resources (class
//! 53: too many connections, disk or memory full), a lock or statement timed out, a deadlock
//! or serialisation failure was broken, or a unique key was taken by a concurrent batch (an
//! idempotency key another node committed first: the retry finds and replays it). Everything
//! else is `Storage`.

use tokio_postgres::error::SqlState;

use crate::error::LedgerError;

pub fn pg_error(e: tokio_postgres::Error) -> LedgerError {
    if is_transient(&e) {
        LedgerError::Unavailable(describe(&e))
    } else {
        LedgerError::Storage(describe(&e))
    }
}

/// Whether running the same work again (on a fresh connection) may succeed.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else {
        // No SQL state: the connection failed (I/O, closed, protocol) rather than a statement.
        return true;
    };
    let class = &code.code()[..2];
    matches!(class, "08" | "53" | "57" | "40")
        || [
            SqlState::READ_ONLY_SQL_TRANSACTION,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::UNIQUE_VIOLATION,
        ]
        .contains(code)
}

pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => croupier_pgconn::with_causes(e),
    }
}
