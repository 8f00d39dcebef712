//! Reading a batch's rows together instead of one operation at a time. Inside a batch every
//! row an operation may change is read (and locked) when it first asks for it; asked one by
//! one, that is a round trip per bet while the whole batch waits. So before a batch's
//! operations run for real, each runs once in discovery: its first read of a row the batch
//! has not loaded yet is noted here and stops it (its changes are thrown away). The rows every
//! operation asked for are then read and locked in one pipelined round trip, in key order (so
//! two writers lock shared rows in the same order), and the real run finds them loaded. The
//! real run watches: an operation that still asks for a row not loaded is stopped as in
//! discovery, and then the run's changes are thrown away, the new rows read, and the run
//! made again (an action reads its round, then the player), a few times at most; whatever is
//! still missing is then read the same way, on its own, as the operations ask for it.
//!
//! A player's balance row that does not exist yet is created (at 0) as it is read
//! (`croupier_lock_balances_v3`, `schema::ROUTINES`), so it is locked with the others, in key
//! order, before the batch goes on; the flush deletes the ones no accepted transfer names.
//! Created later, at the flush, it was the one lock a batch took after its reads: by then
//! another batch could have created and committed the row and a third locked it while waiting
//! for a row the first held, a deadlock the server broke after a second by failing a batch.
//!
//! A batch holds the row locks of one read round at a time, taken in one order every batch
//! follows (seeds by id, then balances by account, then rounds by id). When a later discovery
//! run asks for more rows (an action reads its round, then its player's seed and balance),
//! the batch gives back everything it holds (it rolls back and begins again, in the same
//! round trip) and claims its keys and reads everything it needs so far again, in that order
//! (`writer::ReadRound`). Locking the new rows on top of the old ones, as it did before, took
//! them in the order of the steps:
//! a batch holding `b` from its first round and asking for `a` in its second waited for one
//! that held `a` and queued for `b`, a deadlock the server broke after a second; under load
//! they came in cascades.

use std::collections::BTreeSet;

use tokio_postgres::Row;

use super::batch::BatchState;
use super::conn::Conn;
use super::needs::Needs;
use super::pipeline::{Statement, run_pipelined};
use super::rows::{ROUND_COLUMNS, SEED_COLUMNS, round_from, seed_from};
use crate::error::LedgerError;

/// How many runs stopped by a missing row (the first discovery run, then watched real runs) a
/// batch makes at most before it runs unwatched.
pub const DISCOVERY_PASSES: usize = 3;

/// Reads and locks every needed row in one round trip and loads it (or its absence) into the
/// batch.
pub fn prefetch(
    conn: Conn<'_>,
    currency: &str,
    needs: Needs,
    state: &mut BatchState,
) -> Result<(), LedgerError> {
    let (statements, reads) = Reads::new(currency, &needs);
    let answers = run_pipelined(conn, &statements)?;
    reads.load(answers, state)
}

/// How the answers of a prefetch's statements are loaded: the statements read (and lock)
/// what a discovery run asked for, sent in a pipeline of their own or after other statements.
pub struct Reads<'a> {
    kinds: Vec<Kind>,
    needs: &'a Needs,
}

impl<'a> Reads<'a> {
    /// The statements to send, and how to load their answers.
    pub fn new(currency: &str, needs: &'a Needs) -> (Vec<Statement>, Reads<'a>) {
        let (kinds, statements) = statements(currency, needs).into_iter().unzip();
        (statements, Reads { kinds, needs })
    }

    /// Loads the answers of `statements`, in their order, into the batch.
    pub fn load(self, answers: Vec<Vec<Row>>, state: &mut BatchState) -> Result<(), LedgerError> {
        let needs = self.needs;
        for (kind, rows) in self.kinds.iter().zip(answers) {
            match kind {
                Kind::Seeds => load_seeds(&rows, needs, state),
                Kind::Balances => load_balances(&rows, &needs.balances, state),
                Kind::Rounds => load_rounds(&rows, &needs.rounds, state)?,
                Kind::PlayerClaims => {}
                Kind::Players => load_players(&rows, &needs.players, state),
            }
        }
        Ok(())
    }
}

enum Kind {
    PlayerClaims,
    Players,
    Seeds,
    Balances,
    Rounds,
}

/// The statements of a read round, one per table, in the order every batch locks in. A
/// player's active seed and seeds named by id are one statement, so they too are locked in
/// one order (by id); in two, a batch locked active seeds by player, then others by id.
///
/// A round asked for comes with its seed and its player's balance, read and locked in the
/// same round, before it, in that order: an action on a round reads the round, then its seed,
/// then the player's balance, each known only from the one before, so they took three read
/// rounds (three discovery runs, each round rolled back and begun again) where one does. A
/// round's seed and player never change, so the rounds they are found by need no lock yet.
fn statements(currency: &str, needs: &Needs) -> Vec<(Kind, Statement)> {
    let mut out = Vec::new();
    if !needs.players.is_empty() {
        let players: Vec<String> = needs.players.iter().cloned().collect();
        out.push((
            Kind::PlayerClaims,
            Statement::new(CLAIM_PLAYERS, vec![Box::new(players.clone())]),
        ));
        out.push((
            Kind::Players,
            Statement::new(
                "SELECT id FROM players WHERE id = ANY($1)",
                vec![Box::new(players)],
            ),
        ));
    }
    let rounds: Vec<String> = needs.rounds.iter().cloned().collect();
    if !needs.active_seeds.is_empty() || !needs.seeds.is_empty() || !rounds.is_empty() {
        let players: Vec<String> = needs.active_seeds.iter().cloned().collect();
        let ids: Vec<i64> = needs.seeds.iter().copied().collect();
        out.push((
            Kind::Seeds,
            Statement::new(
                format!("SELECT {SEED_COLUMNS} FROM seeds {SEEDS_WANTED} ORDER BY id FOR UPDATE"),
                vec![Box::new(players), Box::new(ids), Box::new(rounds.clone())],
            ),
        ));
    }
    if !needs.balances.is_empty() || !rounds.is_empty() {
        let accounts: Vec<String> = needs.balances.iter().cloned().collect();
        out.push((
            Kind::Balances,
            Statement::new(
                LOCK_BALANCES,
                vec![
                    Box::new(accounts),
                    Box::new(currency.to_owned()),
                    Box::new(rounds.clone()),
                ],
            ),
        ));
    }
    if !rounds.is_empty() {
        out.push((
            Kind::Rounds,
            Statement::new(
                format!(
                    "SELECT {ROUND_COLUMNS} FROM rounds WHERE id = ANY($1) ORDER BY id FOR UPDATE"
                ),
                vec![Box::new(rounds)],
            ),
        ));
    }
    out
}

/// Claims the players whose existence a batch asks (a transaction-level advisory lock each,
/// in name order, in a space of their own beside the idempotency keys'), before their read,
/// which then runs in a snapshot taken after the claim. A new player signing in through two
/// nodes at once (the control plane's synthetic checks sign the day's test player in on every
/// node at the same second) is then created by one batch; the other waits for its commit and
/// reads the player as there. Without the claim both read it as absent, and the second
/// batch's insert failed on the primary key once the first committed, aborting every other
/// bet of its batch for a retry on a fresh connection. Claims come after the keys' and before
/// any row lock, as every batch takes them.
const CLAIM_PLAYERS: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended(p, 1)) FROM unnest($1::text[]) AS t(p)";

/// The seeds a read round locks: players' active seeds ($1), seeds by id ($2) and the seeds of
/// the rounds asked for ($3). The rounds' seeds are an array computed once (an `IN` subquery
/// beside the `OR`s would be a filter over every seed), so the seeds are found by index.
/// `tests::joined_writes_use_an_index` checks the plan.
pub const SEEDS_WANTED: &str = "WHERE (player = ANY($1) AND revealed_ms IS NULL)
       OR id = ANY($2::bigint[] || ARRAY(SELECT seed_id FROM rounds WHERE id = ANY($3::text[])))";

/// The balances a read round locks (created at 0 when absent, see `schema::ROUTINES`): the
/// accounts asked for ($1) and those of the players of the rounds asked for ($3).
pub const LOCK_BALANCES: &str = "SELECT * FROM croupier_lock_balances_v3(
         $1::text[] || ARRAY(SELECT 'player:' || player FROM rounds WHERE id = ANY($3::text[])), $2)";

fn load_players(rows: &[Row], asked: &BTreeSet<String>, state: &mut BatchState) {
    for row in rows {
        state.players.load(row.get(0), Some(()));
    }
    for player in asked {
        state.players.load(player.clone(), None);
    }
}

fn load_seeds(rows: &[Row], needs: &Needs, state: &mut BatchState) {
    for row in rows {
        let seed = seed_from(row);
        if seed.revealed_ms.is_none() && needs.active_seeds.contains(&seed.player) {
            state.active_seeds.load(seed.player.clone(), Some(seed.id));
        }
        state.seeds.load(seed.id, Some(seed));
    }
    // A load never overwrites an earlier one: players with a seed keep theirs.
    for player in &needs.active_seeds {
        state.active_seeds.load(player.clone(), None);
    }
    for id in &needs.seeds {
        state.seeds.load(*id, None);
    }
}

fn load_balances(rows: &[Row], accounts: &BTreeSet<String>, state: &mut BatchState) {
    for row in rows {
        let account: String = row.get(0);
        if row.get::<_, bool>(2) {
            state.created_balances.push(account.clone());
        }
        state.balances.load(account, Some(row.get(1)));
    }
    for account in accounts {
        // Every row is there (created just before when it was not); one that went meanwhile
        // is loaded as absent, and the flush inserts it again.
        state.balances.load(account.clone(), None);
    }
}

fn load_rounds(
    rows: &[Row],
    ids: &BTreeSet<String>,
    state: &mut BatchState,
) -> Result<(), LedgerError> {
    for row in rows {
        let round = round_from(row)?;
        state.rounds.load(round.id.clone(), Some(round));
    }
    for id in ids {
        state.rounds.load(id.clone(), None);
    }
    Ok(())
}
