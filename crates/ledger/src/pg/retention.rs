//! Housekeeping of the PostgreSQL ledger (`Store::housekeep`): the same policy as SQLite's
//! (`crate::retention`): expired sessions and idempotency records past their period are
//! deleted in batches, each batch its own short statement, so writers never wait long;
//! autovacuum reclaims the space. There is no write-ahead log of ours to bound (the server's
//! WAL is its own, bounded by `max_wal_size`).

use deadpool_postgres::Pool;

use super::error::pg_error;
use crate::error::LedgerError;
use crate::retention::{HousekeepReport, MIN_IDEMPOTENCY_KEPT_MS, RetentionPolicy};

async fn delete_in_batches(
    client: &deadpool_postgres::Client,
    sql: &str,
    bound: i64,
    batch: i64,
) -> Result<u64, LedgerError> {
    let mut removed = 0;
    loop {
        let deleted = client
            .execute(sql, &[&bound, &batch])
            .await
            .map_err(pg_error)?;
        removed += deleted;
        if deleted < batch as u64 {
            return Ok(removed);
        }
    }
}

/// One housekeeping pass on a pooled connection.
pub async fn housekeep(
    pool: &Pool,
    policy: &RetentionPolicy,
) -> Result<HousekeepReport, LedgerError> {
    let client = pool.get().await.map_err(|e| super::no_connection(&e))?;
    let now = crate::clock::now_ms();
    let batch = i64::from(policy.batch_rows.max(1));
    let sessions_removed = delete_in_batches(
        &client,
        "DELETE FROM sessions WHERE token_hash IN
         (SELECT token_hash FROM sessions WHERE expires_ms < $1 LIMIT $2)",
        now - policy.session_grace_ms.max(0),
        batch,
    )
    .await?;
    let idempotency_removed = delete_in_batches(
        &client,
        "DELETE FROM idempotency WHERE key IN
         (SELECT key FROM idempotency WHERE created_ms < $1 AND key NOT LIKE 'cashier:%' LIMIT $2)",
        now - policy.idempotency_kept_ms.max(MIN_IDEMPOTENCY_KEPT_MS),
        batch,
    )
    .await?;
    Ok(HousekeepReport {
        sessions_removed,
        idempotency_removed,
        wal_bytes_before: 0,
        wal_bytes_after: 0,
    })
}
