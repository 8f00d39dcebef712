//! A round's stored documents, typed: the bet it was played with and its state, which is the
//! outcome of a single-step game or a blackjack hand (with why the node closed it, if it did).
//! They are read from and written to the round's `bet` and `state` columns in the exact JSON
//! earlier builds wrote, so every round already in a ledger reads, replays and verifies the
//! same; nothing past this module sees that JSON.

use croupier_games::blackjack::Hand;
use croupier_games::{BetRequest, Detail, GameId};
use croupier_ledger::Round;
use serde::{Deserialize, Serialize};

use super::RoundError;
use crate::abandon::Closure;

/// A blackjack round's state: the hand, and the node's closure once it closed an abandoned one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandState {
    #[serde(flatten)]
    pub hand: Hand,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<Closure>,
}

/// What a round's `state` column holds.
#[derive(Debug, Clone, PartialEq)]
pub enum RoundState {
    /// A single-step game's outcome.
    Outcome(Detail),
    /// A blackjack hand, in play or finished.
    Hand(HandState),
}

impl RoundState {
    /// A fresh hand's state.
    pub fn hand(hand: Hand) -> RoundState {
        RoundState::Hand(HandState {
            hand,
            closed_by: None,
        })
    }

    /// Reads `round`'s state.
    pub fn of(round: &Round) -> Result<RoundState, RoundError> {
        let unreadable = |e: serde_json::Error| RoundError::unreadable(round, "state", e);
        Ok(match game(round)? {
            GameId::Blackjack => {
                RoundState::Hand(serde_json::from_str(&round.state).map_err(unreadable)?)
            }
            game => RoundState::Outcome(Detail::from_text(game, &round.state).map_err(unreadable)?),
        })
    }

    /// The state as its column stores it. A hand the node closed was first written with every
    /// key sorted (it went through an untyped map), so it still is.
    pub fn to_text(&self) -> String {
        let text = match self {
            RoundState::Outcome(detail) => return detail.to_text(),
            RoundState::Hand(state) if state.closed_by.is_some() => {
                serde_json::to_value(state).map(|sorted| sorted.to_string())
            }
            RoundState::Hand(state) => serde_json::to_string(&state.hand),
        };
        text.expect("a round's state always serializes")
    }

    /// What the player sees: the outcome, or the hand with the dealer's hole card hidden.
    pub fn public(&self) -> Detail {
        match self {
            RoundState::Outcome(detail) => detail.clone(),
            RoundState::Hand(state) => state.hand.outcome().detail,
        }
    }

    /// The node's closure of an abandoned round, if it closed this one.
    pub fn closure(&self) -> Option<&Closure> {
        match self {
            RoundState::Hand(state) => state.closed_by.as_ref(),
            RoundState::Outcome(_) => None,
        }
    }

    /// The hand of a blackjack round; any other round has none to act on.
    pub fn into_hand(self, round: &Round) -> Result<HandState, RoundError> {
        match self {
            RoundState::Hand(state) => Ok(state),
            RoundState::Outcome(_) => Err(RoundError::NotAHand(round.id.clone())),
        }
    }
}

/// The game `round` was played at.
fn game(round: &Round) -> Result<GameId, RoundError> {
    Ok(round.game.parse()?)
}

/// The bet `round` was played with.
pub fn bet(round: &Round) -> Result<BetRequest, RoundError> {
    Ok(BetRequest::from_text(game(round)?, &round.bet)?)
}
