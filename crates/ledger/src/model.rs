//! The ledger's records: accounts, transfers, journal entries, rounds and fairness seeds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An account in the ledger. Written as `player:<id>`, `house`, `in_round` or `operator`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    Player(String),
    /// The casino's own account: funds demo grants and pays winnings; may go negative.
    House,
    /// Escrow for stakes of rounds not yet settled.
    InRound,
    /// The operator's platform, the other side of every cashier deposit and withdrawal: its
    /// balance is minus what the game wallets hold of the operator's money (may go negative).
    Operator,
}

impl Account {
    pub fn player(id: &str) -> Self {
        Account::Player(id.to_owned())
    }
    pub fn is_player(&self) -> bool {
        matches!(self, Account::Player(_))
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Player(id) => write!(f, "player:{id}"),
            Account::House => f.write_str("house"),
            Account::InRound => f.write_str("in_round"),
            Account::Operator => f.write_str("operator"),
        }
    }
}

impl FromStr for Account {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "house" => Ok(Account::House),
            "in_round" => Ok(Account::InRound),
            "operator" => Ok(Account::Operator),
            _ => s
                .strip_prefix("player:")
                .map(Account::player)
                .ok_or_else(|| format!("unknown account '{s}'")),
        }
    }
}

impl Serialize for Account {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// House to player: starting balance of a demo player.
    Grant,
    /// Player to escrow: the round's opening stake (exactly one per round).
    Stake,
    /// Player to escrow: extra stake during a round (blackjack double).
    Raise,
    /// Escrow to house: the round's stakes leave escrow when it settles (at most one).
    Settle,
    /// House to player: the round's winnings, stakes included (at most one, after settle).
    Payout,
    /// Operator to player: the operator's cashier moved money into the game wallet.
    Deposit,
    /// Player to operator: the operator's cashier took money out of the game wallet.
    Withdraw,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Grant => "grant",
            EntryKind::Stake => "stake",
            EntryKind::Raise => "raise",
            EntryKind::Settle => "settle",
            EntryKind::Payout => "payout",
            EntryKind::Deposit => "deposit",
            EntryKind::Withdraw => "withdraw",
        }
    }

    /// Kinds that belong to no round: demo grants and the operator's cashier movements.
    pub fn is_roundless(self) -> bool {
        matches!(
            self,
            EntryKind::Grant | EntryKind::Deposit | EntryKind::Withdraw
        )
    }
}

impl FromStr for EntryKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            EntryKind::Grant,
            EntryKind::Stake,
            EntryKind::Raise,
            EntryKind::Settle,
            EntryKind::Payout,
            EntryKind::Deposit,
            EntryKind::Withdraw,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown entry kind '{s}'"))
    }
}

/// A transfer to append: `amount` leaves `debit` and arrives in `credit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub kind: EntryKind,
    /// The round the money belongs to; for a cashier movement (`Deposit`, `Withdraw`) the
    /// operator's transaction id; none for a grant.
    pub round_id: Option<String>,
    pub debit: Account,
    pub credit: Account,
    pub amount: i64,
}

impl Transfer {
    /// What every backend checks before appending: a positive amount, and a player never
    /// paying more than it holds (`debit_balance` is asked only for a player's account).
    pub fn check(
        &self,
        debit_balance: impl FnOnce(&Account) -> Result<i64, crate::LedgerError>,
    ) -> Result<(), crate::LedgerError> {
        if self.amount <= 0 {
            return Err(crate::LedgerError::InvalidAmount(self.amount));
        }
        if self.debit.is_player() {
            let balance = debit_balance(&self.debit)?;
            if balance < self.amount {
                return Err(crate::LedgerError::InsufficientFunds {
                    account: self.debit.to_string(),
                    balance,
                    needed: self.amount,
                });
            }
        }
        Ok(())
    }
}

/// A journal entry as stored: a transfer with its place in the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    pub seq: i64,
    pub ts_ms: i64,
    pub kind: EntryKind,
    pub round_id: Option<String>,
    pub debit: Account,
    pub credit: Account,
    pub amount: i64,
    pub currency: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoundStatus {
    Open,
    Settled,
}

impl RoundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RoundStatus::Open => "open",
            RoundStatus::Settled => "settled",
        }
    }
}

/// A round's projection: what was bet, where it stands, and how to verify it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Round {
    pub id: String,
    pub player: String,
    pub game: String,
    pub status: RoundStatus,
    /// Total staked (opening stake plus raises).
    pub stake: i64,
    /// Total paid back, stakes included; `None` while open.
    pub payout: Option<i64>,
    /// The bet as the node recorded it: a JSON document the ledger stores as it is.
    pub bet: String,
    /// Game state (for multi-step games) or outcome detail: a JSON document the ledger stores
    /// as it is.
    pub state: String,
    pub seed_id: i64,
    pub nonce: u64,
    /// The node that last advanced the round.
    pub node: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A player's provably fair seed pair. `server_seed` stays secret until revealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub id: i64,
    pub player: String,
    pub server_seed: String,
    pub server_seed_hash: String,
    pub client_seed: String,
    pub next_nonce: u64,
    pub created_ms: i64,
    pub revealed_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_round_trip_as_text() {
        for a in [
            Account::player("alice"),
            Account::House,
            Account::InRound,
            Account::Operator,
        ] {
            assert_eq!(a.to_string().parse::<Account>().unwrap(), a);
        }
        assert!("bank".parse::<Account>().is_err());
    }
}
