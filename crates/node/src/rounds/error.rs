//! Why a round operation was refused, as the operation sees it inside a store transaction.
//! Handlers turn it into an HTTP answer (`ApiError`); nothing inside the ledger knows HTTP.

use croupier_games::BetError;
use croupier_ledger::LedgerError;

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
}

impl From<serde_json::Error> for RoundError {
    fn from(e: serde_json::Error) -> Self {
        RoundError::Ledger(e.into())
    }
}
