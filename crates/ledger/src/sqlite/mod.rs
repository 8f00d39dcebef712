//! The SQLite backend: one file in WAL mode (every acknowledged write has been fsynced). A
//! single writer thread per process takes operations off a queue and commits them in batches
//! (group commit): one `BEGIN IMMEDIATE … COMMIT` and one fsync for many bets, each bet
//! isolated in its own savepoint so a refused one changes nothing; the fsync runs after the
//! write turn is passed, before any answer. Several processes can share the file: they take
//! turns, `BEGIN IMMEDIATE` serialises their writers and each batch re-reads the chain head.
//! Reads use a small pool of read-only connections.

mod checkpoint;
mod file_sync;
mod reseal;
mod retention;
pub(crate) mod schema;
pub mod turns;
mod tx;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::clock::now_ms;
use crate::error::LedgerError;
use crate::observe::{BatchTimings, ObserverSlot, StoreObserver};
use crate::seed_seal::SeedVault;
use crate::store::{
    BoxFuture, ErasedCommitted, Idempotency, OpOutput, ReadOp, Store, TxOp, WriteFailure,
};
use checkpoint::Checkpointer;
pub use schema::MIGRATIONS;
use turns::WriterTurns;
use tx::{BatchBalances, ChainHead, SqliteTx};

/// How long a writer waits for another process's write turn (or SQLite's lock) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const QUEUE_DEPTH: usize = 16_384;
/// Prepared statements kept per connection: more than the ledger uses, so none is re-parsed.
const STATEMENT_CACHE: usize = 64;

#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub path: PathBuf,
    pub currency: String,
    /// Most operations committed together in one transaction.
    pub max_batch: usize,
    pub readers: usize,
    /// WAL length (frames, about a KiB each) past which the checkpointer takes the write
    /// turn so the WAL can rewind (`checkpoint`).
    pub wal_restart_frames: i64,
    /// How unrevealed server seeds are stored (sealed when it has keys).
    pub seeds: SeedVault,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            currency: "EUR".to_owned(),
            max_batch: 512,
            readers: 4,
            wal_restart_frames: 8 * 1024,
            seeds: SeedVault::default(),
        }
    }
}

type Reply = Result<ErasedCommitted, WriteFailure>;

struct Job {
    idempotency: Option<Idempotency>,
    op: TxOp,
    reply: oneshot::Sender<Reply>,
    queued: Instant,
}

pub struct SqliteStore {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    observer: ObserverSlot,
    _checkpoints: Checkpointer,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    currency: Arc<str>,
    seeds: SeedVault,
}

/// The WAL file beside a ledger file.
pub(crate) fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Opens a connection with the settings every connection to the ledger uses.
pub fn connect(path: &Path, read_only: bool) -> Result<Connection, LedgerError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if !read_only {
        // Takes effect when the file is created. A bet touches many small rows on different
        // pages (per-player indexes, idempotency keys): small pages mean fewer bytes per commit
        // in the WAL. Measured with bench/ledger.sh: 1 KiB pages beat the 4 KiB default.
        conn.execute_batch("PRAGMA page_size = 1024")?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if mode != "wal" {
            return Err(LedgerError::Storage(format!(
                "{} cannot use WAL mode (got {mode})",
                path.display()
            )));
        }
    }
    // synchronous = FULL: every commit fsyncs the WAL, so an acknowledged bet survives a
    // power cut (the store's writer lowers it to NORMAL and fsyncs the WAL itself, outside
    // the write turn: `Writer::make_durable`). Savepoint journals stay in memory.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -4096; PRAGMA wal_autocheckpoint = 16000;",
    )?;
    Ok(conn)
}

/// Runs every ledger invariant check on a connection of its own (a copied or restored file),
/// in one read snapshot, without starting a store.
pub fn check_integrity(
    conn: &Connection,
    currency: &str,
) -> Result<crate::IntegrityReport, LedgerError> {
    conn.execute_batch("BEGIN")?;
    let mut tx = SqliteTx {
        conn,
        currency,
        now_ms: now_ms(),
        head: None,
        balances: None,
        seeds: &SeedVault::default(),
    };
    let report = crate::integrity::check(&mut tx);
    conn.execute_batch("COMMIT")?;
    report
}

/// The writer's connection to a file in WAL mode at the current schema, its unrevealed seeds
/// stored as `config.seeds` says.
fn prepare_file(config: &SqliteConfig) -> Result<Connection, LedgerError> {
    let mut writer = connect(&config.path, false)?;
    schema::migrate(&mut writer)?;
    reseal::reseal_unrevealed(&writer, &config.seeds)?;
    Ok(writer)
}

impl SqliteStore {
    /// Opens (creating if needed) the ledger file, migrates it and starts the writer thread.
    pub fn open(config: SqliteConfig) -> Result<SqliteStore, LedgerError> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                LedgerError::Storage(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        // Nodes started together open a file that does not exist yet at the same instant:
        // making it (WAL mode, migrations, resealing) is a write, so it waits for the write
        // turn like a batch does; SQLite alone answers "locked" at once to all but one.
        let turns = WriterTurns::open(&config.path, BUSY_TIMEOUT)?;
        turns.take()?;
        let prepared = prepare_file(&config);
        turns.pass()?;
        let writer = prepared?;
        // Checkpoints run beside the writer, never inside its commits (`checkpoint`); when
        // the WAL rewinds, its file is cut back to 16 MiB.
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 16777216")?;
        // The writer's commits do not fsync (NORMAL); it fsyncs the WAL itself after passing
        // the write turn and before it answers (`Writer::make_durable`).
        writer.execute_batch("PRAGMA synchronous = NORMAL")?;
        let wal_file = wal_path(&config.path);
        let wal = std::fs::File::open(&wal_file).map_err(|e| {
            LedgerError::Storage(format!("cannot open {}: {e}", wal_file.display()))
        })?;
        let readers = (0..config.readers.max(1))
            .map(|_| connect(&config.path, true).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let currency: Arc<str> = config.currency.clone().into();
        let writer_currency = currency.clone();
        let max_batch = config.max_batch.max(1);
        let observer = ObserverSlot::default();
        let writer_observer = observer.clone();
        let writer_seeds = config.seeds.clone();
        let checkpoints = Checkpointer::start(
            &config.path,
            config.wal_restart_frames,
            WriterTurns::open(&config.path, BUSY_TIMEOUT)?,
            observer.clone(),
        )?;
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                let writer = Writer {
                    conn: writer,
                    wal,
                    turns,
                    currency: &writer_currency,
                    max_batch,
                    observer: &writer_observer,
                    seeds: &writer_seeds,
                };
                writer.run(queue)
            })
            .map_err(|e| LedgerError::Storage(format!("cannot start the writer: {e}")))?;
        Ok(SqliteStore {
            path: config.path.clone(),
            jobs,
            observer,
            _checkpoints: checkpoints,
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
            currency,
            seeds: config.seeds.clone(),
        })
    }
}

/// The process's one writer: takes its turn at the file, commits what has queued meanwhile,
/// passes the turn, makes the commit durable, then answers.
struct Writer<'a> {
    conn: Connection,
    /// The WAL file, for the fsync that makes a batch durable outside the write turn. Its
    /// inode lives as long as this process has the ledger open: SQLite rewinds and truncates
    /// it in place, and deletes it only when the last connection to the file closes.
    wal: std::fs::File,
    turns: WriterTurns,
    currency: &'a str,
    max_batch: usize,
    observer: &'a ObserverSlot,
    seeds: &'a SeedVault,
}

impl Writer<'_> {
    /// Serves the queue until it closes. A panic outside an operation (a bug in the writer's
    /// own code, or in the store's observer) would end the thread, and with it every write of
    /// the process until a restart, while the node still answered its health checks. The
    /// batch it was on is rolled back and refused (or was answered already); the turn at the
    /// file is given up if held, the panic logged, and the writer goes on.
    fn run(&self, mut queue: mpsc::Receiver<Job>) {
        while catch_unwind(AssertUnwindSafe(|| self.serve(&mut queue))).is_err() {
            tracing::error!("the ledger writer panicked outside an operation; it goes on");
            if !self.conn.is_autocommit()
                && let Err(e) = self.conn.execute_batch("ROLLBACK")
            {
                tracing::error!(error = %e, "cannot roll back the panicked batch");
            }
            if let Err(e) = self.turns.pass() {
                tracing::error!(error = %e, "cannot pass the ledger's write turn");
            }
        }
    }

    fn serve(&self, queue: &mut mpsc::Receiver<Job>) {
        while let Some(first) = queue.blocking_recv() {
            let turn = self.turns.take();
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let turn_wait = match turn {
                Ok(waited) => waited,
                Err(e) => {
                    fail_all(batch.into_iter().map(|job| job.reply), &e);
                    continue;
                }
            };
            let (timings, replies) =
                commit_batch(&self.conn, self.currency, self.seeds, batch, turn_wait);
            if let Err(e) = self.turns.pass() {
                tracing::error!(error = %e, "cannot pass the ledger's write turn");
            }
            let timings = self.make_durable(timings, replies);
            self.observer.report(&timings);
        }
    }

    /// Fsyncs the WAL, then answers the batch's operations. The commit wrote its frames with
    /// `synchronous = NORMAL`, so other writers could take the turn while this fsync runs
    /// (several processes' fsyncs then overlap instead of queueing behind one write lock);
    /// nothing is answered before its frames, and every frame before them, are on disk. If
    /// the fsync fails, the batch is answered as unavailable: its writes are in the WAL and
    /// a retry with the same idempotency key gets the committed answer.
    fn make_durable(&self, mut timings: BatchTimings, replies: Vec<Answer>) -> BatchTimings {
        if timings.committed {
            let started = Instant::now();
            let synced = self.wal.sync_data();
            timings.commit += started.elapsed();
            if let Err(e) = synced {
                tracing::error!(error = %e, "cannot flush the ledger's WAL to disk");
                timings.committed = false;
                let failure = LedgerError::Storage(format!("cannot flush the WAL to disk: {e}"));
                fail_all(replies.into_iter().map(|(reply, _)| reply), &failure);
                return timings;
            }
        }
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        timings
    }
}

/// A job's reply channel and what to send on it once the batch is durable.
type Answer = (oneshot::Sender<Reply>, Reply);

/// Answers every operation of a batch that could not run, or not be made durable, with why.
fn fail_all(replies: impl IntoIterator<Item = oneshot::Sender<Reply>>, error: &LedgerError) {
    for reply in replies {
        let _ = reply.send(Err(LedgerError::Unavailable(error.to_string()).into()));
    }
}

/// Runs a batch in one transaction and commits it (to the WAL, not yet fsynced); returns the
/// answers to send once it is durable (answers of a batch that failed are refusals).
fn commit_batch(
    conn: &Connection,
    currency: &str,
    seeds: &SeedVault,
    jobs: Vec<Job>,
    turn_wait: Duration,
) -> (BatchTimings, Vec<Answer>) {
    let started = Instant::now();
    let mut timings = BatchTimings {
        jobs: jobs.len(),
        queue_wait: jobs.first().map_or(Duration::ZERO, |j| {
            started.duration_since(j.queued).saturating_sub(turn_wait)
        }),
        turn_wait,
        build: Duration::ZERO,
        commit: Duration::ZERO,
        retries: 0,
        committed: false,
        writers_in_turn: 1,
    };
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        fail_all(jobs.into_iter().map(|job| job.reply), &e.into());
        return (timings, Vec::new());
    }
    let head = match ChainHead::read(conn) {
        Ok(head) => head,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            fail_all(jobs.into_iter().map(|job| job.reply), &e);
            return (timings, Vec::new());
        }
    };
    let mut batch = Batch {
        conn,
        currency,
        seeds,
        now: now_ms(),
        head,
        balances: BatchBalances::default(),
    };
    let replies: Vec<_> = jobs
        .into_iter()
        .map(|job| (job.reply, batch.run_job(job.idempotency, &job.op)))
        .collect();
    let built = Instant::now();
    timings.build = built.duration_since(started);
    let committed = batch
        .balances
        .flush(conn, currency)
        .and_then(|()| Ok(conn.execute_batch("COMMIT")?));
    timings.commit = built.elapsed();
    match committed {
        Ok(()) => {
            timings.committed = true;
            (timings, replies)
        }
        Err(e) => {
            tracing::error!(error = %e, "group commit failed; the whole batch is rolled back");
            let _ = conn.execute_batch("ROLLBACK");
            fail_all(replies.into_iter().map(|(reply, _)| reply), &e);
            (timings, Vec::new())
        }
    }
}

/// A batch being built inside one write transaction.
struct Batch<'c> {
    conn: &'c Connection,
    currency: &'c str,
    seeds: &'c SeedVault,
    now: i64,
    /// Where the next accepted operation's entries link.
    head: ChainHead,
    balances: BatchBalances,
}

impl Batch<'_> {
    /// One operation in its own savepoint: refused or failed, it leaves no trace.
    fn run_job(&mut self, idempotency: Option<Idempotency>, op: &TxOp) -> Reply {
        self.execute("SAVEPOINT job")?;
        match self.run_in_savepoint(&idempotency, op) {
            Ok((committed, new_head)) => {
                self.execute("RELEASE job")?;
                self.balances.accept();
                if let Some(new_head) = new_head {
                    self.head = new_head;
                }
                Ok(committed)
            }
            Err(e) => {
                self.balances.discard();
                self.execute("ROLLBACK TO job")?;
                self.execute("RELEASE job")?;
                Err(e)
            }
        }
    }

    fn execute(&self, sql: &str) -> Result<(), LedgerError> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    /// The idempotency check, the operation and its idempotency record; also returns where
    /// the chain now ends.
    fn run_in_savepoint(
        &mut self,
        idempotency: &Option<Idempotency>,
        op: &TxOp,
    ) -> Result<(ErasedCommitted, Option<ChainHead>), WriteFailure> {
        if let Some(idem) = idempotency
            && let Some(replay) = self.replay(idem)?
        {
            return Ok((replay, None));
        }
        let mut tx = SqliteTx {
            conn: self.conn,
            currency: self.currency,
            now_ms: self.now,
            head: Some(self.head.clone()),
            balances: Some(&mut self.balances),
            seeds: self.seeds,
        };
        let output: OpOutput = catch_unwind(AssertUnwindSafe(|| op(&mut tx)))
            .map_err(|_| LedgerError::Storage("the operation panicked".into()))?
            .map_err(WriteFailure::Op)?;
        let new_head = tx.head;
        if let Some(idem) = idempotency {
            let record = output.record.ok_or_else(|| {
                LedgerError::Storage("a keyed write came without its record".into())
            })?;
            self.conn
                .prepare_cached(
                    "INSERT INTO idempotency (key, fingerprint, response, created_ms) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| s.execute(params![idem.key, idem.fingerprint, record, self.now]))
                .map_err(LedgerError::from)?;
        }
        Ok((ErasedCommitted::Fresh(output.value), new_head))
    }

    /// The first answer for a key seen before; a refusal when it guarded another request.
    fn replay(&self, idem: &Idempotency) -> Result<Option<ErasedCommitted>, LedgerError> {
        let seen: Option<(String, String)> = self
            .conn
            .prepare_cached("SELECT fingerprint, response FROM idempotency WHERE key = ?1")?
            .query_row([&idem.key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match seen {
            None => Ok(None),
            Some((fingerprint, response)) if fingerprint == idem.fingerprint => {
                Ok(Some(ErasedCommitted::Replayed(response)))
            }
            Some(_) => Err(LedgerError::IdempotencyKeyReused),
        }
    }
}

impl Store for SqliteStore {
    fn transact_erased(&self, idempotency: Option<Idempotency>, op: TxOp) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            let (reply, result) = oneshot::channel();
            self.jobs
                .send(Job {
                    idempotency,
                    op,
                    reply,
                    queued: Instant::now(),
                })
                .await
                .map_err(|_| LedgerError::Unavailable("the ledger writer has stopped".into()))?;
            result
                .await
                .map_err(|_| LedgerError::Unavailable("the ledger writer has stopped".into()))?
        })
    }

    fn read_boxed(&self, op: ReadOp) -> BoxFuture<'_, Result<(), LedgerError>> {
        let readers = self.readers.clone();
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        let currency = self.currency.clone();
        let seeds = self.seeds.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let conn = readers[index].lock();
                if !conn.is_autocommit() {
                    conn.execute_batch("ROLLBACK")?;
                }
                conn.execute_batch("BEGIN")?;
                let mut tx = SqliteTx {
                    conn: &conn,
                    currency: &currency,
                    now_ms: now_ms(),
                    head: None,
                    balances: None,
                    seeds: &seeds,
                };
                op(&mut tx);
                conn.execute_batch("COMMIT")?;
                Ok(())
            })
            .await
            .map_err(|e| LedgerError::Storage(format!("read failed: {e}")))?
        })
    }

    fn observe(&self, observer: Arc<dyn StoreObserver>) {
        self.observer.set(observer);
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn ready(&self) -> BoxFuture<'_, Result<bool, LedgerError>> {
        let readers = self.readers.clone();
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let conn = readers[index].lock();
                Ok(schema::version(&conn)? == MIGRATIONS.len())
            })
            .await
            .map_err(|e| LedgerError::Storage(format!("readiness check failed: {e}")))?
        })
    }

    fn housekeep(
        &self,
        policy: crate::retention::RetentionPolicy,
    ) -> BoxFuture<'_, Result<crate::retention::HousekeepReport, LedgerError>> {
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || retention::housekeep(&path, &policy))
                .await
                .map_err(|e| LedgerError::Storage(format!("housekeeping failed: {e}")))?
        })
    }
}

#[cfg(test)]
mod tests;
