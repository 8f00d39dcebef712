//! The store-failover drill's own parts: the stack's ledger is a PostgreSQL primary with a
//! streaming standby (synchronous, or asynchronous with `--async`), both the drill's clusters;
//! the fault is the primary's machine lost (SIGKILL of every server process) and the standby
//! promoted at once, as an HA manager would after noticing; the figures are the write outage
//! (from the kill to the first bet acknowledged after the old primary's processes were gone,
//! which can only have committed on the new primary), the player-visible errors other than
//! 503 (which must be none), and the acknowledged bets the new primary does not have (none
//! allowed with synchronous replication; counted with asynchronous).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bank::BankReport;
use crate::error::LoadError;
use crate::pgcluster::Replication;
use crate::run::Shared;
use crate::stack::{Stack, alive};

/// The bank checks an acknowledged bet lost with asynchronous replication fails: the bet is
/// missing, and the player's balance no longer matches their history.
const LOSS_CHECKS: [&str; 3] = [
    "acknowledged_bets_present",
    "no_unexplained_money",
    "incomplete_rounds_resumable",
];

/// What the fault did and when, for the figures.
pub struct Failover {
    pub detail: String,
    pub replication: Replication,
    /// When the old primary's processes were all gone.
    pub gone_at: Instant,
    pub promoted_ms: u64,
}

/// Kills the primary, waits for its processes to be gone, starts watching for the first bet
/// acknowledged after that, and promotes the standby `detect` after the kill (the time an HA
/// manager takes to notice and decide: Patroni's TTL, CloudNativePG's probes).
pub async fn kill_and_promote(
    stack: &Stack,
    shared: &Shared,
    detect: Duration,
) -> Result<Failover, LoadError> {
    let (Some(primary), Some((standby, replication))) = (&stack.store_server, &stack.store_standby)
    else {
        return Err(LoadError::Config(
            "store-failover needs the drill's own primary and standby (not --attach)".into(),
        ));
    };
    let killed_at = Instant::now();
    let pid = tokio::task::block_in_place(|| primary.kill())?;
    let deadline = killed_at + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gone_at = Instant::now();
    shared.stats.lock().watch_bets_from(gone_at);
    tokio::time::sleep((killed_at + detect).saturating_duration_since(Instant::now())).await;
    tokio::task::block_in_place(|| standby.promote())?;
    let promoted_ms = killed_at.elapsed().as_millis() as u64;
    Ok(Failover {
        detail: format!(
            "SIGKILL of the PostgreSQL primary on port {} (postmaster pid {pid} and its \
             processes); the {} standby on port {} was promoted {} ms after the kill and \
             accepted writes {promoted_ms} ms after it",
            primary.port(),
            replication_name(*replication),
            standby.port(),
            detect.as_millis()
        ),
        replication: *replication,
        gone_at,
        promoted_ms,
    })
}

fn replication_name(replication: Replication) -> &'static str {
    match replication {
        Replication::Sync => "synchronous",
        Replication::Async => "asynchronous",
    }
}

/// The store-failover drill's figures, in its report.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverFigures {
    pub replication: Replication,
    /// From the kill until `pg_ctl promote -w` returned (the promotion was asked for
    /// `--outage-ms` after the kill).
    pub promoted_ms: u64,
    /// From the kill until the first bet acknowledged on the new primary; `None` if none was.
    pub write_outage_ms: Option<u64>,
    /// Failed requests players saw other than 503 (a 503 comes with Retry-After and a notice).
    pub non_503_errors: u64,
    /// Acknowledged bets (and their balances) the new primary does not have.
    pub acknowledged_bets_lost: u64,
}

/// The figures of a run, and the reasons it fails.
pub fn judge(
    failover: &Failover,
    killed_at: Instant,
    shared: &Shared,
    bank: &BankReport,
) -> (FailoverFigures, Vec<String>) {
    let stats = shared.stats.lock();
    let write_outage_ms = stats
        .first_bet_after_watch
        .filter(|at| *at >= failover.gone_at)
        .map(|at| at.duration_since(killed_at).as_millis() as u64);
    let non_503_errors = stats
        .incidents
        .iter()
        .filter(|i| i.failed && !i.what.ends_with(" 503"))
        .count() as u64;
    drop(stats);
    let lost = bank
        .checks
        .iter()
        .find(|c| c.name == "acknowledged_bets_present")
        .map_or(0, |c| c.failure_count as u64);
    let mut reasons = Vec::new();
    if write_outage_ms.is_none() {
        reasons.push("no bet was acknowledged on the new primary".to_owned());
    }
    if non_503_errors > 0 {
        reasons.push(format!(
            "{non_503_errors} player-visible errors other than 503"
        ));
    }
    for check in bank.checks.iter().filter(|c| !c.ok) {
        let excused =
            failover.replication == Replication::Async && LOSS_CHECKS.contains(&check.name);
        if !excused {
            reasons.push(format!(
                "bank check {} failed: {}",
                check.name,
                check.failures.first().cloned().unwrap_or_default()
            ));
        }
    }
    let figures = FailoverFigures {
        replication: failover.replication,
        promoted_ms: failover.promoted_ms,
        write_outage_ms,
        non_503_errors,
        acknowledged_bets_lost: lost,
    };
    (figures, reasons)
}
