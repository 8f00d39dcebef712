//! The PostgreSQL backend: the ledger on a database server, so several node processes on
//! several machines share it. Selected by a `postgres://` URL, which may name several hosts
//! (`postgres://h1:5432,h2:5433/db?target_session_attrs=read-write`): connections go to the
//! one that accepts writes, and after a failover to the new primary. While no host accepts
//! writes (the primary is lost and no standby promoted yet), writes are retried for
//! `retry_for` and then refused as unavailable, and reads fall back to a standby's
//! connection (`any` host), so wallets, history and sign-in checks keep working.
//!
//! Writes: two writer threads per store, taking turns to build batches, do group commit (see
//! `writer` and `batch`): many operations per transaction, rows locked as they are read,
//! changes staged in memory and flushed in one pipelined round trip, one hash-chain link per
//! batch. Reads: a pool of
//! connections (deadpool), each read one repeatable-read snapshot. Every connection carries
//! timeouts so a frozen node cannot hold rows locked for everyone.

mod batch;
mod conn;
mod connector;
mod error;
mod merge;
mod needs;
mod overlap;
mod pipeline;
mod prefetch;
pub mod provision;
mod read_indexes;
mod remembered;
mod reseal;
mod retention;
mod rows;
pub(crate) mod schema;
pub mod scratch;
mod shard;
mod shared_turn;
mod staged;
mod tx;
mod warm;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, TimeoutType};
use tokio::runtime::{Builder, Runtime};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::config::TargetSessionAttrs;

pub use croupier_pgconn::Server;

use crate::error::LedgerError;
use crate::observe::{ObserverSlot, PoolStatus, StoreObserver};
use crate::seed_seal::SeedVault;
use crate::store::{BoxFuture, Idempotency, ReadOp, Store, TxOp};
use conn::{Conn, Driver};
use overlap::StoreTag;
use tx::PgTx;
use writer::{Job, Reply, Writer};

const QUEUE_DEPTH: usize = 16_384;

/// Settings every connection gets. A transaction left idle (its process frozen) is ended by
/// the server after a second, releasing its locks; no statement waits on a lock or runs for
/// longer than a few seconds (the whole-ledger scans of integrity checks lift the limit).
const SESSION_OPTIONS: &str =
    "-c idle_in_transaction_session_timeout=1000 -c lock_timeout=3000 -c statement_timeout=5000";

#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user@host:port[,host:port…]/database[?target_session_attrs=read-write]`
    pub url: String,
    pub currency: String,
    /// Most operations committed together in one transaction.
    pub max_batch: usize,
    /// Connections for reads.
    pub readers: usize,
    /// Writer connections, taking turns to build batches (see `writer`): while one waits for
    /// its batch's commit and flush, the next builds. While another node writes to the same
    /// database, only the first takes turns (`overlap`).
    pub writers: usize,
    /// How long a batch is retried (server restarting, failover) before it is refused.
    pub retry_for: Duration,
    /// How unrevealed server seeds are stored (sealed when it has keys).
    pub seeds: SeedVault,
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            currency: "EUR".to_owned(),
            max_batch: 512,
            readers: 4,
            writers: 2,
            retry_for: Duration::from_secs(3),
            seeds: SeedVault::default(),
        }
    }
}

pub struct PgStore {
    jobs: mpsc::Sender<Job>,
    observer: ObserverSlot,
    readers: Pool,
    /// For a multi-host URL that asks for the read-write host: connections to any host, used
    /// by reads only while no host accepts writes.
    standby_readers: Option<Pool>,
    /// Each writer's pool of one connection (its own thread drives it), for `pools`.
    writer_pools: Vec<Pool>,
    /// Drives the readers' connections; shut down (not dropped in place) with the store.
    reader_runtime: Option<Runtime>,
    currency: Arc<str>,
    seeds: SeedVault,
}

/// The server `url` names (TLS as it asks: `croupier_pgconn`), with the store's session
/// options.
pub fn connection_config(url: &str) -> Result<Server, LedgerError> {
    let mut server = Server::from_url(url).map_err(|e| LedgerError::Storage(e.to_string()))?;
    let config = &mut server.config;
    let options = match config.get_options() {
        Some(own) => format!("{SESSION_OPTIONS} {own}"),
        None => SESSION_OPTIONS.to_owned(),
    };
    config
        .options(options)
        .application_name("croupier")
        .connect_timeout(Duration::from_secs(2))
        .keepalives_idle(Duration::from_secs(10))
        // A server whose machine vanished (no reset ever comes) fails the connection within
        // seconds rather than after the kernel's retransmissions (about 15 minutes).
        .tcp_user_timeout(Duration::from_secs(5));
    Ok(server)
}

/// The writer's connection settings: `connection_config`'s, each statement planned once, and
/// a sequential scan only where no index serves.
///
/// The writer touches rows by key alone, and its statements (and those inside the routines
/// it calls) are prepared once. Left to choose, PostgreSQL planned the joined writes afresh on
/// every batch: a custom plan sees how few keys the arrays hold and is priced below the
/// generic one, so it never switched (in the stack at 1 200 bets/s, `UPDATE balances`,
/// `seeds` and `rounds` had 1 400 custom plans and no generic one each; planning was 14% of
/// the server's CPU). The generic plan, for its part, cannot see how few keys a batch brings:
/// on a small or bloated table (the balances, updated by every bet) it priced a whole scan
/// below the index, so sequential scans are off (`tests::joined_writes_use_an_index`).
///
/// Its `application_name` is the store's tag, by which other stores see it (`overlap`).
fn writer_config(pg: &Server, tag: &StoreTag) -> Server {
    let mut writer = pg.clone();
    let options = pg.config.get_options().unwrap_or_default();
    writer
        .config
        .options(format!(
            "{options} -c enable_seqscan=off -c plan_cache_mode=force_generic_plan"
        ))
        .application_name(tag.application_name());
    writer
}

/// The same connection settings, but to whichever host answers first (a standby too), when
/// `config` names several hosts and asks for the read-write one; `None` otherwise.
fn standby_config(server: &Server) -> Option<Server> {
    let config = &server.config;
    let failover = config.get_hosts().len() > 1
        && config.get_target_session_attrs() == TargetSessionAttrs::ReadWrite;
    failover.then(|| {
        let mut any = server.clone();
        any.config.target_session_attrs(TargetSessionAttrs::Any);
        any
    })
}

fn pool(server: Server, size: usize) -> Result<Pool, LedgerError> {
    pool_with(server, size, None)
}

/// What `pools` says of the deadpool pools named `pool` (a store's writers, one pool each).
fn pool_status(
    pool: &'static str,
    pools: impl IntoIterator<Item = deadpool_postgres::Status>,
) -> PoolStatus {
    pools.into_iter().fold(
        PoolStatus {
            pool,
            max: 0,
            open: 0,
            idle: 0,
            waiting: 0,
        },
        |sum, s| PoolStatus {
            max: sum.max + s.max_size,
            open: sum.open + s.size,
            idle: sum.idle + s.available,
            waiting: sum.waiting + s.waiting,
            ..sum
        },
    )
}

/// A pool whose new connections first run `on_connect`.
fn pool_with(
    server: Server,
    size: usize,
    on_connect: Option<deadpool_postgres::Hook>,
) -> Result<Pool, LedgerError> {
    let manager = Manager::from_connect(
        server.config.clone(),
        connector::Connector { server },
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager);
    if let Some(hook) = on_connect {
        builder = builder.post_create(hook);
    }
    builder
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(3)))
        .build()
        .map_err(|e| LedgerError::Storage(format!("cannot build the connection pool: {e}")))
}

fn runtime(name: &str, multi_thread: bool) -> Result<Runtime, LedgerError> {
    let mut builder = if multi_thread {
        let mut b = Builder::new_multi_thread();
        b.worker_threads(1);
        b
    } else {
        Builder::new_current_thread()
    };
    builder
        .enable_all()
        .thread_name(name)
        .build()
        .map_err(|e| LedgerError::Storage(format!("cannot start the {name} runtime: {e}")))
}

/// Runs the future `work` makes to its end on a runtime of a thread of its own, so a blocking
/// caller may call it from anywhere (inside an async runtime too). `name` names the work in
/// the error of a runtime that cannot start or a thread that panicked.
pub(crate) fn on_a_thread_of_its_own<T, F, Fut>(name: &str, work: F) -> Result<T, LedgerError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, LedgerError>>,
{
    let runtime = runtime(name, false)?;
    std::thread::spawn(move || runtime.block_on(work()))
        .join()
        .map_err(|_| LedgerError::Storage(format!("the {name} thread panicked")))?
}

/// What each writer thread starts from: its connection's settings and its role.
struct WriterSettings {
    pg: Server,
    role: writer::Role,
}

impl WriterSettings {
    /// The writer's own runtime and connection (which claims a house/escrow row), connected
    /// and warmed now (`warm`).
    fn start(self) -> Result<Writer, LedgerError> {
        let runtime = runtime("ledger-pg-write", false)?;
        let shard = shard::ShardClaim::default();
        let pool = {
            let _guard = runtime.enter();
            pool_with(self.pg, 1, Some(shard.on_connect()))?
        };
        if let Err(why) = runtime.block_on(warm::warm(&pool, &self.role.currency)) {
            tracing::warn!(
                "a ledger writer could not connect and warm up as it started ({why}): it connects at its first batch"
            );
        }
        Ok(Writer {
            runtime,
            pool,
            shard,
            role: self.role,
        })
    }
}

impl PgStore {
    /// Connects, migrates (once, under an advisory lock) and starts the writers; the missing
    /// read indexes are built beside it (`read_indexes`).
    pub fn open(config: PgConfig) -> Result<PgStore, LedgerError> {
        let pg = connection_config(&config.url)?;
        if pg.in_clear_across_a_network() {
            tracing::warn!(
                "the store's server is reached across a network without TLS: every bet crosses it in clear \
                 (add sslmode=verify-full and sslrootcert to the URL: docs/operations.md, TLS to the database)"
            );
        }
        let reader_runtime = runtime("ledger-pg-read", true)?;
        let (readers, standby_readers) = {
            let _guard = reader_runtime.enter();
            let standby = standby_config(&pg)
                .map(|any| pool(any, config.readers.max(1)))
                .transpose()?;
            (pool(pg.clone(), config.readers.max(1))?, standby)
        };
        if let Err(e) = migrate_on(&reader_runtime, &readers, &config.seeds) {
            // Dropped in place, a runtime panics inside an async context.
            reader_runtime.shutdown_background();
            return Err(e);
        }
        reader_runtime.spawn(build_read_indexes(pg.clone()));
        let observer = ObserverSlot::default();
        let (jobs, writer_pools) =
            start_writers(&config, &pg, &readers, &reader_runtime, &observer)?;
        Ok(PgStore {
            jobs,
            observer,
            readers,
            standby_readers,
            writer_pools,
            reader_runtime: Some(reader_runtime),
            currency: config.currency.into(),
            seeds: config.seeds,
        })
    }
}

/// Starts the store's writer threads (`config.writers`, each on a connection of its own) and
/// the watch for other stores' writers on the same database (`overlap`); the queue they take
/// their jobs from, once every writer has started, and the writers' pools.
fn start_writers(
    config: &PgConfig,
    pg: &Server,
    readers: &Pool,
    reader_runtime: &Runtime,
    observer: &ObserverSlot,
) -> Result<(mpsc::Sender<Job>, Vec<Pool>), LedgerError> {
    let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
    let turn = Arc::new(parking_lot::Mutex::new(queue));
    let (started, ready) = std::sync::mpsc::channel();
    let writers = config.writers.max(1);
    let tag = StoreTag::random();
    let (shared, sharing) = overlap::sharing();
    let in_flight: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let remembered: Arc<remembered::Remembered> = Arc::default();
    reader_runtime.spawn(overlap::watch_other_stores(
        readers.clone(),
        tag.clone(),
        shared,
    ));
    for index in 0..writers {
        let (turn, started) = (turn.clone(), started.clone());
        let settings = WriterSettings {
            pg: writer_config(pg, &tag),
            role: writer::Role {
                index,
                writers,
                sharing: sharing.clone(),
                in_flight: in_flight.clone(),
                currency: config.currency.clone(),
                max_batch: config.max_batch.max(1),
                retry_for: config.retry_for,
                observer: observer.clone(),
                seeds: config.seeds.clone(),
                remembered: remembered.clone(),
            },
        };
        std::thread::Builder::new()
            .name("ledger-pg-writer".into())
            .spawn(move || match settings.start() {
                Ok(writer) => {
                    let _ = started.send(Ok(writer.pool.clone()));
                    writer.run(&turn);
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                }
            })
            .map_err(|e| LedgerError::Storage(format!("cannot start a writer: {e}")))?;
    }
    let pools = (0..writers)
        .map(|_| {
            ready
                .recv()
                .map_err(|_| LedgerError::Storage("a writer did not start".into()))?
        })
        .collect::<Result<_, _>>()?;
    Ok((jobs, pools))
}

/// Why the store's first connection failed: `Unavailable` when a later try may get through
/// (the server down, starting, out of connections), `Storage` when the server refused this
/// configuration (no such database, a login it does not accept: SQL states 3D000, class 28),
/// which trying again will not change.
fn cannot_connect(e: &PoolError) -> LedgerError {
    match e {
        PoolError::Backend(e) if !error::is_transient(e) => LedgerError::Storage(format!(
            "the store refused the connection: {}",
            error::describe(e)
        )),
        _ => LedgerError::Unavailable(format!(
            "cannot connect to the store: {}",
            croupier_pgconn::with_causes(e)
        )),
    }
}

/// Applies the migrations, then seals the unrevealed seeds that need it (`reseal`), from a
/// thread of its own, so `open` may be called from anywhere (inside an async runtime too).
fn migrate_on(runtime: &Runtime, readers: &Pool, seeds: &SeedVault) -> Result<(), LedgerError> {
    let handle = runtime.handle().clone();
    let readers = readers.clone();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                handle.block_on(async {
                    let mut client = readers.get().await.map_err(|e| cannot_connect(&e))?;
                    schema::migrate(&mut client).await?;
                    reseal::reseal_unrevealed(&mut client, seeds).await?.log();
                    Ok::<(), LedgerError>(())
                })
            })
            .join()
            .map_err(|_| LedgerError::Storage("the migration thread panicked".into()))?
    })?;
    Ok(())
}

/// Builds the missing read indexes, logging what it did; a failure leaves the reads they
/// serve slower, not wrong, until the next start.
async fn build_read_indexes(pg: Server) {
    match read_indexes::build(&pg).await {
        Ok(built) if built.is_empty() => {}
        Ok(built) => tracing::info!(indexes = ?built, "read indexes built"),
        Err(e) => tracing::warn!(error = %e, "read indexes not built; their reads scan meanwhile"),
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.reader_runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store for PgStore {
    fn transact_erased(&self, idempotency: Option<Idempotency>, op: TxOp) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            let (reply, result) = oneshot::channel();
            self.jobs
                .send(Job {
                    idempotency,
                    op,
                    reply,
                    queued: std::time::Instant::now(),
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
        let standby = self.standby_readers.clone();
        let currency = self.currency.clone();
        let seeds = self.seeds.clone();
        let handle = self.reader_handle();
        Box::pin(async move {
            let handle = handle?;
            tokio::task::spawn_blocking(move || {
                let conn = handle.block_on(reader_client(&readers, standby.as_ref()))?;
                read_on(&handle, &conn, &currency, &seeds, op)
            })
            .await
            .map_err(|e| LedgerError::Storage(format!("read failed: {e}")))?
        })
    }

    fn observe(&self, observer: Arc<dyn StoreObserver>) {
        self.observer.set(observer);
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn pools(&self) -> Vec<PoolStatus> {
        let writers = self.writer_pools.iter().map(Pool::status);
        let mut pools = vec![
            pool_status("readers", [self.readers.status()]),
            pool_status("writers", writers),
        ];
        if let Some(standby) = &self.standby_readers {
            pools.push(pool_status("standby_readers", [standby.status()]));
        }
        pools
    }

    /// Ready while reads can be served: by the primary, or during a failover by a standby
    /// (writes are then refused as unavailable, one by one, with a retry hint).
    fn ready(&self) -> BoxFuture<'_, Result<bool, LedgerError>> {
        let readers = self.readers.clone();
        let standby = self.standby_readers.clone();
        Box::pin(async move {
            let client = reader_client(&readers, standby.as_ref()).await?;
            Ok(schema::version(&client).await? == schema::migrations().len())
        })
    }

    fn housekeep(
        &self,
        policy: crate::retention::RetentionPolicy,
    ) -> BoxFuture<'_, Result<crate::retention::HousekeepReport, LedgerError>> {
        let readers = self.readers.clone();
        let handle = self.reader_handle();
        Box::pin(async move {
            let handle = handle?;
            tokio::task::spawn_blocking(move || {
                handle.block_on(retention::housekeep(&readers, &policy))
            })
            .await
            .map_err(|e| LedgerError::Storage(format!("housekeeping failed: {e}")))?
        })
    }
}

impl PgStore {
    fn reader_handle(&self) -> Result<tokio::runtime::Handle, LedgerError> {
        self.reader_runtime
            .as_ref()
            .map(|r| r.handle().clone())
            .ok_or_else(|| LedgerError::Unavailable("the store is closing".into()))
    }
}

pub(crate) fn no_connection(e: &deadpool_postgres::PoolError) -> LedgerError {
    LedgerError::Unavailable(format!(
        "no connection to the store: {}",
        croupier_pgconn::with_causes(e)
    ))
}

/// A connection for a read: to the primary, or, when no host accepts writes and a standby
/// pool exists, to a standby.
async fn reader_client(
    readers: &Pool,
    standby: Option<&Pool>,
) -> Result<deadpool_postgres::Object, LedgerError> {
    let e = match readers.get().await {
        Ok(client) => return Ok(client),
        Err(e) => e,
    };
    match standby.filter(|_| no_primary(&e)) {
        Some(standby) => standby.get().await.map_err(|e| no_connection(&e)),
        None => Err(no_connection(&e)),
    }
}

/// Whether the readers' pool failed for want of a host that accepts writes (a connection could
/// not be made), rather than for being busy: reads that waited out a busy pool wait or fail,
/// they never go to a standby that may lag.
fn no_primary(e: &PoolError) -> bool {
    matches!(
        e,
        PoolError::Backend(_)
            | PoolError::Timeout(TimeoutType::Create)
            | PoolError::PostCreateHook(_)
    )
}

/// Runs a read operation in one repeatable-read snapshot on a pooled connection.
fn read_on(
    handle: &tokio::runtime::Handle,
    client: &deadpool_postgres::Object,
    currency: &str,
    seeds: &SeedVault,
    op: ReadOp,
) -> Result<(), LedgerError> {
    let conn = Conn {
        client,
        driver: Driver::Handle(handle),
    };
    conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
    let mut tx = PgTx {
        conn,
        currency,
        now_ms: crate::clock::now_ms(),
        batch: None,
        seeds,
    };
    op(&mut tx);
    conn.batch_execute("COMMIT")
}
