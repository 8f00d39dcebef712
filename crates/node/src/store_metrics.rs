//! Where a bet's time goes inside the store, per batch: waiting in the writer's queue,
//! waiting for the writer's turn while another process writes, running the operations
//! (reads, locks, game logic), committing (flush and fsync); how many operations share a
//! commit; how often a batch was retried or failed; WAL checkpoints beside the writer; how
//! many writers take turns (PostgreSQL: fewer while other nodes share the database); and,
//! sampled at each scrape, its connection pools (PostgreSQL): open, idle and busy connections
//! and callers waiting for one (a store's pools are fixed when it opens). Registered as
//! `croupier_store_*`; the store reports batches to it through `StoreObserver`.

use croupier_ledger::{BatchTimings, PoolStatus, StoreObserver};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolStateLabels {
    pub pool: String,
    pub state: String,
}

pub struct StoreMetrics {
    pub info: Family<BackendLabels, Gauge>,
    queue_wait: Histogram,
    turn_wait: Histogram,
    build: Histogram,
    commit: Histogram,
    checkpoint: Histogram,
    batch_size: Histogram,
    batches: Family<OutcomeLabels, Counter>,
    retries: Counter,
    writers_in_turn: Gauge,
    pool_connections: Family<PoolStateLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_waiting: Family<PoolLabels, Gauge>,
}

/// 50 µs to about 1.6 s, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl StoreMetrics {
    pub fn register(registry: &mut Registry) -> StoreMetrics {
        let metrics = StoreMetrics {
            info: Family::default(),
            queue_wait: seconds(),
            turn_wait: seconds(),
            build: seconds(),
            commit: seconds(),
            checkpoint: seconds(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            batches: Family::default(),
            retries: Counter::default(),
            writers_in_turn: Gauge::default(),
            pool_connections: Family::default(),
            pool_max: Family::default(),
            pool_waiting: Family::default(),
        };
        let store = registry.sub_registry_with_prefix("store");
        store.register(
            "info",
            "1, labelled with the ledger's backend",
            metrics.info.clone(),
        );
        store.register(
            "queue_wait_seconds",
            "How long a batch's oldest operation waited for the writer",
            metrics.queue_wait.clone(),
        );
        store.register(
            "turn_wait_seconds",
            "How long a batch's writer waited while another process wrote (SQLite file turns)",
            metrics.turn_wait.clone(),
        );
        store.register(
            "batch_build_seconds",
            "Running a batch's operations: reads, row locks, game logic",
            metrics.build.clone(),
        );
        store.register(
            "commit_seconds",
            "Writing a batch and committing it (flush, fsync)",
            metrics.commit.clone(),
        );
        store.register(
            "checkpoint_seconds",
            "WAL checkpoints run beside the writer (SQLite), each that copied pages",
            metrics.checkpoint.clone(),
        );
        store.register(
            "batch_operations",
            "Operations committed together in one transaction",
            metrics.batch_size.clone(),
        );
        store.register(
            "batches",
            "Batches by outcome (committed, failed)",
            metrics.batches.clone(),
        );
        store.register(
            "batch_retries",
            "Attempts after the first (lost connection, server restart, deadlock)",
            metrics.retries.clone(),
        );
        store.register(
            "writers_in_turn",
            "Writers taking turns at the last batch (PostgreSQL: 1 while another node writes too)",
            metrics.writers_in_turn.clone(),
        );
        store.register(
            "pool_connections",
            "Open connections of each of the store's pools, idle or busy (PostgreSQL)",
            metrics.pool_connections.clone(),
        );
        store.register(
            "pool_max_connections",
            "The connections each pool may open (PostgreSQL)",
            metrics.pool_max.clone(),
        );
        store.register(
            "pool_waiting",
            "Callers waiting for a connection of each pool (PostgreSQL)",
            metrics.pool_waiting.clone(),
        );
        metrics
    }

    /// The store's pools as sampled now.
    pub fn record_pools(&self, pools: &[PoolStatus]) {
        for p in pools {
            let pool = PoolLabels {
                pool: p.pool.to_owned(),
            };
            let busy = p.open.saturating_sub(p.idle);
            for (state, count) in [("idle", p.idle), ("busy", busy)] {
                let labels = PoolStateLabels {
                    pool: p.pool.to_owned(),
                    state: state.to_owned(),
                };
                self.pool_connections
                    .get_or_create(&labels)
                    .set(gauge(count));
            }
            self.pool_max.get_or_create(&pool).set(gauge(p.max));
            self.pool_waiting.get_or_create(&pool).set(gauge(p.waiting));
        }
    }
}

fn gauge(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

impl StoreObserver for StoreMetrics {
    fn batch(&self, t: &BatchTimings) {
        self.queue_wait.observe(t.queue_wait.as_secs_f64());
        self.turn_wait.observe(t.turn_wait.as_secs_f64());
        self.build.observe(t.build.as_secs_f64());
        self.commit.observe(t.commit.as_secs_f64());
        self.batch_size.observe(t.jobs as f64);
        let outcome = if t.committed { "committed" } else { "failed" };
        self.batches
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        self.retries.inc_by(u64::from(t.retries));
        self.writers_in_turn.set(gauge(t.writers_in_turn));
    }

    fn checkpoint(&self, took: std::time::Duration) {
        self.checkpoint.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_is_exported_as_idle_busy_max_and_waiting() {
        let mut registry = Registry::default();
        let metrics = StoreMetrics::register(&mut registry);
        metrics.record_pools(&[PoolStatus {
            pool: "readers",
            max: 4,
            open: 3,
            idle: 1,
            waiting: 2,
        }]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "store_pool_connections{pool=\"readers\",state=\"idle\"} 1\n",
            "store_pool_connections{pool=\"readers\",state=\"busy\"} 2\n",
            "store_pool_max_connections{pool=\"readers\"} 4\n",
            "store_pool_waiting{pool=\"readers\"} 2\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }
}
