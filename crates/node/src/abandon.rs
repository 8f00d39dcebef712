//! Rounds that never hang. A multi-step round (a blackjack hand) left untouched longer than its
//! game's idle limit (default 24 h, per game, down to seconds for tests) is finished by the
//! nodes: as the rules would for a player who stands, or refunded, whichever pays the player
//! more (a push or a win stands, a loss is refunded), as Ontario's AGCO standard 4.21 asks.
//! Every node sweeps; a round is closed inside one write transaction that first checks it is
//! still open and still idle, so several nodes closing the same round close it once, and a
//! player acting at the last moment wins over the sweep. The settlement is the round's usual
//! `settle` (and `payout`) journal entries; the round records why (`closed_by`), which its
//! views, the player's round history and game recall show.

use std::collections::HashMap;
use std::time::Duration;

use croupier_games::FairRng;
use croupier_games::blackjack::Action;
use croupier_ledger::{LedgerError, LedgerTx, RoundStatus};
use serde::{Deserialize, Serialize};

use crate::rounds::{HandState, RoundError, RoundState, settle};
use crate::state::AppState;

/// The default idle limit of a round: a day.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(24 * 3600);
/// Rounds closed per sweep at most (the next sweep takes the rest).
const SWEEP_BATCH: u32 = 100;

/// How long a round may stay untouched, per game.
#[derive(Debug, Clone)]
pub struct AbandonPolicy {
    pub idle: Duration,
    pub per_game: HashMap<String, Duration>,
}

impl Default for AbandonPolicy {
    fn default() -> Self {
        AbandonPolicy {
            idle: DEFAULT_IDLE,
            per_game: HashMap::new(),
        }
    }
}

impl AbandonPolicy {
    pub fn idle_for(&self, game: &str) -> Duration {
        self.per_game.get(game).copied().unwrap_or(self.idle)
    }

    fn shortest(&self) -> Duration {
        self.per_game
            .values()
            .copied()
            .fold(self.idle, Duration::min)
    }

    /// How often a node sweeps: a quarter of the shortest limit, between 1 s and 1 min.
    pub fn sweep_every(&self) -> Duration {
        (self.shortest() / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// How an abandoned round was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettledAs {
    /// Finished as the rules would for a player who stands.
    Stand,
    /// The stakes given back.
    Refund,
}

/// Why and how the node closed a round (kept in the round's state as `closed_by`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    /// Always "abandoned": the player left the round untouched past its idle limit.
    pub reason: String,
    pub settled_as: SettledAs,
    /// What the player got back, stakes included.
    pub payout: i64,
    pub idle_ms: i64,
    pub node: String,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Closes round `id` if it is still open and idle for `idle_ms`; `None` when there is nothing
/// to do (settled meanwhile, or touched again).
pub fn close_if_abandoned(
    tx: &mut dyn LedgerTx,
    id: &str,
    idle_ms: i64,
    node: &str,
) -> Result<Option<Closure>, RoundError> {
    let Some(mut round) = tx.round(id)? else {
        return Ok(None);
    };
    let now = tx.now_ms();
    if round.status != RoundStatus::Open || now - round.updated_ms < idle_ms {
        return Ok(None);
    }
    let seed = tx.seed(round.seed_id)?.ok_or_else(|| {
        LedgerError::Storage(format!("seed {} of round {id} is missing", round.seed_id))
    })?;
    let HandState { hand, .. } = RoundState::of(&round)?.into_hand(&round)?;
    let mut stood = hand.clone();
    stood.act(
        Action::Stand,
        &mut FairRng::new(&seed.server_seed, &seed.client_seed, round.nonce),
    )?;
    let staked = hand.total_stake();
    let stand_pays = stood.payout().unwrap_or(0);
    let (settled_as, payout, kept) = if stand_pays >= staked {
        (SettledAs::Stand, stand_pays, stood)
    } else {
        (SettledAs::Refund, staked, hand)
    };
    let closure = Closure {
        reason: "abandoned".to_owned(),
        settled_as,
        payout,
        idle_ms: now - round.updated_ms,
        node: node.to_owned(),
    };
    let closed = HandState {
        hand: kept,
        closed_by: Some(closure.clone()),
    };
    round.state = RoundState::Hand(closed).to_text();
    round.node = node.to_owned();
    round.updated_ms = now;
    settle(tx, &mut round, payout)?;
    tx.update_round(&round)?;
    Ok(Some(closure))
}

/// One sweep: the idle open rounds, each closed in its own transaction.
async fn sweep(state: &AppState) -> Result<usize, RoundError> {
    let policy = state.abandon.clone();
    let now = crate::extract::now_ms();
    let oldest_allowed = now - millis(policy.shortest());
    let candidates = state
        .store
        .read(move |tx| tx.idle_open_rounds(oldest_allowed, SWEEP_BATCH))
        .await?;
    let mut closed = 0;
    for round in candidates {
        let idle_ms = millis(policy.idle_for(&round.game));
        if now - round.updated_ms < idle_ms {
            continue; // a game with a longer limit: not yet
        }
        let (id, node) = (round.id.clone(), state.node_id.clone());
        let committed = state
            .store
            .transact(None, move |tx| close_if_abandoned(tx, &id, idle_ms, &node))
            .await?;
        if let Some(closure) = committed.into_value() {
            closed += 1;
            state
                .metrics
                .record_round(&round.game, 0, Some(closure.payout));
            tracing::info!(
                round = %round.id, player = %round.player, game = %round.game,
                settled_as = ?closure.settled_as, idle_ms = closure.idle_ms,
                "abandoned round closed"
            );
        }
    }
    Ok(closed)
}

/// Sweeps every `AbandonPolicy::sweep_every` while the node runs.
pub fn spawn_sweeper(state: AppState) {
    let every = state.abandon.sweep_every();
    croupier_vitals::background::spawn_every("abandoned-round sweep", every, move || {
        let state = state.clone();
        async move {
            if let Err(e) = sweep(&state).await {
                tracing::warn!(error = %e, "abandoned-round sweep failed; trying again next time");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use croupier_games::GameId;
    use croupier_ledger::Store;
    use croupier_ledger::test_store::TestLedger;

    use super::*;
    use crate::rounds::{NewRound, Verification, rotate_seed, sign_in, start_round};

    async fn deal(store: &dyn Store, n: usize) -> croupier_ledger::Round {
        let new = NewRound {
            id: format!("r{n}"),
            player: "ann".into(),
            stake: 100,
            bet: croupier_games::parse_bet(GameId::Blackjack, 100, serde_json::Value::Null)
                .unwrap(),
            node: "n".into(),
        };
        store
            .transact(None, move |tx| start_round(tx, &new))
            .await
            .unwrap();
        let id = format!("r{n}");
        store.read(move |tx| tx.round(&id)).await.unwrap().unwrap()
    }

    async fn close(store: &dyn Store, id: &str, idle_ms: i64) -> Option<Closure> {
        let id = id.to_owned();
        let closed = store.transact(None, move |tx| close_if_abandoned(tx, &id, idle_ms, "n"));
        closed.await.unwrap().into_value()
    }

    /// Open hands closed by the policy: never less than the stake back, a win or a push as
    /// the stand, a loss refunded; once only; each verifiable once the seed is revealed.
    async fn both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = TestLedger::new(dir.path()).unwrap();
        let store: Arc<dyn Store> = ledger.open().unwrap();
        store
            .transact(None, |tx| sign_in(tx, "ann", "token"))
            .await
            .unwrap();
        let mut closed = Vec::new();
        for n in 0..200 {
            let round = deal(&*store, n).await;
            if round.status != RoundStatus::Open {
                continue; // a natural settles at the deal
            }
            assert_eq!(
                close(&*store, &round.id, 3_600_000).await,
                None,
                "not idle yet"
            );
            let closure = close(&*store, &round.id, 0).await.unwrap();
            assert_eq!(close(&*store, &round.id, 0).await, None, "closed once");
            closed.push((round.id, closure.settled_as));
            let kinds: Vec<SettledAs> = closed.iter().map(|c| c.1).collect();
            if kinds.contains(&SettledAs::Stand) && kinds.contains(&SettledAs::Refund) {
                break;
            }
        }
        let kinds: Vec<SettledAs> = closed.iter().map(|c| c.1).collect();
        assert!(kinds.contains(&SettledAs::Stand) && kinds.contains(&SettledAs::Refund));
        store
            .transact(None, |tx| rotate_seed(tx, "ann", None))
            .await
            .unwrap();
        for (id, settled_as) in closed {
            let (round, seed) = store
                .read(move |tx| {
                    let round = tx.round(&id)?.unwrap();
                    let seed = tx.seed(round.seed_id)?.unwrap();
                    Ok((round, seed))
                })
                .await
                .unwrap();
            let payout = round.payout.unwrap();
            assert!(payout >= round.stake, "{round:?}");
            if settled_as == SettledAs::Refund {
                assert_eq!(payout, round.stake);
            }
            let verified = Verification::of(&round, &seed).unwrap();
            assert_eq!(verified.matches, Some(true), "{verified:?}");
        }
        let report = store.integrity().await.unwrap();
        assert!(report.ok, "{report:#?}");
    }

    #[test]
    fn abandoned_hands_settle_the_better_way_once_and_verify() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(both_ways());
    }
}
