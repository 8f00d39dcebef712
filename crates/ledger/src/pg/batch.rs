//! A write batch on PostgreSQL: what its operations read (rows they will change are locked
//! with `FOR UPDATE` as they are read) and what they changed, staged in memory, then flushed
//! in one pipelined round trip: the writes that must see another's rows, on their own; then
//! every other write and the journal, linked onto the chain head by the server (which locks
//! the head last), as one statement (`merge`); then the commit (`Commit`). Beside other
//! batches in flight, the commit does not wait for the disk and a durability barrier after it
//! does, so the chain head is held only for the journal insert and that commit, and several
//! nodes' batches overlap; a batch alone commits plainly, waiting for the disk with the head
//! held, as no other batch is there to mind.

use std::collections::{HashMap, HashSet};

use super::conn::Conn;
use super::error::pg_error;
use super::merge::one_statement;
use super::needs::Needs;
use super::pipeline::{Statement, pipelined};
use super::staged::{Appended, Tracked};
use crate::error::LedgerError;
use crate::model::{Account, Round, Seed, Transfer};

/// An idempotency record: the request's fingerprint and the first answer (JSON).
pub type Record = (String, String);

pub struct NewSession {
    pub token_hash: String,
    pub player: String,
    pub expires_ms: i64,
}

/// Everything a batch has read and changed so far.
#[derive(Default)]
pub struct BatchState {
    pub players: Tracked<String, ()>,
    pub sessions: Appended<NewSession>,
    /// Players whose sessions but the newest N go, after the new ones are in.
    pub session_caps: Appended<(String, u32)>,
    /// Player balances (locked as read).
    pub balances: Tracked<String, i64>,
    /// Player balance rows this batch created (at 0) as it read them (see `prefetch`).
    pub created_balances: Vec<String>,
    /// Changes to the house and escrow balances, applied as deltas to this writer's shard.
    pub deltas: Tracked<String, i64>,
    pub seeds: Tracked<i64, Seed>,
    /// The active seed of each player read so far.
    pub active_seeds: Tracked<String, i64>,
    pub rounds: Tracked<String, Round>,
    pub journal: Appended<Transfer>,
    pub idempotency: Tracked<String, Record>,
    pub game_status: Tracked<String, String>,
    /// Set while the operations run watching for the rows they need (see `prefetch`).
    pub discovery: Option<Needs>,
    /// An operation of the watched run was stopped before a read (see `prefetch`).
    pub stopped: bool,
    /// The first database failure: it aborted the transaction, so the batch cannot commit.
    pub failure: Option<LedgerError>,
}

impl BatchState {
    pub fn accept(&mut self) {
        self.players.accept();
        self.sessions.accept();
        self.session_caps.accept();
        self.balances.accept();
        self.deltas.accept();
        self.seeds.accept();
        self.active_seeds.accept();
        self.rounds.accept();
        self.journal.accept();
        self.idempotency.accept();
        self.game_status.accept();
    }

    /// Forgets the keys' records and the locked rows read so far, for a transaction begun
    /// again (see `prefetch`): only before any operation has run for real, so nothing staged
    /// depends on them.
    pub fn forget_reads(&mut self) {
        self.idempotency = Tracked::default();
        self.players = Tracked::default();
        self.balances = Tracked::default();
        self.created_balances.clear();
        self.seeds = Tracked::default();
        self.active_seeds = Tracked::default();
        self.rounds = Tracked::default();
    }

    /// Throws away what the operations changed, accepted or not, keeping what was read: for
    /// a watched run that an operation's read stopped (see `prefetch`).
    pub fn forget_changes(&mut self) {
        self.players.forget_changes();
        self.sessions.forget();
        self.session_caps.forget();
        self.balances.forget_changes();
        self.deltas.forget_changes();
        self.seeds.forget_changes();
        self.active_seeds.forget_changes();
        self.rounds.forget_changes();
        self.journal.forget();
        self.idempotency.forget_changes();
        self.game_status.forget_changes();
    }

    pub fn discard(&mut self) {
        self.players.discard();
        self.sessions.discard();
        self.session_caps.discard();
        self.balances.discard();
        self.deltas.discard();
        self.seeds.discard();
        self.active_seeds.discard();
        self.rounds.discard();
        self.journal.discard();
        self.idempotency.discard();
        self.game_status.discard();
    }
}

/// How a batch's transaction ends, by whether other batches are in flight on the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// No other batch was in flight when this one took its jobs (none of this store's other
    /// writers', none of another node's as `overlap` sees them): `COMMIT`, which waits for
    /// the disk (and a synchronous standby) as the session says. It holds the chain head
    /// through that wait, which no other batch is there to mind; and it is one transaction
    /// instead of two. A lone bet cost the server 0.66–0.67 ms of CPU against 0.73–0.81 ms
    /// with the barrier (docs/benchmarks.md).
    ///
    /// Only for a batch that writes: a transaction that wrote nothing (a batch of replays,
    /// or of refusals) commits without flushing anything, and the answer it read may be a
    /// record another node committed without waiting and has not yet flushed. Such a batch
    /// ends as `Overlapping` does: the barrier's flush covers every commit before it.
    Alone,
    /// Beside other batches: the commit that does not wait for the disk, then the durability
    /// barrier (`COMMIT_DURABLY`), so the next batch links onto the chain at once and their
    /// waits for the disk are flushed together. Every batch committed as `Alone` is, three
    /// nodes sharing 64 players fell from 11 800 and 12 500 to 8 900 and 10 400 bets/s.
    Overlapping,
}

impl Commit {
    /// The simple query that ends the batch's pipeline.
    fn sql(self) -> &'static str {
        match self {
            Commit::Alone => "COMMIT",
            Commit::Overlapping => COMMIT_DURABLY,
        }
    }
}

/// Writes the batch and commits it, in one pipelined round trip: every table but the journal,
/// then the journal linked onto the chain by the server (`schema::ROUTINES`), and the commit
/// (`Commit`). `shard` is this writer's row of the house and escrow.
pub fn flush(
    conn: Conn<'_>,
    state: &BatchState,
    currency: &str,
    now_ms: i64,
    shard: i16,
    commit: Commit,
) -> Result<(), LedgerError> {
    flush_after(conn, Vec::new(), state, currency, now_ms, shard, commit).map_err(pg_error)?;
    Ok(())
}

/// As `flush`, with `before` sent first in the same round trip (a batch that has not begun
/// its transaction yet: `remembered`); the answers of `before`, in order. The server's error
/// as it came, for the caller to tell a changed row from a lost connection.
pub fn flush_after(
    conn: Conn<'_>,
    before: Vec<Statement>,
    state: &BatchState,
    currency: &str,
    now_ms: i64,
    shard: i16,
    commit: Commit,
) -> Result<Vec<Vec<tokio_postgres::Row>>, tokio_postgres::Error> {
    let answered = before.len();
    let mut statements = before;
    statements.extend(flush_statements(state, currency, now_ms, shard));
    let commit = if statements.len() == answered {
        Commit::Overlapping
    } else {
        commit
    };
    let mut answers = pipelined(conn, &statements, Some(commit.sql()))?;
    answers.truncate(answered);
    Ok(answers)
}

/// The flush's statements. A write that must see another's rows runs after it, on its own: a
/// player's sessions past their cap are counted with the new ones in, a rotated seed is
/// revealed before its successor is inserted ("one active seed per player"), and the unused
/// balance rows go first. Every other write joins the journal's append in one statement
/// (`merge`): a lone dice bet's five writes and its journal entries are one statement.
fn flush_statements(state: &BatchState, currency: &str, now_ms: i64, shard: i16) -> Vec<Statement> {
    let mut apart = Vec::new();
    let mut together = Vec::new();
    let mut add = |writes: Vec<Statement>| {
        if writes.len() > 1 {
            apart.extend(writes);
        } else {
            together.extend(writes);
        }
    };
    add(sessions(state));
    add(seeds(state));
    apart.extend(unused_created_balances(state, currency));
    together.extend(players(state, now_ms));
    together.extend(balances(state, currency, shard));
    together.extend(rounds(state));
    together.extend(idempotency(state, now_ms));
    together.extend(game_status(state));
    let journal = append_journal(state.journal.accepted(), currency, now_ms);
    apart.extend(one_statement(together, journal));
    apart
}

/// Writes that join a table with the batch's rows (`unnest` of array parameters) name the
/// rows they change with `= ANY(...)` on an index as well: the writer's statements are
/// prepared once, and PostgreSQL's generic plan, which cannot see how long the arrays are,
/// otherwise hash-joins them with a sequential scan of the whole table, on every batch (the
/// balances of every player, the rounds of all time). `tests::joined_writes_use_an_index`
/// checks each generic plan.
///
/// The balances are not joined at all: each row found by its key looks its delta up in a JSON
/// object (`$3`, account to delta; a lookup is a binary search of its keys), parsed once (the
/// scalar subquery; a cast of the parameter alone is evaluated again for every row). Joined, on a
/// table PostgreSQL had not analyzed yet (a new database, for its first minute or so), the
/// three-column key made it expect one row, and it compared each row found with every row of
/// the batch: a batch's cost grew with the square of its size
/// (`tests::joined_writes_stay_linear_before_the_first_analyze`).
pub const UPDATE_BALANCES: &str =
    "UPDATE balances SET balance = balances.balance + ((SELECT $3::text::jsonb) ->> balances.account)::bigint
     WHERE balances.account = ANY($1::text[]) AND balances.currency = $2 AND balances.shard = 0";

/// `accounts` and their `values` as the JSON object that `UPDATE_BALANCES` and the check on
/// remembered rows look each account's value up in.
pub fn by_account(accounts: &[String], values: &[i64]) -> String {
    let object: std::collections::BTreeMap<&str, i64> = accounts
        .iter()
        .map(String::as_str)
        .zip(values.iter().copied())
        .collect();
    serde_json::to_string(&object).expect("a map of strings to integers is JSON")
}

/// A player's sessions beyond their cap, oldest first (see `UPDATE_BALANCES`).
pub const REVOKE_SESSIONS: &str = "DELETE FROM sessions s USING (
         SELECT token_hash, t.keep, row_number() OVER (
             PARTITION BY sessions.player ORDER BY expires_ms DESC, token_hash DESC) AS n
         FROM sessions JOIN unnest($1::text[], $2::bigint[]) AS t(player, keep)
             ON sessions.player = t.player
         WHERE sessions.player = ANY($1::text[])
     ) r WHERE s.token_hash = r.token_hash AND r.n > r.keep";

/// Changed seeds (see `UPDATE_BALANCES`).
pub const UPDATE_SEEDS: &str = "UPDATE seeds SET next_nonce = t.n, revealed_ms = t.r,
         server_seed = COALESCE(t.s, seeds.server_seed)
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[]) AS t(id, n, r, s)
     WHERE seeds.id = ANY($1::bigint[]) AND seeds.id = t.id";

/// Changed rounds (see `UPDATE_BALANCES`).
pub const UPDATE_ROUNDS: &str = "UPDATE rounds SET status = t.status, stake = t.stake,
         payout = t.payout, state = t.state, node = t.node, updated_ms = t.updated_ms
     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                 $7::bigint[]) AS t(id, status, stake, payout, state, node, updated_ms)
     WHERE rounds.id = ANY($1::text[]) AND rounds.id = t.id";

/// The commit of a batch beside others (`Commit::Overlapping`), which does not wait for the
/// disk, then the durability barrier: a transaction of its own after the batch's commit,
/// committed as the session says (synchronously by default): PostgreSQL acknowledges it only
/// once the WAL up to its commit record is on disk (and on a synchronous standby), and the
/// batch's commit record is before it. So the batch commits without waiting for the disk while
/// it holds the chain head, the next batch (of any writer) links on at once, and their waits
/// for the disk are flushed together; nothing is acknowledged before the barrier returns.
/// (Taking a transaction id is not enough: PostgreSQL flushes a commit, and waits for a
/// synchronous standby, only when the transaction wrote WAL before its commit record, and an
/// xid alone writes none, so that barrier returned at once and an acknowledged bet could be
/// lost with the primary. A transactional logical message takes an xid and writes one small WAL
/// record, needs no table, no privilege and no `wal_level = logical`.)
///
/// One simple query: the server answers its three statements with one message (and one
/// send) instead of one each. After a failed statement the transaction is aborted, the
/// `SET` fails and the rest is skipped; the writer then drops the connection.
const COMMIT_DURABLY: &str = "SET LOCAL synchronous_commit = off; COMMIT;
     SELECT pg_logical_emit_message(true, 'croupier', '')";

/// The batch's transfers appended to the journal, linked onto the chain head by the server.
fn append_journal(transfers: &[Transfer], currency: &str, now_ms: i64) -> Option<Statement> {
    if transfers.is_empty() {
        return None;
    }
    let column = |f: fn(&Transfer) -> String| transfers.iter().map(f).collect::<Vec<_>>();
    let player = |t: &Transfer| {
        [&t.debit, &t.credit]
            .into_iter()
            .find(|a| a.is_player())
            .map(Account::to_string)
    };
    Some(Statement::new(
        "SELECT croupier_append_journal_v1($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            Box::new(now_ms),
            Box::new(column(|t| t.kind.as_str().to_owned())),
            Box::new(
                transfers
                    .iter()
                    .map(|t| t.round_id.clone())
                    .collect::<Vec<_>>(),
            ),
            Box::new(column(|t| t.debit.to_string())),
            Box::new(column(|t| t.credit.to_string())),
            Box::new(transfers.iter().map(|t| t.amount).collect::<Vec<_>>()),
            Box::new(currency.to_owned()),
            Box::new(transfers.iter().map(player).collect::<Vec<_>>()),
        ],
    ))
}

fn players(state: &BatchState, now_ms: i64) -> Option<Statement> {
    let new: Vec<String> = state
        .players
        .changes()
        .filter(|(_, before, now)| before.is_none() && now.is_some())
        .map(|(id, _, _)| id.clone())
        .collect();
    (!new.is_empty()).then(|| {
        Statement::new(
            "INSERT INTO players (id, created_ms) SELECT unnest($1::text[]), $2",
            vec![Box::new(new), Box::new(now_ms)],
        )
    })
}

/// New sessions, then the players' sessions beyond their cap revoked (oldest first).
fn sessions(state: &BatchState) -> Vec<Statement> {
    let rows = state.sessions.accepted();
    let mut out = Vec::new();
    if !rows.is_empty() {
        out.push(Statement::new(
            "INSERT INTO sessions (token_hash, player, expires_ms)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
            vec![
                Box::new(
                    rows.iter()
                        .map(|s| s.token_hash.clone())
                        .collect::<Vec<_>>(),
                ),
                Box::new(rows.iter().map(|s| s.player.clone()).collect::<Vec<_>>()),
                Box::new(rows.iter().map(|s| s.expires_ms).collect::<Vec<_>>()),
            ],
        ));
    }
    // One row per player (the smallest cap asked for): a player listed twice would count
    // each of their sessions twice.
    let mut caps: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
    for (player, keep) in state.session_caps.accepted() {
        caps.entry(player)
            .and_modify(|k| *k = (*k).min(*keep))
            .or_insert(*keep);
    }
    if !caps.is_empty() {
        out.push(Statement::new(
            REVOKE_SESSIONS,
            vec![
                Box::new(caps.keys().map(|p| (*p).to_owned()).collect::<Vec<_>>()),
                Box::new(caps.values().map(|k| i64::from(*k)).collect::<Vec<_>>()),
            ],
        ));
    }
    out
}

/// Balances change by delta. A player's row is locked when read (created at 0 first if it was
/// not there, see `prefetch`) and updated; the rows the batch created and no accepted transfer
/// names are deleted (`unused_created_balances`, before). A row loaded as absent all the
/// same (one deleted between its creation and the read) is inserted, adding to a row another
/// batch may have made meanwhile. (An insert carries the whole new balance, never a negative
/// delta: PostgreSQL checks a row's constraints before it finds the conflict.) The house and
/// escrow change by delta on this writer's shard; a delta that nets to zero is not written (a
/// settled dice round moves its stake into escrow and out again, and a row updated by 0 costs
/// the server an update, its WAL and a row lock for nothing).
fn balances(state: &BatchState, currency: &str, shard: i16) -> Vec<Statement> {
    let mut updated: (Vec<String>, Vec<i64>) = Default::default();
    let mut created: (Vec<String>, Vec<i64>) = Default::default();
    for (account, before, now) in state.balances.changes() {
        let now = now.copied().unwrap_or(0);
        match before {
            Some(before) => {
                updated.0.push(account.clone());
                updated.1.push(now - before);
            }
            None => {
                created.0.push(account.clone());
                created.1.push(now);
            }
        }
    }
    let shared: (Vec<String>, Vec<i64>) = state
        .deltas
        .changes()
        .filter_map(|(account, _, now)| now.map(|v| (account.clone(), *v)))
        .filter(|(_, delta)| *delta != 0)
        .unzip();
    let mut out = Vec::new();
    if !updated.0.is_empty() {
        let deltas = by_account(&updated.0, &updated.1);
        out.push(Statement::new(
            UPDATE_BALANCES,
            vec![
                Box::new(updated.0),
                Box::new(currency.to_owned()),
                Box::new(deltas),
            ],
        ));
    }
    for ((accounts, values), row_shard) in [(created, 0), (shared, shard)] {
        if accounts.is_empty() {
            continue;
        }
        out.push(Statement::new(
            "INSERT INTO balances (account, currency, shard, balance)
             SELECT a, $2, $3, d FROM unnest($1::text[], $4::bigint[]) AS t(a, d)
             ON CONFLICT (account, currency, shard) DO UPDATE SET balance = balances.balance + EXCLUDED.balance",
            vec![
                Box::new(accounts),
                Box::new(currency.to_owned()),
                Box::new(row_shard),
                Box::new(values),
            ],
        ));
    }
    out
}

/// Deletes the balance rows the batch created as it read them and no accepted transfer
/// names: the operations that read them were refused, or only looked.
fn unused_created_balances(state: &BatchState, currency: &str) -> Option<Statement> {
    let unused = unused_created(state);
    (!unused.is_empty()).then(|| {
        Statement::new(
            "DELETE FROM balances
             WHERE account = ANY($1::text[]) AND currency = $2 AND shard = 0 AND balance = 0",
            vec![Box::new(unused), Box::new(currency.to_owned())],
        )
    })
}

/// The player balance rows the batch created (at 0) as it read them and no accepted
/// transfer names: its flush deletes them.
pub fn unused_created(state: &BatchState) -> Vec<String> {
    if state.created_balances.is_empty() {
        return Vec::new();
    }
    let named: HashSet<String> = state
        .journal
        .accepted()
        .iter()
        .flat_map(|t| [t.debit.to_string(), t.credit.to_string()])
        .collect();
    state
        .created_balances
        .iter()
        .filter(|account| !named.contains(*account))
        .cloned()
        .collect()
}

/// Changed seeds are updated before new ones are inserted: a rotation reveals the old seed
/// first, so the "one active seed per player" index holds at every statement. A seed revealed
/// by the batch is written back with its server seed in clear (`seed_seal`).
fn seeds(state: &BatchState) -> Vec<Statement> {
    type Updates = (Vec<i64>, Vec<i64>, Vec<Option<i64>>, Vec<Option<String>>);
    let mut updated: Updates = Default::default();
    let mut new: Vec<&Seed> = Vec::new();
    for (id, before, now) in state.seeds.changes() {
        match (before, now) {
            (Some(before), Some(seed)) => {
                updated.0.push(*id);
                updated.1.push(seed.next_nonce as i64);
                updated.2.push(seed.revealed_ms);
                let revealed_now = before.revealed_ms.is_none() && seed.revealed_ms.is_some();
                updated
                    .3
                    .push(revealed_now.then(|| seed.server_seed.clone()));
            }
            (None, Some(seed)) => new.push(seed),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if !updated.0.is_empty() {
        out.push(Statement::new(
            UPDATE_SEEDS,
            vec![
                Box::new(updated.0),
                Box::new(updated.1),
                Box::new(updated.2),
                Box::new(updated.3),
            ],
        ));
    }
    if !new.is_empty() {
        out.push(Statement::new(
            "INSERT INTO seeds (id, player, server_seed, server_seed_hash, client_seed, next_nonce, created_ms, revealed_ms)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::bigint[], $7::bigint[], $8::bigint[])",
            vec![
                Box::new(new.iter().map(|s| s.id).collect::<Vec<_>>()),
                Box::new(new.iter().map(|s| s.player.clone()).collect::<Vec<_>>()),
                Box::new(new.iter().map(|s| s.server_seed.clone()).collect::<Vec<_>>()),
                Box::new(new.iter().map(|s| s.server_seed_hash.clone()).collect::<Vec<_>>()),
                Box::new(new.iter().map(|s| s.client_seed.clone()).collect::<Vec<_>>()),
                Box::new(new.iter().map(|s| s.next_nonce as i64).collect::<Vec<_>>()),
                Box::new(new.iter().map(|s| s.created_ms).collect::<Vec<_>>()),
                Box::new(new.iter().map(|s| s.revealed_ms).collect::<Vec<_>>()),
            ],
        ));
    }
    out
}

fn rounds(state: &BatchState) -> Vec<Statement> {
    let (mut new, mut changed): (Vec<&Round>, Vec<&Round>) = (Vec::new(), Vec::new());
    for (_, before, now) in state.rounds.changes() {
        match (before, now) {
            (None, Some(round)) => new.push(round),
            (Some(_), Some(round)) => changed.push(round),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if !new.is_empty() {
        out.push(insert_rounds(&new));
    }
    if !changed.is_empty() {
        out.push(Statement::new(
            UPDATE_ROUNDS,
            vec![
                Box::new(changed.iter().map(|r| r.id.clone()).collect::<Vec<_>>()),
                Box::new(
                    changed
                        .iter()
                        .map(|r| r.status.as_str().to_owned())
                        .collect::<Vec<_>>(),
                ),
                Box::new(changed.iter().map(|r| r.stake).collect::<Vec<_>>()),
                Box::new(changed.iter().map(|r| r.payout).collect::<Vec<_>>()),
                Box::new(changed.iter().map(|r| r.state.clone()).collect::<Vec<_>>()),
                Box::new(changed.iter().map(|r| r.node.clone()).collect::<Vec<_>>()),
                Box::new(changed.iter().map(|r| r.updated_ms).collect::<Vec<_>>()),
            ],
        ));
    }
    out
}

fn insert_rounds(new: &[&Round]) -> Statement {
    let text = |f: fn(&Round) -> String| Box::new(new.iter().map(|r| f(r)).collect::<Vec<_>>());
    let int = |f: fn(&Round) -> i64| Box::new(new.iter().map(|r| f(r)).collect::<Vec<_>>());
    Statement::new(
        "INSERT INTO rounds (id, player, game, status, stake, payout, bet, state, seed_id, nonce, node, created_ms, updated_ms)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                              $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::text[], $12::bigint[], $13::bigint[])",
        vec![
            text(|r| r.id.clone()),
            text(|r| r.player.clone()),
            text(|r| r.game.clone()),
            text(|r| r.status.as_str().to_owned()),
            int(|r| r.stake),
            Box::new(new.iter().map(|r| r.payout).collect::<Vec<_>>()),
            text(|r| r.bet.clone()),
            text(|r| r.state.clone()),
            int(|r| r.seed_id),
            int(|r| r.nonce as i64),
            text(|r| r.node.clone()),
            int(|r| r.created_ms),
            int(|r| r.updated_ms),
        ],
    )
}

fn idempotency(state: &BatchState, now_ms: i64) -> Option<Statement> {
    let new: HashMap<&String, &Record> = state
        .idempotency
        .changes()
        .filter_map(|(key, before, now)| before.is_none().then_some((key, now?)))
        .collect();
    (!new.is_empty()).then(|| {
        Statement::new(
            "INSERT INTO idempotency (key, fingerprint, response, created_ms)
             SELECT k, f, r, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS t(k, f, r)",
            vec![
                Box::new(new.keys().map(|k| (*k).clone()).collect::<Vec<_>>()),
                Box::new(new.values().map(|r| r.0.clone()).collect::<Vec<_>>()),
                Box::new(new.values().map(|r| r.1.clone()).collect::<Vec<_>>()),
                Box::new(now_ms),
            ],
        )
    })
}

fn game_status(state: &BatchState) -> Option<Statement> {
    let (games, statuses): (Vec<String>, Vec<String>) = state
        .game_status
        .changes()
        .filter_map(|(game, _, now)| now.map(|s| (game.clone(), s.clone())))
        .unzip();
    (!games.is_empty()).then(|| {
        Statement::new(
            "INSERT INTO game_status (game, status) SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT (game) DO UPDATE SET status = EXCLUDED.status",
            vec![Box::new(games), Box::new(statuses)],
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EntryKind, RoundStatus};

    fn seed(id: i64, next_nonce: u64, revealed_ms: Option<i64>) -> Seed {
        Seed {
            id,
            player: "p".into(),
            server_seed: "s".into(),
            server_seed_hash: "h".into(),
            client_seed: "c".into(),
            next_nonce,
            created_ms: 0,
            revealed_ms,
        }
    }

    /// What a lone dice bet leaves staged: its player's balance, the house's delta, its seed's
    /// nonce, a settled round, its key's record and three journal entries.
    fn a_lone_bet() -> BatchState {
        let mut state = BatchState::default();
        state.balances.load("player:p".into(), Some(100));
        state.balances.set("player:p".into(), Some(90));
        state.deltas.set("house".into(), Some(10));
        state.seeds.load(1, Some(seed(1, 0, None)));
        state.seeds.set(1, Some(seed(1, 1, None)));
        let round = Round {
            id: "r".into(),
            player: "p".into(),
            game: "dice".into(),
            status: RoundStatus::Settled,
            stake: 10,
            payout: Some(0),
            bet: "{}".into(),
            state: "{}".into(),
            seed_id: 1,
            nonce: 0,
            node: "node-1".into(),
            created_ms: 0,
            updated_ms: 0,
        };
        state.rounds.set("r".into(), Some(round));
        state
            .idempotency
            .set("k".into(), Some(("f".into(), "{}".into())));
        for (kind, debit, credit) in [
            (EntryKind::Stake, Account::player("p"), Account::InRound),
            (EntryKind::Settle, Account::InRound, Account::House),
        ] {
            state.journal.push(Transfer {
                kind,
                round_id: Some("r".into()),
                debit,
                credit,
                amount: 10,
            });
        }
        state.accept();
        state
    }

    fn sql_of(statements: &[Statement]) -> Vec<&str> {
        statements.iter().map(|s| s.sql.as_ref()).collect()
    }

    #[test]
    fn a_lone_bets_writes_and_journal_are_one_statement() {
        let statements = flush_statements(&a_lone_bet(), "EUR", 0, 3);
        assert_eq!(statements.len(), 1, "{:#?}", sql_of(&statements));
        let sql = &statements[0].sql;
        for write in [
            "UPDATE balances",
            "INSERT INTO balances",
            "UPDATE seeds",
            "INSERT INTO rounds",
            "INSERT INTO idempotency",
        ] {
            assert!(sql.contains(write), "{write} missing from {sql}");
        }
        assert!(sql.contains("SELECT croupier_append_journal_v1("), "{sql}");
    }

    #[test]
    fn a_delta_that_nets_to_zero_is_not_written() {
        let mut state = a_lone_bet();
        state.deltas.set("escrow".into(), Some(0));
        state.accept();
        let shared = balances(&state, "EUR", 3)
            .into_iter()
            .find(|s| s.sql.contains("INSERT INTO balances"))
            .expect("the house's delta is written");
        let accounts = format!("{:?}", shared.params[0]);
        assert_eq!(accounts, r#"["house"]"#);

        let mut settled_even = BatchState::default();
        settled_even.deltas.set("house".into(), Some(0));
        settled_even.accept();
        assert!(balances(&settled_even, "EUR", 3).is_empty());
    }

    #[test]
    fn a_rotated_seed_is_revealed_before_its_successor_is_inserted() {
        let mut state = a_lone_bet();
        state.seeds.set(1, Some(seed(1, 1, Some(5))));
        state.seeds.set(2, Some(seed(2, 0, None)));
        state.accept();
        let statements = flush_statements(&state, "EUR", 0, 3);
        let sql = sql_of(&statements);
        assert_eq!(sql.len(), 3, "{sql:#?}");
        assert!(sql[0].starts_with("UPDATE seeds"), "{}", sql[0]);
        assert!(sql[1].starts_with("INSERT INTO seeds"), "{}", sql[1]);
        assert!(!sql[2].contains(" seeds "), "{}", sql[2]);
    }

    #[test]
    fn sessions_past_the_cap_are_counted_with_the_new_ones_in() {
        let mut state = BatchState::default();
        state.sessions.push(NewSession {
            token_hash: "t".into(),
            player: "p".into(),
            expires_ms: 1,
        });
        state.session_caps.push(("p".into(), 2));
        state.players.set("p".into(), Some(()));
        state.accept();
        let statements = flush_statements(&state, "EUR", 0, 3);
        let sql = sql_of(&statements);
        assert_eq!(sql.len(), 3, "{sql:#?}");
        assert!(sql[0].starts_with("INSERT INTO sessions"), "{}", sql[0]);
        assert_eq!(sql[1], REVOKE_SESSIONS);
        assert!(sql[2].starts_with("INSERT INTO players"), "{}", sql[2]);
    }
}
