//! A writer of a PostgreSQL store: a thread with its own single-threaded runtime and
//! connection, taking operations off the store's queue in its turn (`Turn`: a store's writers
//! take turns building batches; while another batch is in flight on the database, this
//! node's or another's, a writer also waits for the database's turn, `shared_turn`) and
//! committing them in batches (group commit). A batch that
//! fails for a reason a retry may cure (the connection dropped, the server restarted or
//! became a standby, a deadlock, a key committed meanwhile by another node) is run again from
//! the start, on a fresh connection if needed, until `retry_for` has passed; keyed
//! operations committed by an attempt whose answer was lost are then found as replays.
//! Nothing is acknowledged before its commit.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;

use super::batch::{BatchState, Commit, flush, flush_after};
use super::conn::{Conn, Driver};
use super::error::pg_error;
use super::needs::Needs;
use super::overlap::{Sharing, wait_in_turn, writers_in_turn};
use super::pipeline::{Statement, run_pipelined};
use super::prefetch::{DISCOVERY_PASSES, Reads};
use super::remembered::{self, PlayerRows, Remembered};
use super::shared_turn;
use super::tx::PgTx;
use crate::clock::now_ms;
use crate::error::LedgerError;
use crate::observe::{BatchTimings, ObserverSlot};
use crate::seed_seal::SeedVault;
use crate::store::{ErasedCommitted, Idempotency, OpOutput, TxOp, WriteFailure};

pub type Reply = Result<ErasedCommitted, WriteFailure>;

pub struct Job {
    pub idempotency: Option<Idempotency>,
    pub op: TxOp,
    pub reply: oneshot::Sender<Reply>,
    pub queued: Instant,
}

pub struct Writer {
    pub runtime: Runtime,
    pub pool: Pool,
    /// This writer's row of the house and escrow balances (claimed by each new connection).
    pub shard: super::shard::ShardClaim,
    pub role: Role,
}

/// What a writer is within its store: given when it starts, kept as it runs.
pub struct Role {
    /// Which of the store's `writers`. The first always takes turns, the others while
    /// `sharing` lets them (`overlap`); each takes the database's turn while another batch
    /// is in flight there (`shared_turn`).
    pub index: usize,
    pub writers: usize,
    pub sharing: Sharing,
    /// The store's writers with a batch in flight, from taking its jobs to the end of its
    /// transaction (before its answers, which let the players' next bets in).
    pub in_flight: Arc<AtomicUsize>,
    pub currency: String,
    pub max_batch: usize,
    /// How long a batch is retried before its operations are answered "unavailable".
    pub retry_for: Duration,
    pub observer: ObserverSlot,
    pub seeds: SeedVault,
    /// The players' rows the store's writers last committed (shared by them).
    pub remembered: Arc<Remembered>,
}

/// A writer's batch counted in flight until it is dropped.
struct InFlight<'a> {
    count: &'a AtomicUsize,
    /// The store's other writers in flight when this one entered.
    others: usize,
}

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> InFlight<'a> {
        let others = count.fetch_add(1, Ordering::SeqCst);
        InFlight { count, others }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A writer's connection that asked for the database's turn (`shared_turn::take`), for the
/// batch's first attempt.
struct Opened {
    client: Object,
    opening: Opening,
    turn_wait: Duration,
}

/// How a batch's read round opens its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opening {
    /// No transaction is open: `BEGIN`.
    Fresh,
    /// The transaction is open, and the writer holds the database's turn (until the read
    /// round's first statement).
    InTurn,
    /// The batch read before: the transaction is rolled back and begun again.
    Again,
}

/// How long the last attempt of a batch spent building and committing.
#[derive(Default, Clone, Copy)]
struct Stages {
    build: Duration,
    commit: Duration,
}

/// What the attempts of a batch came to: the last one's stages, and how many came after the
/// first.
#[derive(Default)]
struct Tried {
    stages: Stages,
    retries: u32,
}

/// The queue of a store's writers. Holding its lock is the turn to build a batch: a writer
/// takes the jobs waiting, runs them, and passes the turn on as its batch starts to flush, so
/// while one writer waits for the server to commit and flush, the next builds its batch from
/// the jobs that came meanwhile. Batches stay as large as with one writer, and the server's
/// and the writers' work overlap.
pub type Turn = parking_lot::Mutex<mpsc::Receiver<Job>>;
type TurnGuard<'a> = parking_lot::MutexGuard<'a, mpsc::Receiver<Job>>;

impl Writer {
    /// Serves the queue until it closes. A panic outside an operation (a bug in the writer's
    /// own code, or in the store's observer) would end the thread, and with it this writer;
    /// with the last writer every write of the process would be refused until a restart,
    /// while the node still answered its health checks. The batch it was on is answered as
    /// failed (or was answered already); the panic is logged and the writer goes on.
    pub fn run(&self, turn: &Turn) {
        while catch_unwind(AssertUnwindSafe(|| self.serve(turn))).is_err() {
            tracing::error!("a ledger writer panicked outside an operation; it goes on");
        }
    }

    fn serve(&self, turn: &Turn) {
        loop {
            if self.role.index > 0
                && !self.runtime.block_on(wait_in_turn(
                    &mut self.role.sharing.clone(),
                    self.role.index,
                    self.role.writers,
                ))
            {
                break;
            }
            let mut queue = turn.lock();
            let Some(first) = queue.blocking_recv() else {
                break;
            };
            let in_flight = InFlight::enter(&self.role.in_flight);
            let ending = if in_flight.others == 0 && !*self.role.sharing.borrow() {
                Commit::Alone
            } else {
                Commit::Overlapping
            };
            // The jobs that come while the others take their turns join this batch.
            let opened = match ending {
                Commit::Alone => None,
                Commit::Overlapping => self.take_shared_turn(),
            };
            let mut jobs = vec![first];
            while jobs.len() < self.role.max_batch {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.commit(jobs, queue, opened, in_flight, ending);
        }
    }

    /// For a batch while another is in flight on the database (another node's, or this
    /// store's other writer's), a connection that holds the database's turn (or waited for it
    /// in vain); `None` when no connection is to be had (the batch's attempt then finds out
    /// why). A batch alone takes no turn.
    fn take_shared_turn(&self) -> Option<Opened> {
        let client = self.runtime.block_on(self.pool.get()).ok()?;
        let started = Instant::now();
        match self.runtime.block_on(shared_turn::take(&client)) {
            Ok(held) => Some(Opened {
                client,
                opening: if held {
                    Opening::InTurn
                } else {
                    Opening::Fresh
                },
                turn_wait: started.elapsed(),
            }),
            Err(e) => {
                tracing::warn!(
                    error = %croupier_pgconn::with_causes(&e),
                    "waiting for the database's turn failed"
                );
                discard_connection(client);
                None
            }
        }
    }

    /// Commits `jobs` in one transaction (retried while it may succeed) and answers each.
    /// The batch stops counting `in_flight` once its transaction is over, before the answers:
    /// a player's next bet, which an answer lets through, must not find it still in flight
    /// (and wait for the database's turn for nothing).
    fn commit(
        &self,
        jobs: Vec<Job>,
        turn: TurnGuard<'_>,
        opened: Option<Opened>,
        in_flight: InFlight<'_>,
        ending: Commit,
    ) {
        let turn_wait = opened.as_ref().map_or(Duration::ZERO, |o| o.turn_wait);
        let started = Instant::now();
        let (outcome, tried) = self.attempt_while_it_may_succeed(&jobs, turn, opened, ending);
        drop(in_flight);
        let timings = BatchTimings {
            jobs: jobs.len(),
            queue_wait: jobs
                .first()
                .map_or(Duration::ZERO, |j| started.duration_since(j.queued)),
            // The database's turn; waits for another node's row locks are part of `build`.
            turn_wait,
            build: tried.stages.build,
            commit: tried.stages.commit,
            retries: tried.retries,
            committed: outcome.is_ok(),
            writers_in_turn: writers_in_turn(self.role.writers, *self.role.sharing.borrow()),
        };
        // Answered first: whatever the observer does, a committed batch is answered so.
        answer(jobs, outcome);
        self.role.observer.report(&timings);
    }

    /// Attempts the batch until it commits, fails for good, or `retry_for` has passed since
    /// the first try; with the last attempt's stages and the retries.
    fn attempt_while_it_may_succeed(
        &self,
        jobs: &[Job],
        turn: TurnGuard<'_>,
        mut opened: Option<Opened>,
        ending: Commit,
    ) -> (Result<Vec<Reply>, LedgerError>, Tried) {
        let mut tried = Tried::default();
        let mut turn = Some(turn);
        let deadline = Instant::now() + self.role.retry_for;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.attempt(jobs, &mut tried.stages, &mut turn, opened.take(), ending) {
                Err(e @ LedgerError::Unavailable(_)) if Instant::now() + pause < deadline => {
                    tracing::warn!(error = %e, jobs = jobs.len(), "batch not committed; retrying");
                    // Other writers go on while this batch waits to be retried.
                    turn = None;
                    std::thread::sleep(pause);
                    // Capped low: a promoted standby is found within 200 ms of accepting writes.
                    pause = (pause * 2).min(Duration::from_millis(200));
                    tried.retries += 1;
                }
                outcome => return (outcome, tried),
            }
        }
    }

    /// One try: a transaction running every job, flushed and committed; on `opened` when
    /// given (the first try), else on a connection from the pool.
    fn attempt(
        &self,
        jobs: &[Job],
        stages: &mut Stages,
        turn: &mut Option<TurnGuard<'_>>,
        opened: Option<Opened>,
        ending: Commit,
    ) -> Result<Vec<Reply>, LedgerError> {
        let (client, opening) = match opened {
            Some(o) => (o.client, o.opening),
            None => (
                self.runtime
                    .block_on(self.pool.get())
                    .map_err(|e| super::no_connection(&e))?,
                Opening::Fresh,
            ),
        };
        let conn = Conn {
            client: &client,
            driver: Driver::Runtime(&self.runtime),
        };
        // A panic mid-batch fails the batch, and its connection (a transaction may be open
        // on it) is not handed back.
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.run_batch(conn, opening, ending, jobs, stages, turn)
        }))
        .unwrap_or_else(|_| Err(LedgerError::Storage("the batch panicked".into())));
        if result.is_err() {
            discard_connection(client);
        }
        result
    }

    fn run_batch(
        &self,
        conn: Conn<'_>,
        opening: Opening,
        ending: Commit,
        jobs: &[Job],
        stages: &mut Stages,
        turn: &mut Option<TurnGuard<'_>>,
    ) -> Result<Vec<Reply>, LedgerError> {
        let started = Instant::now();
        let now = now_ms();
        let mut state = BatchState::default();
        let keys: Vec<&str> = jobs
            .iter()
            .filter_map(|j| j.idempotency.as_ref().map(|i| i.key.as_str()))
            .collect();
        // The operations run once before anything is read, so the rows they ask for first
        // are read with the batch's keys, in the same round trip (a lone bet too: its player's
        // seed and balance come with BEGIN instead of in a round trip of their own).
        let first_needs = self.discovery_run(conn, now, &mut state, jobs);
        let mut opening = opening;
        let remembered = &self.role.remembered;
        // Taken whichever way the batch runs (see `remembered`).
        if let Some(rows) = remembered.take(&first_needs) {
            let memory = OnMemoryBatch {
                rows,
                keys: claim_order(&keys),
                replays: remembered.committed_lately(&keys),
                now,
                ending,
            };
            match self.run_remembered(conn, opening, memory, jobs, stages, turn)? {
                OnMemory::Committed(replies) => return Ok(replies),
                OnMemory::NotBegun => {}
                OnMemory::RolledBack => opening = Opening::Fresh,
            }
            state = BatchState::default();
        }
        let round = ReadRound::new(&keys, first_needs);
        round.begin(conn, &self.role.currency, &mut state, opening)?;
        let replies = self.run_watched(conn, now, round, &mut state, jobs)?;
        let built = Instant::now();
        stages.build = built.duration_since(started);
        // The next writer builds while this batch commits (a retry runs without the turn).
        drop(turn.take());
        let currency = &self.role.currency;
        let flushed = flush(conn, &state, currency, now, self.shard.get(), ending);
        stages.commit = built.elapsed();
        flushed?;
        self.role.remembered.keep(&state);
        Ok(replies)
    }

    /// A batch whose operations asked only for rows its writers remember (`remembered`):
    /// they run on them, and the transaction is begun, its keys claimed, the rows checked and
    /// locked, the batch flushed and committed, all in one round trip. Operations whose keys
    /// the store committed lately do not run: the claim reads their records, which answer
    /// them (`answer_replays`). `NotBegun`: an
    /// operation asked for more (nothing was sent); `RolledBack`: a remembered row had
    /// changed, or a key was committed meanwhile (a replay), and the transaction is rolled
    /// back. The batch then runs the usual way.
    fn run_remembered(
        &self,
        conn: Conn<'_>,
        opening: Opening,
        memory: OnMemoryBatch,
        jobs: &[Job],
        stages: &mut Stages,
        turn: &mut Option<TurnGuard<'_>>,
    ) -> Result<OnMemory, LedgerError> {
        let started = Instant::now();
        let OnMemoryBatch {
            rows,
            keys,
            replays,
            now,
            ending,
        } = memory;
        let mut state = BatchState::default();
        remembered::load(&rows, &mut state);
        for key in &keys {
            state.idempotency.load(key.clone(), None);
        }
        state.discovery = Some(Needs::default());
        let mut replies = self.run_jobs_but_replays(conn, now, &mut state, jobs, &replays)?;
        if state.stopped {
            return Ok(OnMemory::NotBegun);
        }
        state.discovery = None;
        let built = Instant::now();
        stages.build = built.duration_since(started);
        drop(turn.take());
        let before = vec![
            opening_statement(opening),
            Statement::new(CLAIM_KEYS, vec![Box::new(keys)]),
            remembered::expect(&rows, &self.role.currency),
        ];
        let currency = &self.role.currency;
        let shard = self.shard.get();
        let flushed = flush_after(conn, before, &state, currency, now, shard, ending);
        stages.commit = built.elapsed();
        match flushed {
            Ok(answers) => {
                let found = answers.into_iter().nth(1).unwrap_or_default();
                answer_replays(jobs, &found, &mut replies);
                self.forget_unrecorded(jobs, &replays, &found);
                self.role.remembered.keep(&state);
                Ok(OnMemory::Committed(replies))
            }
            Err(e) if is_changed_or_replayed(&e) => {
                tracing::debug!(
                    error = %croupier_pgconn::with_causes(&e),
                    jobs = jobs.len(),
                    "remembered rows out of date; reading them"
                );
                conn.batch_execute("ROLLBACK")?;
                Ok(OnMemory::RolledBack)
            }
            Err(e) => Err(pg_error(e)),
        }
    }

    /// Forgets the keys of `replays` the batch's claim found no record of (`record_not_found`).
    fn forget_unrecorded(
        &self,
        jobs: &[Job],
        replays: &HashSet<String>,
        found: &[tokio_postgres::Row],
    ) {
        let recorded: HashSet<&str> = found.iter().map(|row| row.get(0)).collect();
        let unrecorded = jobs
            .iter()
            .filter_map(|j| j.idempotency.as_ref())
            .filter(|i| replays.contains(&i.key) && !recorded.contains(i.key.as_str()));
        for idem in unrecorded {
            tracing::info!("a repeated key's record is gone; answered unavailable");
            self.role.remembered.forget_key(&idem.key);
        }
    }

    /// Runs every operation for real, in order, each seeing what those before it changed, but
    /// watching: an operation that reads a row the batch has not loaded (or asks the database
    /// anything) is stopped there, and what it asked for noted. When none was stopped (a bet
    /// whose player's rows came with the first read round), that run is the batch's. Else
    /// everything the run changed is thrown away and, when rows were asked for, the batch
    /// gives back everything it holds and takes it again with the new rows, in one round trip
    /// and in the order every batch locks in (see `prefetch`), and runs watching again; a few
    /// times at most, then once more unwatched, reading what is still missing as it goes.
    /// (Before, a discovery run checked that nothing more was asked for and a real run
    /// followed it: every operation ran once more than it needed.) `round`: what the batch has
    /// claimed and read so far.
    fn run_watched(
        &self,
        conn: Conn<'_>,
        now: i64,
        mut round: ReadRound,
        state: &mut BatchState,
        jobs: &[Job],
    ) -> Result<Vec<Reply>, LedgerError> {
        for _ in 1..DISCOVERY_PASSES {
            state.discovery = Some(Needs::default());
            state.stopped = false;
            let replies = self.run_jobs(conn, now, state, jobs)?;
            let needs = state.discovery.take().unwrap_or_default();
            if !state.stopped {
                return Ok(replies);
            }
            state.forget_changes();
            if needs.is_empty() {
                break;
            }
            round.needs.extend(needs);
            round.begin(conn, &self.role.currency, state, Opening::Again)?;
        }
        self.run_jobs(conn, now, state, jobs)
    }

    /// Every operation, in order; a database failure fails the batch.
    fn run_jobs(
        &self,
        conn: Conn<'_>,
        now: i64,
        state: &mut BatchState,
        jobs: &[Job],
    ) -> Result<Vec<Reply>, LedgerError> {
        self.run_jobs_but_replays(conn, now, state, jobs, &HashSet::new())
    }

    /// As `run_jobs`, but an operation whose key is one of `replays` does not run: it is
    /// answered "unavailable" until its key's record answers it (`answer_replays`).
    fn run_jobs_but_replays(
        &self,
        conn: Conn<'_>,
        now: i64,
        state: &mut BatchState,
        jobs: &[Job],
        replays: &HashSet<String>,
    ) -> Result<Vec<Reply>, LedgerError> {
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            let reply = match &job.idempotency {
                Some(idem) if replays.contains(&idem.key) => Err(record_not_found().into()),
                _ => self.run_job(conn, now, state, job),
            };
            if let Some(failure) = state.failure.take() {
                return Err(failure);
            }
            replies.push(reply);
        }
        Ok(replies)
    }

    /// One discovery run of every operation: the rows they asked for and the batch had not
    /// loaded. Their answers are never used and their changes are dropped.
    fn discovery_run(
        &self,
        conn: Conn<'_>,
        now: i64,
        state: &mut BatchState,
        jobs: &[Job],
    ) -> Needs {
        state.discovery = Some(Needs::default());
        for job in jobs {
            let _ = self.run_op(conn, now, state, job);
            state.discard();
        }
        let needs = state.discovery.take().unwrap_or_default();
        // Nothing was read, but an operation that wrote before reading (its idempotency
        // record, the game status) marked those rows as read and absent, and a mark hides
        // what the claim and the reads then find (a load never overwrites): a key committed
        // before ran again and hit its own record.
        *state = BatchState::default();
        needs
    }

    /// One operation: its changes are kept if it succeeds and thrown away if it is refused.
    fn run_job(&self, conn: Conn<'_>, now: i64, state: &mut BatchState, job: &Job) -> Reply {
        let result = self.run_op(conn, now, state, job);
        if result.is_ok() {
            state.accept();
        } else {
            state.discard();
        }
        result
    }

    fn run_op(&self, conn: Conn<'_>, now: i64, state: &mut BatchState, job: &Job) -> Reply {
        if let Some(idem) = &job.idempotency
            && let Some(Some((fingerprint, response))) = state.idempotency.get(&idem.key)
        {
            return replayed_or_reused(idem, fingerprint, response);
        }
        let mut tx = PgTx {
            conn,
            currency: &self.role.currency,
            now_ms: now,
            batch: Some(&mut *state),
            seeds: &self.role.seeds,
        };
        let output: OpOutput = catch_unwind(AssertUnwindSafe(|| (job.op)(&mut tx)))
            .map_err(|_| LedgerError::Storage("the operation panicked".into()))?
            .map_err(WriteFailure::Op)?;
        if let Some(idem) = &job.idempotency {
            let record = output.record.ok_or_else(|| {
                LedgerError::Storage("a keyed write came without its record".into())
            })?;
            state
                .idempotency
                .set(idem.key.clone(), Some((idem.fingerprint.clone(), record)));
        }
        Ok(ErasedCommitted::Fresh(output.value))
    }
}

/// Takes a transaction-level advisory lock per idempotency key, in the order given (sorted,
/// so two batches sharing keys lock them in the same order), then reads the keys' records
/// (`schema::ROUTINES`). The same key sent through two nodes at once (a gateway's hedge or a
/// client's retry) is then claimed by one batch; the other waits here, before it has read or
/// locked anything, and its read of the keys, in a snapshot taken after the claim, finds the
/// first batch's answer as a replay. Without the claim the second batch ran the operation,
/// and its insert of the key failed once the first committed, aborting the whole batch (every
/// other bet in it) for a retry.
const CLAIM_KEYS: &str = "SELECT * FROM croupier_claim_keys_v1($1)";

/// A batch's keys as it claims them: sorted, each once, so two batches sharing keys claim
/// them in the same order.
fn claim_order(keys: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// What a batch claims and reads before its operations run for real: its idempotency keys
/// and the rows its discovery runs asked for.
struct ReadRound {
    /// Sorted, each once: two batches sharing keys claim them in the same order.
    keys: Vec<String>,
    needs: Needs,
}

impl ReadRound {
    fn new(keys: &[&str], needs: Needs) -> ReadRound {
        ReadRound {
            keys: claim_order(keys),
            needs,
        }
    }

    /// Opens the transaction (unless `opening` says it is open) or gives the database's turn
    /// back (`InTurn`: the batch has taken its jobs, see `shared_turn`), claims the batch's
    /// idempotency keys and reads them, then reads and locks the rows of `needs`, in one round
    /// trip. The claim comes first: a batch that waits for another's key has locked no row
    /// yet. `Again`: the batch has read before, in a transaction that is rolled back first, in
    /// the same round trip, so the batch holds one round's locks, taken in one order (see
    /// `prefetch`); what it had read is forgotten and read anew (a key's record may have been
    /// committed meanwhile: a replay then).
    fn begin(
        &self,
        conn: Conn<'_>,
        currency: &str,
        state: &mut BatchState,
        opening: Opening,
    ) -> Result<(), LedgerError> {
        let (reads_sent, reads) = Reads::new(currency, &self.needs);
        let mut statements = Vec::new();
        let again = opening == Opening::Again;
        if again {
            statements.push(Statement::new("ROLLBACK", vec![]));
        }
        // The batch has its jobs: the turn has done its work (see `shared_turn`).
        statements.push(opening_statement(opening));
        let skip = statements.len();
        statements.push(Statement::new(
            CLAIM_KEYS,
            vec![Box::new(self.keys.clone())],
        ));
        statements.extend(reads_sent);
        // Past the answers of ROLLBACK, BEGIN and the turn's give-back: the keys found, then
        // the reads'.
        let mut answers = run_pipelined(conn, &statements)?.into_iter().skip(skip);
        if again {
            state.forget_reads();
        }
        for row in answers.next().unwrap_or_default() {
            state
                .idempotency
                .load(row.get(0), Some((row.get(1), row.get(2))));
        }
        for key in &self.keys {
            // Keys not found are known to be new (a load never overwrites an earlier one).
            state.idempotency.load(key.clone(), None);
        }
        reads.load(answers.collect(), state)
    }
}

/// A batch about to run on remembered rows: its players' rows, its keys (sorted, each once)
/// and those of them the store committed lately (replays), the time its operations run at and
/// how it commits.
struct OnMemoryBatch {
    rows: Vec<PlayerRows>,
    keys: Vec<String>,
    replays: HashSet<String>,
    now: i64,
    ending: Commit,
}

/// How a batch run on remembered rows ended (`Writer::run_remembered`).
enum OnMemory {
    Committed(Vec<Reply>),
    NotBegun,
    RolledBack,
}

/// The first statement of a batch's first round trip: `BEGIN`, or the database's turn given
/// back (`InTurn`: the transaction is open, see `shared_turn`).
fn opening_statement(opening: Opening) -> Statement {
    match opening {
        Opening::InTurn => super::shared_turn::give_back(),
        Opening::Fresh | Opening::Again => Statement::new("BEGIN", vec![]),
    }
}

/// The failures of a batch run on remembered rows that come before its commit and mean
/// "run it the usual way": a remembered row had changed (`remembered::expect`), or a
/// key's record was there (its insert refused), which the usual way answers as a replay.
fn is_changed_or_replayed(e: &tokio_postgres::Error) -> bool {
    [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::UNIQUE_VIOLATION,
    ]
    .iter()
    .any(|code| e.code() == Some(code))
}

/// A batch run on remembered rows learns of its keys' records only with its commit. A key
/// found there belongs to an operation that changed nothing (one that wrote would have
/// inserted its record, and the duplicate would have failed the batch): a replay the store
/// knew of, which did not run, or one refused on this run; each is answered with the record,
/// as the usual way does.
fn answer_replays(jobs: &[Job], found: &[tokio_postgres::Row], replies: &mut [Reply]) {
    for row in found {
        let (key, fingerprint, response): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        for (job, reply) in jobs.iter().zip(replies.iter_mut()) {
            let Some(idem) = job.idempotency.as_ref().filter(|i| i.key == key) else {
                continue;
            };
            if reply.is_ok() {
                continue;
            }
            *reply = replayed_or_reused(idem, &fingerprint, &response);
        }
    }
}

/// The answer to a replay whose key's record was not found: the store's retention removed it
/// since this store committed it. Nothing ran; the client's retry runs it as a new operation.
fn record_not_found() -> LedgerError {
    LedgerError::Unavailable("the record of a repeated idempotency key was not found; retry".into())
}

/// The answer to a keyed operation whose key has a record: the recorded answer when the
/// request is the one recorded (same fingerprint), else a refusal of the key's reuse.
fn replayed_or_reused(idem: &Idempotency, fingerprint: &str, response: &str) -> Reply {
    if idem.fingerprint == fingerprint {
        Ok(ErasedCommitted::Replayed(response.to_owned()))
    } else {
        Err(LedgerError::IdempotencyKeyReused.into())
    }
}

/// Answers each job of a batch: its own reply, or, for a batch not committed, 503.
fn answer(jobs: Vec<Job>, outcome: Result<Vec<Reply>, LedgerError>) {
    match outcome {
        Ok(replies) => {
            for (job, reply) in jobs.into_iter().zip(replies) {
                let _ = job.reply.send(reply);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "batch not committed; its operations are refused");
            for job in jobs {
                let _ = job.reply.send(Err(unavailable(&e).into()));
            }
        }
    }
}

/// Throws away the connection of a failed attempt instead of handing it back to the pool, so
/// the next attempt connects afresh: after a failover a connection that still answers may be
/// to the old primary, now a standby or being fenced, while a new one goes (through
/// `target_session_attrs=read-write`) to whichever host accepts writes. The server rolls back
/// what the attempt left open when the connection closes.
fn discard_connection(client: Object) {
    drop(Object::take(client));
}

fn unavailable(e: &LedgerError) -> LedgerError {
    match e {
        LedgerError::Unavailable(_) => e.clone(),
        other => LedgerError::Unavailable(other.to_string()),
    }
}
