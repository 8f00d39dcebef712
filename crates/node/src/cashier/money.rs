//! What a cashier call does to the ledger, inside one store transaction: a deposit moves money
//! from the `operator` account to the player's wallet, a withdrawal back, each one journal
//! entry carrying the operator's transaction id. A withdrawal is refused, changing nothing,
//! while the player has an open round (its stake could still come back) or when it would take
//! the wallet below zero; the refusal says which, with the balance.

use croupier_ledger::{Account, EntryKind, LedgerError, LedgerTx, Transfer};
use serde::{Deserialize, Serialize};

use crate::rounds::ensure_player;

/// Which way a cashier movement goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Deposit,
    Withdraw,
}

impl Direction {
    pub fn entry_kind(self) -> EntryKind {
        match self {
            Direction::Deposit => EntryKind::Deposit,
            Direction::Withdraw => EntryKind::Withdraw,
        }
    }
}

/// A deposit or withdrawal as the operator's platform asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovementRequest {
    pub transaction_id: String,
    pub player: String,
    pub amount: i64,
}

/// A movement done: what the first call answered, and what every replay and lookup answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    pub transaction_id: String,
    pub kind: Direction,
    pub player: String,
    pub amount: i64,
    /// The player's balance right after the movement.
    pub balance: i64,
    pub currency: String,
    pub ts_ms: i64,
}

/// Why a movement was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum CashierError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the player holds {balance}, less than the {amount} to withdraw")]
    InsufficientFunds { balance: i64, amount: i64 },
    #[error("the player has {open_rounds} round(s) open; withdraw once they are settled")]
    OpenRound { balance: i64, open_rounds: i64 },
}

/// Runs `request` in `tx`: a deposit creates the player if new.
pub fn apply(
    tx: &mut dyn LedgerTx,
    direction: Direction,
    request: &MovementRequest,
) -> Result<Movement, CashierError> {
    let player = Account::player(&request.player);
    let (debit, credit) = match direction {
        Direction::Deposit => {
            ensure_player(tx, &request.player, false)?;
            (Account::Operator, player.clone())
        }
        Direction::Withdraw => {
            check_withdrawal(tx, request)?;
            (player.clone(), Account::Operator)
        }
    };
    tx.post(&Transfer {
        kind: direction.entry_kind(),
        round_id: Some(request.transaction_id.clone()),
        debit,
        credit,
        amount: request.amount,
    })?;
    Ok(Movement {
        transaction_id: request.transaction_id.clone(),
        kind: direction,
        player: request.player.clone(),
        amount: request.amount,
        balance: tx.balance(&player)?,
        currency: tx.currency().to_owned(),
        ts_ms: tx.now_ms(),
    })
}

fn check_withdrawal(tx: &mut dyn LedgerTx, request: &MovementRequest) -> Result<(), CashierError> {
    if !tx.player_exists(&request.player)? {
        return Err(LedgerError::NotFound(format!("player {}", request.player)).into());
    }
    let balance = tx.balance(&Account::player(&request.player))?;
    let open_rounds = tx.open_round_count(&request.player)?;
    if open_rounds > 0 {
        return Err(CashierError::OpenRound {
            balance,
            open_rounds,
        });
    }
    if balance < request.amount {
        return Err(CashierError::InsufficientFunds {
            balance,
            amount: request.amount,
        });
    }
    Ok(())
}
