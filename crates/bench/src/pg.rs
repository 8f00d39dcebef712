//! The PostgreSQL store against the same bet done the simple way, in one run on one server:
//! - `pgbench, 1 bet per txn`: real pgbench running a dice bet as one transaction per bet on
//!   the ledger's own schema and rows (the chain head locked, the seed's nonce, the player's
//!   balance, escrow and house, two or three journal rows, the round, the idempotency
//!   record), one pgbench client per player;
//! - `postgres store`: Croupier's store (group commit, one chain link per batch, house and
//!   escrow on shard rows), each bet a full dice round through `Store::transact`, its seeds
//!   sealed at rest as a node's are (`node_seeds`);
//! - `sqlite store`: the same through the SQLite backend, for comparison;
//! - `postgres store, N nodes`: 1, 2 and 3 stores (each a node's store, with its writer
//!   connections) sharing the database: first the same players spread over them, 64 and then
//!   192 (at 64, each of three nodes' batches can hold at most its 21 players' bets, so they
//!   shrink as nodes are added; at 192 they need not), then 64 players on each node (the load
//!   grows with the nodes, as when a casino adds nodes for more players). Each row's ratio is
//!   against the 1-node row of its part, measured just before it.
//!
//! Every measurement starts on a fresh scratch database and ends with the ledger's integrity
//! check. With the server on this machine, each PostgreSQL measurement also gives the server's
//! CPU per bet (its processes' time from /proc over the measurement), and with any server the
//! WAL it wrote per bet (how far its insert position moved): work per bet, which the noise of
//! a shared machine moves less than bets per second. Each store's row gives the bets per
//! transaction too (its batches, as the store reports them): a batch's fixed cost on the
//! server is shared by that many bets.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use croupier_ledger::pg::scratch::ScratchDb;
use croupier_ledger::seed_seal::generate_key_hex;
use croupier_ledger::{SeedKeys, SeedVault, Store, StoreLocation};
use tokio_postgres::config::Host;

use crate::procs::postgres_cpu_seconds;
use crate::report::{Row, new_histogram};
use crate::store::{measure_on, sign_in_players};

/// One dice bet of 0.10 as one transaction, on the ledger's tables (client n plays as pn).
const PGBENCH_BET: &str = r#"\set r random(1, 9000000000000000000)
\set win random(0, 1)
BEGIN;
SELECT seq AS head FROM chain_head WHERE id = 1 FOR UPDATE \gset
SELECT id AS seed, next_nonce AS nonce FROM seeds WHERE player = 'p' || :client_id AND revealed_ms IS NULL FOR UPDATE \gset
UPDATE seeds SET next_nonce = next_nonce + 1 WHERE id = :seed;
SELECT balance FROM balances WHERE account = 'player:p' || :client_id AND currency = 'EUR' AND shard = 0 FOR UPDATE;
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now \gset
UPDATE balances SET balance = balance - 10 WHERE account = 'player:p' || :client_id AND currency = 'EUR' AND shard = 0;
UPDATE balances SET balance = balance + 10 WHERE account = 'in_round' AND currency = 'EUR' AND shard = 0;
INSERT INTO journal (seq, ts_ms, kind, round_id, debit, credit, amount, currency, prev_hash, hash, player)
  SELECT :head + 1, :now, 'stake', 'b' || :r, 'player:p' || :client_id, 'in_round', 10, 'EUR', hash,
         encode(sha256(convert_to(hash || '|stake|b' || :r, 'UTF8')), 'hex'), 'player:p' || :client_id
  FROM chain_head WHERE id = 1;
UPDATE balances SET balance = balance - 10 WHERE account = 'in_round' AND currency = 'EUR' AND shard = 0;
UPDATE balances SET balance = balance + 10 WHERE account = 'house' AND currency = 'EUR' AND shard = 0;
INSERT INTO journal (seq, ts_ms, kind, round_id, debit, credit, amount, currency, prev_hash, hash, player)
  SELECT :head + 2, :now, 'settle', 'b' || :r, 'in_round', 'house', 10, 'EUR', hash,
         encode(sha256(convert_to(hash || '|settle', 'UTF8')), 'hex'), NULL FROM journal WHERE seq = :head + 1;
\if :win
UPDATE balances SET balance = balance - 20 WHERE account = 'house' AND currency = 'EUR' AND shard = 0;
UPDATE balances SET balance = balance + 20 WHERE account = 'player:p' || :client_id AND currency = 'EUR' AND shard = 0;
INSERT INTO journal (seq, ts_ms, kind, round_id, debit, credit, amount, currency, prev_hash, hash, player)
  SELECT :head + 3, :now, 'payout', 'b' || :r, 'house', 'player:p' || :client_id, 20, 'EUR', hash,
         encode(sha256(convert_to(hash || '|payout', 'UTF8')), 'hex'), 'player:p' || :client_id FROM journal WHERE seq = :head + 2;
UPDATE chain_head SET seq = :head + 3, hash = (SELECT hash FROM journal WHERE seq = :head + 3) WHERE id = 1;
\else
UPDATE chain_head SET seq = :head + 2, hash = (SELECT hash FROM journal WHERE seq = :head + 2) WHERE id = 1;
\endif
INSERT INTO rounds (id, player, game, status, stake, payout, bet, state, seed_id, nonce, node, created_ms, updated_ms)
  VALUES ('b' || :r, 'p' || :client_id, 'dice', 'settled', 10, 20 * :win, '{"target":5000,"direction":"over"}',
          '{"roll":1,"won":false}', :seed, :nonce, 'pgbench', :now, :now);
INSERT INTO idempotency (key, fingerprint, response, created_ms)
  VALUES ('p' || :client_id || ':' || :r, 'f', '{"round":{}}', :now);
COMMIT;
"#;

/// A node's seed vault for the seed key `key`: the stores seal and open their players' seeds
/// as nodes do, each with a vault of its own (what one process opened, another decrypts).
fn node_seeds(key: &str) -> anyhow::Result<SeedVault> {
    Ok(SeedVault::sealed(SeedKeys::from_text(key)?))
}

/// A fresh ledger database with `players` signed in (seeds, sealed with `key`; balances), and
/// its URL.
async fn ledger_with_players(server: &str, players: usize, key: &str) -> anyhow::Result<ScratchDb> {
    let db = ScratchDb::create(server, "bench")?;
    let store =
        StoreLocation::Postgres(db.url().to_owned()).open_with_seeds("EUR", node_seeds(key)?)?;
    sign_in_players(store.as_ref(), players).await?;
    Ok(db)
}

/// pgbench running the bet script, one client per player, for `duration`.
fn pgbench(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    db: &ScratchDb,
    players: usize,
    duration: Duration,
    work: &Path,
) -> anyhow::Result<Row> {
    let script = work.join("bet.sql");
    std::fs::write(&script, PGBENCH_BET)?;
    let log_prefix = work.join("pgbench-log");
    let before = runtime.block_on(server.work())?;
    let output = Command::new("pgbench")
        .args(["-n", "-f"])
        .arg(&script)
        .args([
            "-c",
            &players.to_string(),
            "-j",
            &players.min(2).to_string(),
        ])
        .args([
            "-T",
            &duration.as_secs().max(1).to_string(),
            "-l",
            "--log-prefix",
        ])
        .arg(&log_prefix)
        .arg(db.url())
        // As the store connects to a URL without `sslmode` (`croupier_pgconn`): the local
        // server may offer TLS, which pgbench (libpq's `prefer`) would otherwise take, and pay
        // for on each of its statements.
        .env("PGSSLMODE", "disable")
        .current_dir(work)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The backends of pgbench's sessions, just closed, count once the server has waited for
    // them.
    std::thread::sleep(Duration::from_millis(200));
    let spent = runtime.block_on(server.work())?.since(before);
    let mut row = Row {
        path: "pgbench, 1 bet per txn",
        players,
        ops: 0,
        errors: 0,
        seconds: duration.as_secs().max(1) as f64,
        latency_us: new_histogram(),
        server_cpu_seconds: spent.cpu_seconds,
        server_wal_bytes: Some(spent.wal_bytes),
        batches: None,
    };
    // Each log line: client, transaction, latency (µs), script, epoch, µs.
    for entry in std::fs::read_dir(work)?.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("pgbench-log")
        {
            continue;
        }
        for line in std::fs::read_to_string(entry.path())?.lines() {
            let latency: Option<u64> = line.split_whitespace().nth(2).and_then(|v| v.parse().ok());
            match latency {
                Some(us) => {
                    row.ops += 1;
                    row.latency_us.record(us.max(1))?;
                }
                None => row.errors += 1,
            }
        }
    }
    row.batches = Some(row.ops);
    Ok(row)
}

/// Bets through `nodes` stores on one fresh database, `players` spread over them.
async fn store_row(
    server: &Server,
    nodes: usize,
    players: usize,
    duration: Duration,
) -> anyhow::Result<Row> {
    let key = generate_key_hex()?;
    let db = ledger_with_players(&server.url, players, &key).await?;
    let location = StoreLocation::Postgres(db.url().to_owned());
    let stores: Vec<Arc<dyn Store>> = (0..nodes)
        .map(|_| Ok(location.open_with_seeds("EUR", node_seeds(&key)?)?))
        .collect::<anyhow::Result<_>>()?;
    let before = server.work().await?;
    let mut row = measure_on(&stores, players, duration, false).await?;
    let spent = server.work().await?.since(before);
    row.server_cpu_seconds = spent.cpu_seconds;
    row.server_wal_bytes = Some(spent.wal_bytes);
    let report = stores[0].integrity().await?;
    anyhow::ensure!(
        report.ok,
        "integrity violated after the benchmark: {report:?}"
    );
    Ok(row)
}

async fn sqlite_row(players: usize, duration: Duration) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let seeds = node_seeds(&generate_key_hex()?)?;
    let store =
        StoreLocation::Sqlite(dir.path().join("ledger.db")).open_with_seeds("EUR", seeds)?;
    let row = measure_on(std::slice::from_ref(&store), players, duration, true).await?;
    let report = store.integrity().await?;
    anyhow::ensure!(
        report.ok,
        "integrity violated after the benchmark: {report:?}"
    );
    Ok(row)
}

/// The nodes of the scaling table, and the players they share in each of its parts.
pub struct Scaling {
    pub nodes: Vec<usize>,
    pub players: Vec<usize>,
}

pub fn run(
    server: &str,
    players: &[usize],
    scaling: &Scaling,
    duration: Duration,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let server = Server::of(server)?;
    let mut rows = Vec::new();
    for &count in players {
        let work = tempfile::tempdir()?;
        let key = generate_key_hex()?;
        let db = runtime.block_on(ledger_with_players(&server.url, count, &key))?;
        rows.push(pgbench(
            &runtime,
            &server,
            &db,
            count,
            duration,
            work.path(),
        )?);
        drop(db);
        let mut row = runtime.block_on(store_row(&server, 1, count, duration))?;
        row.path = "postgres store";
        rows.push(row);
        let mut row = runtime.block_on(sqlite_row(count, duration))?;
        row.path = "sqlite store";
        rows.push(row);
    }
    print_comparison(&rows);
    let mut parts: Vec<(usize, bool)> = scaling.players.iter().map(|&p| (p, false)).collect();
    parts.extend(scaling.players.first().map(|&p| (p, true)));
    let mut table = Vec::new();
    for (players, each_node_its_own) in parts {
        let mut part = Vec::new();
        for &n in &scaling.nodes {
            let (total, load) = if each_node_its_own {
                (players * n, format!("{players} players each"))
            } else {
                (players, "players shared".to_owned())
            };
            let mut row = runtime.block_on(store_row(&server, n, total, duration))?;
            row.path = Box::leak(format!("postgres store, {n} node(s), {load}").into_boxed_str());
            part.push(row);
        }
        table.push(part);
    }
    print_scaling(&table);
    Ok(())
}

/// The server of a run, and whether its CPU can be read here: a server on this machine (its
/// processes read from /proc). Measured around each measurement, so it counts the server's
/// work for the bets and whatever else it did meanwhile (its checkpointer, autovacuum).
struct Server {
    url: String,
    local: bool,
}

/// What the server has done so far, or over a measurement (`since`).
#[derive(Clone, Copy)]
struct ServerWork {
    /// `None` for a server elsewhere.
    cpu_seconds: Option<f64>,
    /// The WAL's insert position: bytes written since the cluster began.
    wal_bytes: i64,
}

impl ServerWork {
    fn since(self, before: ServerWork) -> ServerWork {
        ServerWork {
            cpu_seconds: before
                .cpu_seconds
                .zip(self.cpu_seconds)
                .map(|(before, now)| now - before),
            wal_bytes: self.wal_bytes - before.wal_bytes,
        }
    }
}

impl Server {
    fn of(url: &str) -> anyhow::Result<Server> {
        let config: tokio_postgres::Config = url.parse()?;
        let local = config.get_hosts().iter().all(|host| match host {
            Host::Tcp(name) => matches!(name.as_str(), "127.0.0.1" | "localhost" | "::1"),
            Host::Unix(_) => true,
        });
        Ok(Server {
            url: url.to_owned(),
            local,
        })
    }

    async fn work(&self) -> anyhow::Result<ServerWork> {
        let (client, connection) =
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        let wal_bytes: i64 = client
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint",
                &[],
            )
            .await?
            .get(0);
        drop(client);
        let _ = connection.await;
        Ok(ServerWork {
            cpu_seconds: self.local.then(postgres_cpu_seconds).transpose()?,
            wal_bytes,
        })
    }
}

fn ms(row: &Row, q: f64) -> f64 {
    row.latency_us.value_at_quantile(q) as f64 / 1000.0
}

fn print_comparison(rows: &[Row]) {
    println!(
        "| players | path | bets/s | p50 ms | p99 ms | errors | vs pgbench | vs sqlite store | bets/txn | server CPU ms/bet | server WAL B/bet |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |",
            row.players,
            row.path,
            row.per_second(),
            ms(row, 0.5),
            ms(row, 0.99),
            row.errors,
            row.ratio_to(rows, "pgbench, 1 bet per txn"),
            row.ratio_to(rows, "sqlite store"),
            row.ops_per_batch(),
            row.server_ms_per_op(),
            row.server_wal_per_op(),
        );
    }
}

/// The scaling table, part by part; each row's ratio is against its part's first row (one
/// node).
fn print_scaling(parts: &[Vec<Row>]) {
    println!();
    println!(
        "| nodes (stores on one database) | players | bets/s | vs 1 node | p50 ms | p99 ms | errors | bets/txn | server CPU ms/bet | server WAL B/bet |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for part in parts {
        let Some(one) = part.first() else { continue };
        for row in part {
            print_scaling_row(row, row.per_second() / one.per_second());
        }
    }
}

fn print_scaling_row(row: &Row, vs_one: f64) {
    println!(
        "| {} | {} | {:.0} | {:.2}x | {:.2} | {:.2} | {} | {} | {} | {} |",
        row.path,
        row.players,
        row.per_second(),
        vs_one,
        ms(row, 0.5),
        ms(row, 0.99),
        row.errors,
        row.ops_per_batch(),
        row.server_ms_per_op(),
        row.server_wal_per_op(),
    );
}
