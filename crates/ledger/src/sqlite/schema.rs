//! The SQLite schema and its migrations, applied in order under a write lock so several
//! processes opening the same file at once agree on one schema.

use rusqlite::{Connection, OptionalExtension};

use crate::error::LedgerError;

/// Whether the file at `path` already holds a ledger (its journal), asked without creating
/// or changing anything (`StoreLocation::holds_a_ledger`): a missing file does not.
pub fn holds_a_ledger(path: &std::path::Path) -> Result<bool, LedgerError> {
    if !path.exists() {
        return Ok(false);
    }
    let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let journal: Option<i64> = db
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(journal.is_some())
}

pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    round_id TEXT,
    debit TEXT NOT NULL,
    credit TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    -- The player account the entry touches (at most one does), for wallet history.
    player TEXT
);
CREATE INDEX journal_by_player ON journal (player, seq) WHERE player IS NOT NULL;
CREATE TRIGGER journal_is_append_only_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER journal_is_append_only_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;

CREATE TABLE balances (
    account TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance INTEGER NOT NULL,
    PRIMARY KEY (account, currency)
) WITHOUT ROWID;

CREATE TABLE players (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL) WITHOUT ROWID;

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    player TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE seeds (
    id INTEGER PRIMARY KEY,
    player TEXT NOT NULL,
    server_seed TEXT NOT NULL,
    server_seed_hash TEXT NOT NULL,
    client_seed TEXT NOT NULL,
    next_nonce INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    revealed_ms INTEGER
);
CREATE UNIQUE INDEX seeds_one_active ON seeds (player) WHERE revealed_ms IS NULL;

CREATE TABLE rounds (
    id TEXT PRIMARY KEY,
    player TEXT NOT NULL,
    game TEXT NOT NULL,
    status TEXT NOT NULL,
    stake INTEGER NOT NULL,
    payout INTEGER,
    bet TEXT NOT NULL,
    state TEXT NOT NULL,
    seed_id INTEGER NOT NULL,
    nonce INTEGER NOT NULL,
    node TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX rounds_by_player ON rounds (player, created_ms);
CREATE INDEX rounds_open ON rounds (node) WHERE status = 'open';

CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE game_status (game TEXT PRIMARY KEY, status TEXT NOT NULL) WITHOUT ROWID;
"#,
    r#"
-- 2: indexes by time for the backup shipper (crates/backup), which reads every second the rows
-- created or changed since its last cut without scanning whole tables.
CREATE INDEX idempotency_by_time ON idempotency (created_ms);
CREATE INDEX players_by_time ON players (created_ms);
CREATE INDEX sessions_by_expiry ON sessions (expires_ms);
CREATE INDEX seeds_by_time ON seeds (created_ms);
CREATE INDEX seeds_revealed ON seeds (revealed_ms) WHERE revealed_ms IS NOT NULL;
"#,
    r#"
-- 3: a player's sessions, to keep the newest few (the cap of open sessions per player). From
-- this version on, unrevealed server seeds are sealed at rest (crate::seed_seal): a node of an
-- older build finds a newer schema, is not ready, and so never deals from a sealed seed.
CREATE INDEX sessions_by_player ON sessions (player, expires_ms);
"#,
    r#"
-- 4: idempotency records and rounds as rowid tables. As WITHOUT ROWID tables their whole rows
-- (an answer of 400-900 bytes, a round's state) were the keys of a b-tree of 1 KiB pages,
-- whose cells hold at most 230 bytes: every row spilled onto overflow pages, and each step of
-- every key search read a row's whole overflow chain. Now the rows sit in a table b-tree and
-- the key's index holds the key and a row id.
CREATE TABLE idempotency_4 (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
INSERT INTO idempotency_4 (key, fingerprint, response, created_ms)
    SELECT key, fingerprint, response, created_ms FROM idempotency ORDER BY created_ms;
DROP TABLE idempotency;
ALTER TABLE idempotency_4 RENAME TO idempotency;
CREATE INDEX idempotency_by_time ON idempotency (created_ms);

CREATE TABLE rounds_4 (
    id TEXT PRIMARY KEY,
    player TEXT NOT NULL,
    game TEXT NOT NULL,
    status TEXT NOT NULL,
    stake INTEGER NOT NULL,
    payout INTEGER,
    bet TEXT NOT NULL,
    state TEXT NOT NULL,
    seed_id INTEGER NOT NULL,
    nonce INTEGER NOT NULL,
    node TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
INSERT INTO rounds_4 SELECT id, player, game, status, stake, payout, bet, state, seed_id, nonce,
    node, created_ms, updated_ms FROM rounds ORDER BY created_ms;
DROP TABLE rounds;
ALTER TABLE rounds_4 RENAME TO rounds;
CREATE INDEX rounds_by_player ON rounds (player, created_ms);
CREATE INDEX rounds_open ON rounds (node) WHERE status = 'open';
"#,
];

/// Indexes that only make reads cheaper, created at every open where missing. They are not a
/// schema version: a newer version makes a node of an older build not ready, and a build with
/// them and one without share a ledger during a rolling update.
pub const READ_INDEXES: &str = "
-- The operator account's entries (the cashier's deposits and withdrawals), newest first, for
-- the reconciliation export: a few among every bet's entries, which a scan by seq reads all of.
CREATE INDEX IF NOT EXISTS journal_of_operator ON journal (seq)
    WHERE debit = 'operator' OR credit = 'operator';
";

/// Brings the schema up to date, with `READ_INDEXES`; returns the version now in force.
pub fn migrate(conn: &mut Connection) -> Result<usize, LedgerError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
    )?;
    let current: usize = tx
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or(0) as usize;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)",
            rusqlite::params![index as i64 + 1, crate::clock::now_ms()],
        )?;
    }
    tx.execute_batch(READ_INDEXES)?;
    tx.commit()?;
    Ok(MIGRATIONS.len())
}

/// The version recorded in the file.
pub fn version(conn: &Connection) -> Result<usize, LedgerError> {
    let v: Option<i64> = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    Ok(v.unwrap_or(0) as usize)
}
