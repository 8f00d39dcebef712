//! Dice: a roll from 0 to 9999; bet that it lands under or over a target. The payout is set so
//! that every target returns 99% (1% house edge), rounded down to the minor unit.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{BetError, FairRng, Outcome};

pub const OUTCOMES: u32 = 10_000;
/// Payout numerator: 99% of the outcome count.
const RETURN_NUMERATOR: i128 = 9_900;
const MIN_WIN_OUTCOMES: u32 = 100;
const MAX_WIN_OUTCOMES: u32 = 9_800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Under,
    Over,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiceBet {
    pub target: u32,
    pub direction: Direction,
}

impl DiceBet {
    pub fn parse(bet: &Value) -> Result<Self, BetError> {
        let parsed: DiceBet = serde_json::from_value(bet.clone()).map_err(|e| {
            BetError::Invalid(format!(
                "dice expects {{\"target\": 0..9999, \"direction\": \"under\"|\"over\"}}: {e}"
            ))
        })?;
        if parsed.target >= OUTCOMES {
            return Err(BetError::Invalid(format!(
                "target {} is outside 0..{}",
                parsed.target,
                OUTCOMES - 1
            )));
        }
        let winning = parsed.winning_outcomes();
        if !(MIN_WIN_OUTCOMES..=MAX_WIN_OUTCOMES).contains(&winning) {
            return Err(BetError::Invalid(format!(
                "win chance must be between 1% and 98%, this bet wins on {winning} of {OUTCOMES} rolls"
            )));
        }
        Ok(parsed)
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
            detail: json!({"roll": roll, "won": won}),
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
        assert!(DiceBet::parse(&json!({"target": 50, "direction": "under"})).is_err());
        assert!(DiceBet::parse(&json!({"target": 10000, "direction": "over"})).is_err());
        assert!(DiceBet::parse(&json!({"target": 5000, "direction": "sideways"})).is_err());
        assert!(DiceBet::parse(&json!({"target": -1, "direction": "over"})).is_err());
        assert!(DiceBet::parse(&json!({"target": 5000, "direction": "over"})).is_ok());
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
