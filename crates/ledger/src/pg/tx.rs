//! `LedgerTx` on PostgreSQL. On a read snapshot every primitive is a query. Inside a write
//! batch, reads of rows the batch may change lock them (`FOR UPDATE`) and are kept, and every
//! change is staged in the batch (see `batch`) until the batch commits; the running
//! operation's changes are thrown away if it is refused.

use std::collections::HashSet;

use tokio_postgres::Row;

use super::batch::{BatchState, NewSession};
use super::conn::{Conn, Params};
use super::needs::Needs;
use super::prefetch::prefetch;
use super::rows::{ROUND_COLUMNS, SEED_COLUMNS, round_from, seed_from};
use crate::error::LedgerError;
use crate::model::{Account, JournalEntry, Round, RoundStatus, Seed, Transfer};
use crate::seed_seal::SeedVault;
use crate::store::LedgerTx;

pub struct PgTx<'a> {
    pub conn: Conn<'a>,
    pub currency: &'a str,
    pub now_ms: i64,
    /// The batch being built; `None` on a read snapshot.
    pub batch: Option<&'a mut BatchState>,
    /// Seals new server seeds and opens stored ones; the batch keeps seeds as stored.
    pub seeds: &'a SeedVault,
}

const ENTRY_COLUMNS: &str =
    "seq, ts_ms, kind, round_id, debit, credit, amount, currency, prev_hash, hash";

/// The operator's entries before `$1`, newest first: its condition is `journal_of_operator`'s
/// (`read_indexes::READ_INDEXES`), which is how the planner knows that index serves it.
pub(super) fn operator_history() -> String {
    format!(
        "SELECT {ENTRY_COLUMNS} FROM journal WHERE (debit = 'operator' OR credit = 'operator')
         AND seq < $1 ORDER BY seq DESC LIMIT $2"
    )
}

fn storage(what: impl Into<String>) -> LedgerError {
    LedgerError::Storage(what.into())
}

fn read_only() -> LedgerError {
    storage("cannot write on a read snapshot")
}

fn entry_from(row: &Row) -> Result<JournalEntry, LedgerError> {
    Ok(JournalEntry {
        seq: row.get(0),
        ts_ms: row.get(1),
        kind: row.get::<_, String>(2).parse().map_err(storage)?,
        round_id: row.get(3),
        debit: row.get::<_, String>(4).parse().map_err(storage)?,
        credit: row.get::<_, String>(5).parse().map_err(storage)?,
        amount: row.get(6),
        currency: row.get(7),
        prev_hash: row.get(8),
        hash: row.get(9),
    })
}

impl PgTx<'_> {
    /// Runs a database call, remembering the first failure: it aborted the transaction.
    fn db<T>(&mut self, result: Result<T, LedgerError>) -> Result<T, LedgerError> {
        if let (Err(e), Some(batch)) = (&result, self.batch.as_deref_mut())
            && batch.failure.is_none()
        {
            batch.failure = Some(match e {
                LedgerError::Unavailable(_) => e.clone(),
                other => LedgerError::Storage(other.to_string()),
            });
        }
        result
    }

    /// In a watched run (see `prefetch`), notes what the operation needs and stops it.
    fn defer(&mut self, note: impl FnOnce(&mut Needs)) -> Result<(), LedgerError> {
        let Some(batch) = self.batch.as_deref_mut() else {
            return Ok(());
        };
        let Some(needs) = batch.discovery.as_mut() else {
            return Ok(());
        };
        note(needs);
        batch.stopped = true;
        Err(LedgerError::Unavailable(
            "deferred to the batch's prefetch".into(),
        ))
    }

    fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, LedgerError> {
        self.defer(|_| {})?;
        let result = self.conn.query(sql, params);
        self.db(result)
    }

    fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, LedgerError> {
        self.defer(|_| {})?;
        let result = self.conn.query_opt(sql, params);
        self.db(result)
    }

    fn batch(&mut self) -> Result<&mut BatchState, LedgerError> {
        self.batch.as_deref_mut().ok_or_else(read_only)
    }

    /// Reads and locks rows the batch has not loaded, in one round trip, as a batch's
    /// prefetch does (see `prefetch`: absent balance rows are created as they are read); in a
    /// discovery run only notes them and stops the operation.
    fn fetch(&mut self, note: impl Fn(&mut Needs)) -> Result<(), LedgerError> {
        self.defer(&note)?;
        let mut needs = Needs::default();
        note(&mut needs);
        let (conn, currency) = (self.conn, self.currency);
        let result = prefetch(conn, currency, needs, self.batch()?);
        self.db(result)
    }

    /// A player's balance, locked for the rest of the batch.
    fn locked_player_balance(&mut self, account: &str) -> Result<i64, LedgerError> {
        if let Some(known) = self.batch()?.balances.get(&account.to_owned()) {
            return Ok(known.copied().unwrap_or(0));
        }
        self.fetch(|needs| {
            needs.balances.insert(account.to_owned());
        })?;
        self.locked_player_balance(account)
    }

    /// The sum of an account's rows as committed (all shards).
    fn stored_balance(&mut self, account: &str) -> Result<i64, LedgerError> {
        let currency = self.currency.to_owned();
        let row = self.query_opt(
            "SELECT coalesce(sum(balance), 0)::bigint FROM balances WHERE account = $1 AND currency = $2",
            &[&account, &currency],
        )?;
        Ok(row.map_or(0, |r| r.get(0)))
    }

    fn add_to_balance(&mut self, account: &Account, delta: i64) -> Result<(), LedgerError> {
        let name = account.to_string();
        if account.is_player() {
            let balance = self.locked_player_balance(&name)?;
            self.batch()?.balances.set(name, Some(balance + delta));
        } else {
            let deltas = &mut self.batch()?.deltas;
            let so_far = deltas.get(&name).flatten().copied().unwrap_or(0);
            deltas.set(name, Some(so_far + delta));
        }
        Ok(())
    }

    /// A seed by id in a batch: as staged, or read (and locked) once.
    fn batch_seed(&mut self, id: i64) -> Result<Option<Seed>, LedgerError> {
        if let Some(known) = self.batch()?.seeds.get(&id) {
            return Ok(known.cloned());
        }
        self.fetch(|needs| {
            needs.seeds.insert(id);
        })?;
        self.batch_seed(id)
    }

    /// The player's active seed in a batch, read and locked once.
    fn batch_active_seed(&mut self, player: &str) -> Result<Option<Seed>, LedgerError> {
        if let Some(known) = self.batch()?.active_seeds.get(&player.to_owned()) {
            let id = known.copied();
            return match id {
                Some(id) => self.batch_seed(id),
                None => Ok(None),
            };
        }
        self.fetch(|needs| {
            needs.active_seeds.insert(player.to_owned());
        })?;
        self.batch_active_seed(player)
    }

    /// What a bet needs of its player, the active seed and the balance, read and locked in
    /// one round trip when the batch knows neither yet.
    fn lock_player(&mut self, player: &str) -> Result<(), LedgerError> {
        let account = Account::player(player).to_string();
        let batch = self.batch()?;
        if batch.active_seeds.get(&player.to_owned()).is_some()
            || batch.balances.get(&account).is_some()
        {
            return Ok(());
        }
        self.fetch(|needs| {
            needs.active_seeds.insert(player.to_owned());
            needs.balances.insert(account.clone());
        })
    }

    fn batch_round(&mut self, id: &str) -> Result<Option<Round>, LedgerError> {
        if let Some(known) = self.batch()?.rounds.get(&id.to_owned()) {
            return Ok(known.cloned());
        }
        self.fetch(|needs| {
            needs.rounds.insert(id.to_owned());
        })?;
        self.batch_round(id)
    }

    fn stream(
        &mut self,
        sql: &str,
        visit: &mut dyn FnMut(&Row) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        self.defer(|_| {})?;
        let conn = self.conn;
        let result = conn.driver.run(async {
            use futures_util::TryStreamExt;
            // A whole-ledger scan may take longer than the statement timeout allows others.
            conn.client
                .batch_execute("SET LOCAL statement_timeout = 0")
                .await
                .map_err(super::error::pg_error)?;
            let statement = conn
                .client
                .prepare_cached(sql)
                .await
                .map_err(super::error::pg_error)?;
            let rows = conn
                .client
                .query_raw(&statement, std::iter::empty::<i64>())
                .await
                .map_err(super::error::pg_error)?;
            futures_util::pin_mut!(rows);
            while let Some(row) = rows.try_next().await.map_err(super::error::pg_error)? {
                visit(&row)?;
            }
            Ok(())
        });
        self.db(result)
    }
}

impl LedgerTx for PgTx<'_> {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn currency(&self) -> &str {
        self.currency
    }

    fn player_exists(&mut self, player: &str) -> Result<bool, LedgerError> {
        if let Some(batch) = self.batch.as_deref()
            && let Some(known) = batch.players.get(&player.to_owned())
        {
            return Ok(known.is_some());
        }
        if self.batch.is_some() {
            // Claimed, then read (see `prefetch::CLAIM_PLAYERS`).
            self.fetch(|needs| {
                needs.players.insert(player.to_owned());
            })?;
            return self.player_exists(player);
        }
        Ok(self
            .query_opt("SELECT 1 FROM players WHERE id = $1", &[&player])?
            .is_some())
    }

    fn create_player(&mut self, player: &str) -> Result<(), LedgerError> {
        if self.player_exists(player)? {
            return Err(LedgerError::Conflict(format!("player {player} exists")));
        }
        self.batch()?.players.set(player.to_owned(), Some(()));
        Ok(())
    }

    fn insert_session(
        &mut self,
        token_hash: &str,
        player: &str,
        expires_ms: i64,
    ) -> Result<(), LedgerError> {
        self.batch()?.sessions.push(NewSession {
            token_hash: token_hash.to_owned(),
            player: player.to_owned(),
            expires_ms,
        });
        Ok(())
    }

    fn keep_newest_sessions(&mut self, player: &str, keep: u32) -> Result<(), LedgerError> {
        self.batch()?.session_caps.push((player.to_owned(), keep));
        Ok(())
    }

    fn session_player(&mut self, token_hash: &str) -> Result<Option<(String, i64)>, LedgerError> {
        if let Some(batch) = self.batch.as_deref()
            && let Some(new) = batch
                .sessions
                .all()
                .iter()
                .find(|s| s.token_hash == token_hash && s.expires_ms > self.now_ms)
        {
            return Ok(Some((new.player.clone(), new.expires_ms)));
        }
        let now = self.now_ms;
        Ok(self
            .query_opt(
                "SELECT player, expires_ms FROM sessions WHERE token_hash = $1 AND expires_ms > $2",
                &[&token_hash, &now],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn balance(&mut self, account: &Account) -> Result<i64, LedgerError> {
        let name = account.to_string();
        if self.batch.is_none() {
            return self.stored_balance(&name);
        }
        if account.is_player() {
            return self.locked_player_balance(&name);
        }
        let delta = self.batch()?.deltas.get(&name).flatten().copied();
        Ok(self.stored_balance(&name)? + delta.unwrap_or(0))
    }

    fn post(&mut self, transfer: &Transfer) -> Result<(), LedgerError> {
        self.batch()?;
        transfer.check(|debit| self.balance(debit))?;
        self.add_to_balance(&transfer.debit, -transfer.amount)?;
        self.add_to_balance(&transfer.credit, transfer.amount)?;
        self.batch()?.journal.push(transfer.clone());
        Ok(())
    }

    fn history(
        &mut self,
        account: &Account,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, LedgerError> {
        let name = account.to_string();
        let before = before_seq.unwrap_or(i64::MAX);
        let limit = i64::from(limit);
        let rows = match account {
            Account::Operator => self.query(&operator_history(), &[&before, &limit])?,
            _ => {
                let condition = if account.is_player() {
                    "player = $1"
                } else {
                    "(debit = $1 OR credit = $1)"
                };
                let sql = format!(
                    "SELECT {ENTRY_COLUMNS} FROM journal WHERE {condition} AND seq < $2
                     ORDER BY seq DESC LIMIT $3"
                );
                self.query(&sql, &[&name, &before, &limit])?
            }
        };
        rows.iter().map(entry_from).collect()
    }

    fn active_seed(&mut self, player: &str) -> Result<Option<Seed>, LedgerError> {
        let stored = if self.batch.is_some() {
            self.batch_active_seed(player)?
        } else {
            self.query_opt(
                &format!(
                    "SELECT {SEED_COLUMNS} FROM seeds WHERE player = $1 AND revealed_ms IS NULL"
                ),
                &[&player],
            )?
            .as_ref()
            .map(seed_from)
        };
        stored.map(|seed| self.seeds.opened(seed)).transpose()
    }

    fn seed(&mut self, id: i64) -> Result<Option<Seed>, LedgerError> {
        let stored = if self.batch.is_some() {
            self.batch_seed(id)?
        } else {
            self.query_opt(
                &format!("SELECT {SEED_COLUMNS} FROM seeds WHERE id = $1"),
                &[&id],
            )?
            .as_ref()
            .map(seed_from)
        };
        stored.map(|seed| self.seeds.opened(seed)).transpose()
    }

    fn insert_seed(
        &mut self,
        player: &str,
        server_seed: &str,
        server_seed_hash: &str,
        client_seed: &str,
    ) -> Result<i64, LedgerError> {
        self.batch()?;
        let stored = self
            .seeds
            .to_stored(player, server_seed_hash, server_seed)?;
        let id: i64 = self
            .query_opt("SELECT nextval('seeds_id_seq')", &[])?
            .map(|r| r.get(0))
            .ok_or_else(|| storage("the seed sequence gave nothing"))?;
        let seed = Seed {
            id,
            player: player.to_owned(),
            server_seed: stored,
            server_seed_hash: server_seed_hash.to_owned(),
            client_seed: client_seed.to_owned(),
            next_nonce: 0,
            created_ms: self.now_ms,
            revealed_ms: None,
        };
        let batch = self.batch()?;
        batch.seeds.set(id, Some(seed));
        batch.active_seeds.set(player.to_owned(), Some(id));
        Ok(id)
    }

    fn take_nonce(&mut self, player: &str) -> Result<Option<(Seed, u64)>, LedgerError> {
        // A bet also needs the player's balance: both are read (and locked) at once.
        self.lock_player(player)?;
        let Some(seed) = self.batch_active_seed(player)? else {
            return Ok(None);
        };
        let nonce = seed.next_nonce;
        let advanced = Seed {
            next_nonce: nonce + 1,
            ..seed.clone()
        };
        self.batch()?.seeds.set(seed.id, Some(advanced));
        Ok(Some((self.seeds.opened(seed)?, nonce)))
    }

    /// Marks the seed revealed; the flush writes its server seed back in clear.
    fn reveal_seed(&mut self, seed_id: i64) -> Result<(), LedgerError> {
        let Some(seed) = self.batch_seed(seed_id)? else {
            return Err(LedgerError::NotFound(format!("seed {seed_id}")));
        };
        if seed.revealed_ms.is_some() {
            return Err(LedgerError::Conflict(format!(
                "seed {seed_id} is already revealed"
            )));
        }
        let player = seed.player.clone();
        let revealed = Seed {
            revealed_ms: Some(self.now_ms),
            ..self.seeds.opened(seed)?
        };
        let batch = self.batch()?;
        batch.seeds.set(seed_id, Some(revealed));
        batch.active_seeds.set(player, None);
        Ok(())
    }

    /// A round id the batch has not seen is not looked up: ids are made unique (time and 80
    /// random bits), and the primary key refuses a duplicate at the flush. A read per bet
    /// would cost a round trip while the whole batch waits.
    fn insert_round(&mut self, round: &Round) -> Result<(), LedgerError> {
        if let Some(Some(_)) = self.batch()?.rounds.get(&round.id) {
            return Err(LedgerError::Conflict(format!("round {} exists", round.id)));
        }
        self.batch()?
            .rounds
            .set(round.id.clone(), Some(round.clone()));
        Ok(())
    }

    fn update_round(&mut self, round: &Round) -> Result<(), LedgerError> {
        if self.batch_round(&round.id)?.is_none() {
            return Err(LedgerError::NotFound(format!("round {}", round.id)));
        }
        self.batch()?
            .rounds
            .set(round.id.clone(), Some(round.clone()));
        Ok(())
    }

    fn round(&mut self, id: &str) -> Result<Option<Round>, LedgerError> {
        if self.batch.is_some() {
            return self.batch_round(id);
        }
        self.query_opt(
            &format!("SELECT {ROUND_COLUMNS} FROM rounds WHERE id = $1"),
            &[&id],
        )?
        .as_ref()
        .map(round_from)
        .transpose()
    }

    fn rounds(
        &mut self,
        player: &str,
        before_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Round>, LedgerError> {
        let before = before_ms.unwrap_or(i64::MAX);
        let limit = i64::from(limit);
        self.query(
            &format!(
                "SELECT {ROUND_COLUMNS} FROM rounds WHERE player = $1 AND created_ms < $2
                 ORDER BY created_ms DESC LIMIT $3"
            ),
            &[&player, &before, &limit],
        )?
        .iter()
        .map(round_from)
        .collect()
    }

    fn open_round_count(&mut self, player: &str) -> Result<i64, LedgerError> {
        let stored: HashSet<String> = self
            .query(
                "SELECT id FROM rounds WHERE player = $1 AND status = 'open'",
                &[&player],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let Some(batch) = self.batch.as_deref() else {
            return Ok(stored.len() as i64);
        };
        // Rounds this batch opened or settled count as they are now.
        let mut open = stored;
        for (id, round) in batch.rounds.current_values() {
            if round.player == player {
                match round.status {
                    RoundStatus::Open => open.insert(id.clone()),
                    RoundStatus::Settled => open.remove(id),
                };
            }
        }
        Ok(open.len() as i64)
    }

    fn idle_open_rounds(&mut self, before_ms: i64, limit: u32) -> Result<Vec<Round>, LedgerError> {
        let limit = i64::from(limit);
        self.query(
            &format!(
                "SELECT {ROUND_COLUMNS} FROM rounds WHERE status = 'open' AND updated_ms < $1
                 ORDER BY updated_ms LIMIT $2"
            ),
            &[&before_ms, &limit],
        )?
        .iter()
        .map(round_from)
        .collect()
    }

    fn idempotency_record(&mut self, key: &str) -> Result<Option<(String, String)>, LedgerError> {
        Ok(self
            .query_opt(
                "SELECT fingerprint, response FROM idempotency WHERE key = $1",
                &[&key],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn open_rounds_on_node(&mut self, node: &str) -> Result<i64, LedgerError> {
        Ok(self
            .query_opt(
                "SELECT count(*) FROM rounds WHERE node = $1 AND status = 'open'",
                &[&node],
            )?
            .map_or(0, |r| r.get(0)))
    }

    fn set_game_status(&mut self, game: &str, status: &str) -> Result<(), LedgerError> {
        self.batch()?
            .game_status
            .set(game.to_owned(), Some(status.to_owned()));
        Ok(())
    }

    fn game_statuses(&mut self) -> Result<Vec<(String, String)>, LedgerError> {
        Ok(self
            .query(
                "SELECT game, status FROM game_status WHERE status <> 'open'",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn for_each_entry(
        &mut self,
        visit: &mut dyn FnMut(JournalEntry) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        self.stream(
            &format!("SELECT {ENTRY_COLUMNS} FROM journal ORDER BY seq"),
            &mut |row| visit(entry_from(row)?),
        )
    }

    fn all_balances(&mut self) -> Result<Vec<(String, String, i64)>, LedgerError> {
        Ok(self
            .query(
                "SELECT account, currency, sum(balance)::bigint FROM balances GROUP BY account, currency",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn for_each_round(
        &mut self,
        visit: &mut dyn FnMut(Round) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        self.stream(&format!("SELECT {ROUND_COLUMNS} FROM rounds"), &mut |row| {
            visit(round_from(row)?)
        })
    }
}
