//! The `freeze-node` drill's fault, a gray failure (issue #13): node-1 is stopped with SIGSTOP
//! for `FREEZE`, a stand-in for a long GC pause, a stuck disk or a hung VM, and continued with
//! SIGCONT. Unlike a dead node it keeps its connections open and answers nothing, so only the
//! gateway's per-try timeout (and its ejection of the node) spares the players; the drill then
//! fails when a player's request took over `SLOWEST_ALLOWED`.
//!
//! The freeze is timed between two of the node's write transactions. On SQLite the drill
//! holds the writers' turn (the `flock` every node's writer takes before `BEGIN IMMEDIATE`)
//! and the ledger's write lock while it stops the node: a stopped process does nothing, so
//! it holds neither when it stops, and takes neither until it is continued.
//!
//! On PostgreSQL the server acts for a stopped client: a statement the node sent before it
//! stopped runs to its end, and its transaction then waits, idle and holding its locks, for
//! the next statement, until `idle_in_transaction_session_timeout` (1 s) ends it. Holding
//! locks while stopping the node does not prevent that, it causes it: the drill used to hold
//! the database's turn and `idempotency` exclusively, the node's next batch queued behind
//! them, ran as they were let go, and froze holding the keys it had claimed; a player's
//! retry of one on another node waited for the idle timeout (CI: 1 009 ms, and 1 045–1 072 ms
//! each time with the drill's lock held 60 ms before the stop). So the drill stops the node,
//! then looks at the node's sessions on the server (by the client ports of its connections,
//! `proc_net`): when one is not idle, or bytes it sent have not been read yet, the node is
//! continued and stopped again a moment later, until it is caught quiet. A node frozen in a
//! write transaction holds the locks other writers wait for: that is the store-outage
//! drill's fault, not this one's.

use std::time::{Duration, Instant};

use croupier_ledger::StoreLocation;
use croupier_ledger::sqlite::turns::WriterTurns;
use tokio_postgres::Client;

use crate::drill::signal;
use crate::error::LoadError;
use crate::proc_net;
use crate::stack::Stack;

/// How long the node stays stopped: the figure.
pub const FREEZE: Duration = Duration::from_secs(4);
/// The slowest player request a frozen node may cost.
pub const SLOWEST_ALLOWED: Duration = Duration::from_secs(1);
/// How long the drill tries to catch node-1 quiet on PostgreSQL before it gives up.
const QUIET_WITHIN: Duration = Duration::from_secs(10);
/// How long after the stop the drill looks at the node's sessions: a statement written just
/// before the stop has reached the server by then, or is counted as bytes on their way.
const SETTLE: Duration = Duration::from_millis(10);

/// Stops node-1 for `FREEZE`, then continues it; what was done.
pub async fn freeze_node(stack: &Stack) -> Result<String, LoadError> {
    let pid = stack
        .node_pid(0)
        .ok_or_else(|| LoadError::Stack("node-1's process was not found".into()))?;
    let caught = match stack.store() {
        StoreLocation::Sqlite(db) => {
            stop_between_sqlite_writes(db, pid).await?;
            String::new()
        }
        StoreLocation::Postgres(url) => {
            let tries = stop_while_quiet_on_pg(&url, pid).await?;
            format!(" (caught quiet on the database at try {tries})")
        }
    };
    let stopped = Instant::now();
    tokio::time::sleep(FREEZE).await;
    // Continued whatever happened meanwhile: a node left stopped would outlive the drill.
    signal(pid, libc::SIGCONT)?;
    Ok(format!(
        "node-1 (pid {pid}) stopped with SIGSTOP between two of its write transactions{caught}, \
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

/// Stops `pid` at a moment it has nothing under way on the PostgreSQL server `url`: each
/// of its sessions idle (in no transaction, running nothing) and every byte it sent read.
/// Returns once it has, stopped, with the number of tries.
async fn stop_while_quiet_on_pg(url: &str, pid: i32) -> Result<u32, LoadError> {
    let config = croupier_ledger::pg::connection_config(url)?;
    let (client, connection) = config.connect().await.map_err(server_failed)?;
    let driver = tokio::spawn(connection);
    let caught = catch_quiet(&client, pid).await;
    drop(client);
    let _ = driver.await;
    caught
}

async fn catch_quiet(client: &Client, pid: i32) -> Result<u32, LoadError> {
    let deadline = Instant::now() + QUIET_WITHIN;
    let mut tries = 0;
    loop {
        tries += 1;
        tokio::task::spawn_blocking(move || stop(pid))
            .await
            .map_err(|e| LoadError::Stack(format!("the freeze task failed: {e}")))??;
        tokio::time::sleep(SETTLE).await;
        let busy = busy_on_server(client, pid).await;
        if matches!(&busy, Ok(busy) if busy.is_empty()) {
            return Ok(tries);
        }
        // Continued first, also when the server could not be asked.
        signal(pid, libc::SIGCONT)?;
        let busy = busy?;
        if Instant::now() > deadline {
            return Err(LoadError::Stack(format!(
                "pid {pid} was never quiet on the database in {tries} tries over {} s; last \
                 seen: {}",
                QUIET_WITHIN.as_secs(),
                busy.join("; ")
            )));
        }
        // Varied, so as not to fall in step with the node's periodic work.
        tokio::time::sleep(Duration::from_millis(5 + u64::from(tries * 7 % 23))).await;
    }
}

/// What process `pid` has under way on the server: its sessions that are not idle (found
/// by the client ports of its connections) and its connections with bytes on their way.
async fn busy_on_server(client: &Client, pid: i32) -> Result<Vec<String>, LoadError> {
    let connections = proc_net::connections_of(pid)
        .map_err(|e| LoadError::io(format!("reading the connections of pid {pid}"), e))?;
    let mut busy: Vec<String> = connections
        .iter()
        .filter(|c| c.in_flight > 0)
        .map(|c| {
            format!(
                "{} bytes on their way from port {}",
                c.in_flight, c.local_port
            )
        })
        .collect();
    let ports: Vec<i32> = connections
        .iter()
        .map(|c| i32::from(c.local_port))
        .collect();
    let sessions = client
        .query(
            "SELECT client_port, coalesce(state, 'not visible to the drill'), \
                    coalesce(wait_event_type || ' ' || wait_event, 'no wait') \
             FROM pg_stat_activity \
             WHERE client_port = ANY($1) AND state IS DISTINCT FROM 'idle'",
            &[&ports],
        )
        .await
        .map_err(server_failed)?;
    busy.extend(sessions.iter().map(|row| {
        format!(
            "the session from port {} is {} ({})",
            row.get::<_, i32>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        )
    }));
    Ok(busy)
}

fn server_failed(e: tokio_postgres::Error) -> LoadError {
    LoadError::Stack(format!(
        "the ledger's server: {}",
        croupier_pgconn::with_causes(&e)
    ))
}

/// Sends SIGSTOP to `pid` and returns once every one of its threads has stopped. `kill`
/// returns before that: a thread running on another core stops at its next return to user
/// space, and one that is not running when it is next scheduled. Letting the locks go
/// before then let a node take its write turn in that gap and freeze holding it (seen in CI:
/// every writer waited out the 4 s freeze), which is the store-outage drill's fault. A stop
/// that fails is undone: the process is continued before the error is returned, since a node
/// left stopped would outlive the drill.
fn stop(pid: i32) -> Result<(), LoadError> {
    signal(pid, libc::SIGSTOP)?;
    let stopped = wait_until_stopped(pid);
    if stopped.is_err() {
        let _ = signal(pid, libc::SIGCONT);
    }
    stopped
}

fn wait_until_stopped(pid: i32) -> Result<(), LoadError> {
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

/// Whether no thread of `pid` can run: each stopped (`T`, or `t` when traced) or dead (`Z`,
/// `X`: a thread that ended and is not yet reaped, such as a main thread that ended before
/// the others), in `/proc/<pid>/task/*/stat`. A thread that ends between the listing and the
/// read of its state is gone, not a failure.
fn all_threads_stopped(pid: i32) -> Result<bool, LoadError> {
    let tasks = format!("/proc/{pid}/task");
    let entries =
        std::fs::read_dir(&tasks).map_err(|e| LoadError::io(format!("reading {tasks}"), e))?;
    for entry in entries {
        let stat = match entry.and_then(|e| std::fs::read_to_string(e.path().join("stat"))) {
            Ok(stat) => stat,
            Err(e) if thread_gone(&e) => continue,
            Err(e) => return Err(LoadError::io(format!("reading {tasks}"), e)),
        };
        if !matches!(thread_state(&stat), Some('T' | 't' | 'Z' | 'X')) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A thread's state from its `/proc/<pid>/task/<tid>/stat`: the field after the command
/// name, which is in parentheses and may hold spaces.
fn thread_state(stat: &str) -> Option<char> {
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}

/// Whether reading a thread's `/proc` entry failed because the thread has ended.
fn thread_gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
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

    /// A thread that has ended but is not reaped yet (here the main thread, ended before the
    /// others: the process lives on with its leader a zombie) can never stop and never run.
    /// It counts as stopped. Before, `stop` waited 2 s for it and failed, and the drill left
    /// the process stopped for good: the other threads stayed in `T`.
    #[test]
    fn a_process_whose_main_thread_has_ended_is_stopped_and_continued() {
        let mut headless = std::process::Command::new("python3")
            .args([
                "-c",
                "import ctypes, threading, time\n\
                 threading.Thread(target=lambda: time.sleep(60)).start()\n\
                 ctypes.CDLL(None).pthread_exit(None)",
            ])
            .spawn()
            .unwrap();
        let pid = headless.id() as i32;
        let leader = format!("/proc/{pid}/task/{pid}/stat");
        let deadline = Instant::now() + Duration::from_secs(5);
        while thread_state(&std::fs::read_to_string(&leader).unwrap()) != Some('Z') {
            assert!(Instant::now() < deadline, "the main thread never ended");
            std::thread::sleep(Duration::from_millis(10));
        }
        let stopped = stop(pid);
        let states_while_stopped = thread_states(pid);
        signal(pid, libc::SIGCONT).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let states_continued = thread_states(pid);
        headless.kill().unwrap();
        headless.wait().unwrap();
        stopped.unwrap();
        assert_eq!(
            states_while_stopped, "TZ",
            "the worker stopped, the leader dead"
        );
        assert_eq!(states_continued, "SZ", "the worker runs (sleeps) again");
    }

    /// The state of each thread of `pid`, sorted.
    fn thread_states(pid: i32) -> String {
        let mut states: Vec<char> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
            .filter_map(|stat| thread_state(&stat))
            .collect();
        states.sort_unstable();
        states.into_iter().collect()
    }

    /// A stand-in for node-1 on PostgreSQL: a real `psql` whose statements the test writes
    /// one at a time, as a node's writer sends them, over TCP like a node's.
    struct Client {
        process: std::process::Child,
        name: String,
    }

    impl Client {
        fn start(url: &str, name: &str) -> Client {
            let process = std::process::Command::new("psql")
                .args(["-X", "-q", url])
                .env("PGAPPNAME", name)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("psql runs");
            Client {
                process,
                name: name.to_owned(),
            }
        }

        fn pid(&self) -> i32 {
            self.process.id() as i32
        }

        /// Written now; run when psql reads it (once continued, if it is stopped).
        fn send(&mut self, sql: &str) {
            use std::io::Write;
            let stdin = self.process.stdin.as_mut().unwrap();
            writeln!(stdin, "{sql}").unwrap();
            stdin.flush().unwrap();
        }

        /// Its session's state and what it waits for, and the locks it holds (none before
        /// it has connected; no state while its backend is still starting, which
        /// `pg_stat_activity` shows as NULL: read as "", so `wait_for` waits on, where it
        /// failed reading a NULL as text).
        async fn session(&self, server: &tokio_postgres::Client) -> (String, String, i64) {
            let row = server
                .query_opt(
                    "SELECT coalesce(a.state, ''), coalesce(a.wait_event_type, ''), \
                            (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.granted \
                               AND l.locktype <> 'virtualxid') \
                     FROM pg_stat_activity a WHERE a.application_name = $1",
                    &[&self.name],
                )
                .await
                .unwrap();
            row.map_or_else(Default::default, |row| (row.get(0), row.get(1), row.get(2)))
        }

        async fn wait_for(&self, server: &tokio_postgres::Client, state: &str, wait: &str) {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let (now, waiting, _) = self.session(server).await;
                if now == state && waiting == wait {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} stays {now} {waiting}",
                    self.name
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    impl Drop for Client {
        fn drop(&mut self) {
            let _ = signal(self.pid(), libc::SIGCONT);
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }

    async fn connect(url: &str) -> tokio_postgres::Client {
        let config = croupier_ledger::pg::connection_config(url).unwrap();
        let (client, connection) = config.connect().await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// A scratch database with `table` in it, locked ACCESS EXCLUSIVE by a session of its
    /// own (the holder); the database, a session to look with, and the holder.
    async fn a_locked_table(
        table: &str,
    ) -> (
        croupier_ledger::pg::scratch::ScratchDb,
        tokio_postgres::Client,
        tokio_postgres::Client,
    ) {
        let db = croupier_ledger::pg::scratch::ScratchDb::create(
            &croupier_ledger::pg::scratch::test_server(),
            "freeze",
        )
        .unwrap();
        let server = connect(db.url()).await;
        server
            .batch_execute(&format!("CREATE TABLE {table} (key text)"))
            .await
            .unwrap();
        let holder = connect(db.url()).await;
        holder
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .unwrap();
        (db, server, holder)
    }

    /// The CI failure's mechanism: the node's next write was queued on the server behind a
    /// lock the drill held while it stopped the node, and ran once the drill let it go, for a
    /// client that could not end it: its transaction sat idle, holding its locks, for 1 s.
    /// The drill held the database's turn and `idempotency`; here a test session holds the
    /// table and the node queues behind whoever locks it next. A stopped node's session is
    /// idle, holds nothing, and stays so for the whole freeze.
    #[tokio::test]
    async fn a_statement_sent_before_the_stop_is_not_left_to_run_for_a_stopped_node() {
        let (db, server, holder) = a_locked_table("idempotency").await;
        let mut node = Client::start(db.url(), "freeze_test_queued");
        node.wait_for(&server, "idle", "Client").await;
        let url = db.url().to_owned();
        let pid = node.pid();
        let drill = tokio::spawn(async move { stop_while_quiet_on_pg(&url, pid).await });
        // Whatever the drill takes, the node's next write queues behind it and the holder.
        let deadline = Instant::now() + Duration::from_secs(1);
        while !all_threads_stopped(pid).unwrap() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        node.send("BEGIN; LOCK TABLE idempotency IN ROW EXCLUSIVE MODE;");
        tokio::time::sleep(Duration::from_millis(100)).await;
        holder.batch_execute("COMMIT").await.unwrap();
        let tries = tokio::time::timeout(Duration::from_secs(5), drill)
            .await
            .expect("the drill stops the node within 5 s")
            .unwrap()
            .unwrap();
        assert!(all_threads_stopped(pid).unwrap());
        for _ in 0..20 {
            let (state, _, locks) = node.session(&server).await;
            assert_eq!((state.as_str(), locks), ("idle", 0), "after {tries} tries");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A node whose write waits on the server, then whose transaction is open, is continued
    /// and stopped again until it has nothing under way there.
    #[tokio::test]
    async fn a_node_busy_on_the_server_is_stopped_only_once_it_is_quiet() {
        let (db, server, holder) = a_locked_table("rounds").await;
        let mut node = Client::start(db.url(), "freeze_test_busy");
        node.send("BEGIN; LOCK TABLE rounds IN ROW EXCLUSIVE MODE;");
        node.wait_for(&server, "active", "Lock").await;
        let url = db.url().to_owned();
        let pid = node.pid();
        let drill = tokio::spawn(async move { stop_while_quiet_on_pg(&url, pid).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!drill.is_finished(), "stopped while its write waited");
        holder.batch_execute("COMMIT").await.unwrap();
        node.wait_for(&server, "idle in transaction", "Client")
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!drill.is_finished(), "stopped in a transaction");
        node.send("COMMIT;");
        let tries = tokio::time::timeout(Duration::from_secs(5), drill)
            .await
            .expect("the drill stops the node within 5 s")
            .unwrap()
            .unwrap();
        assert!(tries > 2, "{tries} tries");
        assert!(all_threads_stopped(pid).unwrap());
        assert_eq!(
            node.session(&server).await,
            ("idle".into(), "Client".into(), 0)
        );
    }
}
