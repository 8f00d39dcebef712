//! The money checks of a Jepsen bank test, run after a load test or a drill: the ledger (a
//! SQLite file or a PostgreSQL database, read with croupier_ledger) against the client's history of acknowledged bets.
//!
//! - `money_conserved`: every ledger invariant holds (balances sum to zero, projections equal
//!   the journal replayed, hash chain, one stake and at most one settlement per round, no
//!   negative player).
//! - `no_bet_settled_twice`: each idempotency key was acknowledged as exactly one round.
//! - `acknowledged_bets_present`: every acknowledged round is in the ledger, for that player,
//!   with the acknowledged stake and payout.
//! - `no_unexplained_money`: no round the client never asked for (beyond requests whose
//!   answer was lost), and each player's balance equals the balance at sign-in plus the
//!   acknowledged rounds' results.
//! - `incomplete_rounds_resumable`: every round left open is fetched and finished through the
//!   players' API.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use croupier_ledger::{Account, IntegrityReport, RoundStatus, Store, StoreLocation};
use croupier_web::wire::player::{Act, Played, RoundSummary};
use serde::Serialize;

use crate::error::LoadError;
use crate::history::History;
use crate::http::{Call, HttpClient};

/// Failures listed in full per check; the count covers all.
const LISTED: usize = 20;
/// Stands sent to finish one resumed round.
const RESUME_ACTIONS: usize = 12;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub failure_count: usize,
    pub failures: Vec<String>,
}

impl Check {
    fn new(name: &'static str, failures: Vec<String>) -> Check {
        Check {
            name,
            ok: failures.is_empty(),
            failure_count: failures.len(),
            failures: failures.into_iter().take(LISTED).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BankReport {
    pub ok: bool,
    pub players: usize,
    /// Keyed requests answered (a blackjack round's steps each count).
    pub acknowledged_requests: usize,
    /// Rounds those answers named.
    pub acknowledged_rounds: usize,
    pub ledger_rounds: usize,
    pub resumed_rounds: usize,
    pub unanswered_requests: usize,
    pub integrity: IntegrityReport,
    pub checks: Vec<Check>,
}

/// A round as the ledger has it.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRound {
    pub player: String,
    pub stake: i64,
    pub payout: Option<i64>,
    pub open: bool,
}

/// The part of the ledger the checks compare: the history's players' rounds and balances.
#[derive(Debug, Clone, Default)]
pub struct LedgerView {
    pub rounds: BTreeMap<String, LedgerRound>,
    pub balances: BTreeMap<String, i64>,
}

async fn snapshot(
    store: &Arc<dyn Store>,
    players: BTreeSet<String>,
) -> Result<LedgerView, LoadError> {
    Ok(store
        .read(move |tx| {
            let mut view = LedgerView::default();
            tx.for_each_round(&mut |round| {
                if players.contains(&round.player) {
                    view.rounds.insert(
                        round.id,
                        LedgerRound {
                            player: round.player,
                            stake: round.stake,
                            payout: round.payout,
                            open: round.status == RoundStatus::Open,
                        },
                    );
                }
                Ok(())
            })?;
            for player in &players {
                view.balances
                    .insert(player.clone(), tx.balance(&Account::player(player))?);
            }
            Ok(view)
        })
        .await?)
}

/// Compares the history with the ledger (the pure part of the checks, after resuming).
pub fn compare(history: &History, ledger: &LedgerView) -> Vec<Check> {
    let mut twice = Vec::new();
    let mut missing = Vec::new();
    let mut unexplained = Vec::new();
    for (name, player) in &history.players {
        for (key, rounds) in &player.keys {
            if rounds.len() > 1 {
                twice.push(format!(
                    "{name}: key {key} was acknowledged as {} different rounds ({}): one request moved money {} times",
                    rounds.len(),
                    rounds.iter().cloned().collect::<Vec<_>>().join(", "),
                    rounds.len()
                ));
            }
        }
        for (id, acked) in &player.rounds {
            match ledger.rounds.get(id) {
                None => missing.push(format!("{name}: acknowledged round {id} is not in the ledger")),
                Some(round) if round.player != *name => {
                    missing.push(format!("{name}: round {id} belongs to {} in the ledger", round.player))
                }
                Some(round) if acked.settled && (round.stake, round.payout) != (acked.stake, acked.payout) => {
                    missing.push(format!(
                        "{name}: round {id} acknowledged with stake {} payout {:?}, ledger has stake {} payout {:?}",
                        acked.stake, acked.payout, round.stake, round.payout
                    ))
                }
                Some(round) if round.stake < acked.stake => missing.push(format!(
                    "{name}: round {id} acknowledged with stake {}, ledger has only {}",
                    acked.stake, round.stake
                )),
                Some(_) => {}
            }
        }
        let extra: Vec<&String> = ledger
            .rounds
            .iter()
            .filter(|(id, r)| r.player == *name && !player.rounds.contains_key(*id))
            .map(|(id, _)| id)
            .collect();
        if extra.len() > player.unresolved.len() {
            unexplained.push(format!(
                "{name}: {} round(s) in the ledger were never acknowledged and only {} request(s) went unanswered: {:?}",
                extra.len(),
                player.unresolved.len(),
                extra.iter().take(5).collect::<Vec<_>>()
            ));
        } else if extra.is_empty() {
            let expected = player.start_balance
                + player
                    .rounds
                    .values()
                    .map(|r| r.payout.unwrap_or(0) - r.stake)
                    .sum::<i64>();
            let actual = ledger.balances.get(name).copied().unwrap_or(0);
            if actual != expected {
                unexplained.push(format!(
                    "{name}: balance {actual} in the ledger, {expected} from the acknowledged bets"
                ));
            }
        }
    }
    vec![
        Check::new("no_bet_settled_twice", twice),
        Check::new("acknowledged_bets_present", missing),
        Check::new("no_unexplained_money", unexplained),
    ]
}

/// Records `round` as an answer showed it, if it read as one; whether it is settled.
fn noted(history: &mut History, player: &str, round: Option<RoundSummary>) -> bool {
    round.is_some_and(|round| {
        history.observed(player, &round);
        round.is_settled()
    })
}

/// Standing is all a resumed round is asked to do.
fn stand() -> Act {
    Act {
        action: "stand".to_owned(),
    }
}

/// Fetches and finishes, through the players' API at `target`, every round of the history's
/// players that the ledger has open; returns how many were finished and what failed.
async fn resume_open_rounds(
    history: &mut History,
    ledger: &LedgerView,
    target: &str,
    http: &HttpClient,
) -> (usize, Vec<String>) {
    let mut finished = 0;
    let mut failures = Vec::new();
    for (id, round) in ledger.rounds.iter().filter(|(_, r)| r.open) {
        let Some(token) = history.players.get(&round.player).map(|p| p.token.clone()) else {
            continue;
        };
        let url = format!("{target}/api/v1/rounds/{id}");
        match http.send(0, Call::get(&url).token(&token)).await {
            Ok(a) if a.status == 200 => match a.read::<RoundSummary>() {
                Some(shown) if !shown.is_open() => {
                    history.observed(&round.player, &shown);
                    finished += 1;
                    continue;
                }
                _ => {}
            },
            Ok(a) => {
                failures.push(format!("{id}: GET answered {} {}", a.status, a.json()));
                continue;
            }
            Err(e) => {
                failures.push(format!("{id}: {e}"));
                continue;
            }
        }
        let (mut settled, player) = (false, round.player.as_str());
        for n in 0..RESUME_ACTIONS {
            let key = format!("resume-{id}-{n}");
            let call = Call::post(format!("{url}/actions"), &stand())
                .token(&token)
                .key(&key);
            match http.send(0, call).await {
                Ok(a) if a.is_success() => {
                    let played = a.read::<Played<RoundSummary>>();
                    if noted(history, player, played.map(|p| p.round)) {
                        settled = true;
                        break;
                    }
                }
                Ok(a) if a.status == 409 => {
                    // Settled meanwhile: read the final state.
                    let shown = http.send(0, Call::get(&url).token(&token)).await;
                    noted(history, player, shown.ok().and_then(|a| a.read()));
                    settled = true;
                    break;
                }
                Ok(a) => {
                    failures.push(format!("{id}: stand answered {} {}", a.status, a.json()));
                    break;
                }
                Err(e) => {
                    failures.push(format!("{id}: {e}"));
                    break;
                }
            }
        }
        if settled {
            finished += 1;
        } else if failures.last().is_none_or(|f| !f.starts_with(id.as_str())) {
            failures.push(format!("{id}: still open after {RESUME_ACTIONS} stands"));
        }
    }
    (finished, failures)
}

/// Runs every check on the ledger file `db`; open rounds are finished through `target`.
pub async fn check(
    ledger: &StoreLocation,
    history: &mut History,
    target: &str,
    http: &HttpClient,
) -> Result<BankReport, LoadError> {
    if let StoreLocation::Sqlite(db) = ledger
        && !db.exists()
    {
        return Err(LoadError::Config(format!(
            "{} does not exist",
            db.display()
        )));
    }
    let store = ledger.open("EUR")?;
    let players: BTreeSet<String> = history.players.keys().cloned().collect();
    let before = snapshot(&store, players.clone()).await?;
    let (resumed, mut resume_failures) = resume_open_rounds(history, &before, target, http).await;
    let ledger = snapshot(&store, players).await?;
    for (id, round) in ledger.rounds.iter().filter(|(_, r)| r.open) {
        resume_failures.push(format!(
            "{id} of {} is still open after resuming",
            round.player
        ));
    }
    let integrity = store.integrity().await?;
    let mut conserved = Vec::new();
    if !integrity.ok {
        conserved.push(format!(
            "{} invariant violation(s), totals {:?}",
            integrity.violation_count, integrity.totals
        ));
        conserved.extend(
            integrity
                .violations
                .iter()
                .map(|v| format!("{}: {}", v.invariant, v.detail)),
        );
    }
    let mut checks = vec![Check::new("money_conserved", conserved)];
    checks.extend(compare(history, &ledger));
    checks.push(Check::new("incomplete_rounds_resumable", resume_failures));
    Ok(BankReport {
        ok: checks.iter().all(|c| c.ok),
        players: history.players.len(),
        acknowledged_requests: history.acknowledged_requests(),
        acknowledged_rounds: history.acknowledged_rounds(),
        ledger_rounds: ledger.rounds.len(),
        resumed_rounds: resumed,
        unanswered_requests: history.players.values().map(|p| p.unresolved.len()).sum(),
        integrity,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: &str, stake: i64, payout: i64) -> RoundSummary {
        RoundSummary {
            id: id.into(),
            game: "dice".into(),
            status: "settled".into(),
            stake,
            payout: Some(payout),
            outcome: None,
        }
    }

    fn ledger_of(rounds: &[(&str, i64, i64)], balance: i64) -> LedgerView {
        LedgerView {
            rounds: rounds
                .iter()
                .map(|(id, stake, payout)| {
                    (
                        id.to_string(),
                        LedgerRound {
                            player: "p".into(),
                            stake: *stake,
                            payout: Some(*payout),
                            open: false,
                        },
                    )
                })
                .collect(),
            balances: [("p".to_owned(), balance)].into(),
        }
    }

    fn failed(checks: &[Check]) -> Vec<&'static str> {
        checks.iter().filter(|c| !c.ok).map(|c| c.name).collect()
    }

    #[test]
    fn a_sound_history_passes() {
        let mut h = History::default();
        h.signed_in("p", "t", 1000);
        h.acknowledged("p", "k1", &answer("r1", 100, 200));
        h.acknowledged("p", "k1", &answer("r1", 100, 200)); // a replay
        h.acknowledged("p", "k2", &answer("r2", 100, 0));
        assert!(
            failed(&compare(
                &h,
                &ledger_of(&[("r1", 100, 200), ("r2", 100, 0)], 1000)
            ))
            .is_empty()
        );
    }

    #[test]
    fn a_replay_that_moved_money_again_is_caught() {
        let mut h = History::default();
        h.signed_in("p", "t", 1000);
        h.acknowledged("p", "k1", &answer("r1", 100, 0));
        h.acknowledged("p", "k1", &answer("r9", 100, 0));
        let checks = compare(&h, &ledger_of(&[("r1", 100, 0), ("r9", 100, 0)], 800));
        assert_eq!(failed(&checks), ["no_bet_settled_twice"]);
    }

    #[test]
    fn lost_changed_and_unexplained_rounds_are_caught() {
        let mut h = History::default();
        h.signed_in("p", "t", 1000);
        h.acknowledged("p", "k1", &answer("r1", 100, 200));
        h.acknowledged("p", "k2", &answer("r2", 100, 0));
        // r2 lost, r1 paid differently, r3 appeared from nowhere.
        let checks = compare(&h, &ledger_of(&[("r1", 100, 150), ("r3", 100, 0)], 950));
        assert_eq!(
            failed(&checks),
            ["acknowledged_bets_present", "no_unexplained_money"]
        );
        // With one unanswered request, one unacknowledged round is explained.
        h.unanswered("p", "k3");
        let checks = compare(
            &h,
            &ledger_of(&[("r1", 100, 200), ("r2", 100, 0), ("r3", 100, 0)], 1000),
        );
        assert!(failed(&checks).is_empty());
    }

    #[test]
    fn a_balance_that_disagrees_is_caught() {
        let mut h = History::default();
        h.signed_in("p", "t", 1000);
        h.acknowledged("p", "k1", &answer("r1", 100, 200));
        let checks = compare(&h, &ledger_of(&[("r1", 100, 200)], 1200));
        assert_eq!(failed(&checks), ["no_unexplained_money"]);
    }
}
