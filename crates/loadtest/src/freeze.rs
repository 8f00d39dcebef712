//! The `freeze-node` drill's fault, a gray failure (issue #13): node-1 is stopped with SIGSTOP
//! for `FREEZE`, a stand-in for a long GC pause, a stuck disk or a hung VM, and continued with
//! SIGCONT. Unlike a dead node it keeps its connections open and answers nothing, so only the
//! gateway's per-try timeout (and its ejection of the node) spares the players; the drill then
//! fails when a player's request took over `SLOWEST_ALLOWED`.
//!
//! The freeze is timed between two of the node's write transactions: the drill holds a lock
//! every write transaction needs first while it stops the node, then lets it go. On SQLite
//! that is the writers' turn (the `flock` every node's writer takes before `BEGIN IMMEDIATE`)
//! and the ledger's write lock; on PostgreSQL the database's turn (a writer that wants it
//! waits for it before it reads or locks anything, `pg/shared_turn.rs`), then an ACCESS
//! EXCLUSIVE lock on `idempotency`, whose lock every write transaction takes first, before it
//! claims a key (`croupier_claim_keys_v1`): the drill's lock waits for the transactions in
//! progress to end, and the next ones wait behind it holding no key or row lock yet. (Before
//! the claim took the table's lock first, a writer that took no turn, a lone batch's, could
//! claim its keys and then wait for the table: it froze holding them, and a player's retry of
//! one on another node waited for the frozen session's idle timeout, 1 s; seen in CI.) A
//! node frozen while it holds the write lock or row locks stops the writers waiting on them
//! instead: that is the store-outage drill's fault, not this one's.

use std::time::{Duration, Instant};

use croupier_ledger::StoreLocation;
use croupier_ledger::pg::TURN_LOCKS;
use croupier_ledger::sqlite::turns::WriterTurns;

use crate::drill::signal;
use crate::error::LoadError;
use crate::stack::Stack;

/// How long the node stays stopped: the figure.
pub const FREEZE: Duration = Duration::from_secs(4);
/// The slowest player request a frozen node may cost.
pub const SLOWEST_ALLOWED: Duration = Duration::from_secs(1);

/// Stops node-1 for `FREEZE`, then continues it; what was done.
pub async fn freeze_node(stack: &Stack) -> Result<String, LoadError> {
    let pid = stack
        .node_pid(0)
        .ok_or_else(|| LoadError::Stack("node-1's process was not found".into()))?;
    match stack.store() {
        StoreLocation::Sqlite(db) => stop_between_sqlite_writes(db, pid).await?,
        StoreLocation::Postgres(url) => stop_between_pg_writes(&url, pid).await?,
    }
    let stopped = Instant::now();
    tokio::time::sleep(FREEZE).await;
    // Continued whatever happened meanwhile: a node left stopped would outlive the drill.
    signal(pid, libc::SIGCONT)?;
    Ok(format!(
        "node-1 (pid {pid}) stopped with SIGSTOP between two of its write transactions, \
         continued with SIGCONT after {} ms",
        stopped.elapsed().as_millis()
    ))
}

/// Sends SIGSTOP to `pid` while this process holds the writers' turn and the SQLite ledger's
/// write lock, so the node cannot be inside a write transaction (nor hold its turn) when it
/// stops.
async fn stop_between_sqlite_writes(db: std::path::PathBuf, pid: i32) -> Result<(), LoadError> {
    tokio::task::spawn_blocking(move || -> Result<(), LoadError> {
        let turns = WriterTurns::open(&db, Duration::from_secs(10))?;
        turns.take()?;
        let conn = croupier_ledger::sqlite::connect(&db, false)?;
        let stopped = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| LoadError::from(croupier_ledger::LedgerError::from(e)))
            .and_then(|()| stop(pid));
        // Dropping the connection would roll back as well.
        let _ = conn.execute_batch("ROLLBACK");
        // Closing the lock files lets the turn go as well.
        let _ = turns.pass();
        stopped
    })
    .await
    .map_err(|e| LoadError::Stack(format!("the freeze task failed: {e}")))?
}

/// The same on PostgreSQL: SIGSTOP while this process holds the database's turn and
/// `idempotency` exclusively.
async fn stop_between_pg_writes(url: &str, pid: i32) -> Result<(), LoadError> {
    let failed = |e: tokio_postgres::Error| LoadError::Stack(format!("the ledger's server: {e}"));
    let config = croupier_ledger::pg::connection_config(url)?;
    let (client, connection) = config.connect().await.map_err(failed)?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "SET lock_timeout = '10s'; SELECT pg_advisory_lock({TURN_LOCKS}, 0); \
             BEGIN; LOCK TABLE idempotency IN ACCESS EXCLUSIVE MODE"
        ))
        .await
        .map_err(failed)?;
    let stopped = tokio::task::spawn_blocking(move || stop(pid))
        .await
        .map_err(|e| LoadError::Stack(format!("the freeze task failed: {e}")))?;
    let _ = client
        .batch_execute(&format!(
            "ROLLBACK; SELECT pg_advisory_unlock({TURN_LOCKS}, 0)"
        ))
        .await;
    drop(client);
    let _ = driver.await;
    stopped
}

/// Sends SIGSTOP to `pid` and returns once every one of its threads has stopped. `kill`
/// returns before that: a thread running on another core stops at its next return to user
/// space, and one that is not running when it is next scheduled. Letting the locks go
/// before then let a node take its write turn in that gap and freeze holding it (seen in CI:
/// every writer waited out the 4 s freeze), which is the store-outage drill's fault.
fn stop(pid: i32) -> Result<(), LoadError> {
    signal(pid, libc::SIGSTOP)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !all_threads_stopped(pid)? {
        if Instant::now() > deadline {
            return Err(LoadError::Stack(format!(
                "pid {pid} did not stop within 2 s of SIGSTOP"
            )));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Whether every thread of `pid` is in the stopped state (`T` in `/proc/<pid>/task/*/stat`).
fn all_threads_stopped(pid: i32) -> Result<bool, LoadError> {
    let tasks = format!("/proc/{pid}/task");
    let entries =
        std::fs::read_dir(&tasks).map_err(|e| LoadError::io(format!("reading {tasks}"), e))?;
    for entry in entries {
        let stat = entry
            .and_then(|e| std::fs::read_to_string(e.path().join("stat")))
            .map_err(|e| LoadError::io(format!("reading {tasks}"), e))?;
        // The state follows the command name, which is in parentheses and may hold spaces.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        if !matches!(state, Some('T' | 't')) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Why a freeze-node drill failed on its latency, if it did.
pub fn judge(slowest_ms: f64) -> Option<String> {
    let allowed = SLOWEST_ALLOWED.as_millis() as f64;
    (slowest_ms > allowed).then(|| {
        format!(
            "the slowest player request took {slowest_ms:.0} ms while a node was frozen, over \
             the {allowed:.0} ms allowed"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process busy on the other core is still running for a while after `kill` returns
    /// (seen right after SIGSTOP in most of 200 tries): `stop` returns only once it is not.
    #[test]
    fn stop_returns_once_every_thread_has_stopped() {
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let pid = busy.id() as i32;
        for _ in 0..50 {
            stop(pid).unwrap();
            assert!(all_threads_stopped(pid).unwrap());
            signal(pid, libc::SIGCONT).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        busy.kill().unwrap();
        busy.wait().unwrap();
    }
}
