//! The games on offer, their table limits and their published return to player.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::BetError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GameId {
    Dice,
    Roulette,
    Slot,
    Blackjack,
}

pub const ALL_GAMES: [GameId; 4] = [
    GameId::Dice,
    GameId::Roulette,
    GameId::Slot,
    GameId::Blackjack,
];

/// Table limits in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub min_stake: i64,
    pub max_stake: i64,
}

/// What the lobby shows about a game.
#[derive(Debug, Clone, Serialize)]
pub struct GameInfo {
    pub id: GameId,
    pub name: &'static str,
    /// Return to player as a fraction (0.99 = 99%).
    pub rtp: f64,
    pub rtp_note: &'static str,
    pub multi_step: bool,
    #[serde(flatten)]
    pub limits: Limits,
}

impl GameId {
    pub fn as_str(self) -> &'static str {
        match self {
            GameId::Dice => "dice",
            GameId::Roulette => "roulette",
            GameId::Slot => "slot",
            GameId::Blackjack => "blackjack",
        }
    }

    pub fn limits(self) -> Limits {
        match self {
            GameId::Slot => Limits {
                min_stake: 10,
                max_stake: 50_000,
            },
            _ => Limits {
                min_stake: 10,
                max_stake: 100_000,
            },
        }
    }

    pub fn info(self) -> GameInfo {
        let (name, rtp, rtp_note, multi_step) = match self {
            GameId::Dice => ("Dice", 0.99, "exact: 1% house edge on every target", false),
            GameId::Roulette => (
                "European Roulette",
                36.0 / 37.0,
                "exact: 36/37 on every bet",
                false,
            ),
            GameId::Slot => (
                "Five Reel Fruits",
                crate::slot::exact_rtp(),
                "exact, computed from the reel strips and paytable",
                false,
            ),
            GameId::Blackjack => (
                "Blackjack",
                0.995,
                "approximate, with basic strategy (one deck, S17, 3:2, double on any two)",
                true,
            ),
        };
        GameInfo {
            id: self,
            name,
            rtp,
            rtp_note,
            multi_step,
            limits: self.limits(),
        }
    }
}

impl fmt::Display for GameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GameId {
    type Err = BetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_GAMES
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| BetError::UnknownGame(s.chars().take(64).collect()))
    }
}

/// Every game with its lobby information.
pub fn catalog() -> Vec<GameInfo> {
    ALL_GAMES.into_iter().map(GameId::info).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for game in ALL_GAMES {
            assert_eq!(game.as_str().parse::<GameId>().unwrap(), game);
        }
        assert_eq!(
            "poker".parse::<GameId>(),
            Err(BetError::UnknownGame("poker".into()))
        );
    }
}
