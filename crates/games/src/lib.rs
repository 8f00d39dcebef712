//! Croupier's games: pure, deterministic functions from a bet and a provably fair random
//! stream to an outcome and a payout. Nothing here touches money or storage: the node moves
//! the money through the ledger; this crate only says what the outcome is and what it pays.
//! Bets and outcomes are typed (`BetRequest`, `Detail`); JSON is only what they are read from
//! and written as, in the exact shapes the ledger has always stored.
#![forbid(unsafe_code)]

pub mod bet;
pub mod blackjack;
pub mod catalog;
pub mod dice;
pub mod error;
pub mod fair;
pub mod outcome;
pub mod roulette;
pub mod slot;

pub use bet::{BetRequest, Unused};
pub use catalog::{GameId, GameInfo, catalog};
pub use error::BetError;
pub use fair::{FairRng, server_seed_hash};
pub use outcome::{Detail, Outcome};

/// A validated single-step bet, ready to be played.
#[derive(Debug, Clone, PartialEq)]
pub enum Bet {
    Dice(dice::DiceBet),
    Roulette(roulette::RouletteBet),
    Slot,
    Blackjack,
}

/// Refuses a stake outside `game`'s table limits.
fn check_limits(game: GameId, stake: i64) -> Result<(), BetError> {
    let limits = game.limits();
    if stake < limits.min_stake {
        return Err(BetError::StakeBelowMin {
            stake,
            min: limits.min_stake,
        });
    }
    if stake > limits.max_stake {
        return Err(BetError::StakeAboveMax {
            stake,
            max: limits.max_stake,
        });
    }
    Ok(())
}

/// Reads and checks the bet a player sent (JSON, at the edge) for `stake` minor units: the
/// table limits first, then the bet's shape, then the game's rules.
pub fn parse_bet(game: GameId, stake: i64, bet: serde_json::Value) -> Result<BetRequest, BetError> {
    check_limits(game, stake)?;
    let request = BetRequest::from_json(game, bet)?;
    validate(stake, &request)?;
    Ok(request)
}

/// Checks a bet against the table limits and its game's rules, ready to play.
pub fn validate(stake: i64, bet: &BetRequest) -> Result<Bet, BetError> {
    check_limits(bet.game(), stake)?;
    match bet {
        BetRequest::Dice(dice_bet) => {
            dice_bet.validate()?;
            Ok(Bet::Dice(*dice_bet))
        }
        BetRequest::Roulette(request) => Ok(Bet::Roulette(request.validate(stake)?)),
        BetRequest::Slot(_) => {
            slot::check_stake(stake)?;
            Ok(Bet::Slot)
        }
        BetRequest::Blackjack(_) => Ok(Bet::Blackjack),
    }
}

/// Plays the first (for single-step games, the only) step of a round.
pub fn play(bet: &Bet, stake: i64, rng: &mut FairRng) -> Outcome {
    match bet {
        Bet::Dice(dice_bet) => dice_bet.play(stake, rng),
        Bet::Roulette(roulette_bet) => roulette_bet.play(rng),
        Bet::Slot => slot::spin(stake, rng),
        Bet::Blackjack => blackjack::Hand::deal(stake, rng).outcome(),
    }
}

/// Recomputes a round from its revealed server seed, client seed, nonce, bet and (for
/// blackjack) the actions taken: the outcome must equal what was recorded.
pub fn replay(
    stake: i64,
    bet: &BetRequest,
    actions: &[blackjack::Action],
    server_seed: &str,
    client_seed: &str,
    nonce: u64,
) -> Result<Outcome, BetError> {
    let fresh = || FairRng::new(server_seed, client_seed, nonce);
    if bet.game() == GameId::Blackjack {
        let mut hand = blackjack::Hand::deal(stake, &mut fresh());
        for &action in actions {
            hand.act(action, &mut fresh())?;
        }
        return Ok(hand.outcome());
    }
    let parsed = validate(stake, bet)?;
    Ok(play(&parsed, stake, &mut fresh()))
}
