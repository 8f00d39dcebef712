//! Why a bet or an action was refused; each message says what is wrong in the player's terms.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BetError {
    #[error("unknown game '{0}'")]
    UnknownGame(String),
    #[error("stake {stake} is below the table minimum of {min}")]
    StakeBelowMin { stake: i64, min: i64 },
    #[error("stake {stake} is above the table maximum of {max}")]
    StakeAboveMax { stake: i64, max: i64 },
    #[error("invalid bet: {0}")]
    Invalid(String),
    #[error("action '{action}' is not allowed now: {reason}")]
    ActionNotAllowed { action: String, reason: String },
}

impl BetError {
    /// A short machine-readable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            BetError::UnknownGame(_) => "unknown_game",
            BetError::StakeBelowMin { .. } => "stake_below_min",
            BetError::StakeAboveMax { .. } => "stake_above_max",
            BetError::Invalid(_) => "invalid_bet",
            BetError::ActionNotAllowed { .. } => "action_not_allowed",
        }
    }
}
