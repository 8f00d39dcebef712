//! Bets straight through the ledger store: each a complete dice round in one durable,
//! group-committed transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use croupier_games::GameId;
use croupier_ledger::sqlite::{SqliteConfig, SqliteStore};
use croupier_ledger::{BatchTimings, Committed, Idempotency, Store, StoreObserver};
use croupier_node::rounds::{self, NewRound, Played, RoundError};
use serde_json::json;

use crate::report::{Row, new_histogram};

/// `max_batch` 1 turns group commit off: the same ledger work, one transaction per bet.
pub fn run(players: &[usize], duration: Duration, max_batch: usize) -> anyhow::Result<Vec<Row>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();
    for &count in players {
        let dir = tempfile::tempdir()?;
        let mut config = SqliteConfig::new(dir.path().join("ledger.db"));
        config.max_batch = max_batch;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(config)?);
        let mut row = runtime.block_on(measure(store.clone(), count, duration))?;
        if max_batch == 1 {
            row.path = "store, 1 bet per txn";
        }
        let report = runtime.block_on(store.integrity())?;
        anyhow::ensure!(
            report.ok,
            "integrity violated after the store benchmark: {report:?}"
        );
        rows.push(row);
    }
    Ok(rows)
}

/// Signs in players `p0` … `p<players - 1>` (each gets the demo grant).
pub async fn sign_in_players(store: &dyn Store, players: usize) -> Result<(), RoundError> {
    for p in 0..players {
        store
            .transact(None, move |tx| {
                rounds::sign_in(tx, &format!("p{p}"), &format!("t{p}"))
            })
            .await?;
    }
    Ok(())
}

/// Bet `n` of player `p`: a complete 0.10 dice round in one transaction, under its own
/// idempotency key.
pub async fn dice_round(
    store: &dyn Store,
    p: usize,
    n: u64,
    node: &str,
) -> Result<Committed<Played>, RoundError> {
    let bet = json!({"target": 5000, "direction": "over"});
    let new = NewRound {
        id: rounds::new_round_id(),
        player: format!("p{p}"),
        stake: 10,
        bet: croupier_games::parse_bet(GameId::Dice, 10, bet)?,
        node: node.to_owned(),
    };
    let idem = Idempotency {
        key: format!("p{p}:{n}"),
        fingerprint: n.to_string(),
    };
    store
        .transact(Some(idem), move |tx| rounds::start_round(tx, &new))
        .await
}

async fn measure(store: Arc<dyn Store>, players: usize, duration: Duration) -> anyhow::Result<Row> {
    measure_on(std::slice::from_ref(&store), players, duration, true).await
}

/// `players` betting as fast as they can for `duration`, spread over `stores` (player p on
/// store p % n, as a node would serve its players); signs them in first when `sign_in`.
pub async fn measure_on(
    stores: &[Arc<dyn Store>],
    players: usize,
    duration: Duration,
    sign_in: bool,
) -> anyhow::Result<Row> {
    if sign_in {
        sign_in_players(stores[0].as_ref(), players).await?;
    }
    let batches = Arc::new(Batches::default());
    for store in stores {
        store.observe(batches.clone());
    }
    let batches_before = batches.committed();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..players)
        .map(|p| {
            let store = stores[p % stores.len()].clone();
            tokio::spawn(async move {
                let (mut ok, mut errors, mut latency) = (0u64, 0u64, new_histogram());
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let began = Instant::now();
                    match dice_round(store.as_ref(), p, n, "bench").await {
                        Ok(_) => ok += 1,
                        Err(_) => errors += 1,
                    }
                    let _ = latency.record(began.elapsed().as_micros() as u64);
                }
                (ok, errors, latency)
            })
        })
        .collect();
    let mut row = Row {
        path: "store",
        players,
        ops: 0,
        errors: 0,
        seconds: 0.0,
        latency_us: new_histogram(),
        server_cpu_seconds: None,
        server_wal_bytes: None,
        batches: None,
    };
    for task in tasks {
        let (ok, errors, latency) = task.await?;
        row.ops += ok;
        row.errors += errors;
        row.latency_us.add(latency)?;
    }
    row.seconds = started.elapsed().as_secs_f64();
    row.batches = Some(batches.committed() - batches_before);
    Ok(row)
}

/// The batches the stores committed, from their reports: how many bets share a transaction
/// (a node's batches are bounded by its own players' bets in flight).
#[derive(Default)]
struct Batches(AtomicU64);

impl Batches {
    fn committed(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl StoreObserver for Batches {
    fn batch(&self, timings: &BatchTimings) {
        if timings.committed {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn checkpoint(&self, _took: Duration) {}
}
