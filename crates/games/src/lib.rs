//! Croupier's games: pure, deterministic functions from a bet and a provably fair random
//! stream to an outcome and a payout. Nothing here touches money or storage: the node moves
//! the money through the ledger; this crate only says what the outcome is and what it pays.
#![forbid(unsafe_code)]

pub mod blackjack;
pub mod catalog;
pub mod dice;
pub mod error;
pub mod fair;
pub mod roulette;
pub mod slot;

pub use catalog::{GameId, GameInfo, catalog};
pub use error::BetError;
pub use fair::{FairRng, server_seed_hash};

use serde_json::Value;

/// A validated single-step bet, ready to be played.
#[derive(Debug, Clone, PartialEq)]
pub enum Bet {
    Dice(dice::DiceBet),
    Roulette(roulette::RouletteBet),
    Slot,
    Blackjack,
}

/// The result of playing a step of a round.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// What happened, for the player and for verification (roll, pocket, grid, cards…).
    pub detail: Value,
    /// Total paid back to the player (stake included) once the round is over; `None` while a
    /// multi-step round still waits for the player.
    pub payout: Option<i64>,
}

/// Parses and validates the game-specific part of a bet for `stake` minor units.
pub fn parse_bet(game: GameId, stake: i64, bet: &Value) -> Result<Bet, BetError> {
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
    match game {
        GameId::Dice => Ok(Bet::Dice(dice::DiceBet::parse(bet)?)),
        GameId::Roulette => Ok(Bet::Roulette(roulette::RouletteBet::parse(bet, stake)?)),
        GameId::Slot => {
            slot::check_stake(stake)?;
            Ok(Bet::Slot)
        }
        GameId::Blackjack => Ok(Bet::Blackjack),
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
    game: GameId,
    stake: i64,
    bet: &Value,
    actions: &[blackjack::Action],
    server_seed: &str,
    client_seed: &str,
    nonce: u64,
) -> Result<Outcome, BetError> {
    let fresh = || FairRng::new(server_seed, client_seed, nonce);
    if game == GameId::Blackjack {
        let mut hand = blackjack::Hand::deal(stake, &mut fresh());
        for &action in actions {
            hand.act(action, &mut fresh())?;
        }
        return Ok(hand.outcome());
    }
    let parsed = parse_bet(game, stake, bet)?;
    Ok(play(&parsed, stake, &mut fresh()))
}
