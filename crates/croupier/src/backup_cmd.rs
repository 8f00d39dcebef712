//! `croupier backup ...`: snapshots, continuous shipping, restore (to the newest state or a
//! point in time), verify, list, prune and the scheduled loop (the one backup daemon), on a
//! local folder or S3. The key comes from `--key-file`, `CROUPIER_BACKUP_KEY_FILE` or
//! `CROUPIER_BACKUP_KEY`. With `--pg-data`, the same commands back up a PostgreSQL ledger
//! through pgBackRest (`backup_pg_cmd`).

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use croupier_backup::daemon::Shipping;
use croupier_backup::pgbackrest::scheduler::PgSchedule;
use croupier_backup::plan::{DAY_MS, plan};
use croupier_backup::{
    BackupDaemon, BackupKey, BackupScheduler, Catalog, Policy, Progress, SchedulerConfig, Shipper,
    Target, cut::now_ms,
};
use croupier_node::rounds::SESSION_TTL_MS;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::backup_pg_cmd::{self, PgArgs};
use crate::console::outln;

#[derive(Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(Args, Clone)]
struct Where {
    /// A folder or s3://bucket/prefix (endpoint and credentials from AWS_* variables).
    #[arg(long, default_value = "data/backups")]
    target: String,
    /// File holding the 64-hex-digit key (else CROUPIER_BACKUP_KEY).
    #[arg(long, env = "CROUPIER_BACKUP_KEY_FILE")]
    key_file: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct Live {
    /// The live SQLite ledger file.
    #[arg(long, default_value = "data/ledger.db")]
    db: PathBuf,
}

#[derive(Args, Clone)]
struct Retention {
    /// Days between full backups.
    #[arg(long, default_value_t = 7)]
    full_every_days: i64,
    /// Hours between incremental backups.
    #[arg(long, default_value_t = 24)]
    incremental_every_hours: i64,
    #[arg(long, default_value_t = 7)]
    keep_daily: usize,
    #[arg(long, default_value_t = 4)]
    keep_weekly: usize,
    #[arg(long, default_value_t = 12)]
    keep_monthly: usize,
    /// Days of per-second point-in-time restore (shipped segments kept).
    #[arg(long, default_value_t = 7)]
    keep_segments_days: i64,
}

impl Retention {
    fn policy(&self) -> Policy {
        Policy {
            full_every_ms: self.full_every_days * DAY_MS,
            incremental_every_ms: self.incremental_every_hours * 3_600_000,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_segments_ms: self.keep_segments_days * DAY_MS,
        }
    }
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Write a new random key to a file (mode 0600); keep it out of the repository.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Take a full backup (or an incremental one since the newest full; with --pg-data a
    /// differential one) of the live store.
    Snapshot {
        #[command(flatten)]
        live: Live,
        #[command(flatten)]
        place: Where,
        #[arg(long)]
        incremental: bool,
        #[command(flatten)]
        pg: PgArgs,
    },
    /// Write the pgBackRest stanza of a PostgreSQL ledger (--pg-data) and print the
    /// postgresql.conf lines that archive its WAL into the repository.
    PgSetup {
        #[command(flatten)]
        place: Where,
        #[command(flatten)]
        pg: PgArgs,
        /// Seconds after which a partly filled WAL segment is archived (bounds the RPO).
        #[arg(long, default_value_t = 60)]
        archive_timeout_s: u32,
    },
    /// Ship the rows changed since the last cut, every interval.
    Ship {
        #[command(flatten)]
        live: Live,
        #[command(flatten)]
        place: Where,
        #[arg(long, default_value_t = 1000)]
        every_ms: u64,
        /// Stop after this many seconds (0: run until killed).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
    },
    /// Restore into a new file (with --pg-data: a new data folder): the newest state, or the
    /// state at --at.
    Restore {
        #[command(flatten)]
        place: Where,
        /// The new ledger file (or data folder); refused if it exists (a folder: unless empty).
        #[arg(long)]
        into: PathBuf,
        /// Unix milliseconds or RFC 3339 (e.g. 2026-11-24T18:00:05Z).
        #[arg(long)]
        at: Option<String>,
        /// The last journal entry known to have been shipped (the control plane's
        /// `/api/v1/backups` says it): a repository restoring less has been rolled back.
        #[arg(long)]
        pinned_seq: Option<i64>,
        #[command(flatten)]
        pg: PgArgs,
    },
    /// Restore into a scratch store, check everything, report RTO and RPO as JSON.
    Verify {
        #[command(flatten)]
        place: Where,
        /// Where the scratch store goes [default: data; with --pg-data the system's
        /// temporary folder, which the cluster's owner can reach].
        #[arg(long)]
        scratch: Option<PathBuf>,
        #[arg(long)]
        at: Option<String>,
        /// The last journal entry known to have been shipped (the control plane's
        /// `/api/v1/backups` says it): a repository restoring less has been rolled back.
        #[arg(long)]
        pinned_seq: Option<i64>,
        #[command(flatten)]
        pg: PgArgs,
    },
    /// The backups and segments in the target.
    List {
        #[command(flatten)]
        place: Where,
        #[command(flatten)]
        pg: PgArgs,
    },
    /// Delete what the retention policy no longer keeps.
    Prune {
        #[command(flatten)]
        place: Where,
        #[command(flatten)]
        retention: Retention,
    },
    /// The backup daemon: ship every second and take, prune and verify on schedule (with
    /// --pg-data: pgBackRest full and differential backups and restore tests).
    Run(DaemonArgs),
}

/// `backup run`'s options.
#[derive(Args)]
struct DaemonArgs {
    #[command(flatten)]
    live: Live,
    #[command(flatten)]
    place: Where,
    #[command(flatten)]
    retention: Retention,
    #[arg(long, default_value_t = 3600)]
    verify_every_seconds: i64,
    /// How often the schedule is asked what is due.
    #[arg(long, default_value_t = 10)]
    schedule_every_seconds: u64,
    /// Where restore tests build their scratch store [default: data; with --pg-data the
    /// system's temporary folder].
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Stop after this many seconds (0: run until killed).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    #[command(flatten)]
    pg: PgArgs,
}

/// Progress bars on stderr when it is a terminal; nothing otherwise.
struct Bars(RefCell<Option<ProgressBar>>);

impl Bars {
    fn new() -> Bars {
        Bars(RefCell::new(None))
    }
}

impl Progress for Bars {
    fn begin(&self, step: &str, total: u64) {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{msg:24} [{bar:40}] {percent:>3}% {elapsed}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(step.to_owned());
        *self.0.borrow_mut() = Some(bar);
    }
    fn advance(&self, done: u64) {
        if let Some(bar) = &*self.0.borrow() {
            bar.set_position(done);
        }
    }
    fn end(&self) {
        if let Some(bar) = self.0.borrow_mut().take() {
            bar.finish();
        }
    }
}

fn key(place: &Where) -> anyhow::Result<BackupKey> {
    Ok(match &place.key_file {
        Some(path) => BackupKey::from_file(path)?,
        None => BackupKey::from_env()?,
    })
}

fn parse_at(text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let at = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("--at {text}: not Unix milliseconds nor an RFC 3339 time"))?;
    Ok(at.duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64)
}

fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    match args.command {
        BackupCommand::Keygen { out } => keygen(&out),
        BackupCommand::Snapshot {
            live,
            place,
            incremental,
            pg,
        } => match pg.config(&place.target)? {
            Some(config) => backup_pg_cmd::snapshot(config, incremental),
            None => snapshot(&live, &place, incremental),
        },
        BackupCommand::PgSetup {
            place,
            pg,
            archive_timeout_s,
        } => {
            let config = pg
                .config(&place.target)?
                .context("pg-setup needs --pg-data")?;
            backup_pg_cmd::setup(config, archive_timeout_s)
        }
        BackupCommand::Ship {
            live,
            place,
            every_ms,
            seconds,
        } => ship(&live, &place, every_ms, seconds),
        BackupCommand::Restore {
            place,
            into,
            at,
            pinned_seq,
            pg,
        } => {
            let at = at.as_deref().map(parse_at).transpose()?;
            match pg.config(&place.target)? {
                Some(config) => backup_pg_cmd::restore(config, &into, at),
                None => restore(&place, &into, at, pinned_seq),
            }
        }
        BackupCommand::Verify {
            place,
            scratch,
            at,
            pinned_seq,
            pg,
        } => {
            let at = at.as_deref().map(parse_at).transpose()?;
            verify_either(&place, scratch, at, pinned_seq, &pg)
        }
        BackupCommand::List { place, pg } => match pg.config(&place.target)? {
            Some(config) => backup_pg_cmd::list(config),
            None => list(&place),
        },
        BackupCommand::Prune { place, retention } => prune(&place, &retention),
        BackupCommand::Run(daemon_args) => daemon(daemon_args),
    }
}

/// A restore test: through pgBackRest with --pg-data, else of the SQLite backups.
fn verify_either(
    place: &Where,
    scratch: Option<PathBuf>,
    at: Option<i64>,
    pinned_seq: Option<i64>,
    pg: &PgArgs,
) -> anyhow::Result<()> {
    match pg.config(&place.target)? {
        Some(config) => {
            let scratch = scratch.unwrap_or_else(backup_pg_cmd::default_scratch);
            backup_pg_cmd::verify(config, &pg.pg_database, &scratch, at)
        }
        None => verify(
            place,
            &scratch.unwrap_or_else(|| "data".into()),
            at,
            pinned_seq,
        ),
    }
}

fn prune(place: &Where, retention: &Retention) -> anyhow::Result<()> {
    let target = Target::open(&place.target)?;
    let catalog = Catalog::load(&target)?;
    let plan = plan(&catalog, now_ms(), &retention.policy());
    croupier_backup::scheduler::execute_prune(&target, &catalog, &plan)?;
    print(&json!({"pruned_backups": plan.prune_backups,
                  "pruned_segments": plan.prune_segments.len()}))
}

/// The backup daemon: pgBackRest's with --pg-data, else the SQLite one.
fn daemon(args: DaemonArgs) -> anyhow::Result<()> {
    let every = Duration::from_secs(args.schedule_every_seconds.max(1));
    let policy = args.retention.policy();
    let verify_every_ms = args.verify_every_seconds * 1000;
    match args.pg.config(&args.place.target)? {
        Some(config) => {
            let schedule = PgSchedule {
                full_every_ms: policy.full_every_ms,
                diff_every_ms: policy.incremental_every_ms,
                verify_every_ms,
                scratch_dir: args.scratch.unwrap_or_else(backup_pg_cmd::default_scratch),
                database: args.pg.pg_database.clone(),
            };
            backup_pg_cmd::run(config, schedule, every, args.seconds)
        }
        None => {
            let config = SchedulerConfig {
                db: args.live.db.clone(),
                target: args.place.target.clone(),
                policy,
                verify_every_ms,
                scratch_dir: args.scratch.unwrap_or_else(|| "data".into()),
                session_ttl_ms: SESSION_TTL_MS,
            };
            run_sqlite(config, &args.place, every, args.seconds)
        }
    }
}

fn snapshot(live: &Live, place: &Where, incremental: bool) -> anyhow::Result<()> {
    let key = key(place)?;
    let target = Target::open(&place.target)?;
    let started = Instant::now();
    let manifest = if incremental {
        croupier_backup::take_incremental(&live.db, &target, &key, SESSION_TTL_MS)?
    } else {
        croupier_backup::take_full(&live.db, &target, &key, &Bars::new())?
    };
    let stored: u64 = manifest.pieces.iter().map(|p| p.size).sum();
    let raw: u64 = manifest.pieces.iter().map(|p| p.raw_size).sum();
    print(&json!({
        "id": manifest.id,
        "kind": manifest.kind,
        "cut_ms": manifest.cut_ms,
        "journal": [manifest.first_seq, manifest.last_seq],
        "state": manifest.state,
        "raw_bytes": raw,
        "stored_bytes": stored,
        "pieces": manifest.pieces.len(),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

fn ship(live: &Live, place: &Where, every_ms: u64, seconds: u64) -> anyhow::Result<()> {
    let key = key(place)?;
    let target = Target::open(&place.target)?;
    let mut shipper = Shipper::resume(&live.db, &target, &key, SESSION_TTL_MS)?;
    let (mut count, mut entries, mut lock_held_us) = (0u64, 0usize, Vec::new());
    run_every(every_ms, seconds, || {
        if let Some(shipped) = shipper.ship_once(&target, &key)? {
            count += 1;
            entries += shipped.entries;
            lock_held_us.push(shipped.lock_held_us);
            tracing::debug!(segment = %shipped.name, entries = shipped.entries, "shipped");
        }
        Ok(())
    })?;
    lock_held_us.sort_unstable();
    print(&json!({
        "segments": count,
        "entries": entries,
        "last_cut_ms": shipper.since_ms(),
        // How long each cut held the write lock (bets waited at most this long).
        "lock_held_us_p50": lock_held_us.get(lock_held_us.len() / 2),
        "lock_held_us_max": lock_held_us.last(),
    }))
}

fn restore(
    place: &Where,
    into: &std::path::Path,
    at: Option<i64>,
    pinned_seq: Option<i64>,
) -> anyhow::Result<()> {
    let key = key(place)?;
    let target = Target::open(&place.target)?;
    let restored = croupier_backup::restore(&target, &key, into, at, &Bars::new())?;
    print(&restored)?;
    if let (Some(pin), None) = (pinned(pinned_seq), at) {
        pin.check(restored.state.last_seq, restored.cut_ms)
            .with_context(|| format!("{} holds the older state", into.display()))?;
    }
    Ok(())
}

fn verify(
    place: &Where,
    scratch: &std::path::Path,
    at: Option<i64>,
    pinned_seq: Option<i64>,
) -> anyhow::Result<()> {
    let key = key(place)?;
    let target = Target::open(&place.target)?;
    std::fs::create_dir_all(scratch)?;
    let pin = pinned(pinned_seq);
    let report = croupier_backup::verify(&target, &key, scratch, at, pin.as_ref(), &Bars::new());
    print(&report)?;
    anyhow::ensure!(
        report.ok,
        "backup verify failed: {}",
        report.reason.unwrap_or_default()
    );
    Ok(())
}

fn list(place: &Where) -> anyhow::Result<()> {
    let target = Target::open(&place.target)?;
    let catalog = Catalog::load(&target)?;
    let backups: Vec<_> = catalog
        .backups
        .iter()
        .map(|b| {
            json!({"id": b.id, "kind": b.kind, "cut_ms": b.cut_ms,
                   "complete": b.complete, "bytes": b.bytes})
        })
        .collect();
    print(&json!({
        "backups": backups,
        "segments": catalog.segments.len(),
        "segment_bytes": catalog.segments.iter().map(|s| s.bytes).sum::<u64>(),
        "first_segment_cut_ms": catalog.segments.first().map(|s| s.cut_ms),
        "last_segment_cut_ms": catalog.segments.last().map(|s| s.cut_ms),
    }))
}

/// The backup daemon on a SQLite ledger (the control plane runs the same one); prints the
/// health when it stops.
fn run_sqlite(
    config: SchedulerConfig,
    place: &Where,
    every: Duration,
    seconds: u64,
) -> anyhow::Result<()> {
    let key = key(place)?;
    let shipping = Shipping {
        db: config.db.clone(),
        target: place.target.clone(),
        key: key.clone(),
        session_ttl_ms: SESSION_TTL_MS,
    };
    let scheduler = BackupScheduler::new(config, key, now_ms())?;
    let health = BackupDaemon::sqlite(scheduler, shipping)
        .schedule_every(every)
        .run(backup_pg_cmd::logged(), backup_pg_cmd::stop_after(seconds));
    backup_pg_cmd::finish(&health)
}

/// Calls `step` every `every_ms` for `seconds` (forever when 0).
fn run_every(
    every_ms: u64,
    seconds: u64,
    mut step: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let interval = Duration::from_millis(every_ms.max(1));
    let mut next = Instant::now();
    loop {
        step()?;
        if seconds > 0 && started.elapsed() >= Duration::from_secs(seconds) {
            return Ok(());
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

fn keygen(out: &std::path::Path) -> anyhow::Result<()> {
    keygen_file(out)?;
    print(&json!({"key_file": out}))
}

/// Writes a new backup key to `out` (which must not exist), readable only by its owner.
pub fn keygen_file(out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist)", out.display()))?;
    writeln!(file, "{}", BackupKey::generate_hex()?)?;
    Ok(())
}

/// The pin of `--pinned-seq` (the entry alone: its cut is not known from outside).
fn pinned(seq: Option<i64>) -> Option<croupier_backup::Pin> {
    seq.map(|last_seq| croupier_backup::Pin {
        last_seq,
        cut_ms: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_at;

    #[test]
    fn instants_are_unix_ms_or_rfc3339() {
        assert_eq!(parse_at("1764007205000").unwrap(), 1_764_007_205_000);
        assert_eq!(parse_at("2025-11-24T18:00:05Z").unwrap(), 1_764_007_205_000);
        assert_eq!(
            parse_at("2025-11-24T18:00:05.250Z").unwrap(),
            1_764_007_205_250
        );
        assert!(parse_at("yesterday").is_err());
    }
}
