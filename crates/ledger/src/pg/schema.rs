//! The PostgreSQL schema and its migrations. Several nodes may start at once: each applies
//! the missing migrations inside one transaction holding a transaction-level advisory lock,
//! so exactly one of them migrates and the others find the work done.
//!
//! The same ledger as the SQLite schema, with two differences made for concurrent writers:
//! the head of the hash chain is a row of its own (`chain_head`, locked once per batch), and
//! the house and escrow balances are split over `SHARDS` rows that writers update by delta,
//! so no single row is written by every batch of every node; readers sum the shards.

use tokio_postgres::Client;

use super::error::pg_error;
use crate::chain::GENESIS;
use crate::error::LedgerError;

/// Rows the house and escrow balances are spread over.
pub const SHARDS: i16 = 16;

/// The advisory lock key that serialises migrations ("croupier" in ASCII).
const MIGRATION_LOCK: i64 = 0x63_726f_7570_6965;

/// Whether the database `url` names already holds a ledger (its journal), asked without
/// creating or changing anything (`StoreLocation::holds_a_ledger`).
pub async fn holds_a_ledger(url: &str) -> Result<bool, LedgerError> {
    // The store's own settings: its connect timeout and statement timeouts included.
    let server = super::connection_config(url)?;
    let (client, _driver) = server.connect_driven().await.map_err(pg_error)?;
    let row = client
        .query_one("SELECT to_regclass('journal') IS NOT NULL", &[])
        .await
        .map_err(pg_error)?;
    Ok(row.get(0))
}

pub fn migrations() -> Vec<String> {
    vec![
        format!(
            r#"
CREATE TABLE journal (
    seq BIGINT PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    round_id TEXT,
    debit TEXT NOT NULL,
    credit TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    -- The player account the entry touches (at most one does), for wallet history.
    player TEXT
);
CREATE INDEX journal_by_player ON journal (player, seq) WHERE player IS NOT NULL;
CREATE FUNCTION journal_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the journal is append-only'; END $$;
CREATE TRIGGER journal_no_update_or_delete BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();

CREATE TABLE chain_head (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, '{GENESIS}');

CREATE TABLE balances (
    account TEXT NOT NULL,
    currency TEXT NOT NULL,
    shard SMALLINT NOT NULL CHECK (shard >= 0 AND shard < {SHARDS}),
    balance BIGINT NOT NULL,
    PRIMARY KEY (account, currency, shard),
    CONSTRAINT players_never_negative CHECK (account NOT LIKE 'player:%' OR balance >= 0),
    CONSTRAINT players_have_one_row CHECK (account NOT LIKE 'player:%' OR shard = 0)
);

CREATE TABLE players (id TEXT PRIMARY KEY, created_ms BIGINT NOT NULL);
CREATE INDEX players_by_time ON players (created_ms);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    player TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_ms);

CREATE TABLE seeds (
    id BIGINT PRIMARY KEY,
    player TEXT NOT NULL,
    server_seed TEXT NOT NULL,
    server_seed_hash TEXT NOT NULL,
    client_seed TEXT NOT NULL,
    next_nonce BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    revealed_ms BIGINT
);
CREATE SEQUENCE seeds_id_seq OWNED BY seeds.id;
CREATE UNIQUE INDEX seeds_one_active ON seeds (player) WHERE revealed_ms IS NULL;
CREATE INDEX seeds_by_time ON seeds (created_ms);

CREATE TABLE rounds (
    id TEXT PRIMARY KEY,
    player TEXT NOT NULL,
    game TEXT NOT NULL,
    status TEXT NOT NULL,
    stake BIGINT NOT NULL,
    payout BIGINT,
    bet TEXT NOT NULL,
    state TEXT NOT NULL,
    seed_id BIGINT NOT NULL,
    nonce BIGINT NOT NULL,
    node TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX rounds_by_player ON rounds (player, created_ms);
CREATE INDEX rounds_open ON rounds (node) WHERE status = 'open';
CREATE INDEX rounds_open_by_player ON rounds (player) WHERE status = 'open';

CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX idempotency_by_time ON idempotency (created_ms);

CREATE TABLE game_status (game TEXT PRIMARY KEY, status TEXT NOT NULL);
"#
        ),
        // 2: a player's sessions, to keep the newest few (the cap of open sessions per player).
        // From this version on, unrevealed server seeds are sealed at rest (crate::seed_seal):
        // a node of an older build finds a newer schema, is not ready, and so never deals
        // from a sealed seed.
        "CREATE INDEX sessions_by_player ON sessions (player, expires_ms);".to_owned(),
    ]
}

/// Server-side routines, (re)created at every start under the migration lock. They are not
/// part of the schema's version, so builds with and without one share a database during a
/// rolling update; a routine whose body changes gets a new name (its version suffix).
///
/// `croupier_append_journal_v1` links a batch's transfers onto the hash chain where the
/// chain head lives: it locks the head, computes each entry's hash exactly as
/// `crate::chain::entry_hash` does (SHA-256 of the `|`-joined fields, hex), inserts the
/// entries and moves the head, all in the statement that sits just before the commit. The
/// head is thus held for no client round trip, and a batch is flushed in one.
///
/// `croupier_claim_keys_v1` claims a batch's idempotency keys (a transaction-level advisory
/// lock each, in the order given) and then reads the records already there. It takes the
/// `idempotency` table's lock first, so the claim is the first lock of every write
/// transaction: one that waits for the table (held exclusively, as the freeze-node drill
/// does to stop a node between two write transactions) has claimed no key another node's
/// retry could wait for. And
/// `croupier_lock_balances_v3` creates the player balance rows not there (at 0, in key order;
/// a row another transaction is creating is waited for, not taken for absent), then reads and
/// locks them all in key order, saying which it created. It finds the rows there by the
/// primary key's index (`account = ANY`, in its order), whatever the table's size when its
/// session planned it: `_v1` looked for them with an anti-join that a session planned while
/// the table was small as a scan of every balance of the currency, and kept, so each batch
/// cost more the more players had signed in since. And its work grows with the batch, not
/// with the batch's square: the accounts not there are a set difference (`EXCEPT`, hashed or
/// sorted), and the created ones a JSON object looked up by binary search. `_v2` compared
/// every account asked for with every one found (`<> ALL`) and every one locked with every
/// one created (`= ANY` of a variable, which PostgreSQL does not hash): 4 ms for a batch of
/// 512 players, 200 ms for 4 096 (`tests::locking_balances_grows_with_the_batch_not_its_square`).
/// (`_v1` and `_v2` stay in the databases they were made in for the builds of a rolling
/// update that still call them.) Each runs statements that must run in this
/// order, a later one in a snapshot taken after the earlier (a volatile function takes one
/// per statement); as one call the server answers them with one message instead of several.
///
/// `croupier_remembered_rows_changed_v1` fails the transaction with a serialisation failure:
/// the read round of a batch that ran on its writers' memory (`remembered::expect`) calls it
/// when a row it locked is not as remembered, so the flush after it in the same round trip
/// never commits on a row that changed since. (`croupier_expect_rows_v1`, which did the whole
/// check in PL/pgSQL, stays in the databases it was made in for the builds of a rolling update
/// that still call it.)
pub const ROUTINES: &str = r#"
CREATE OR REPLACE FUNCTION croupier_remembered_rows_changed_v1() RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rows a batch remembered have changed'
        USING ERRCODE = 'serialization_failure';
END
$$;

CREATE OR REPLACE FUNCTION croupier_claim_keys_v1(p_keys TEXT[])
RETURNS TABLE (found_key TEXT, found_fingerprint TEXT, found_response TEXT)
LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE idempotency IN ACCESS SHARE MODE;
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(p_keys) AS t(k);
    RETURN QUERY SELECT i.key, i.fingerprint, i.response FROM idempotency i
        WHERE i.key = ANY(p_keys);
END
$$;

CREATE OR REPLACE FUNCTION croupier_lock_balances_v3(p_accounts TEXT[], p_currency TEXT)
RETURNS TABLE (locked_account TEXT, locked_balance BIGINT, created BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    absent TEXT[];
    made JSONB := '{}';
BEGIN
    SELECT array_agg(t.a ORDER BY t.a) INTO absent FROM (
        SELECT unnest(p_accounts)
        EXCEPT
        SELECT b.account FROM balances b
            WHERE b.account = ANY(p_accounts) AND b.currency = p_currency AND b.shard = 0
    ) AS t(a);
    IF absent IS NOT NULL THEN
        WITH inserted AS (
            INSERT INTO balances (account, currency, shard, balance)
            SELECT a, p_currency, 0, 0 FROM unnest(absent) AS t(a)
            ON CONFLICT (account, currency, shard) DO NOTHING RETURNING account
        )
        SELECT coalesce(jsonb_object_agg(account, true), '{}') INTO made FROM inserted;
    END IF;
    RETURN QUERY SELECT b.account, b.balance, made ? b.account FROM balances b
        WHERE b.account = ANY(p_accounts) AND b.currency = p_currency AND b.shard = 0
        ORDER BY b.account FOR UPDATE;
END
$$;

CREATE OR REPLACE FUNCTION croupier_append_journal_v1(
    p_ts_ms BIGINT, p_kind TEXT[], p_round_id TEXT[], p_debit TEXT[], p_credit TEXT[],
    p_amount BIGINT[], p_currency TEXT, p_player TEXT[]
) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    head_seq BIGINT;
    head_hash TEXT;
    seqs BIGINT[] := '{}';
    prevs TEXT[] := '{}';
    hashes TEXT[] := '{}';
BEGIN
    SELECT seq, hash INTO head_seq, head_hash FROM chain_head WHERE id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the chain head row is missing';
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_kind, 1), 0) LOOP
        head_seq := head_seq + 1;
        prevs := prevs || head_hash;
        head_hash := encode(sha256(convert_to(
            head_hash || '|' || head_seq || '|' || p_ts_ms || '|' || p_kind[i] || '|'
            || coalesce(p_round_id[i], '') || '|' || p_debit[i] || '|' || p_credit[i] || '|'
            || p_amount[i] || '|' || p_currency, 'UTF8')), 'hex');
        seqs := seqs || head_seq;
        hashes := hashes || head_hash;
    END LOOP;
    INSERT INTO journal (seq, ts_ms, kind, round_id, debit, credit, amount, currency, prev_hash, hash, player)
    SELECT u.seq, p_ts_ms, u.kind, u.round_id, u.debit, u.credit, u.amount, p_currency, u.prev, u.hash, u.player
    FROM unnest(seqs, p_kind, p_round_id, p_debit, p_credit, p_amount, prevs, hashes, p_player)
        AS u(seq, kind, round_id, debit, credit, amount, prev, hash, player);
    UPDATE chain_head SET seq = head_seq, hash = head_hash WHERE id = 1;
    RETURN head_seq;
END
$$;
"#;

/// Brings the schema up to date and (re)creates the routines, under the migration lock;
/// returns the version now in force. (The indexes that only speed reads up are built beside
/// the store afterwards: `read_indexes`.)
pub async fn migrate(client: &mut Client) -> Result<usize, LedgerError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    )
    .await
    .map_err(pg_error)?;
    let current = version_in(&tx).await?;
    let all = migrations();
    for (index, sql) in all.iter().enumerate().skip(current) {
        tx.batch_execute(sql).await.map_err(pg_error)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
            &[&(index as i32 + 1), &crate::clock::now_ms()],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.batch_execute(ROUTINES).await.map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    Ok(all.len())
}

/// The version recorded in the database (0 before the first migration).
pub async fn version(client: &Client) -> Result<usize, LedgerError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    version_in(client).await
}

async fn version_in(client: &impl tokio_postgres::GenericClient) -> Result<usize, LedgerError> {
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    Ok(v.unwrap_or(0) as usize)
}
