//! What a store's writers remember of the players they served: each player's balance and
//! active seed as its last batch committed them. A bet needs exactly these two rows, and read
//! and locked in a round trip of their own they cost a batch half its round trips: a lone bet
//! waited for `BEGIN` and its reads, then for its flush. A batch whose every operation asks
//! only for rows remembered here loads them from memory, runs, and sends everything in one
//! round trip: `BEGIN`, the keys' claim, a check that the rows are still as remembered (which
//! locks them, in the order every batch locks in: `expect`), the flush and
//! the commit (`writer::Writer::run_remembered`).
//!
//! Memory is only ever a guess. Another node may have served the player since (a gateway's
//! failover, a player on two devices), an operator may have adjusted the balance, a seed may
//! have been rotated: the check then finds a row changed and fails the transaction before
//! its commit, and the batch runs again the usual way, reading and locking what it needs.
//! So nothing a batch commits rests on memory; a stale entry costs a batch a second try.
//!
//! A batch *takes* its players' entries before it runs, whichever way it runs, and puts back
//! what it committed: two batches of one store that serve one player at once (two bets sent
//! together) never both use memory, so the second reads the rows and waits for the first's
//! locks instead of failing its check. An entry is put back only after a commit, so a batch
//! that failed leaves its players to be read afresh. A committed batch also forgets every
//! other player whose rows it held: an operation that asked first for something else (a
//! blackjack hand's round) and then paid the player changed a balance memory still held,
//! and the player's next bet failed its check (a fifth of the hands in a load test).
//!
//! It also remembers the idempotency keys its batches committed lately: an operation holding
//! one is a replay. It is not run on memory (its insert of the key would fail, and with it the
//! whole batch, after the round trip); the keys' claim in the same round trip reads its
//! record, which answers it. So a client's retry, or a load test's replay of one bet in
//! twenty, no longer sends the other bets of its batch the usual way (two round trips, the
//! players' rows read again): with batches of 15 to 24 bets, that was every second batch of
//! `croupier loadtest`. A key forgotten meanwhile by the store's retention is answered
//! "unavailable" once and forgotten here too, and the client's retry runs as a new bet.

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;

use super::batch::{BatchState, by_account, unused_created};
use super::needs::Needs;
use super::pipeline::Statement;
use crate::model::{Account, Seed};

/// Players remembered at most: about 400 bytes each (the sealed seed's text is most of it).
/// Past it the memory starts again empty: its players are then read once each.
const MOST_PLAYERS: usize = 65_536;
/// Keys remembered at most (about 100 bytes each); past it, the memory starts again empty.
const MOST_KEYS: usize = 65_536;

/// A player's rows as the last batch that served them committed them.
#[derive(Clone, Debug, PartialEq)]
pub struct PlayerRows {
    pub balance: i64,
    /// The active (unrevealed) seed, as stored (its server seed sealed).
    pub seed: Seed,
}

/// A store's memory of its players' rows and of the keys it committed, shared by its
/// writers.
#[derive(Default)]
pub struct Remembered {
    players: Mutex<HashMap<String, PlayerRows>>,
    keys: Mutex<HashSet<String>>,
}

impl Remembered {
    /// Takes the entries of every player `needs` names (by active seed or by balance).
    /// `Some` only when the batch asked for nothing but players' balances and active seeds,
    /// both of each player, and every one is remembered.
    pub fn take(&self, needs: &Needs) -> Option<Vec<PlayerRows>> {
        let by_balance = needs.balances.iter().filter_map(|a| player_of(a));
        let mut players = self.players.lock();
        let taken: Vec<Option<PlayerRows>> = needs
            .active_seeds
            .iter()
            .map(|player| players.remove(player))
            .collect();
        for player in by_balance {
            players.remove(&player);
        }
        if !only_players_rows(needs) {
            return None;
        }
        taken.into_iter().collect()
    }

    /// Those of `keys` this store committed lately: their operations are replays.
    pub fn committed_lately(&self, keys: &[&str]) -> HashSet<String> {
        let committed = self.keys.lock();
        keys.iter()
            .filter(|k| committed.contains(**k))
            .map(|k| (*k).to_owned())
            .collect()
    }

    /// Forgets `key`: a replay found no record of it (the store's retention removed it).
    pub fn forget_key(&self, key: &str) {
        self.keys.lock().remove(key);
    }

    /// Remembers the rows of every player whose balance and active seed `state` holds, as
    /// the batch, now committed, left them, and forgets every other player whose rows it
    /// held; and the keys it committed. A player left without an active seed, or whose
    /// balance row the batch created and then deleted unused, is not remembered.
    pub fn keep(&self, state: &BatchState) {
        self.keep_keys(state);
        let deleted: HashSet<String> = unused_created(state).into_iter().collect();
        let rows: Vec<(String, PlayerRows)> = state
            .active_seeds
            .current_values()
            .filter_map(|(player, id)| {
                let seed = state.seeds.get(id).flatten()?;
                let account = Account::player(player).to_string();
                let balance = *state.balances.get(&account).flatten()?;
                (seed.revealed_ms.is_none() && !deleted.contains(&account)).then(|| {
                    let rows = PlayerRows {
                        balance,
                        seed: seed.clone(),
                    };
                    (player.clone(), rows)
                })
            })
            .collect();
        let mut players = self.players.lock();
        for player in held_players(state) {
            players.remove(&player);
        }
        if players.len() + rows.len() > MOST_PLAYERS {
            players.clear();
        }
        players.extend(rows);
    }

    fn keep_keys(&self, state: &BatchState) {
        let new: Vec<&String> = state
            .idempotency
            .changes()
            .filter(|(_, before, now)| before.is_none() && now.is_some())
            .map(|(key, _, _)| key)
            .collect();
        if new.is_empty() {
            return;
        }
        let mut keys = self.keys.lock();
        if keys.len() + new.len() > MOST_KEYS {
            keys.clear();
        }
        keys.extend(new.into_iter().cloned());
    }
}

/// Every player whose balance, active seed or a seed of whom the batch read or changed (a
/// player may come more than once).
fn held_players(state: &BatchState) -> impl Iterator<Item = String> + '_ {
    let by_balance = state.balances.keys().filter_map(|a| player_of(a));
    let by_seed = state
        .seeds
        .current_values()
        .map(|(_, seed)| seed.player.clone());
    let by_active_seed = state.active_seeds.keys().cloned();
    by_balance.chain(by_seed).chain(by_active_seed)
}

/// The player whose account `account` names, if it is a player's.
fn player_of(account: &str) -> Option<String> {
    match account.parse() {
        Ok(Account::Player(player)) => Some(player),
        _ => None,
    }
}

/// Loads remembered rows into a batch as if it had read them.
pub fn load(rows: &[PlayerRows], state: &mut BatchState) {
    for row in rows {
        let player = row.seed.player.clone();
        state
            .balances
            .load(Account::player(&player).to_string(), Some(row.balance));
        state.active_seeds.load(player, Some(row.seed.id));
        state.seeds.load(row.seed.id, Some(row.seed.clone()));
    }
}

/// The statement that locks the remembered rows and fails the transaction unless they are
/// still as remembered: the seeds by id, then the balances by account (the order every batch
/// locks in), each compared with what memory holds, and `croupier_remembered_rows_changed_v1`
/// (`schema::ROUTINES`) called only when one differs, to raise a serialisation failure. Plain
/// SQL rather than a PL/pgSQL routine: each scalar subquery is run when the condition first
/// reads it, left to right, so the locks come in that order, and a batch whose rows are as
/// remembered runs no routine at all. The routine it replaces (`croupier_expect_rows_v1`,
/// its two queries in one call) cost the server 0.11 ms a batch over an empty transaction
/// against 0.075 ms for this statement (docs/benchmarks.md).
pub fn expect(rows: &[PlayerRows], currency: &str) -> Statement {
    let seeds = rows.iter().map(|r| &r.seed);
    let accounts: Vec<String> = rows
        .iter()
        .map(|r| Account::player(&r.seed.player).to_string())
        .collect();
    let balances: Vec<i64> = rows.iter().map(|r| r.balance).collect();
    let balances = by_account(&accounts, &balances);
    Statement::new(
        EXPECT_ROWS,
        vec![
            Box::new(seeds.clone().map(|s| s.id).collect::<Vec<_>>()),
            Box::new(
                seeds
                    .clone()
                    .map(|s| s.next_nonce as i64)
                    .collect::<Vec<_>>(),
            ),
            Box::new(seeds.map(|s| s.server_seed.clone()).collect::<Vec<_>>()),
            Box::new(accounts),
            Box::new(balances),
            Box::new(currency.to_owned()),
        ],
    )
}

/// See `expect`: the seeds unrevealed, at the nonce and with the sealed server seed given;
/// the balances at the amount given. The seeds' conditions are the count's filter, not a
/// `WHERE`, which the planner may push down into the locking read: it then found the seeds
/// through the index of every player's active seed (seen on a nearly empty table, with the
/// default settings; `tests::the_remembered_rows_check_finds_its_rows_by_key`). Each balance
/// looks its remembered amount up in a JSON object (`$5`, account to balance) rather than
/// joining the remembered rows, for the reason `batch::UPDATE_BALANCES` gives.
pub const EXPECT_ROWS: &str = "SELECT CASE WHEN
    (SELECT count(*) FILTER (
         WHERE s.next_nonce = t.nonce AND s.server_seed = t.sealed AND s.revealed_ms IS NULL)
     FROM (
        SELECT s.id, s.next_nonce, s.server_seed, s.revealed_ms FROM seeds s
        WHERE s.id = ANY($1::bigint[]) ORDER BY s.id FOR UPDATE
     ) s JOIN unnest($1::bigint[], $2::bigint[], $3::text[]) AS t(id, nonce, sealed) ON s.id = t.id
    ) = cardinality($1::bigint[])
    AND (SELECT count(*) FILTER (WHERE b.balance = ((SELECT $5::text::jsonb) ->> b.account)::bigint) FROM (
        SELECT b.account, b.balance FROM balances b
        WHERE b.account = ANY($4::text[]) AND b.currency = $6 AND b.shard = 0
        ORDER BY b.account FOR UPDATE
     ) b
    ) = cardinality($4::text[])
    THEN true ELSE croupier_remembered_rows_changed_v1() END";

/// Whether `needs` asks for players' balances and active seeds only, both of each player.
fn only_players_rows(needs: &Needs) -> bool {
    needs.seeds.is_empty()
        && needs.rounds.is_empty()
        && needs.players.is_empty()
        && !needs.active_seeds.is_empty()
        && needs.balances.len() == needs.active_seeds.len()
        && needs
            .active_seeds
            .iter()
            .all(|p| needs.balances.contains(&Account::player(p).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(player: &str, balance: i64) -> PlayerRows {
        PlayerRows {
            balance,
            seed: Seed {
                id: 7,
                player: player.into(),
                server_seed: "sealed".into(),
                server_seed_hash: "hash".into(),
                client_seed: "client".into(),
                next_nonce: 3,
                created_ms: 0,
                revealed_ms: None,
            },
        }
    }

    /// What a bet needs: the player's balance and active seed.
    fn a_bet_of(player: &str) -> Needs {
        let mut needs = Needs::default();
        needs.active_seeds.insert(player.into());
        needs.balances.insert(Account::player(player).to_string());
        needs
    }

    /// A committed batch that served `player` as a bet does: both rows held.
    fn remembered_after_a_bet(player: &str, balance: i64) -> Remembered {
        let memory = Remembered::default();
        let mut state = BatchState::default();
        load(&[rows_of(player, balance)], &mut state);
        memory.keep(&state);
        memory
    }

    /// A committed batch that changed `player`'s balance and read no seed of theirs.
    fn balance_changed(player: &str, before: i64, now: i64) -> BatchState {
        let mut state = BatchState::default();
        let account = Account::player(player).to_string();
        state.balances.load(account.clone(), Some(before));
        state.balances.set(account, Some(now));
        state.accept();
        state
    }

    #[test]
    fn a_batch_that_paid_a_player_without_their_seed_forgets_them() {
        let memory = remembered_after_a_bet("ann", 900);
        // A blackjack hand settled: the round read first, then the balance paid; no seed.
        memory.keep(&balance_changed("ann", 900, 1_100));
        assert!(
            memory.take(&a_bet_of("ann")).is_none(),
            "900 is not ann's balance"
        );
    }

    #[test]
    fn a_batch_that_held_other_rows_leaves_a_player_remembered() {
        let memory = remembered_after_a_bet("ann", 900);
        memory.keep(&balance_changed("bob", 50, 40));
        let rows = memory.take(&a_bet_of("ann")).expect("ann is remembered");
        assert_eq!(rows, vec![rows_of("ann", 900)]);
    }

    #[test]
    fn a_key_committed_lately_is_known_until_forgotten_and_one_only_read_is_not() {
        let memory = Remembered::default();
        let mut state = BatchState::default();
        state
            .idempotency
            .load("k-read".into(), Some(("f".into(), "{}".into())));
        state.idempotency.load("k-new".into(), None);
        state
            .idempotency
            .set("k-new".into(), Some(("f".into(), "{}".into())));
        state.accept();
        memory.keep(&state);
        let lately = memory.committed_lately(&["x", "k-new", "k-read"]);
        assert_eq!(lately, HashSet::from(["k-new".to_owned()]));
        memory.forget_key("k-new");
        assert!(memory.committed_lately(&["k-new"]).is_empty());
    }
}
