//! The baseline: raw SQLite, one row per transaction, with the ledger's durability setting
//! (WAL, synchronous=FULL), each writer thread on its own connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::report::{Row, new_histogram};

pub fn run(players: &[usize], duration: Duration) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &threads in players {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("baseline.db");
        let setup = croupier_ledger::sqlite::connect(&path, false)?;
        setup.execute_batch(
            "CREATE TABLE bets (id INTEGER PRIMARY KEY, player TEXT NOT NULL, amount INTEGER NOT NULL, ts INTEGER NOT NULL)",
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (path, stop) = (path.clone(), stop.clone());
                std::thread::spawn(
                    move || -> anyhow::Result<(u64, u64, hdrhistogram::Histogram<u64>)> {
                        let conn = croupier_ledger::sqlite::connect(&path, false)?;
                        let mut insert = conn
                            .prepare("INSERT INTO bets (player, amount, ts) VALUES (?1, ?2, ?3)")?;
                        let (mut ok, mut errors, mut latency) = (0, 0, new_histogram());
                        let player = format!("p{t}");
                        while !stop.load(Ordering::Relaxed) {
                            let began = Instant::now();
                            match insert.execute(rusqlite::params![player, 100, ok as i64]) {
                                Ok(_) => ok += 1,
                                Err(_) => errors += 1,
                            }
                            latency.record(began.elapsed().as_micros() as u64)?;
                        }
                        Ok((ok, errors, latency))
                    },
                )
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let mut row = Row {
            path: "baseline",
            players: threads,
            ops: 0,
            errors: 0,
            seconds: 0.0,
            latency_us: new_histogram(),
            server_cpu_seconds: None,
            server_wal_bytes: None,
            batches: None,
        };
        for worker in workers {
            let (ok, errors, latency) = worker.join().expect("baseline worker")?;
            row.ops += ok;
            row.errors += errors;
            row.latency_us.add(latency)?;
        }
        row.seconds = started.elapsed().as_secs_f64();
        let count: i64 = setup.query_row("SELECT count(*) FROM bets", [], |r| r.get(0))?;
        anyhow::ensure!(
            count as u64 == row.ops,
            "baseline lost rows: {count} != {}",
            row.ops
        );
        rows.push(row);
    }
    Ok(rows)
}
