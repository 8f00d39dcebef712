//! The ledger invariants, checked by replaying the journal against the projections:
//! the sum of all balances is zero; projections equal the journal replayed; the hash chain is
//! unbroken; every round has exactly one stake and at most one settlement; no player balance
//! is negative. Backend-independent: it only uses `LedgerTx` reads.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::chain::{GENESIS, entry_hash};
use crate::error::LedgerError;
use crate::model::{Account, EntryKind, JournalEntry, Round, RoundStatus};
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
        EntryKind::Deposit => e.debit == Account::Operator && e.credit.is_player(),
        EntryKind::Withdraw => e.debit.is_player() && e.credit == Account::Operator,
    }
}

/// Runs every check in one pass over the journal, then over the balances and the rounds; a
/// storage error aborts, a broken invariant is reported.
pub fn check(tx: &mut dyn LedgerTx) -> Result<IntegrityReport, LedgerError> {
    let mut replay = Replay::default();
    tx.for_each_entry(&mut |entry| {
        replay.entry(entry);
        Ok(())
    })?;
    replay.compare_balances(&tx.all_balances()?);
    replay.check_sum_zero();
    tx.for_each_round(&mut |round| {
        replay.compare_round(&round);
        Ok(())
    })?;
    Ok(replay.finish())
}

/// What the journal says, accumulated entry by entry, and the report so far.
struct Replay {
    report: IntegrityReport,
    /// Each (account, currency)'s balance by the journal.
    balances: HashMap<(String, String), i64>,
    rounds: HashMap<String, RoundMoney>,
    last_seq: i64,
}

impl Default for Replay {
    fn default() -> Replay {
        Replay {
            report: IntegrityReport {
                ok: false,
                entries: 0,
                accounts: 0,
                rounds: 0,
                chain_head: GENESIS.to_owned(),
                totals: BTreeMap::new(),
                violation_count: 0,
                violations: Vec::new(),
            },
            balances: HashMap::new(),
            rounds: HashMap::new(),
            last_seq: 0,
        }
    }
}

impl Replay {
    fn entry(&mut self, e: JournalEntry) {
        self.report.entries += 1;
        self.check_link(&e);
        self.check_shape(&e);
        *self
            .balances
            .entry((e.debit.to_string(), e.currency.clone()))
            .or_default() -= e.amount;
        *self
            .balances
            .entry((e.credit.to_string(), e.currency.clone()))
            .or_default() += e.amount;
        self.add_to_round(&e);
        self.last_seq = e.seq;
        self.report.chain_head = e.hash;
    }

    /// The hash chain: no gap, each entry links to the one before and matches its hash.
    fn check_link(&mut self, e: &JournalEntry) {
        if e.seq != self.last_seq + 1 {
            let gap = format!("entry {} follows {}: a gap", e.seq, self.last_seq);
            self.report.violate(HASH_CHAIN, gap);
        }
        if e.prev_hash != self.report.chain_head {
            let detail = format!("entry {} does not link to the one before", e.seq);
            self.report.violate(HASH_CHAIN, detail);
        }
        if entry_hash(e) != e.hash {
            let detail = format!("entry {} does not match its hash", e.seq);
            self.report.violate(HASH_CHAIN, detail);
        }
    }

    /// A positive amount, moved in the direction its kind allows.
    fn check_shape(&mut self, e: &JournalEntry) {
        if e.amount <= 0 {
            let detail = format!("entry {} moves {}", e.seq, e.amount);
            self.report.violate(PROJECTIONS, detail);
        }
        if !expected_direction(e.kind, e) {
            let detail = format!(
                "entry {} ({}) moves {} -> {}",
                e.seq,
                e.kind.as_str(),
                e.debit,
                e.credit
            );
            self.report.violate(ROUND_ENTRIES, detail);
        }
    }

    /// Counts a round's entries. A grant has no reference; a cashier movement carries the
    /// operator's transaction id in place of a round; every other kind has its round.
    fn add_to_round(&mut self, e: &JournalEntry) {
        let well_referenced = match e.kind {
            EntryKind::Grant => e.round_id.is_none(),
            _ => e.round_id.is_some(),
        };
        if !well_referenced {
            let detail = format!(
                "entry {} ({}) has a wrong round reference",
                e.seq,
                e.kind.as_str()
            );
            self.report.violate(ROUND_ENTRIES, detail);
        }
        let Some(id) = e.round_id.as_ref().filter(|_| !e.kind.is_roundless()) else {
            return;
        };
        let money = self.rounds.entry(id.clone()).or_default();
        match e.kind {
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
            EntryKind::Grant | EntryKind::Deposit | EntryKind::Withdraw => {}
        }
    }

    /// Every stored balance equals the journal's, and no player's is negative.
    fn compare_balances(&mut self, stored: &[(String, String, i64)]) {
        self.report.accounts = stored.len() as u64;
        for (account, currency, balance) in stored {
            *self.report.totals.entry(currency.clone()).or_default() += balance;
            let key = (account.clone(), currency.clone());
            let expected = self.balances.remove(&key).unwrap_or(0);
            if expected != *balance {
                let detail =
                    format!("{account} holds {balance} {currency}, the journal says {expected}");
                self.report.violate(PROJECTIONS, detail);
            }
            if account.starts_with("player:") && *balance < 0 {
                let detail = format!("{account} holds {balance} {currency}");
                self.report.violate(NO_NEGATIVE_PLAYER, detail);
            }
        }
        for ((account, currency), amount) in std::mem::take(&mut self.balances) {
            if amount != 0 {
                let detail = format!(
                    "{account} has no stored balance, the journal says {amount} {currency}"
                );
                self.report.violate(PROJECTIONS, detail);
            }
        }
    }

    /// Money is only moved, never made: each currency's balances add up to zero.
    fn check_sum_zero(&mut self) {
        let unbalanced: Vec<String> = self
            .report
            .totals
            .iter()
            .filter(|(_, total)| **total != 0)
            .map(|(currency, total)| format!("balances in {currency} add up to {total}"))
            .collect();
        for detail in unbalanced {
            self.report.violate(SUM_ZERO, detail);
        }
    }

    fn compare_round(&mut self, round: &Round) {
        self.report.rounds += 1;
        let Some(money) = self.rounds.remove(&round.id) else {
            let detail = format!("round {} has no stake in the journal", round.id);
            self.report.violate(ROUND_ENTRIES, detail);
            return;
        };
        for detail in round_entry_problems(&round.id, &money) {
            self.report.violate(ROUND_ENTRIES, detail);
        }
        for detail in round_projection_problems(round, &money) {
            self.report.violate(PROJECTIONS, detail);
        }
    }

    fn finish(mut self) -> IntegrityReport {
        for id in self.rounds.keys() {
            let detail = format!("round {id} is in the journal but not in rounds");
            self.report.violate(PROJECTIONS, detail);
        }
        self.report.ok = self.report.violation_count == 0;
        self.report
    }
}

/// One stake, at most one settlement and one payout (after it), settling what was staked.
fn round_entry_problems(id: &str, money: &RoundMoney) -> Vec<String> {
    let mut problems = Vec::new();
    if money.stakes != 1 {
        problems.push(format!("round {id} has {} stakes", money.stakes));
    }
    if money.settles > 1 || money.payouts > 1 {
        problems.push(format!(
            "round {id} settled {} times, paid {} times",
            money.settles, money.payouts
        ));
    }
    if money.payouts > money.settles {
        problems.push(format!("round {id} paid out without settling"));
    }
    if money.settles == 1 && money.settled != money.staked {
        problems.push(format!(
            "round {id} staked {} but settled {}",
            money.staked, money.settled
        ));
    }
    problems
}

/// The round's stored stake, status and payout as its entries say.
fn round_projection_problems(round: &Round, money: &RoundMoney) -> Vec<String> {
    let id = &round.id;
    let mut problems = Vec::new();
    if round.stake != money.staked {
        problems.push(format!(
            "round {id} shows stake {}, the journal {}",
            round.stake, money.staked
        ));
    }
    let settled_in_journal = money.settles > 0;
    let expected_payout = settled_in_journal.then_some(money.paid);
    if (round.status == RoundStatus::Settled) != settled_in_journal
        || round.payout != expected_payout
    {
        problems.push(format!(
            "round {id} is {} with payout {:?}, the journal says payout {:?}",
            round.status.as_str(),
            round.payout,
            expected_payout
        ));
    }
    problems
}
