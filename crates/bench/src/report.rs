//! One measurement and the table that compares them with the baseline.

use hdrhistogram::Histogram;

pub struct Row {
    /// Which way the bets went: "baseline", "store", "store, 1 bet per txn" or "http".
    pub path: &'static str,
    pub players: usize,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub latency_us: Histogram<u64>,
    /// CPU seconds the database server spent over the measurement, where it was measured
    /// (a PostgreSQL server on this machine).
    pub server_cpu_seconds: Option<f64>,
    /// Bytes of WAL the database server wrote over the measurement, where it was measured (a
    /// PostgreSQL server).
    pub server_wal_bytes: Option<i64>,
    /// Transactions that committed bets over the measurement, where they were counted (the
    /// stores' own reports of their batches; pgbench's one per bet).
    pub batches: Option<u64>,
}

impl Row {
    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.seconds
    }

    /// The server's CPU milliseconds per bet, or "-" where it was not measured.
    pub fn server_ms_per_op(&self) -> String {
        let ms = self.server_cpu_seconds.filter(|_| self.ops > 0);
        or_dash(ms.map(|seconds| seconds * 1000.0 / self.ops as f64), 3)
    }

    /// Bets per committed transaction, or "-" where batches were not counted.
    pub fn ops_per_batch(&self) -> String {
        let batches = self.batches.filter(|&b| b > 0);
        or_dash(batches.map(|b| self.ops as f64 / b as f64), 1)
    }

    /// This row's rate against the row of `rows` on `path` with as many players ("1.25x"),
    /// or "-" where there is none.
    pub fn ratio_to(&self, rows: &[Row], path: &str) -> String {
        rows.iter()
            .find(|b| b.path == path && b.players == self.players)
            .map_or_else(
                || "-".to_owned(),
                |b| format!("{:.2}x", self.per_second() / b.per_second()),
            )
    }

    /// The server's WAL bytes per bet, or "-" where it was not measured.
    pub fn server_wal_per_op(&self) -> String {
        let bytes = self.server_wal_bytes.filter(|_| self.ops > 0);
        or_dash(bytes.map(|b| b as f64 / self.ops as f64), 0)
    }
}

/// A table's figure with `decimals` decimals, or "-" where there is none.
pub fn or_dash(figure: Option<f64>, decimals: usize) -> String {
    figure.map_or_else(|| "-".to_owned(), |f| format!("{f:.decimals$}"))
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Prints a Markdown table and one JSON line per row.
pub fn print(rows: &[Row]) {
    println!(
        "| path | players | durable ops/s | p50 ms | p99 ms | errors | vs baseline | vs 1 bet per txn |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
            row.path,
            row.players,
            row.per_second(),
            row.latency_us.value_at_quantile(0.5) as f64 / 1000.0,
            row.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
            row.errors,
            row.ratio_to(rows, "baseline"),
            row.ratio_to(rows, "store, 1 bet per txn"),
        );
    }
    for row in rows {
        println!(
            "{}",
            serde_json::json!({
                "path": row.path, "players": row.players, "ops": row.ops, "errors": row.errors,
                "seconds": row.seconds, "ops_per_second": row.per_second(),
                "p50_us": row.latency_us.value_at_quantile(0.5),
                "p99_us": row.latency_us.value_at_quantile(0.99),
            })
        );
    }
}
