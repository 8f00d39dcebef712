//! `croupier-bench`: durable bets per second with 1, 8 and 64 concurrent players, three ways,
//! all in one run so the ratios are measured on the same machine at the same time:
//! - `baseline`: raw SQLite, one INSERT per transaction, WAL + synchronous=FULL (what a
//!   one-transaction-per-bet design gets at best);
//! - `store`: Croupier's ledger directly (group commit), each bet a full dice round: seed and
//!   nonce, stake, settlement, payout, round row, idempotency record, hash chain;
//! - `store --max-batch 1`: the same ledger work with group commit off, one transaction per
//!   bet, which isolates what group commit buys;
//! - `http`: the same bets through a real `croupier node` process over HTTP.
//!
//! Also `gateway` (against HAProxy), `control` (scrape and rule evaluation against
//! Prometheus), and the backups' RPO under load (`backup-rpo`, `pg-backup-rpo`).

mod backup;
mod baseline;
mod client;
mod control;
mod disk;
mod gateway;
mod http;
mod pg;
mod pgrpo;
mod procs;
mod report;
mod steady;
mod store;

use std::time::Duration;

use clap::{Parser, Subcommand};

/// The nodes' allocator (`crates/croupier/src/allocator.rs`): the stores measured here in
/// process stand for a node's, so they allocate as a node's do. With glibc's malloc, a
/// quarter of the PostgreSQL writer's samples at 64 players were in its free lists.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "croupier-bench",
    about = "Durable bets per second, with a raw SQLite baseline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The steady bet load of the RPO measurements (SQLite shipping and pgBackRest archiving).
#[derive(clap::Args, Clone)]
struct SteadyLoadArgs {
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Bets per second, all players together.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// The croupier binary (default: next to this one).
    #[arg(long)]
    croupier: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Concurrent players (or writer threads for the baseline), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    players: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

#[derive(Subcommand)]
enum Command {
    /// Raw SQLite inserts, one row per transaction.
    Baseline(Common),
    /// Bets straight through the ledger store.
    Store {
        #[command(flatten)]
        common: Common,
        /// Most bets per transaction (1 turns group commit off).
        #[arg(long, default_value_t = 512)]
        max_batch: usize,
    },
    /// Bets through a `croupier node` process over HTTP.
    Http {
        #[command(flatten)]
        common: Common,
        /// The croupier binary (default: next to this one).
        #[arg(long)]
        croupier: Option<std::path::PathBuf>,
    },
    /// The gateway against HAProxy in front of three nodes: throughput, latency, failover.
    Gateway {
        /// Seconds per wrk measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The croupier binary (default: next to this one).
        #[arg(long)]
        croupier: Option<std::path::PathBuf>,
    },
    /// The control plane's scrape and rule-evaluation cost against Prometheus.
    Control {
        /// Simulated targets, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
        targets: Vec<usize>,
        /// Seconds of measurement per run (after 4 s of warm-up).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// The croupier binary (default: next to this one).
        #[arg(long)]
        croupier: Option<std::path::PathBuf>,
    },
    /// Write a large ledger of real dice rounds quickly (for bench/backup.sh and
    /// bench/pgbackrest.sh): a SQLite file or a `postgres://` URL.
    FillLedger {
        #[arg(long, alias = "store")]
        db: croupier_ledger::StoreLocation,
        #[arg(long, default_value_t = 1_000_000)]
        rounds: u64,
        #[arg(long, default_value_t = 256)]
        players: usize,
    },
    /// Data age of shipped backups under a steady bet load through a real node.
    BackupRpo {
        #[command(flatten)]
        load: SteadyLoadArgs,
    },
    /// Data age of what a pgBackRest restore gets back (continuous WAL archiving) under a
    /// steady bet load through a real node on the PostgreSQL ledger at `store`.
    PgBackupRpo {
        #[arg(long)]
        store: String,
        #[command(flatten)]
        load: SteadyLoadArgs,
    },
    /// The PostgreSQL store against pgbench running the same bet one transaction per bet, and
    /// against the SQLite store; then 1, 2 and 3 nodes (stores) on one database.
    Pg {
        #[command(flatten)]
        common: Common,
        /// The server; each measurement gets a scratch database on it.
        #[arg(long, default_value = "postgres://root@127.0.0.1:5432/postgres")]
        server: String,
        /// Nodes (stores, each with its writer connections) for the scaling table,
        /// comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        nodes: Vec<usize>,
        /// Players the nodes of the scaling table share, one table part per count,
        /// comma-separated; the first is also the load each node gets of its own.
        #[arg(long, value_delimiter = ',', default_value = "64,192")]
        scaling_players: Vec<usize>,
    },
    /// The disk's latency to make a small write durable (`fdatasync`), which every
    /// acknowledged bet waits for: p50, p99, max and each flush over 50 ms.
    Disk {
        /// A folder on the disk to measure (the ledger's).
        #[arg(long, default_value = ".")]
        folder: std::path::PathBuf,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// All of them, one after the other, and the ratios.
    All(Common),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let seconds = |c: &Common| Duration::from_secs_f64(c.seconds);
    let mut rows = Vec::new();
    match cli.command {
        Command::Baseline(c) => rows.extend(baseline::run(&c.players, seconds(&c))?),
        Command::Store { common, max_batch } => {
            rows.extend(store::run(&common.players, seconds(&common), max_batch)?)
        }
        Command::Http { common, croupier } => {
            rows.extend(http::run(&common.players, seconds(&common), croupier)?)
        }
        Command::Gateway { seconds, croupier } => return gateway::run(seconds, croupier),
        Command::Disk { folder, seconds } => return disk::run(&folder, seconds),
        Command::Pg {
            common,
            server,
            nodes,
            scaling_players,
        } => {
            let scaling = pg::Scaling {
                nodes,
                players: scaling_players,
            };
            return pg::run(&server, &common.players, &scaling, seconds(&common));
        }
        Command::Control {
            targets,
            seconds,
            croupier,
        } => return control::run(&targets, Duration::from_secs_f64(seconds), croupier),
        Command::FillLedger {
            db,
            rounds,
            players,
        } => return backup::fill(&db, rounds, players),
        Command::BackupRpo { load } => return backup::rpo(load.seconds, load.rate, load.croupier),
        Command::PgBackupRpo { store, load } => {
            return pgrpo::run(&store, load.seconds, load.rate, load.croupier);
        }
        Command::All(c) => {
            rows.extend(baseline::run(&c.players, seconds(&c))?);
            rows.extend(store::run(&c.players, seconds(&c), 1)?);
            rows.extend(store::run(&c.players, seconds(&c), 512)?);
            rows.extend(http::run(&c.players, seconds(&c), None)?);
        }
    }
    report::print(&rows);
    Ok(())
}
