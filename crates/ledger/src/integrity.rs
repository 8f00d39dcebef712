//! The ledger invariants, checked by replaying the journal against the projections:
//! the sum of all balances is zero; projections equal the journal replayed; the hash chain is
//! unbroken; every round has exactly one stake and at most one settlement; no player balance
//! is negative. Backend-independent: it only uses `LedgerTx` reads.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::chain::{GENESIS, entry_hash};
use crate::error::LedgerError;
use crate::model::{Account, EntryKind, JournalEntry, RoundStatus};
use crate::store::LedgerTx;

pub const SUM_ZERO: &str = "sum_zero";
pub const PROJECTIONS: &str = "projections_match_journal";
pub const HASH_CHAIN: &str = "hash_chain";
pub const ROUND_ENTRIES: &str = "round_entries";
pub const NO_NEGATIVE_PLAYER: &str = "no_negative_player_balance";

/// How many violations are listed in full; the count covers all of them.
const LISTED_VIOLATIONS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct IntegrityReport {
    pub ok: bool,
    pub entries: u64,
    pub accounts: u64,
    pub rounds: u64,
    pub chain_head: String,
    /// Sum of all balances per currency (zero when sound).
    pub totals: BTreeMap<String, i64>,
    pub violation_count: u64,
    pub violations: Vec<Violation>,
}

impl IntegrityReport {
    fn violate(&mut self, invariant: &'static str, detail: String) {
        self.violation_count += 1;
        if self.violations.len() < LISTED_VIOLATIONS {
            self.violations.push(Violation { invariant, detail });
        }
    }

    /// Whether any violation of `invariant` was found.
    pub fn violated(&self, invariant: &str) -> bool {
        self.violations.iter().any(|v| v.invariant == invariant)
    }
}

#[derive(Default)]
struct RoundMoney {
    stakes: u32,
    staked: i64,
    settles: u32,
    settled: i64,
    payouts: u32,
    paid: i64,
}

/// The direction each kind of entry must move money in.
fn expected_direction(kind: EntryKind, e: &JournalEntry) -> bool {
    match kind {
        EntryKind::Grant => e.debit == Account::House && e.credit.is_player(),
        EntryKind::Stake | EntryKind::Raise => e.debit.is_player() && e.credit == Account::InRound,
        EntryKind::Settle => e.debit == Account::InRound && e.credit == Account::House,
        EntryKind::Payout => e.debit == Account::House && e.credit.is_player(),
    }
}

/// Runs every check; a storage error aborts, a broken invariant is reported.
pub fn check(tx: &mut dyn LedgerTx) -> Result<IntegrityReport, LedgerError> {
    let mut report = IntegrityReport {
        ok: false,
        entries: 0,
        accounts: 0,
        rounds: 0,
        chain_head: GENESIS.to_owned(),
        totals: BTreeMap::new(),
        violation_count: 0,
        violations: Vec::new(),
    };
    let mut replayed: HashMap<(String, String), i64> = HashMap::new();
    let mut rounds: HashMap<String, RoundMoney> = HashMap::new();
    let mut last_seq = 0i64;

    tx.for_each_entry(&mut |e| {
        report.entries += 1;
        if e.seq != last_seq + 1 {
            report.violate(
                HASH_CHAIN,
                format!("entry {} follows {}: a gap", e.seq, last_seq),
            );
        }
        if e.prev_hash != report.chain_head {
            report.violate(
                HASH_CHAIN,
                format!("entry {} does not link to the one before", e.seq),
            );
        }
        if entry_hash(&e) != e.hash {
            report.violate(
                HASH_CHAIN,
                format!("entry {} does not match its hash", e.seq),
            );
        }
        if e.amount <= 0 {
            report.violate(PROJECTIONS, format!("entry {} moves {}", e.seq, e.amount));
        }
        if !expected_direction(e.kind, &e) {
            report.violate(
                ROUND_ENTRIES,
                format!(
                    "entry {} ({}) moves {} -> {}",
                    e.seq,
                    e.kind.as_str(),
                    e.debit,
                    e.credit
                ),
            );
        }
        *replayed
            .entry((e.debit.to_string(), e.currency.clone()))
            .or_default() -= e.amount;
        *replayed
            .entry((e.credit.to_string(), e.currency.clone()))
            .or_default() += e.amount;
        match (&e.round_id, e.kind) {
            (None, EntryKind::Grant) => {}
            (Some(id), kind) if kind != EntryKind::Grant => {
                let money = rounds.entry(id.clone()).or_default();
                match kind {
                    EntryKind::Stake => {
                        money.stakes += 1;
                        money.staked += e.amount;
                    }
                    EntryKind::Raise => money.staked += e.amount,
                    EntryKind::Settle => {
                        money.settles += 1;
                        money.settled += e.amount;
                    }
                    EntryKind::Payout => {
                        money.payouts += 1;
                        money.paid += e.amount;
                    }
                    EntryKind::Grant => unreachable!(),
                }
            }
            _ => report.violate(
                ROUND_ENTRIES,
                format!(
                    "entry {} ({}) has a wrong round reference",
                    e.seq,
                    e.kind.as_str()
                ),
            ),
        }
        last_seq = e.seq;
        report.chain_head = e.hash;
        Ok(())
    })?;

    let stored = tx.all_balances()?;
    report.accounts = stored.len() as u64;
    for (account, currency, balance) in &stored {
        *report.totals.entry(currency.clone()).or_default() += balance;
        let key = (account.clone(), currency.clone());
        let expected = replayed.remove(&key).unwrap_or(0);
        if expected != *balance {
            report.violate(
                PROJECTIONS,
                format!("{account} holds {balance} {currency}, the journal says {expected}"),
            );
        }
        if account.starts_with("player:") && *balance < 0 {
            report.violate(
                NO_NEGATIVE_PLAYER,
                format!("{account} holds {balance} {currency}"),
            );
        }
    }
    for ((account, currency), amount) in replayed {
        if amount != 0 {
            report.violate(
                PROJECTIONS,
                format!("{account} has no stored balance, the journal says {amount} {currency}"),
            );
        }
    }
    let unbalanced: Vec<String> = report
        .totals
        .iter()
        .filter(|(_, total)| **total != 0)
        .map(|(currency, total)| format!("balances in {currency} add up to {total}"))
        .collect();
    for detail in unbalanced {
        report.violate(SUM_ZERO, detail);
    }

    let mut checked_rounds = 0u64;
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    tx.for_each_round(&mut |round| {
        checked_rounds += 1;
        let Some(money) = rounds.remove(&round.id) else {
            problems.push((
                ROUND_ENTRIES,
                format!("round {} has no stake in the journal", round.id),
            ));
            return Ok(());
        };
        let id = &round.id;
        if money.stakes != 1 {
            problems.push((
                ROUND_ENTRIES,
                format!("round {id} has {} stakes", money.stakes),
            ));
        }
        if money.settles > 1 || money.payouts > 1 {
            problems.push((
                ROUND_ENTRIES,
                format!(
                    "round {id} settled {} times, paid {} times",
                    money.settles, money.payouts
                ),
            ));
        }
        if money.payouts > money.settles {
            problems.push((
                ROUND_ENTRIES,
                format!("round {id} paid out without settling"),
            ));
        }
        if money.settles == 1 && money.settled != money.staked {
            problems.push((
                ROUND_ENTRIES,
                format!(
                    "round {id} staked {} but settled {}",
                    money.staked, money.settled
                ),
            ));
        }
        if round.stake != money.staked {
            problems.push((
                PROJECTIONS,
                format!(
                    "round {id} shows stake {}, the journal {}",
                    round.stake, money.staked
                ),
            ));
        }
        let settled_in_journal = money.settles > 0;
        let expected_payout = settled_in_journal.then_some(money.paid);
        if (round.status == RoundStatus::Settled) != settled_in_journal
            || round.payout != expected_payout
        {
            problems.push((
                PROJECTIONS,
                format!(
                    "round {id} is {} with payout {:?}, the journal says payout {:?}",
                    round.status.as_str(),
                    round.payout,
                    expected_payout
                ),
            ));
        }
        Ok(())
    })?;
    for (invariant, detail) in problems {
        report.violate(invariant, detail);
    }
    for id in rounds.keys() {
        report.violate(
            PROJECTIONS,
            format!("round {id} is in the journal but not in rounds"),
        );
    }
    report.rounds = checked_rounds;
    report.ok = report.violation_count == 0;
    Ok(report)
}
