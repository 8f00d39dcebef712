//! Indexes that only make reads cheaper, built beside a running store instead of inside its
//! start. They are not a schema version: a newer version makes a node of an older build not
//! ready, and during a rolling update a build with an index and one without share a database.
//! So each start builds the ones missing, with `CREATE INDEX CONCURRENTLY`, which takes no
//! lock that writes wait for. Built inside the start's migration transaction (as they were),
//! the first start of a build adding one to a large ledger held every node's writes back
//! while the index was built, and on a ledger large enough to take over the sessions'
//! statement timeout it failed the start, every time.
//!
//! One process builds at a time (a session advisory lock, tried: the others go on without
//! it). A build that was cut off (the process stopped, the connection lost) leaves an invalid
//! index, which the planner ignores; the next build drops it and builds it again. Until an
//! index is valid, the reads it serves still work, only slower.

use tokio_postgres::Client;

use super::error::pg_error;
use crate::error::LedgerError;

/// Each index: its name and what follows the name in `CREATE INDEX`.
pub const READ_INDEXES: &[(&str, &str)] = &[
    // The operator account's entries (the cashier's deposits and withdrawals), newest first,
    // for the reconciliation export: a few among every bet's entries, which a scan by seq
    // reads all of.
    (
        "journal_of_operator",
        "ON journal (seq) WHERE debit = 'operator' OR credit = 'operator'",
    ),
];

/// The advisory lock key of the builder ("croupidx" in ASCII).
const BUILD_LOCK: i64 = 0x6372_6f75_7069_6478;

/// Builds the missing or invalid `READ_INDEXES` on a connection of its own; returns the
/// names built (none when another process is building).
pub async fn build(server: &super::Server) -> Result<Vec<&'static str>, LedgerError> {
    let (client, connection) = server.connect().await.map_err(pg_error)?;
    // Ends with the client: the session's advisory lock goes with it.
    tokio::spawn(connection);
    // A build on a large ledger runs for minutes, waiting for the transactions in progress
    // at each of its phases: it holds no lock that writes wait for.
    client
        .batch_execute("SET statement_timeout = 0; SET lock_timeout = 0")
        .await
        .map_err(pg_error)?;
    let leading: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&BUILD_LOCK])
        .await
        .map_err(pg_error)?
        .get(0);
    if !leading {
        return Ok(Vec::new());
    }
    let mut built = Vec::new();
    for &(name, definition) in READ_INDEXES {
        if build_one(&client, name, definition).await? {
            built.push(name);
        }
    }
    Ok(built)
}

/// Builds index `name` unless a valid one exists; whether it built it.
async fn build_one(client: &Client, name: &str, definition: &str) -> Result<bool, LedgerError> {
    let valid: Option<bool> = client
        .query_opt(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE c.relname = $1 AND pg_table_is_visible(c.oid)",
            &[&name],
        )
        .await
        .map_err(pg_error)?
        .map(|row| row.get(0));
    match valid {
        Some(true) => return Ok(false),
        Some(false) => {
            tracing::warn!(
                index = name,
                "a read index left invalid by a cut-off build: rebuilding it"
            );
            client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                .await
                .map_err(pg_error)?;
        }
        None => {}
    }
    client
        .batch_execute(&format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}"
        ))
        .await
        .map_err(pg_error)?;
    Ok(true)
}
