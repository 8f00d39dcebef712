//! Dice: a roll from 0 to 9999; bet that it lands under or over a target. The payout is set so
//! that every target returns 99% (1% house edge), rounded down to the minor unit.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::{BetError, Detail, FairRng, Outcome};

pub const OUTCOMES: u32 = 10_000;
/// Payout numerator: 99% of the outcome count.
const RETURN_NUMERATOR: i128 = 9_900;
const MIN_WIN_OUTCOMES: u32 = 100;
const MAX_WIN_OUTCOMES: u32 = 9_800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Under,
    Over,
}

/// A dice bet as sent and stored. Its fields are read in this order (the order a refusal
/// lists them in) and written in alphabetical order, the stored and answered shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiceBet {
    pub target: u32,
    pub direction: Direction,
}

impl Serialize for DiceBet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bet = s.serialize_struct("DiceBet", 2)?;
        bet.serialize_field("direction", &self.direction)?;
        bet.serialize_field("target", &self.target)?;
        bet.end()
    }
}

/// A roll and whether it won: a dice round's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiceRoll {
    pub roll: u32,
    pub won: bool,
}

impl DiceBet {
    pub fn from_json(bet: serde_json::Value) -> Result<Self, BetError> {
        let refused = |e: &dyn std::fmt::Display| {
            BetError::Invalid(format!(
                "dice expects {{\"target\": 0..9999, \"direction\": \"under\"|\"over\"}}: {e}"
            ))
        };
        crate::bet::not_an_array(&bet).map_err(|e| refused(&e))?;
        serde_json::from_value(bet).map_err(|e| refused(&e))
    }

    /// Checks the target and the win chance it gives.
    pub fn validate(&self) -> Result<(), BetError> {
        if self.target >= OUTCOMES {
            return Err(BetError::Invalid(format!(
                "target {} is outside 0..{}",
                self.target,
                OUTCOMES - 1
            )));
        }
        let winning = self.winning_outcomes();
        if !(MIN_WIN_OUTCOMES..=MAX_WIN_OUTCOMES).contains(&winning) {
            return Err(BetError::Invalid(format!(
                "win chance must be between 1% and 98%, this bet wins on {winning} of {OUTCOMES} rolls"
            )));
        }
        Ok(())
    }

    /// How many of the 10 000 rolls win.
    pub fn winning_outcomes(&self) -> u32 {
        match self.direction {
            Direction::Under => self.target,
            Direction::Over => OUTCOMES - 1 - self.target,
        }
    }

    pub fn wins(&self, roll: u32) -> bool {
        match self.direction {
            Direction::Under => roll < self.target,
            Direction::Over => roll > self.target,
        }
    }

    /// Total returned on a win, stake included.
    pub fn win_payout(&self, stake: i64) -> i64 {
        let paid = stake as i128 * RETURN_NUMERATOR / self.winning_outcomes() as i128;
        i64::try_from(paid).expect("stake limits keep dice payouts within i64")
    }

    pub fn play(&self, stake: i64, rng: &mut FairRng) -> Outcome {
        let roll = rng.below(OUTCOMES);
        let won = self.wins(roll);
        Outcome {
            detail: Detail::Dice(DiceRoll { roll, won }),
            payout: Some(if won { self.win_payout(stake) } else { 0 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rtp_is_at_most_99_percent_and_close_to_it() {
        let stake = 1_000_000;
        for target in [100, 2500, 5000, 9800] {
            let bet = DiceBet {
                target,
                direction: Direction::Under,
            };
            let returned: i128 = bet.winning_outcomes() as i128 * bet.win_payout(stake) as i128;
            let rtp = returned as f64 / (stake as f64 * OUTCOMES as f64);
            assert!(rtp <= 0.99 && rtp > 0.9899, "target {target}: {rtp}");
        }
    }

    #[test]
    fn rejects_bad_targets() {
        let bet = |target, direction| DiceBet { target, direction }.validate();
        assert!(bet(50, Direction::Under).is_err());
        assert!(bet(10000, Direction::Over).is_err());
        assert!(bet(9900, Direction::Over).is_err());
        assert!(bet(5000, Direction::Over).is_ok());
        for shape in [
            r#"{"target": 5000, "direction": "sideways"}"#,
            r#"{"target": -1, "direction": "over"}"#,
        ] {
            let sent = serde_json::from_str(shape).unwrap();
            assert!(DiceBet::from_json(sent).is_err(), "{shape}");
        }
    }

    #[test]
    fn simulated_rtp_matches() {
        let bet = DiceBet {
            target: 5000,
            direction: Direction::Over,
        };
        let mut rng = FairRng::new("sim", "sim", 0);
        let rounds = 200_000;
        let stake = 100;
        let paid: i64 = (0..rounds)
            .map(|_| bet.play(stake, &mut rng).payout.unwrap())
            .sum();
        let rtp = paid as f64 / (rounds * stake) as f64;
        assert!((rtp - 0.99).abs() < 0.015, "{rtp}");
    }
}
