//! European roulette: one zero, 37 pockets. A round holds one or more bets on one spin; every
//! bet covering k numbers returns 36/k times its amount, so each pays 36/37.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{BetError, Detail, FairRng, Outcome};

pub const POCKETS: u32 = 37;
const MAX_BETS_PER_SPIN: usize = 50;
const RED: [u8; 18] = [
    1, 3, 5, 7, 9, 12, 14, 16, 18, 19, 21, 23, 25, 27, 30, 32, 34, 36,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetKind {
    Straight,
    Split,
    Street,
    Trio,
    Corner,
    FirstFour,
    SixLine,
    Dozen,
    Column,
    Red,
    Black,
    Odd,
    Even,
    Low,
    High,
}

/// One bet of a spin as sent and stored. Fields are read in this order (the order a refusal
/// lists them in) and written in alphabetical order, the stored and answered shape; an
/// optional field is written back only if it was sent (`which` even when sent as `null`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "struct RawBet")]
pub struct Chip {
    #[serde(rename = "type")]
    pub kind: BetKind,
    #[serde(default, deserialize_with = "sent")]
    pub numbers: Option<Vec<u8>>,
    /// For dozen and column: 1, 2 or 3.
    #[serde(default, deserialize_with = "sent")]
    pub which: Option<Option<u8>>,
    pub amount: i64,
}

/// A field that was sent, read as its own type (so `numbers: null` is still refused).
fn sent<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl Serialize for Chip {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut chip = s.serialize_struct("Chip", 4)?;
        chip.serialize_field("amount", &self.amount)?;
        match &self.numbers {
            Some(numbers) => chip.serialize_field("numbers", numbers)?,
            None => chip.skip_field("numbers")?,
        }
        chip.serialize_field("type", &self.kind)?;
        match &self.which {
            Some(which) => chip.serialize_field("which", which)?,
            None => chip.skip_field("which")?,
        }
        chip.end()
    }
}

/// A roulette round's bet as sent and stored: the bets on one spin. (This and `Chip` keep
/// the names a refusal has always quoted: "expected struct RawBet".)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "struct RawRouletteBet")]
pub struct RouletteRequest {
    pub bets: Vec<Chip>,
}

/// The colour of a pocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Green,
    Red,
    Black,
}

/// Where the ball landed: a roulette round's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouletteSpin {
    pub colour: Colour,
    pub pocket: u8,
}

/// One validated bet: the numbers it covers and its amount.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedBet {
    pub kind: BetKind,
    pub covered: Vec<u8>,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouletteBet {
    pub bets: Vec<PlacedBet>,
}

fn is_red(n: u8) -> bool {
    RED.contains(&n)
}

fn sorted(mut v: Vec<u8>) -> Vec<u8> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Every valid set of numbers for an inside bet kind.
fn inside_sets(kind: BetKind) -> Vec<Vec<u8>> {
    match kind {
        BetKind::Straight => (0..=36).map(|n| vec![n]).collect(),
        BetKind::Split => {
            let mut sets = vec![vec![0, 1], vec![0, 2], vec![0, 3]];
            for n in 1..=36u8 {
                if n % 3 != 0 {
                    sets.push(vec![n, n + 1]);
                }
                if n <= 33 {
                    sets.push(vec![n, n + 3]);
                }
            }
            sets
        }
        BetKind::Street => (0..12u8)
            .map(|r| (1..=3).map(|c| r * 3 + c).collect())
            .collect(),
        BetKind::Trio => vec![vec![0, 1, 2], vec![0, 2, 3]],
        BetKind::Corner => (1..=32u8)
            .filter(|n| n % 3 != 0)
            .map(|n| vec![n, n + 1, n + 3, n + 4])
            .collect(),
        BetKind::FirstFour => vec![vec![0, 1, 2, 3]],
        BetKind::SixLine => (0..11u8)
            .map(|r| (1..=6).map(|c| r * 3 + c).collect())
            .collect(),
        _ => Vec::new(),
    }
}

fn outside_set(kind: BetKind, which: Option<u8>) -> Result<Vec<u8>, BetError> {
    let all = 1..=36u8;
    let set: Vec<u8> = match kind {
        BetKind::Red => all.filter(|&n| is_red(n)).collect(),
        BetKind::Black => all.filter(|&n| !is_red(n)).collect(),
        BetKind::Odd => all.filter(|n| n % 2 == 1).collect(),
        BetKind::Even => all.filter(|n| n % 2 == 0).collect(),
        BetKind::Low => (1..=18).collect(),
        BetKind::High => (19..=36).collect(),
        BetKind::Dozen | BetKind::Column => {
            let w = match which {
                Some(w @ 1..=3) => w,
                _ => {
                    return Err(BetError::Invalid(format!(
                        "{kind:?} bets need \"which\": 1, 2 or 3"
                    )));
                }
            };
            if kind == BetKind::Dozen {
                ((w - 1) * 12 + 1..=w * 12).collect()
            } else {
                all.filter(|n| (n - 1) % 3 == w - 1).collect()
            }
        }
        _ => unreachable!("inside kinds are handled by inside_sets"),
    };
    Ok(set)
}

impl RouletteRequest {
    pub fn from_json(bet: serde_json::Value) -> Result<Self, BetError> {
        let refused = |e: &dyn std::fmt::Display| {
            BetError::Invalid(format!(
                "roulette expects {{\"bets\": [{{\"type\": \"red\", \"amount\": 100}}, {{\"type\": \"straight\", \"numbers\": [17], \"amount\": 50}}]}}: {e}"
            ))
        };
        crate::bet::not_an_array(&bet).map_err(|e| refused(&e))?;
        if let Some(serde_json::Value::Array(chips)) = bet.get("bets") {
            for chip in chips {
                crate::bet::not_an_array(chip).map_err(|e| refused(&e))?;
            }
        }
        serde_json::from_value(bet).map_err(|e| refused(&e))
    }

    /// Validates the bets; their amounts must add up to the round's stake.
    pub fn validate(&self, stake: i64) -> Result<RouletteBet, BetError> {
        if self.bets.is_empty() || self.bets.len() > MAX_BETS_PER_SPIN {
            return Err(BetError::Invalid(format!(
                "a spin takes 1 to {MAX_BETS_PER_SPIN} bets, got {}",
                self.bets.len()
            )));
        }
        let mut total: i64 = 0;
        let mut bets = Vec::with_capacity(self.bets.len());
        for chip in &self.bets {
            if chip.amount <= 0 {
                return Err(BetError::Invalid(format!(
                    "bet amounts must be positive, got {}",
                    chip.amount
                )));
            }
            total = total
                .checked_add(chip.amount)
                .ok_or_else(|| BetError::Invalid("bet amounts overflow".into()))?;
            bets.push(chip.place()?);
        }
        if total != stake {
            return Err(BetError::Invalid(format!(
                "bet amounts add up to {total} but the stake is {stake}"
            )));
        }
        Ok(RouletteBet { bets })
    }
}

impl Chip {
    /// The numbers this bet covers, if they make a bet of its kind.
    fn place(&self) -> Result<PlacedBet, BetError> {
        let numbers = self.numbers.as_deref().unwrap_or_default();
        let inside = inside_sets(self.kind);
        let covered = if inside.is_empty() {
            if !numbers.is_empty() {
                return Err(BetError::Invalid(format!(
                    "{:?} is an outside bet and takes no numbers",
                    self.kind
                )));
            }
            outside_set(self.kind, self.which.flatten())?
        } else {
            let wanted = sorted(numbers.to_vec());
            if !inside.contains(&wanted) {
                return Err(BetError::Invalid(format!(
                    "{:?} cannot cover numbers {:?}",
                    self.kind, numbers
                )));
            }
            wanted
        };
        Ok(PlacedBet {
            kind: self.kind,
            covered,
            amount: self.amount,
        })
    }
}

impl RouletteBet {
    /// Total returned (stakes included) when the ball lands on `pocket`.
    pub fn payout_for(&self, pocket: u8) -> i64 {
        self.bets
            .iter()
            .filter(|b| b.covered.contains(&pocket))
            .map(|b| b.amount * 36 / b.covered.len() as i64)
            .sum()
    }

    pub fn play(&self, rng: &mut FairRng) -> Outcome {
        let pocket = rng.below(POCKETS) as u8;
        let colour = match pocket {
            0 => Colour::Green,
            n if is_red(n) => Colour::Red,
            _ => Colour::Black,
        };
        Outcome {
            detail: Detail::Roulette(RouletteSpin { colour, pocket }),
            payout: Some(self.payout_for(pocket)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a bet covers: its numbers, or which dozen or column.
    enum Cover {
        Numbers(&'static [u8]),
        Which(u8),
        Nothing,
    }

    fn chip(kind: BetKind, cover: Cover, amount: i64) -> Chip {
        let (numbers, which) = match cover {
            Cover::Numbers(numbers) => (Some(numbers.to_vec()), None),
            Cover::Which(which) => (None, Some(Some(which))),
            Cover::Nothing => (None, None),
        };
        Chip {
            kind,
            numbers,
            which,
            amount,
        }
    }

    fn one(kind: BetKind, cover: Cover, amount: i64) -> Result<RouletteBet, BetError> {
        let bets = vec![chip(kind, cover, amount)];
        RouletteRequest { bets }.validate(amount)
    }

    #[test]
    fn payout_table_is_the_european_one() {
        use BetKind::*;
        use Cover::{Nothing, Numbers, Which};
        let cases = [
            (Straight, Numbers(&[17]), 17u8, 36),
            (Split, Numbers(&[17, 20]), 20, 18),
            (Split, Numbers(&[0, 2]), 0, 18),
            (Street, Numbers(&[16, 17, 18]), 18, 12),
            (Trio, Numbers(&[0, 1, 2]), 1, 12),
            (Corner, Numbers(&[17, 18, 20, 21]), 21, 9),
            (FirstFour, Numbers(&[0, 1, 2, 3]), 3, 9),
            (SixLine, Numbers(&[31, 32, 33, 34, 35, 36]), 34, 6),
            (Dozen, Which(2), 24, 3),
            (Column, Which(1), 34, 3),
            (Red, Nothing, 1, 2),
            (Black, Nothing, 2, 2),
            (Odd, Nothing, 35, 2),
            (Even, Nothing, 36, 2),
            (Low, Nothing, 18, 2),
            (High, Nothing, 19, 2),
        ];
        for (kind, cover, winning_pocket, multiple) in cases {
            let bet = one(kind, cover, 100).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(bet.payout_for(winning_pocket), 100 * multiple, "{kind:?}");
            assert_eq!(bet.payout_for(0) == 0, !bet.bets[0].covered.contains(&0));
        }
    }

    #[test]
    fn every_bet_returns_36_over_37_exactly() {
        let kinds = [
            BetKind::Straight,
            BetKind::Split,
            BetKind::Street,
            BetKind::Trio,
            BetKind::Corner,
            BetKind::FirstFour,
            BetKind::SixLine,
        ];
        for kind in kinds {
            for covered in inside_sets(kind) {
                let bet = RouletteBet {
                    bets: vec![PlacedBet {
                        kind,
                        covered,
                        amount: 3_600,
                    }],
                };
                let returned: i64 = (0..37).map(|p| bet.payout_for(p)).sum();
                assert_eq!(returned, 36 * 3_600, "{kind:?}");
            }
        }
    }

    #[test]
    fn rejects_invalid_bets() {
        use BetKind::*;
        use Cover::{Nothing, Numbers, Which};
        assert!(one(Split, Numbers(&[3, 4]), 100).is_err());
        assert!(one(Corner, Numbers(&[3, 4, 6, 7]), 100).is_err());
        assert!(one(Straight, Numbers(&[37]), 100).is_err());
        assert!(one(Straight, Numbers(&[]), 100).is_err());
        assert!(one(Dozen, Which(4), 100).is_err());
        assert!(one(Dozen, Nothing, 100).is_err());
        assert!(one(Red, Numbers(&[1]), 100).is_err());
        assert!(one(Red, Nothing, -5).is_err());
        let short = RouletteRequest {
            bets: vec![chip(Red, Nothing, 10)],
        };
        assert!(short.validate(20).is_err());
        assert!(RouletteRequest { bets: vec![] }.validate(0).is_err());
    }

    #[test]
    fn simulated_rtp_matches() {
        let bet = one(BetKind::Straight, Cover::Numbers(&[7]), 100).unwrap();
        let mut rng = FairRng::new("sim", "roulette", 1);
        let spins = 370_000;
        let paid: i64 = (0..spins).map(|_| bet.play(&mut rng).payout.unwrap()).sum();
        let rtp = paid as f64 / (spins * 100) as f64;
        // straight-up: sd per spin ~5.8 stakes, so 4 sd over 370k spins is ~0.04.
        assert!((rtp - 36.0 / 37.0).abs() < 0.04, "{rtp}");
    }
}
