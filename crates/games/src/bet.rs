//! The bet as a player sends it and as a round stores it: one typed request per game. This is
//! where a bet stops being JSON; the player API's body and the ledger's `bet` column hand it
//! in, and everything past here works on these types. Each writes back the exact document it
//! was read from, so a round shows the bet it was played with and stored rounds read the same.

use serde::Serialize;
use serde_json::value::{RawValue, to_raw_value};

use crate::dice::DiceBet;
use crate::roulette::RouletteRequest;
use crate::{BetError, GameId};

/// A bet for one game, before the game's rules are checked (`crate::validate`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BetRequest {
    Dice(DiceBet),
    Roulette(RouletteRequest),
    Slot(Unused),
    Blackjack(Unused),
}

/// What a player sent as the bet of a game that takes none (slot, blackjack): ignored by the
/// game and kept as sent (normally `null`), since the round shows the bet it was played with.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Unused(Box<RawValue>);

impl PartialEq for Unused {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Unused {
    fn from_json(bet: &serde_json::Value) -> Result<Unused, BetError> {
        to_raw_value(bet).map(Unused).map_err(not_json)
    }

    /// Keeps the text itself: read into numbers and written again, a float may not come back
    /// digit for digit.
    fn from_text(text: &str) -> Result<Unused, BetError> {
        serde_json::from_str(text).map(Unused).map_err(not_json)
    }
}

fn not_json(e: serde_json::Error) -> BetError {
    BetError::Invalid(format!("the bet is not JSON: {e}"))
}

/// Refuses a JSON array where a bet's object belongs. Serde reads a struct from an array too
/// (its fields in declaration order), so `[100, "under"]` would be a dice bet, played and
/// stored as `{"direction":"under","target":100}`: not the bet as sent, and not the API.
/// Every typed bet (and each roulette chip) is checked with this before serde reads it.
pub(crate) fn not_an_array(value: &serde_json::Value) -> Result<(), String> {
    match value {
        serde_json::Value::Array(_) => Err("invalid type: array, expected an object".to_owned()),
        _ => Ok(()),
    }
}

impl BetRequest {
    /// Reads the bet a player sent for `game`; the game's rules are checked later.
    pub fn from_json(game: GameId, bet: serde_json::Value) -> Result<BetRequest, BetError> {
        Ok(match game {
            GameId::Dice => BetRequest::Dice(DiceBet::from_json(bet)?),
            GameId::Roulette => BetRequest::Roulette(RouletteRequest::from_json(bet)?),
            GameId::Slot => BetRequest::Slot(Unused::from_json(&bet)?),
            GameId::Blackjack => BetRequest::Blackjack(Unused::from_json(&bet)?),
        })
    }

    /// Reads a bet back from its JSON text: a round's `bet` column, or a bet typed in by hand.
    pub fn from_text(game: GameId, text: &str) -> Result<BetRequest, BetError> {
        match game {
            GameId::Slot => Ok(BetRequest::Slot(Unused::from_text(text)?)),
            GameId::Blackjack => Ok(BetRequest::Blackjack(Unused::from_text(text)?)),
            GameId::Dice | GameId::Roulette => {
                BetRequest::from_json(game, serde_json::from_str(text).map_err(not_json)?)
            }
        }
    }

    pub fn game(&self) -> GameId {
        match self {
            BetRequest::Dice(_) => GameId::Dice,
            BetRequest::Roulette(_) => GameId::Roulette,
            BetRequest::Slot(_) => GameId::Slot,
            BetRequest::Blackjack(_) => GameId::Blackjack,
        }
    }

    /// The bet as its JSON text, as the `bet` column stores it.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("a bet always serializes")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A stored bet reads back and writes out to the same text, whatever the game.
    #[test]
    fn stored_bets_round_trip_byte_for_byte() {
        let stored = [
            (GameId::Dice, r#"{"direction":"over","target":5000}"#),
            (
                GameId::Roulette,
                r#"{"bets":[{"amount":40,"numbers":[20,17],"type":"split"},{"amount":30,"type":"dozen","which":2},{"amount":20,"type":"red","which":null},{"amount":10,"numbers":[],"type":"red"}]}"#,
            ),
            (GameId::Slot, "null"),
            (GameId::Slot, r#"{"lines":10,"note":["a",1.5]}"#),
            (GameId::Blackjack, "null"),
        ];
        for (game, text) in stored {
            let bet = BetRequest::from_text(game, text).unwrap();
            assert_eq!(bet.game(), game);
            assert_eq!(bet.to_text(), text);
        }
    }

    /// Found by `tests/fuzz.rs`: a dice bet sent as `[100, "under"]` was played.
    #[test]
    fn a_bet_or_a_chip_sent_as_an_array_is_refused() {
        let arrays = [
            (GameId::Dice, json!([100, "under"])),
            (GameId::Roulette, json!([[{"type": "red", "amount": 10}]])),
            (GameId::Roulette, json!({"bets": [["red", [], null, 10]]})),
            (
                GameId::Roulette,
                json!({"bets": [{"type": "red", "amount": 10}, ["red", [], null, 10]]}),
            ),
        ];
        for (game, bet) in arrays {
            match BetRequest::from_json(game, bet.clone()) {
                Err(BetError::Invalid(why)) => assert!(why.contains("array"), "{bet}: {why}"),
                other => panic!("{bet} was read as {other:?}"),
            }
        }
        let chip = json!({"bets": [{"type": "red", "amount": 10}]});
        assert!(BetRequest::from_json(GameId::Roulette, chip).is_ok());
    }

    #[test]
    fn a_bet_as_sent_is_written_in_the_stored_shape() {
        let sent = json!({"direction": "under", "target": 2500});
        let bet = BetRequest::from_json(GameId::Dice, sent.clone()).unwrap();
        assert_eq!(bet.to_text(), sent.to_string());
        let ignored = json!({"z": 1, "a": [true, null]});
        let bet = BetRequest::from_json(GameId::Slot, ignored.clone()).unwrap();
        assert_eq!(bet.to_text(), ignored.to_string());
    }
}
