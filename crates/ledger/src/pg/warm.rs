//! A writer's connection made and warmed before the store says it is open.
//!
//! A writer's pool connected at its first batch, so the first bets after a node started (a
//! restart, a rolling update's new build, a failover's new node) paid what a new backend
//! costs on top of their own work: the connection and its authentication, the claim of a
//! house row (`shard`), the server reading the catalog for every table and index the batch
//! touches, and compiling the PL/pgSQL routines. On a 2-core VM a fresh node's first
//! sign-in took 11–12 ms and its first bet 10–13 ms, against 2 ms for the next ones.
//!
//! So each writer connects as it starts and runs, in a transaction it rolls back, a
//! statement that opens every table of the ledger and a call of each routine a batch calls,
//! with nothing to do (empty arrays): the catalog and the routines are then in the backend's
//! caches. `croupier_append_journal_v1` locks and rewrites the chain head as it is, which is
//! rolled back with the rest; a short lock timeout keeps a busy head from holding the start
//! up. Best effort: a writer that cannot connect or warm up now starts all the same, logs
//! why, and connects at its first batch as before.

use std::time::Duration;

use deadpool_postgres::Pool;

/// The longest the warm-up waits for a row lock (the chain head, under load).
const LOCK_WAIT: Duration = Duration::from_millis(200);

/// What the warm-up runs; nothing of it stays.
fn warm_up_sql(currency: &str) -> String {
    format!(
        "BEGIN; SET LOCAL lock_timeout = {wait};
         SELECT 1 FROM players, sessions, seeds, rounds, balances, journal, idempotency,
             game_status, chain_head WHERE false;
         SELECT * FROM croupier_claim_keys_v1('{{}}');
         SELECT * FROM croupier_lock_balances_v3('{{}}', {currency});
         SELECT croupier_append_journal_v1(0, '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', {currency}, '{{}}');
         ROLLBACK",
        wait = LOCK_WAIT.as_millis(),
        currency = quoted(currency),
    )
}

/// `text` as an SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Connects the writer's pool and warms its connection; says why not if it could not.
pub async fn warm(pool: &Pool, currency: &str) -> Result<(), String> {
    let client = pool
        .get()
        .await
        .map_err(|e| croupier_pgconn::with_causes(&e))?;
    if let Err(e) = client.batch_execute(&warm_up_sql(currency)).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(croupier_pgconn::with_causes(&e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_currency_is_quoted_as_a_literal() {
        assert_eq!(quoted("EUR"), "'EUR'");
        assert_eq!(quoted("E'R"), "'E''R'");
        let sql = warm_up_sql("EUR");
        assert!(
            sql.starts_with("BEGIN;") && sql.ends_with("ROLLBACK"),
            "{sql}"
        );
    }
}
