//! Property test: random sequences of sign-ins, bets on every game, blackjack actions, seed
//! rotations, idempotent replays, key reuse and operations that fail after moving money keep
//! every ledger invariant, and each player's balance equals an independent model built from
//! their rounds.

use std::collections::HashMap;
use std::sync::Arc;

use croupier_games::GameId;
use croupier_games::blackjack::Action;
use croupier_ledger::test_store::TestLedger;
use croupier_ledger::{Account, EntryKind, Idempotency, LedgerError, RoundStatus, Store, Transfer};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const PLAYERS: [&str; 3] = ["ann", "ben", "cat"];

#[derive(Debug, Clone)]
enum Step {
    Bet {
        player: usize,
        game: u8,
        stake: i64,
        target: u32,
    },
    Act {
        player: usize,
        action: u8,
    },
    Rotate {
        player: usize,
    },
    Replay {
        which: usize,
    },
    ReuseKey {
        which: usize,
    },
    FailAfterStake {
        player: usize,
        stake: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 0..4u8, prop_oneof![-20i64..200, 10i64..120_000], 0..10_000u32)
            .prop_map(|(player, game, stake, target)| Step::Bet { player, game, stake, target }),
        3 => (0..3usize, 0..3u8).prop_map(|(player, action)| Step::Act { player, action }),
        1 => (0..3usize).prop_map(|player| Step::Rotate { player }),
        2 => any::<usize>().prop_map(|which| Step::Replay { which }),
        1 => any::<usize>().prop_map(|which| Step::ReuseKey { which }),
        1 => (0..3usize, 1i64..500).prop_map(|(player, stake)| Step::FailAfterStake { player, stake }),
    ]
}

/// A request that moved (or tried to move) money under an idempotency key; kept to replay.
#[derive(Clone)]
enum Keyed {
    Bet {
        player: usize,
        game: GameId,
        stake: i64,
        bet: Value,
        round_id: String,
    },
    Act {
        player: usize,
        round_id: String,
        action: Action,
    },
}

impl Keyed {
    fn player(&self) -> usize {
        match self {
            Keyed::Bet { player, .. } | Keyed::Act { player, .. } => *player,
        }
    }

    async fn run(
        &self,
        store: &dyn Store,
        key: &str,
        fingerprint: &str,
    ) -> Result<croupier_ledger::Committed<Played>, RoundError> {
        let idem = Some(Idempotency {
            key: format!("{}:{key}", PLAYERS[self.player()]),
            fingerprint: fingerprint.to_owned(),
        });
        match self.clone() {
            Keyed::Bet {
                player,
                game,
                stake,
                bet,
                round_id,
            } => {
                let new = NewRound {
                    id: round_id,
                    player: PLAYERS[player].to_owned(),
                    stake,
                    bet: croupier_games::parse_bet(game, stake, bet).expect("validated before"),
                    node: "prop".into(),
                };
                store.transact(idem, move |tx| start_round(tx, &new)).await
            }
            Keyed::Act {
                player,
                round_id,
                action,
            } => {
                store
                    .transact(idem, move |tx| {
                        act(tx, PLAYERS[player], &round_id, action, "prop")
                    })
                    .await
            }
        }
    }
}

async fn balance(store: &dyn Store, player: usize) -> i64 {
    let account = Account::player(PLAYERS[player]);
    store.read(move |tx| tx.balance(&account)).await.unwrap()
}

async fn run_steps(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let ledger = TestLedger::new(dir.path()).unwrap();
    let store: Arc<dyn Store> = ledger.open().unwrap();
    for (i, name) in PLAYERS.iter().enumerate() {
        let name = name.to_string();
        store
            .transact(None, move |tx| sign_in(tx, &name, &format!("token-{i}")))
            .await
            .unwrap();
    }
    let mut keyed: Vec<(String, String, Keyed, Played)> = Vec::new();
    let mut open_rounds: HashMap<usize, Vec<String>> = HashMap::new();

    for (n, step) in steps.into_iter().enumerate() {
        let key = format!("k{n}");
        match step {
            Step::Bet {
                player,
                game,
                stake,
                target,
            } => {
                let game = [
                    GameId::Dice,
                    GameId::Roulette,
                    GameId::Slot,
                    GameId::Blackjack,
                ][game as usize];
                let bet = match game {
                    GameId::Dice => {
                        json!({"target": target, "direction": if target % 2 == 0 { "over" } else { "under" }})
                    }
                    GameId::Roulette => {
                        json!({"bets": [{"type": "straight", "numbers": [target % 37], "amount": stake}]})
                    }
                    _ => Value::Null,
                };
                if croupier_games::parse_bet(game, stake, bet.clone()).is_err() {
                    continue; // refused before it reaches the ledger
                }
                let request = Keyed::Bet {
                    player,
                    game,
                    stake,
                    bet,
                    round_id: format!("r{n}"),
                };
                let before = balance(&*store, player).await;
                match request.run(&*store, &key, &key).await {
                    Ok(committed) => {
                        let value = committed.value().clone();
                        if value.round.status == RoundStatus::Open {
                            open_rounds.entry(player).or_default().push(format!("r{n}"));
                        }
                        keyed.push((key.clone(), key, request, value));
                    }
                    Err(RoundError::Ledger(LedgerError::InsufficientFunds { .. })) => {
                        prop_assert_eq!(balance(&*store, player).await, before);
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("bet failed: {e}"))),
                }
            }
            Step::Act { player, action } => {
                let action = [Action::Hit, Action::Stand, Action::Double][action as usize];
                let round_id = open_rounds
                    .get(&player)
                    .and_then(|open| open.last().cloned())
                    .unwrap_or_else(|| "r-missing".into());
                let request = Keyed::Act {
                    player,
                    round_id,
                    action,
                };
                let before = balance(&*store, player).await;
                match request.run(&*store, &key, &key).await {
                    Ok(committed) => {
                        let value = committed.value().clone();
                        if value.round.status == RoundStatus::Settled
                            && let Some(open) = open_rounds.get_mut(&player)
                        {
                            open.pop();
                        }
                        keyed.push((key.clone(), key, request, value));
                    }
                    Err(_) => prop_assert_eq!(balance(&*store, player).await, before),
                }
            }
            Step::Rotate { player } => {
                let result = store
                    .transact(None, move |tx| rotate_seed(tx, PLAYERS[player], None))
                    .await;
                let has_open = open_rounds
                    .get(&player)
                    .is_some_and(|open| !open.is_empty());
                prop_assert_eq!(result.is_ok(), !has_open);
            }
            Step::Replay { which } if !keyed.is_empty() => {
                let (key, fingerprint, request, first) = keyed[which % keyed.len()].clone();
                let before = balance(&*store, request.player()).await;
                let again = request.run(&*store, &key, &fingerprint).await.unwrap();
                prop_assert!(again.is_replay());
                prop_assert_eq!(again.value(), &first);
                prop_assert_eq!(balance(&*store, request.player()).await, before);
            }
            Step::ReuseKey { which } if !keyed.is_empty() => {
                let (key, _, request, _) = keyed[which % keyed.len()].clone();
                let before = balance(&*store, request.player()).await;
                let reused = request.run(&*store, &key, "another request").await;
                prop_assert!(matches!(
                    reused,
                    Err(RoundError::Ledger(LedgerError::IdempotencyKeyReused))
                ));
                prop_assert_eq!(balance(&*store, request.player()).await, before);
            }
            Step::Replay { .. } | Step::ReuseKey { .. } => {}
            Step::FailAfterStake { player, stake } => {
                let before = balance(&*store, player).await;
                let failed = store
                    .transact(None, move |tx| {
                        tx.post(&Transfer {
                            kind: EntryKind::Stake,
                            round_id: Some(format!("doomed{n}")),
                            debit: Account::player(PLAYERS[player]),
                            credit: Account::InRound,
                            amount: stake,
                        })?;
                        Err::<(), _>(LedgerError::Conflict(
                            "the node failed after taking the stake".into(),
                        ))
                    })
                    .await;
                prop_assert!(failed.is_err());
                prop_assert_eq!(balance(&*store, player).await, before);
            }
        }
    }

    let report = store.integrity().await.unwrap();
    prop_assert!(report.ok, "{:#?}", report);
    for (player, &name) in PLAYERS.iter().enumerate() {
        let rounds = store
            .read(move |tx| tx.rounds(name, None, 10_000))
            .await
            .unwrap();
        let expected = STARTING_BALANCE
            + rounds
                .iter()
                .map(|r| match r.status {
                    RoundStatus::Settled => r.payout.unwrap() - r.stake,
                    RoundStatus::Open => -r.stake,
                })
                .sum::<i64>();
        prop_assert_eq!(balance(&*store, player).await, expected, "player {}", name);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_play_keeps_every_invariant(steps in proptest::collection::vec(step(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run_steps(steps))?;
    }
}
