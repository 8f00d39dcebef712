//! Turns across the nodes writing to one database, as a node's own writers take turns
//! (`writer::Turn`) and as SQLite's writers take turns at the file (`sqlite::turns`).
//!
//! Nodes sharing a server each build batches from their own players, and each batch costs the
//! server a fixed part (its statements, its commit and flush) whatever its size. Three nodes
//! committing as they please split the same bets into batches a third the size, and cost the
//! server more per bet than one node alone (0.081 against 0.105 ms). So while another batch
//! is in flight on the database (this store's other writer's, or another node's while
//! `overlap` sees one busy), a writer takes the database's turn before it takes jobs off its
//! queue, and passes it on as soon as it has them, with the first statement of its read
//! round: each batch then holds what came while the others took theirs. A batch alone takes
//! no turn.
//!
//! The turn gathers jobs; it does not guard the server's work. Held on through the read
//! round and the batch's build, as it was until its flush, it made every node wait for each
//! batch's row-lock waits in turn: a batch waiting for a row another node held (or a frozen
//! node held, until the server's timeout) kept the turn from all of them, and each of their
//! batches waited `TURN_WAIT` for it. Throughput was the same either way (docs/benchmarks.md).
//!
//! The turn is a session-level advisory lock, taken in the batch's transaction (so the
//! writer holding it is "idle in transaction" whenever it is not running a statement) and
//! given back by the read round's first statement. A writer that fails after taking it drops its
//! connection, and the server releases it with the session. A frozen node (SIGSTOP) holding
//! it is cut by `idle_in_transaction_session_timeout`; the others wait `TURN_WAIT` at most
//! for it meanwhile and go on without the turn. Only throughput depends on the turn, never
//! correctness.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::pipeline::Statement;

/// The advisory-lock namespace of the turn (the two-key form: `shard` uses another
/// namespace, every one-key lock another space). "CTRN" in ASCII.
pub const TURN_LOCKS: i32 = 0x4354_524E;

/// The longest wait for the turn: a turn held longer is held by a writer that is stuck.
const TURN_WAIT: Duration = Duration::from_millis(50);

/// Opens the batch's transaction and waits for the turn, `TURN_WAIT` at most, in one round
/// trip. Held: true, and the transaction stays open. Waited in vain: false, the transaction
/// is rolled back and the session holds no turn (a second round trip). A failure of the
/// connection is returned as such.
///
/// The wait's end and the turn's grant can cross: the lock timeout fires, the turn is granted
/// before the statement notices, and the statement still fails with the timeout. A
/// transaction's locks would go with its rollback; the turn is a session's lock and stays,
/// held for good by a writer that believes it waited in vain, and every other writer then
/// waits `TURN_WAIT` for every batch (seen as a stack's p50 jumping from 7 ms to 64 ms for
/// the rest of a run). So a wait that failed gives the turn back if the session holds it.
pub async fn take(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let sql = format!(
        "BEGIN; SET LOCAL lock_timeout = {wait}; SELECT pg_advisory_lock({TURN_LOCKS}, 0);
         SET LOCAL lock_timeout TO DEFAULT",
        wait = TURN_WAIT.as_millis(),
    );
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            if leave_after_a_failed_wait(client).await? {
                tracing::warn!("the database's turn was granted as its wait timed out; given back");
            }
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Rolls back the transaction of a wait for the turn that failed and gives the turn back if
/// the session holds it all the same, in one round trip; true when it did.
pub(crate) async fn leave_after_a_failed_wait(
    client: &Client,
) -> Result<bool, tokio_postgres::Error> {
    let answers = client
        .simple_query(&format!("ROLLBACK; {}", give_back_if_held()))
        .await?;
    Ok(answers
        .iter()
        .any(|message| matches!(message, SimpleQueryMessage::Row(_))))
}

/// Gives the turn back only if this session holds it (an unlock of a lock not held would log
/// a warning on the server at every wait that timed out); a row when it did.
fn give_back_if_held() -> String {
    format!(
        "SELECT pg_advisory_unlock({TURN_LOCKS}, 0) FROM pg_locks
         WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
           AND classid = {TURN_LOCKS} AND objid = 0 AND objsubid = 2"
    )
}

/// The statement that gives the turn back: first in the read round of a batch that holds it.
pub fn give_back() -> Statement {
    Statement::new(
        "SELECT pg_advisory_unlock($1, 0)",
        vec![Box::new(TURN_LOCKS)],
    )
}
