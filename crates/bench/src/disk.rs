//! How long the disk takes to make a small write durable (`fdatasync`), as the ledger's commits
//! wait for it: on SQLite each batch's WAL fsync, on PostgreSQL each commit's WAL flush. A
//! stack acknowledges a bet only once it is durable, so one slow flush stalls every bet waiting
//! behind it, on any backend; a peak measured at p99 < 50 ms can only be as steady as the disk.
//! This measures the disk alone, with nothing else of the stack running, so a stall in a load
//! step can be told from one of the stack.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Flushes slower than this are listed with the second they began in.
const SLOW: Duration = Duration::from_millis(50);
/// A write every 5 ms: the rate of a lone writer's batches at a few hundred bets a second.
const PAUSE: Duration = Duration::from_millis(5);

pub fn run(folder: &Path, seconds: f64) -> anyhow::Result<()> {
    let path = folder.join(".croupier-bench-fsync");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let mut flushes = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut slow = Vec::new();
    let started = Instant::now();
    let page = [0u8; 8192];
    let mut n: u64 = 0;
    while started.elapsed().as_secs_f64() < seconds {
        file.write_all_at(&page, (n % 1024) * 8192)?;
        let flush = Instant::now();
        file.sync_data()?;
        let took = flush.elapsed();
        flushes.record(took.as_micros().max(1) as u64)?;
        if took > SLOW {
            slow.push((flush.duration_since(started), took));
        }
        n += 1;
        std::thread::sleep(PAUSE);
    }
    std::fs::remove_file(&path)?;
    let ms = |q: f64| flushes.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| flushes | p50 ms | p99 ms | p99.9 ms | max ms | over {} ms |",
        SLOW.as_millis()
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.2} | {:.2} | {:.2} | {:.1} | {} |",
        flushes.len(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        flushes.max() as f64 / 1000.0,
        slow.len()
    );
    if !slow.is_empty() {
        let listed: Vec<String> = slow
            .iter()
            .map(|(at, took)| format!("{:.1} s: {} ms", at.as_secs_f64(), took.as_millis()))
            .collect();
        println!(
            "\nflushes over {} ms (seconds into the run): {}",
            SLOW.as_millis(),
            listed.join(", ")
        );
    }
    Ok(())
}
