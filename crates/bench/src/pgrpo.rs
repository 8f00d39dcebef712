//! For bench/pgbackrest.sh: the RPO of a PostgreSQL ledger whose WAL pgBackRest archives
//! (`archive_command = pgbackrest … archive-push`, a short `archive_timeout`), while a real
//! node takes a steady bet load on it. Every 100 ms it asks the server where WAL is written
//! (`pg_current_wal_insert_lsn`) and which segment was archived last (`pg_stat_archiver`):
//! a restore at that moment gets back everything before the end of that segment, i.e. every
//! commit acknowledged by the last sample whose write position lies inside it. The data age
//! is now minus that sample's time (100 ms resolution); the age of the archive itself (now
//! minus `last_archived_time`) is printed too. After the load it commits once more, waits
//! for the archive to reach that commit, and prints the instant (between the last bet and
//! that commit) a point-in-time restore should recover to and the rounds it must hold (the
//! script restores and checks every invariant).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use croupier_ledger::pg::Server;
use hdrhistogram::Histogram;
use tokio_postgres::Client;

use crate::procs::{croupier_binary, free_port, start_node_on};
use crate::report::new_histogram;
use crate::steady::SteadyBets;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The server's archiving as one sample sees it.
struct Sample {
    /// When the question was asked (every commit acknowledged before is at or below `written`).
    at_ms: i64,
    /// `pg_current_wal_insert_lsn()`, in bytes.
    written: u64,
    /// The LSN just past the newest archived segment, once one is.
    archived_end: Option<u64>,
    /// `last_archived_time`.
    archived_at_ms: Option<i64>,
}

/// A connection to the ledger's server on a runtime of its own.
struct Archiver {
    runtime: tokio::runtime::Runtime,
    client: Client,
    segment_size: u64,
}

impl Archiver {
    fn connect(url: &str) -> anyhow::Result<Archiver> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (client, connection) = runtime.block_on(Server::from_url(url)?.connect())?;
        runtime.spawn(connection);
        let row = runtime.block_on(client.query_one(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'",
            &[],
        ))?;
        let segment_size = u64::try_from(row.get::<_, i64>(0))?;
        Ok(Archiver {
            runtime,
            client,
            segment_size,
        })
    }

    fn sample(&self) -> anyhow::Result<Sample> {
        let at_ms = now_ms();
        let row = self.runtime.block_on(self.client.query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint, \
             coalesce(last_archived_wal, ''), \
             (extract(epoch FROM last_archived_time) * 1000)::bigint FROM pg_stat_archiver",
            &[],
        ))?;
        Ok(Sample {
            at_ms,
            written: u64::try_from(row.get::<_, i64>(0))?,
            archived_end: segment_end(row.get(1), self.segment_size),
            archived_at_ms: row.get(2),
        })
    }

    fn rounds(&self) -> anyhow::Result<i64> {
        let row = self
            .runtime
            .block_on(self.client.query_one("SELECT count(*) FROM rounds", &[]))?;
        Ok(row.get(0))
    }
}

/// The LSN just past WAL segment `name` (`TTTTTTTTXXXXXXXXYYYYYYYY`: timeline, then the
/// segment's high and low parts); `None` for anything else (`.history`, `.partial`, none).
fn segment_end(name: &str, segment_size: u64) -> Option<u64> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let high = u64::from_str_radix(&name[8..16], 16).ok()?;
    let low = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some((high << 32) + (low + 1) * segment_size)
}

/// Data age at `now`: now minus the newest earlier sample written at or below `end`.
fn data_age(history: &[(i64, u64)], end: u64, now: i64) -> Option<u64> {
    let covered = history.partition_point(|&(_, written)| written <= end);
    let (at, _) = history.get(covered.checked_sub(1)?)?;
    Some((now - at).max(0) as u64)
}

/// The figures of one run.
struct Ages {
    data: Histogram<u64>,
    archive: Histogram<u64>,
}

/// Samples every 100 ms for `seconds`.
fn measure(archiver: &Archiver, seconds: u64) -> anyhow::Result<Ages> {
    let mut ages = Ages {
        data: new_histogram(),
        archive: new_histogram(),
    };
    let mut history: Vec<(i64, u64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let sample = archiver.sample()?;
        history.push((sample.at_ms, sample.written));
        if let Some(age) = sample
            .archived_end
            .and_then(|end| data_age(&history, end, sample.at_ms))
        {
            ages.data.record(age)?;
        }
        if let Some(at) = sample.archived_at_ms {
            ages.archive.record((sample.at_ms - at).max(0) as u64)?;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(ages)
}

/// Commits one transaction (`txid_current()` takes a transaction id, so its commit is in the
/// WAL with its time): recovery to an instant stops at the first commit after it, and must
/// see one to know the instant is passed.
fn commit_marker(archiver: &Archiver) -> anyhow::Result<()> {
    archiver
        .runtime
        .block_on(archiver.client.batch_execute("SELECT txid_current()"))?;
    Ok(())
}

/// Waits until the archive holds everything written by now; how long that took.
fn archived_to_here(archiver: &Archiver) -> anyhow::Result<Duration> {
    let (started, end) = (Instant::now(), archiver.sample()?.written);
    loop {
        if archiver.sample()?.archived_end.is_some_and(|e| e >= end) {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the archive did not reach the end of the load within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn print(name: &str, h: &Histogram<u64>) {
    println!(
        "{name}_samples {}\n{name}_p50_ms {}\n{name}_p99_ms {}\n{name}_max_ms {}",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
}

/// Steady bets at `rate` per second through a node on `store` for `seconds` (after 2 s of
/// warm-up), sampling the archive every 100 ms.
pub fn run(store: &str, seconds: u64, rate: u64, croupier: Option<PathBuf>) -> anyhow::Result<()> {
    let binary = croupier_binary(croupier)?;
    let archiver = Archiver::connect(store).context("connecting to the ledger's server")?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let _node = start_node_on(&binary, dir.path(), port, "bench", Some(store))?;
    let load = SteadyBets::start(&format!("http://127.0.0.1:{port}"), "rpo", 8, rate)?;
    std::thread::sleep(Duration::from_secs(2));
    let ages = measure(&archiver, seconds);
    let bets = load.stop();
    let ages = ages?;
    let end_ms = now_ms();
    let rounds = archiver.rounds()?;
    std::thread::sleep(Duration::from_millis(5));
    commit_marker(&archiver)?;
    let archived_in = archived_to_here(&archiver)?;
    println!(
        "rpo_bets_per_second {:.0}\nrpo_bets_acknowledged {}",
        bets.sent as f64 / (seconds + 2) as f64,
        bets.acknowledged
    );
    print("rpo_data_age", &ages.data);
    print("rpo_archive_age", &ages.archive);
    println!(
        "end_ms {end_ms}\nrounds_at_end {rounds}\narchived_to_end_ms {}",
        archived_in.as_millis()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_name_ends_where_the_next_begins() {
        let size = 16 * 1024 * 1024;
        assert_eq!(
            segment_end("000000010000000000000001", size),
            Some(2 * size)
        );
        assert_eq!(
            segment_end("0000000100000002000000FF", size),
            Some((2 << 32) + 256 * size)
        );
        assert_eq!(segment_end("00000002.history", size), None);
        assert_eq!(segment_end("", size), None);
    }

    #[test]
    fn the_data_age_is_that_of_the_last_sample_inside_the_archive() {
        let history = [(1_000, 10), (1_100, 20), (1_200, 35), (1_300, 50)];
        assert_eq!(data_age(&history, 35, 1_300), Some(100));
        assert_eq!(data_age(&history, 49, 1_300), Some(100));
        assert_eq!(data_age(&history, 50, 1_300), Some(0));
        assert_eq!(data_age(&history, 5, 1_300), None);
    }
}
