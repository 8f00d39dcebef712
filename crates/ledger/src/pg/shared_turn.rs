//! Turns across the nodes writing to one database, as a node's own writers take turns
//! (`writer::Turn`) and as SQLite's writers take turns at the file (`sqlite::turns`).
//!
//! Nodes sharing a server each build batches from their own players, and each batch costs the
//! server a fixed part (its statements, its commit and flush) whatever its size. Three nodes
//! committing as they please split the same bets into batches a third the size, and cost the
//! server more per bet than one node alone (0.081 against 0.105 ms). So while another batch
//! is in flight on the database (this store's other writer's, or another node's while
//! `overlap` sees one busy), a writer takes the database's turn before it takes jobs off its
//! queue, and passes it on as its batch starts to flush: each batch then holds what came
//! while the others took theirs. A batch alone takes no turn.
//!
//! The turn is a session-level advisory lock, taken in the batch's transaction (so the
//! writer holding it is "idle in transaction" whenever it is not running a statement) and
//! given back by the flush's first statement. A writer that fails after taking it drops its
//! connection, and the server releases it with the session. A frozen node (SIGSTOP) holding
//! it is cut by `idle_in_transaction_session_timeout`; the others wait `TURN_WAIT` at most
//! for it meanwhile and go on without the turn. Only throughput depends on the turn, never
//! correctness.

use std::time::Duration;

use deadpool_postgres::ClientWrapper;
use tokio_postgres::error::SqlState;

use super::batch::Statement;

/// The advisory-lock namespace of the turn (the two-key form: `shard` uses another
/// namespace, every one-key lock another space). "CTRN" in ASCII.
pub const TURN_LOCKS: i32 = 0x4354_524E;

/// The longest wait for the turn: a turn held longer is held by a writer that is stuck.
const TURN_WAIT: Duration = Duration::from_millis(50);

/// Opens the batch's transaction and waits for the turn, `TURN_WAIT` at most, in one round
/// trip. Held: true, and the transaction stays open. Waited in vain: false, and the
/// transaction is rolled back (a second round trip). A failure of the connection is returned
/// as such.
pub async fn take(client: &ClientWrapper) -> Result<bool, tokio_postgres::Error> {
    let sql = format!(
        "BEGIN; SET LOCAL lock_timeout = {wait}; SELECT pg_advisory_lock({TURN_LOCKS}, 0);
         SET LOCAL lock_timeout TO DEFAULT",
        wait = TURN_WAIT.as_millis(),
    );
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            client.batch_execute("ROLLBACK").await?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The statement that gives the turn back: first in the flush of a batch that holds it.
pub fn give_back() -> Statement {
    Statement::new(
        "SELECT pg_advisory_unlock($1, 0)",
        vec![Box::new(TURN_LOCKS)],
    )
}
