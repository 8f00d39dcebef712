//! `LedgerTx` on a SQLite connection inside an open transaction (or read snapshot).

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::chain::{GENESIS, entry_hash};
use crate::error::LedgerError;
use crate::model::{Account, JournalEntry, Round, RoundStatus, Seed, Transfer};
use crate::seed_seal::SeedVault;
use crate::store::LedgerTx;

/// The last entry of the journal: where the next one links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

impl ChainHead {
    pub fn read(conn: &Connection) -> Result<ChainHead, LedgerError> {
        let head = conn
            .prepare_cached("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| {
                Ok(ChainHead {
                    seq: r.get(0)?,
                    hash: r.get(1)?,
                })
            })
            .optional()?;
        Ok(head.unwrap_or(ChainHead {
            seq: 0,
            hash: GENESIS.to_owned(),
        }))
    }
}

/// Balances touched by a batch, kept in memory and written once per account when the batch
/// commits: the house and escrow rows change with every bet, and writing them once per batch
/// instead of once per transfer is much of what group commit buys.
#[derive(Default)]
pub struct BatchBalances {
    /// Balances after the batch's accepted operations (or as read from the file).
    current: HashMap<String, i64>,
    /// Accounts whose balance the batch changed.
    dirty: HashSet<String>,
    /// Changes of the operation now running, not yet accepted.
    pending: HashMap<String, i64>,
}

impl BatchBalances {
    /// The running operation succeeded: keep its changes.
    pub fn accept(&mut self) {
        for (account, balance) in self.pending.drain() {
            self.dirty.insert(account.clone());
            self.current.insert(account, balance);
        }
    }

    /// The running operation failed: forget its changes.
    pub fn discard(&mut self) {
        self.pending.clear();
    }

    /// Writes every changed balance; part of the batch's transaction.
    pub fn flush(&mut self, conn: &Connection, currency: &str) -> Result<(), LedgerError> {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO balances (account, currency, balance) VALUES (?1, ?2, ?3)
             ON CONFLICT (account, currency) DO UPDATE SET balance = excluded.balance",
        )?;
        for account in self.dirty.drain() {
            upsert.execute(params![account, currency, self.current[&account]])?;
        }
        self.current.clear();
        Ok(())
    }
}

pub struct SqliteTx<'c> {
    pub(super) conn: &'c Connection,
    pub(super) currency: &'c str,
    pub(super) now_ms: i64,
    /// Where appends link; `None` on a read snapshot.
    pub(super) head: Option<ChainHead>,
    /// The batch's balances; `None` on a read snapshot, which reads the file.
    pub(super) balances: Option<&'c mut BatchBalances>,
    /// Seals new server seeds and opens stored ones.
    pub(super) seeds: &'c SeedVault,
}

fn storage(what: String) -> LedgerError {
    LedgerError::Storage(what)
}

const ENTRY_COLUMNS: &str =
    "seq, ts_ms, kind, round_id, debit, credit, amount, currency, prev_hash, hash";

/// The operator's entries before `?1`, newest first: its condition is `journal_of_operator`'s
/// (`schema::READ_INDEXES`) word for word, which is how SQLite knows that index serves it.
pub(super) fn operator_history() -> String {
    format!(
        "SELECT {ENTRY_COLUMNS} FROM journal WHERE (debit = 'operator' OR credit = 'operator')
         AND seq < ?1 ORDER BY seq DESC LIMIT ?2"
    )
}

fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<(JournalEntry, String, String, String)> {
    Ok((
        JournalEntry {
            seq: r.get(0)?,
            ts_ms: r.get(1)?,
            kind: crate::model::EntryKind::Grant,
            round_id: r.get(3)?,
            debit: Account::House,
            credit: Account::House,
            amount: r.get(6)?,
            currency: r.get(7)?,
            prev_hash: r.get(8)?,
            hash: r.get(9)?,
        },
        r.get(2)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

/// Parses the text columns that rusqlite cannot convert by itself.
fn finish_entry(
    (mut entry, kind, debit, credit): (JournalEntry, String, String, String),
) -> Result<JournalEntry, LedgerError> {
    entry.kind = kind.parse().map_err(storage)?;
    entry.debit = debit.parse().map_err(storage)?;
    entry.credit = credit.parse().map_err(storage)?;
    Ok(entry)
}

const ROUND_COLUMNS: &str = "id, player, game, status, stake, payout, bet, state, seed_id, nonce, node, created_ms, updated_ms";

type RawRound = (Round, String);

fn round_from_row(r: &Row<'_>) -> rusqlite::Result<RawRound> {
    Ok((
        Round {
            id: r.get(0)?,
            player: r.get(1)?,
            game: r.get(2)?,
            status: RoundStatus::Open,
            stake: r.get(4)?,
            payout: r.get(5)?,
            bet: r.get(6)?,
            state: r.get(7)?,
            seed_id: r.get(8)?,
            nonce: r.get::<_, i64>(9)? as u64,
            node: r.get(10)?,
            created_ms: r.get(11)?,
            updated_ms: r.get(12)?,
        },
        r.get(3)?,
    ))
}

fn finish_round((mut round, status): RawRound) -> Result<Round, LedgerError> {
    round.status = match status.as_str() {
        "open" => RoundStatus::Open,
        "settled" => RoundStatus::Settled,
        other => return Err(storage(format!("unknown round status '{other}'"))),
    };
    Ok(round)
}

pub(super) fn seed_from_row(r: &Row<'_>) -> rusqlite::Result<Seed> {
    Ok(Seed {
        id: r.get(0)?,
        player: r.get(1)?,
        server_seed: r.get(2)?,
        server_seed_hash: r.get(3)?,
        client_seed: r.get(4)?,
        next_nonce: r.get::<_, i64>(5)? as u64,
        created_ms: r.get(6)?,
        revealed_ms: r.get(7)?,
    })
}

pub(super) const SEED_COLUMNS: &str =
    "id, player, server_seed, server_seed_hash, client_seed, next_nonce, created_ms, revealed_ms";

impl SqliteTx<'_> {
    fn stored_balance(&self, account: &str) -> Result<i64, LedgerError> {
        Ok(self
            .conn
            .prepare_cached("SELECT balance FROM balances WHERE account = ?1 AND currency = ?2")?
            .query_row(params![account, self.currency], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    fn add_to_balance(&mut self, account: &Account, delta: i64) -> Result<(), LedgerError> {
        let name = account.to_string();
        let balance = self.balance(account)?;
        let balances = self
            .balances
            .as_deref_mut()
            .ok_or_else(|| storage("cannot post on a read snapshot".into()))?;
        balances.pending.insert(name, balance + delta);
        Ok(())
    }
}

impl LedgerTx for SqliteTx<'_> {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn currency(&self) -> &str {
        self.currency
    }

    fn player_exists(&mut self, player: &str) -> Result<bool, LedgerError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM players WHERE id = ?1")?
            .exists([player])?)
    }

    fn create_player(&mut self, player: &str) -> Result<(), LedgerError> {
        self.conn
            .prepare_cached("INSERT INTO players (id, created_ms) VALUES (?1, ?2)")?
            .execute(params![player, self.now_ms])?;
        Ok(())
    }

    fn insert_session(
        &mut self,
        token_hash: &str,
        player: &str,
        expires_ms: i64,
    ) -> Result<(), LedgerError> {
        self.conn
            .prepare_cached(
                "INSERT INTO sessions (token_hash, player, expires_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![token_hash, player, expires_ms])?;
        Ok(())
    }

    fn keep_newest_sessions(&mut self, player: &str, keep: u32) -> Result<(), LedgerError> {
        self.conn
            .prepare_cached(
                "DELETE FROM sessions WHERE player = ?1 AND token_hash IN
                 (SELECT token_hash FROM sessions WHERE player = ?1
                  ORDER BY expires_ms DESC, token_hash DESC LIMIT -1 OFFSET ?2)",
            )?
            .execute(params![player, keep])?;
        Ok(())
    }

    fn session_player(&mut self, token_hash: &str) -> Result<Option<(String, i64)>, LedgerError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT player, expires_ms FROM sessions WHERE token_hash = ?1 AND expires_ms > ?2",
            )?
            .query_row(params![token_hash, self.now_ms], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    fn balance(&mut self, account: &Account) -> Result<i64, LedgerError> {
        let name = account.to_string();
        let Some(balances) = self.balances.as_deref() else {
            return self.stored_balance(&name);
        };
        if let Some(balance) = balances
            .pending
            .get(&name)
            .or_else(|| balances.current.get(&name))
        {
            return Ok(*balance);
        }
        let stored = self.stored_balance(&name)?;
        if let Some(balances) = self.balances.as_deref_mut() {
            balances.current.insert(name, stored);
        }
        Ok(stored)
    }

    fn post(&mut self, transfer: &Transfer) -> Result<(), LedgerError> {
        transfer.check(|debit| self.balance(debit))?;
        let head = self
            .head
            .as_ref()
            .ok_or_else(|| storage("cannot post on a read snapshot".into()))?;
        let mut entry = JournalEntry {
            seq: head.seq + 1,
            ts_ms: self.now_ms,
            kind: transfer.kind,
            round_id: transfer.round_id.clone(),
            debit: transfer.debit.clone(),
            credit: transfer.credit.clone(),
            amount: transfer.amount,
            currency: self.currency.to_owned(),
            prev_hash: head.hash.clone(),
            hash: String::new(),
        };
        entry.hash = entry_hash(&entry);
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO journal ({ENTRY_COLUMNS}, player) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?
            .execute(params![
                entry.seq,
                entry.ts_ms,
                entry.kind.as_str(),
                entry.round_id,
                entry.debit.to_string(),
                entry.credit.to_string(),
                entry.amount,
                entry.currency,
                entry.prev_hash,
                entry.hash,
                [&entry.debit, &entry.credit]
                    .into_iter()
                    .find(|a| a.is_player())
                    .map(Account::to_string)
            ])?;
        self.add_to_balance(&transfer.debit, -transfer.amount)?;
        self.add_to_balance(&transfer.credit, transfer.amount)?;
        self.head = Some(ChainHead {
            seq: entry.seq,
            hash: entry.hash.clone(),
        });
        Ok(())
    }

    fn history(
        &mut self,
        account: &Account,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, LedgerError> {
        let before = before_seq.unwrap_or(i64::MAX);
        let mut stmt;
        let rows = match account {
            Account::Operator => {
                stmt = self.conn.prepare_cached(&operator_history())?;
                stmt.query_map(params![before, limit], entry_from_row)?
            }
            _ => {
                let condition = if account.is_player() {
                    "player = ?1"
                } else {
                    "(debit = ?1 OR credit = ?1)"
                };
                stmt = self.conn.prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM journal WHERE {condition} AND seq < ?2
                     ORDER BY seq DESC LIMIT ?3"
                ))?;
                stmt.query_map(params![account.to_string(), before, limit], entry_from_row)?
            }
        };
        rows.map(|r| finish_entry(r?)).collect()
    }

    fn active_seed(&mut self, player: &str) -> Result<Option<Seed>, LedgerError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {SEED_COLUMNS} FROM seeds WHERE player = ?1 AND revealed_ms IS NULL"
            ))?
            .query_row([player], seed_from_row)
            .optional()?
            .map(|seed| self.seeds.opened(seed))
            .transpose()
    }

    fn seed(&mut self, id: i64) -> Result<Option<Seed>, LedgerError> {
        self.conn
            .prepare_cached(&format!("SELECT {SEED_COLUMNS} FROM seeds WHERE id = ?1"))?
            .query_row([id], seed_from_row)
            .optional()?
            .map(|seed| self.seeds.opened(seed))
            .transpose()
    }

    fn insert_seed(
        &mut self,
        player: &str,
        server_seed: &str,
        server_seed_hash: &str,
        client_seed: &str,
    ) -> Result<i64, LedgerError> {
        let stored = self
            .seeds
            .to_stored(player, server_seed_hash, server_seed)?;
        self.conn
            .prepare_cached(
                "INSERT INTO seeds (player, server_seed, server_seed_hash, client_seed, next_nonce, created_ms)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
            )?
            .execute(params![player, stored, server_seed_hash, client_seed, self.now_ms])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn take_nonce(&mut self, player: &str) -> Result<Option<(Seed, u64)>, LedgerError> {
        let Some(mut seed) = self
            .conn
            .prepare_cached(&format!(
                "UPDATE seeds SET next_nonce = next_nonce + 1 WHERE player = ?1 AND revealed_ms IS NULL
                 RETURNING {SEED_COLUMNS}"
            ))?
            .query_row([player], seed_from_row)
            .optional()?
        else {
            return Ok(None);
        };
        seed.next_nonce -= 1;
        let nonce = seed.next_nonce;
        Ok(Some((self.seeds.opened(seed)?, nonce)))
    }

    /// Marks the seed revealed and writes its server seed back in clear.
    fn reveal_seed(&mut self, seed_id: i64) -> Result<(), LedgerError> {
        let seed = self
            .seed(seed_id)?
            .ok_or_else(|| LedgerError::NotFound(format!("seed {seed_id}")))?;
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE seeds SET revealed_ms = ?2, server_seed = ?3 WHERE id = ?1 AND revealed_ms IS NULL",
            )?
            .execute(params![seed_id, self.now_ms, seed.server_seed])?;
        if changed == 0 {
            return Err(LedgerError::Conflict(format!(
                "seed {seed_id} is already revealed"
            )));
        }
        Ok(())
    }

    fn insert_round(&mut self, round: &Round) -> Result<(), LedgerError> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO rounds ({ROUND_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))?
            .execute(params![
                round.id,
                round.player,
                round.game,
                round.status.as_str(),
                round.stake,
                round.payout,
                round.bet,
                round.state,
                round.seed_id,
                round.nonce as i64,
                round.node,
                round.created_ms,
                round.updated_ms
            ])?;
        Ok(())
    }

    fn update_round(&mut self, round: &Round) -> Result<(), LedgerError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE rounds SET status = ?2, stake = ?3, payout = ?4, state = ?5, node = ?6, updated_ms = ?7
                 WHERE id = ?1",
            )?
            .execute(params![
                round.id,
                round.status.as_str(),
                round.stake,
                round.payout,
                round.state,
                round.node,
                round.updated_ms
            ])?;
        if changed == 0 {
            return Err(LedgerError::NotFound(format!("round {}", round.id)));
        }
        Ok(())
    }

    fn round(&mut self, id: &str) -> Result<Option<Round>, LedgerError> {
        self.conn
            .prepare_cached(&format!("SELECT {ROUND_COLUMNS} FROM rounds WHERE id = ?1"))?
            .query_row([id], round_from_row)
            .optional()?
            .map(finish_round)
            .transpose()
    }

    fn rounds(
        &mut self,
        player: &str,
        before_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Round>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ROUND_COLUMNS} FROM rounds WHERE player = ?1 AND created_ms < ?2
             ORDER BY created_ms DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![player, before_ms.unwrap_or(i64::MAX), limit],
            round_from_row,
        )?;
        rows.map(|r| finish_round(r?)).collect()
    }

    fn open_round_count(&mut self, player: &str) -> Result<i64, LedgerError> {
        Ok(self
            .conn
            .prepare_cached("SELECT count(*) FROM rounds WHERE player = ?1 AND status = 'open'")?
            .query_row([player], |r| r.get(0))?)
    }

    fn idle_open_rounds(&mut self, before_ms: i64, limit: u32) -> Result<Vec<Round>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ROUND_COLUMNS} FROM rounds WHERE status = 'open' AND updated_ms < ?1
             ORDER BY updated_ms LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![before_ms, limit], round_from_row)?;
        rows.map(|r| finish_round(r?)).collect()
    }

    fn idempotency_record(&mut self, key: &str) -> Result<Option<(String, String)>, LedgerError> {
        Ok(self
            .conn
            .prepare_cached("SELECT fingerprint, response FROM idempotency WHERE key = ?1")?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn open_rounds_on_node(&mut self, node: &str) -> Result<i64, LedgerError> {
        Ok(self
            .conn
            .prepare_cached("SELECT count(*) FROM rounds WHERE node = ?1 AND status = 'open'")?
            .query_row([node], |r| r.get(0))?)
    }

    fn set_game_status(&mut self, game: &str, status: &str) -> Result<(), LedgerError> {
        self.conn
            .prepare_cached(
                "INSERT INTO game_status (game, status) VALUES (?1, ?2)
                 ON CONFLICT (game) DO UPDATE SET status = excluded.status",
            )?
            .execute(params![game, status])?;
        Ok(())
    }

    fn game_statuses(&mut self) -> Result<Vec<(String, String)>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT game, status FROM game_status WHERE status <> 'open'")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn for_each_entry(
        &mut self,
        visit: &mut dyn FnMut(JournalEntry) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {ENTRY_COLUMNS} FROM journal ORDER BY seq"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            visit(finish_entry(entry_from_row(row)?)?)?;
        }
        Ok(())
    }

    fn all_balances(&mut self) -> Result<Vec<(String, String, i64)>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT account, currency, balance FROM balances")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn for_each_round(
        &mut self,
        visit: &mut dyn FnMut(Round) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {ROUND_COLUMNS} FROM rounds"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            visit(finish_round(round_from_row(row)?)?)?;
        }
        Ok(())
    }
}
