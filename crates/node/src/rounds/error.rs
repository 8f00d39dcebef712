//! Why a round operation was refused, as the operation sees it inside a store transaction.
//! Handlers turn it into an HTTP answer (`ApiError`); nothing inside the ledger knows HTTP.

use croupier_games::BetError;
use croupier_ledger::{LedgerError, Round};

#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Bet(#[from] BetError),
    #[error("round {0} is already settled")]
    Settled(String),
    #[error(
        "finish your open rounds before rotating the seed: revealing it would reveal their cards"
    )]
    OpenRounds,
    #[error("round {0} is not a hand of blackjack: it takes no actions")]
    NotAHand(String),
    #[error("round {round}: the stored {column} does not read: {reason}")]
    Unreadable {
        round: String,
        column: &'static str,
        reason: String,
    },
}

impl RoundError {
    pub fn unreadable(round: &Round, column: &'static str, e: serde_json::Error) -> RoundError {
        RoundError::Unreadable {
            round: round.id.clone(),
            column,
            reason: e.to_string(),
        }
    }
}
