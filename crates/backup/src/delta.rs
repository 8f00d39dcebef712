//! The rows that changed between two cuts, read in one snapshot, and how to apply them to a
//! restored store. The journal is append-only with a sequence number; the other tables are
//! found by time or through the journal:
//! - journal entries with `seq` at or past the first not yet shipped;
//! - rounds named by those entries, plus every round open at the cut (a blackjack hand
//!   changes state without moving money, but stays open until it settles, which does);
//! - seeds created or revealed since, plus the seeds of the shipped rounds (their
//!   `next_nonce` as of the cut, consistent with the rounds);
//! - players and idempotency keys created since, sessions created since (their expiry is
//!   creation + the session lifetime), and the few game status rows.
//!
//! Balances are not shipped: applying an entry moves the two balances it names.

use std::collections::BTreeSet;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params_from_iter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::BackupError;
use crate::state::chain_head;

/// One table a delta carries: its columns (key column first) as stored.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
}

const JOURNAL: Table = Table {
    name: "journal",
    columns: &[
        "seq",
        "ts_ms",
        "kind",
        "round_id",
        "debit",
        "credit",
        "amount",
        "currency",
        "prev_hash",
        "hash",
        "player",
    ],
};
const ROUNDS: Table = Table {
    name: "rounds",
    columns: &[
        "id",
        "player",
        "game",
        "status",
        "stake",
        "payout",
        "bet",
        "state",
        "seed_id",
        "nonce",
        "node",
        "created_ms",
        "updated_ms",
    ],
};
const SEEDS: Table = Table {
    name: "seeds",
    columns: &[
        "id",
        "player",
        "server_seed",
        "server_seed_hash",
        "client_seed",
        "next_nonce",
        "created_ms",
        "revealed_ms",
    ],
};
const PLAYERS: Table = Table {
    name: "players",
    columns: &["id", "created_ms"],
};
const SESSIONS: Table = Table {
    name: "sessions",
    columns: &["token_hash", "player", "expires_ms"],
};
const IDEMPOTENCY: Table = Table {
    name: "idempotency",
    columns: &["key", "fingerprint", "response", "created_ms"],
};
const GAME_STATUS: Table = Table {
    name: "game_status",
    columns: &["game", "status"],
};

/// Every ledger table a delta carries, the journal first (`balances` is rebuilt from the
/// journal; `schema_migrations` comes with the full backup).
const CARRIED: [&Table; 7] = [
    &JOURNAL,
    &ROUNDS,
    &SEEDS,
    &PLAYERS,
    &SESSIONS,
    &IDEMPOTENCY,
    &GAME_STATUS,
];

type Rows = Vec<Vec<Value>>;

/// Everything that changed in `[since_ms, cut_ms]`, journal entries `from_seq..=last_seq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delta {
    pub since_ms: i64,
    pub cut_ms: i64,
    pub from_seq: i64,
    pub last_seq: i64,
    pub chain_head: String,
    pub journal: Rows,
    pub rounds: Rows,
    pub seeds: Rows,
    pub players: Rows,
    pub sessions: Rows,
    pub idempotency: Rows,
    pub game_status: Rows,
}

fn to_json(value: SqlValue) -> Result<Value, BackupError> {
    Ok(match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::from(i),
        SqlValue::Text(t) => Value::String(t),
        SqlValue::Real(f) => Value::from(f),
        SqlValue::Blob(_) => {
            return Err(BackupError::Ledger(croupier_ledger::LedgerError::Storage(
                "unexpected blob in the ledger".into(),
            )));
        }
    })
}

fn to_sql(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Number(n) => n
            .as_i64()
            .map(SqlValue::Integer)
            .unwrap_or_else(|| SqlValue::Real(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

fn select(
    conn: &Connection,
    table: &Table,
    filter: &str,
    args: &[SqlValue],
    into: &mut Rows,
) -> Result<(), BackupError> {
    let sql = format!(
        "SELECT {} FROM {} {filter}",
        table.columns.join(", "),
        table.name
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(table.columns.len());
        for i in 0..table.columns.len() {
            values.push(to_json(row.get::<_, SqlValue>(i)?)?);
        }
        into.push(values);
    }
    Ok(())
}

/// Appends the rows of `table` whose key is in `keys`.
fn select_keys(
    conn: &Connection,
    table: &Table,
    keys: &BTreeSet<SqlKey>,
    into: &mut Rows,
) -> Result<(), BackupError> {
    let filter = format!("WHERE {} = ?1", table.columns[0]);
    for key in keys {
        select(conn, table, &filter, &[key.to_sql()], into)?;
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SqlKey {
    Int(i64),
    Text(String),
}

impl SqlKey {
    fn of(value: &Value) -> Option<SqlKey> {
        match value {
            Value::Number(n) => n.as_i64().map(SqlKey::Int),
            Value::String(s) => Some(SqlKey::Text(s.clone())),
            _ => None,
        }
    }
    fn to_sql(&self) -> SqlValue {
        match self {
            SqlKey::Int(i) => SqlValue::Integer(*i),
            SqlKey::Text(t) => SqlValue::Text(t.clone()),
        }
    }
}

fn column(table: &Table, name: &str) -> usize {
    table
        .columns
        .iter()
        .position(|c| *c == name)
        .expect("known column")
}

/// Reads the delta inside the caller's snapshot (see `cut`). `session_ttl_ms` is the
/// sessions' lifetime, so sessions created since `since_ms` are those expiring from
/// `since_ms + session_ttl_ms` on.
pub fn read(
    conn: &Connection,
    since_ms: i64,
    cut_ms: i64,
    from_seq: i64,
    session_ttl_ms: i64,
) -> Result<Delta, BackupError> {
    let (last_seq, head) = chain_head(conn)?;
    let since = [SqlValue::Integer(since_ms)];
    let journal = rows(
        conn,
        &JOURNAL,
        "WHERE seq >= ?1 ORDER BY seq",
        &[SqlValue::Integer(from_seq)],
    )?;
    let rounds = rounds_of(conn, &journal)?;
    let seeds = seeds_of(conn, &since, &rounds)?;
    let expiring = [SqlValue::Integer(since_ms.saturating_add(session_ttl_ms))];
    Ok(Delta {
        since_ms,
        cut_ms,
        from_seq,
        last_seq,
        chain_head: head,
        journal,
        rounds,
        seeds,
        players: rows(conn, &PLAYERS, "WHERE created_ms >= ?1", &since)?,
        sessions: rows(conn, &SESSIONS, "WHERE expires_ms >= ?1", &expiring)?,
        idempotency: rows(conn, &IDEMPOTENCY, "WHERE created_ms >= ?1", &since)?,
        game_status: rows(conn, &GAME_STATUS, "", &[])?,
    })
}

/// `select` into rows of its own.
fn rows(
    conn: &Connection,
    table: &Table,
    filter: &str,
    args: &[SqlValue],
) -> Result<Rows, BackupError> {
    let mut rows = Rows::new();
    select(conn, table, filter, args, &mut rows)?;
    Ok(rows)
}

/// Every open round (always carried), then the other rounds `journal`'s entries name.
fn rounds_of(conn: &Connection, journal: &Rows) -> Result<Rows, BackupError> {
    let round_col = column(&JOURNAL, "round_id");
    let mut round_ids: BTreeSet<SqlKey> = journal
        .iter()
        .filter_map(|row| SqlKey::of(&row[round_col]))
        .collect();
    let mut rounds = rows(conn, &ROUNDS, "WHERE status = 'open'", &[])?;
    for row in &rounds {
        round_ids.remove(&SqlKey::of(&row[0]).expect("round id"));
    }
    select_keys(conn, &ROUNDS, &round_ids, &mut rounds)?;
    Ok(rounds)
}

/// Seeds created or revealed since `since`, then the other seeds `rounds` name; revealed
/// seeds first: a rotation reveals the old seed and adds the new active one, and a player has
/// at most one active seed at any moment of the apply.
fn seeds_of(conn: &Connection, since: &[SqlValue], rounds: &Rows) -> Result<Rows, BackupError> {
    let mut seeds = rows(
        conn,
        &SEEDS,
        "WHERE created_ms >= ?1 OR revealed_ms >= ?1",
        since,
    )?;
    let seed_col = column(&ROUNDS, "seed_id");
    let mut seed_ids: BTreeSet<SqlKey> = rounds
        .iter()
        .filter_map(|row| SqlKey::of(&row[seed_col]))
        .collect();
    for row in &seeds {
        seed_ids.remove(&SqlKey::of(&row[0]).expect("seed id"));
    }
    select_keys(conn, &SEEDS, &seed_ids, &mut seeds)?;
    let revealed_col = column(&SEEDS, "revealed_ms");
    seeds.sort_by_key(|row| row[revealed_col].is_null());
    Ok(seeds)
}

impl Delta {
    /// Whether anything but the open rounds and game statuses (always carried) is in it.
    pub fn carries_changes(&self) -> bool {
        let updated_col = column(&ROUNDS, "updated_ms");
        !self.journal.is_empty()
            || !self.seeds.is_empty()
            || !self.players.is_empty()
            || !self.sessions.is_empty()
            || !self.idempotency.is_empty()
            || self
                .rounds
                .iter()
                .any(|r| r[updated_col].as_i64().unwrap_or(0) >= self.since_ms)
    }

    fn rows(&self, table: &Table) -> &Rows {
        match table.name {
            "journal" => &self.journal,
            "rounds" => &self.rounds,
            "seeds" => &self.seeds,
            "players" => &self.players,
            "sessions" => &self.sessions,
            "idempotency" => &self.idempotency,
            "game_status" => &self.game_status,
            other => unreachable!("{other} is not carried"),
        }
    }

    /// Applies the delta inside the caller's transaction. The store must already hold every
    /// entry before `from_seq`; entries it holds already are checked, not written again.
    pub fn apply(&self, conn: &Connection) -> Result<(), BackupError> {
        let (last_seq, _) = chain_head(conn)?;
        if self.from_seq > last_seq + 1 {
            return Err(BackupError::SegmentGap {
                detail: format!(
                    "the store ends at journal entry {last_seq}, the next segment starts at {}",
                    self.from_seq
                ),
            });
        }
        let hash_col = column(&JOURNAL, "hash");
        let mut insert_entry = conn.prepare_cached(&insert_sql(&JOURNAL, false))?;
        let mut stored_hash = conn.prepare_cached("SELECT hash FROM journal WHERE seq = ?1")?;
        let mut move_money = conn.prepare_cached(
            "INSERT INTO balances (account, currency, balance) VALUES (?1, ?2, ?3)
             ON CONFLICT (account, currency) DO UPDATE SET balance = balance + excluded.balance",
        )?;
        let (debit, credit, amount, currency) = (
            column(&JOURNAL, "debit"),
            column(&JOURNAL, "credit"),
            column(&JOURNAL, "amount"),
            column(&JOURNAL, "currency"),
        );
        for row in &self.journal {
            let seq = row[0].as_i64().unwrap_or(0);
            if seq <= last_seq {
                let hash: String = stored_hash.query_row([seq], |r| r.get(0))?;
                if Some(hash.as_str()) != row[hash_col].as_str() {
                    return Err(BackupError::Mismatch {
                        what: format!("journal entry {seq} of a segment"),
                        expected: row[hash_col].to_string(),
                        found: hash,
                    });
                }
                continue;
            }
            insert_entry.execute(params_from_iter(row.iter().map(to_sql)))?;
            let value = row[amount].as_i64().unwrap_or(0);
            move_money.execute((to_sql(&row[debit]), to_sql(&row[currency]), -value))?;
            move_money.execute((to_sql(&row[credit]), to_sql(&row[currency]), value))?;
        }
        for table in &CARRIED[1..] {
            let rows = self.rows(table);
            let mut upsert = conn.prepare_cached(&insert_sql(table, true))?;
            for row in rows {
                upsert.execute(params_from_iter(row.iter().map(to_sql)))?;
            }
        }
        Ok(())
    }
}

/// `INSERT` of a whole row; with `upsert`, a row with the same key is replaced in place.
fn insert_sql(table: &Table, upsert: bool) -> String {
    let marks: Vec<String> = (1..=table.columns.len()).map(|i| format!("?{i}")).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.name,
        table.columns.join(", "),
        marks.join(", ")
    );
    if upsert {
        let sets: Vec<String> = table.columns[1..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        sql.push_str(&format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            table.columns[0],
            sets.join(", ")
        ));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table or column added to the ledger must be added here too, or restores would lose it.
    #[test]
    fn deltas_carry_every_table_and_column_of_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        drop(
            croupier_ledger::sqlite::SqliteStore::open(croupier_ledger::sqlite::SqliteConfig::new(
                &path,
            ))
            .unwrap(),
        );
        let conn = Connection::open(&path).unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut known: Vec<String> = CARRIED
            .iter()
            .map(|t| t.name.to_owned())
            .chain(["balances".to_owned(), "schema_migrations".to_owned()])
            .collect();
        known.sort();
        assert_eq!(tables, known);
        for table in CARRIED {
            let columns: Vec<String> = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{}')",
                    table.name
                ))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(columns, table.columns, "columns of {}", table.name);
        }
    }
}
