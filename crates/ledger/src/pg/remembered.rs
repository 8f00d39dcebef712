//! What a store's writers remember of the players they served: each player's balance and
//! active seed as its last batch committed them. A bet needs exactly these two rows, and read
//! and locked in a round trip of their own they cost a batch half its round trips: a lone bet
//! waited for `BEGIN` and its reads, then for its flush. A batch whose every operation asks
//! only for rows remembered here loads them from memory, runs, and sends everything in one
//! round trip: `BEGIN`, the keys' claim, a check that the rows are still as remembered (which
//! locks them, in the order every batch locks in: `croupier_expect_rows_v1`), the flush and
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
//! that failed leaves its players to be read afresh.

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;

use super::batch::{BatchState, Statement, unused_created};
use super::prefetch::Needs;
use crate::model::{Account, Seed};

/// Players remembered at most: about 400 bytes each (the sealed seed's text is most of it).
/// Past it the memory starts again empty: its players are then read once each.
const MOST_PLAYERS: usize = 65_536;

/// A player's rows as the last batch that served them committed them.
#[derive(Clone, Debug, PartialEq)]
pub struct PlayerRows {
    pub balance: i64,
    /// The active (unrevealed) seed, as stored (its server seed sealed).
    pub seed: Seed,
}

/// A store's memory of its players' rows, shared by its writers.
#[derive(Default)]
pub struct Remembered {
    players: Mutex<HashMap<String, PlayerRows>>,
}

impl Remembered {
    /// Takes the entries of every player `needs` names (by active seed or by balance).
    /// `Some` only when the batch asked for nothing but players' balances and active seeds,
    /// both of each player, and every one is remembered.
    pub fn take(&self, needs: &Needs) -> Option<Vec<PlayerRows>> {
        let by_balance = needs
            .balances
            .iter()
            .filter_map(|account| match account.parse() {
                Ok(Account::Player(player)) => Some(player),
                _ => None,
            });
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

    /// Remembers the rows of every player whose balance and active seed `state` holds, as
    /// the batch, now committed, left them. A player left without an active seed, or whose
    /// balance row the batch created and then deleted unused, is not remembered.
    pub fn keep(&self, state: &BatchState) {
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
        if rows.is_empty() {
            return;
        }
        let mut players = self.players.lock();
        if players.len() + rows.len() > MOST_PLAYERS {
            players.clear();
        }
        players.extend(rows);
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
/// still as remembered (`schema::ROUTINES`).
pub fn expect(rows: &[PlayerRows], currency: &str) -> Statement {
    let seeds = rows.iter().map(|r| &r.seed);
    Statement::new(
        "SELECT croupier_expect_rows_v1($1, $2, $3, $4, $5, $6)",
        vec![
            Box::new(seeds.clone().map(|s| s.id).collect::<Vec<_>>()),
            Box::new(
                seeds
                    .clone()
                    .map(|s| s.next_nonce as i64)
                    .collect::<Vec<_>>(),
            ),
            Box::new(seeds.map(|s| s.server_seed.clone()).collect::<Vec<_>>()),
            Box::new(
                rows.iter()
                    .map(|r| Account::player(&r.seed.player).to_string())
                    .collect::<Vec<_>>(),
            ),
            Box::new(rows.iter().map(|r| r.balance).collect::<Vec<_>>()),
            Box::new(currency.to_owned()),
        ],
    )
}

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
