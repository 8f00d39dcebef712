//! What a round's step produced: each game's typed outcome (`Detail`) and the payout. The
//! node stores a single-step round's detail in the round's `state` column and answers it as the
//! round's `outcome`, so each detail writes, and reads back, the exact JSON earlier builds did.

use serde::Serialize;

use crate::GameId;
use crate::blackjack::HandView;
use crate::dice::DiceRoll;
use crate::roulette::RouletteSpin;
use crate::slot::SlotSpin;

/// One game's outcome detail: what happened, for the player and for verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    Dice(DiceRoll),
    Roulette(RouletteSpin),
    Slot(SlotSpin),
    Blackjack(HandView),
}

impl Detail {
    /// Reads a detail of `game` back from its JSON text (a stored state, an answered outcome).
    pub fn from_text(game: GameId, text: &str) -> serde_json::Result<Detail> {
        Ok(match game {
            GameId::Dice => Detail::Dice(serde_json::from_str(text)?),
            GameId::Roulette => Detail::Roulette(serde_json::from_str(text)?),
            GameId::Slot => Detail::Slot(serde_json::from_str(text)?),
            GameId::Blackjack => Detail::Blackjack(serde_json::from_str(text)?),
        })
    }

    /// The detail as its JSON text, as a single-step round's `state` column stores it.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("an outcome always serializes")
    }
}

/// The result of playing a step of a round.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// What happened (roll, pocket, grid, cards…).
    pub detail: Detail,
    /// Total paid back to the player (stake included) once the round is over; `None` while a
    /// multi-step round still waits for the player.
    pub payout: Option<i64>,
}
