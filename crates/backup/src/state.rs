//! A summary of a ledger file at one instant: schema version, journal range and chain head,
//! row counts and money totals. Written into every manifest and segment, and read back from a
//! restored store to prove the restore reached exactly that state.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::error::BackupError;

/// Money held per kind of account, in minor units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub players: i64,
    pub house: i64,
    pub in_round: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub journal: i64,
    pub accounts: i64,
    pub rounds: i64,
    pub open_rounds: i64,
    pub players: i64,
    pub seeds: i64,
    pub sessions: i64,
    pub idempotency_keys: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    pub schema_version: i64,
    pub last_seq: i64,
    pub chain_head: String,
    pub counts: Counts,
    /// Per currency.
    pub totals: BTreeMap<String, Totals>,
}

/// The chain head (last sequence number and hash) of a ledger file; genesis when empty.
pub fn chain_head(conn: &Connection) -> Result<(i64, String), BackupError> {
    let head = conn
        .query_row(
            "SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(head.unwrap_or((0, croupier_ledger::chain::GENESIS.to_owned())))
}

impl LedgerState {
    /// Reads the summary in the connection's current transaction (or a fresh one).
    pub fn read(conn: &Connection) -> Result<LedgerState, BackupError> {
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
        let (last_seq, chain_head) = chain_head(conn)?;
        let counts = Counts {
            journal: count("SELECT count(*) FROM journal")?,
            accounts: count("SELECT count(*) FROM balances")?,
            rounds: count("SELECT count(*) FROM rounds")?,
            open_rounds: count("SELECT count(*) FROM rounds WHERE status = 'open'")?,
            players: count("SELECT count(*) FROM players")?,
            seeds: count("SELECT count(*) FROM seeds")?,
            sessions: count("SELECT count(*) FROM sessions")?,
            idempotency_keys: count("SELECT count(*) FROM idempotency")?,
        };
        let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
        let mut stmt = conn.prepare("SELECT account, currency, balance FROM balances")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let account: String = row.get(0)?;
            let total = totals.entry(row.get(1)?).or_default();
            let balance: i64 = row.get(2)?;
            match account.as_str() {
                "house" => total.house += balance,
                "in_round" => total.in_round += balance,
                _ => total.players += balance,
            }
        }
        Ok(LedgerState {
            schema_version: count("SELECT coalesce(max(version), 0) FROM schema_migrations")?,
            last_seq,
            chain_head,
            counts,
            totals,
        })
    }

    /// The first field that differs from `expected`, as (what, expected, found).
    pub fn difference(&self, expected: &LedgerState) -> Option<(String, String, String)> {
        let pairs = [
            (
                "schema version",
                expected.schema_version.to_string(),
                self.schema_version.to_string(),
            ),
            (
                "journal range",
                expected.last_seq.to_string(),
                self.last_seq.to_string(),
            ),
            (
                "hash-chain head",
                expected.chain_head.clone(),
                self.chain_head.clone(),
            ),
            (
                "row counts",
                format!("{:?}", expected.counts),
                format!("{:?}", self.counts),
            ),
            (
                "ledger totals",
                format!("{:?}", expected.totals),
                format!("{:?}", self.totals),
            ),
        ];
        pairs
            .into_iter()
            .find(|(_, e, f)| e != f)
            .map(|(what, e, f)| (what.to_owned(), e, f))
    }
}
