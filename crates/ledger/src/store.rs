//! The store trait every backend implements. Writes go through `transact`: an operation runs
//! inside one transaction with the ledger primitives of `LedgerTx`, guarded by an idempotency
//! key, and is acknowledged only once durably committed. Backends batch many operations into
//! one commit (group commit), and may run an operation again when nothing of its first run
//! committed (a lost connection, a deadlock): operations are `Fn`, not `FnOnce`. Reads run the
//! same primitives on a read-only snapshot.
//!
//! Results are typed for the caller. Inside the backend an operation is type-erased: its value
//! travels as `Box<dyn Any>` back to the typed wrapper that created it, and, when the write is
//! keyed, also as the JSON document stored in the idempotency record, which is what a replay
//! returns.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::error::LedgerError;
use crate::model::{Account, JournalEntry, Round, Seed, Transfer};
use crate::observe::{PoolStatus, StoreObserver};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a type-erased operation hands back to the backend.
pub struct OpOutput {
    /// The operation's typed result, returned to its caller after a fresh commit.
    pub value: Box<dyn Any + Send>,
    /// The result as JSON, stored with the idempotency key (only for keyed writes).
    pub record: Option<String>,
}

/// The refusal of an operation, in the operation's own error type (boxed).
pub type OpRefusal = Box<dyn Any + Send>;

/// An operation run inside a write transaction. It may run more than once: a backend runs it
/// again only when nothing of the earlier run was committed.
pub type TxOp = Box<dyn Fn(&mut dyn LedgerTx) -> Result<OpOutput, OpRefusal> + Send>;

/// A read-only operation; it sends its own result back.
pub type ReadOp = Box<dyn FnOnce(&mut dyn LedgerTx) + Send>;

/// An idempotency key (already scoped to its owner) and a fingerprint of the request it
/// guards: the same key with another fingerprint is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Committed<T> {
    /// The operation ran now and is durable.
    Fresh(T),
    /// The key was seen before: this is the first result, and nothing moved.
    Replayed(T),
}

impl<T> Committed<T> {
    pub fn value(&self) -> &T {
        match self {
            Committed::Fresh(v) | Committed::Replayed(v) => v,
        }
    }
    pub fn into_value(self) -> T {
        match self {
            Committed::Fresh(v) | Committed::Replayed(v) => v,
        }
    }
    pub fn is_replay(&self) -> bool {
        matches!(self, Committed::Replayed(_))
    }
}

/// A write's result as the backend sees it.
pub enum ErasedCommitted {
    Fresh(Box<dyn Any + Send>),
    /// The JSON document stored with the key.
    Replayed(String),
}

/// Why a write did not commit.
pub enum WriteFailure {
    /// The store refused or failed (unavailable, key reused with another request, …).
    Ledger(LedgerError),
    /// The operation refused, in its own error type.
    Op(OpRefusal),
}

impl From<LedgerError> for WriteFailure {
    fn from(e: LedgerError) -> Self {
        WriteFailure::Ledger(e)
    }
}

/// Ledger primitives inside one transaction (or one read snapshot).
pub trait LedgerTx {
    /// The transaction's clock, milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    fn currency(&self) -> &str;

    fn player_exists(&mut self, player: &str) -> Result<bool, LedgerError>;
    fn create_player(&mut self, player: &str) -> Result<(), LedgerError>;
    fn insert_session(
        &mut self,
        token_hash: &str,
        player: &str,
        expires_ms: i64,
    ) -> Result<(), LedgerError>;
    /// The player a live session token (by hash) belongs to, and when the session expires
    /// (ms since the epoch), so a cache of it never outlives it.
    fn session_player(&mut self, token_hash: &str) -> Result<Option<(String, i64)>, LedgerError>;
    /// Revokes `player`'s sessions but the newest `keep` (the one expiring last are newest:
    /// every session lives as long), so no player holds more than `keep` open sessions.
    fn keep_newest_sessions(&mut self, player: &str, keep: u32) -> Result<(), LedgerError>;

    fn balance(&mut self, account: &Account) -> Result<i64, LedgerError>;
    /// Appends a transfer to the journal and updates both balances. Refuses (changing
    /// nothing) a non-positive amount or one that would take a player below zero. The entry's
    /// place in the hash chain is fixed when the batch commits.
    fn post(&mut self, transfer: &Transfer) -> Result<(), LedgerError>;
    /// Entries touching `account`, newest first, with `seq` below `before_seq`.
    fn history(
        &mut self,
        account: &Account,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, LedgerError>;

    fn active_seed(&mut self, player: &str) -> Result<Option<Seed>, LedgerError>;
    fn seed(&mut self, id: i64) -> Result<Option<Seed>, LedgerError>;
    /// Stores a new active seed and returns its id.
    fn insert_seed(
        &mut self,
        player: &str,
        server_seed: &str,
        server_seed_hash: &str,
        client_seed: &str,
    ) -> Result<i64, LedgerError>;
    /// The player's active seed and its next nonce, advancing the nonce; `None` when the
    /// player has no active seed.
    fn take_nonce(&mut self, player: &str) -> Result<Option<(Seed, u64)>, LedgerError>;
    fn reveal_seed(&mut self, seed_id: i64) -> Result<(), LedgerError>;

    fn insert_round(&mut self, round: &Round) -> Result<(), LedgerError>;
    fn update_round(&mut self, round: &Round) -> Result<(), LedgerError>;
    fn round(&mut self, id: &str) -> Result<Option<Round>, LedgerError>;
    /// A player's rounds, newest first, created before `before_ms` (exclusive).
    fn rounds(
        &mut self,
        player: &str,
        before_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Round>, LedgerError>;
    fn open_round_count(&mut self, player: &str) -> Result<i64, LedgerError>;
    /// Open rounds last advanced before `before_ms`, least recently advanced first: the
    /// candidates of the abandoned-round policy. Reads what is committed (use it on a read
    /// snapshot).
    fn idle_open_rounds(&mut self, before_ms: i64, limit: u32) -> Result<Vec<Round>, LedgerError>;
    /// The fingerprint and recorded answer of an idempotency key while it is kept (what the
    /// cashier's transaction lookup reads). Reads what is committed.
    fn idempotency_record(&mut self, key: &str) -> Result<Option<(String, String)>, LedgerError>;
    fn open_rounds_on_node(&mut self, node: &str) -> Result<i64, LedgerError>;

    fn set_game_status(&mut self, game: &str, status: &str) -> Result<(), LedgerError>;
    /// Games with a status other than the default "open".
    fn game_statuses(&mut self) -> Result<Vec<(String, String)>, LedgerError>;

    /// Streams the whole journal in `seq` order.
    fn for_each_entry(
        &mut self,
        visit: &mut dyn FnMut(JournalEntry) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError>;
    /// Every account's balance: (account, currency, balance).
    fn all_balances(&mut self) -> Result<Vec<(String, String, i64)>, LedgerError>;
    /// Streams every round.
    fn for_each_round(
        &mut self,
        visit: &mut dyn FnMut(Round) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError>;
}

/// A ledger backend.
pub trait Store: Send + Sync + 'static {
    /// Runs `op` in a write transaction, at most once per idempotency key, and resolves once
    /// the result is durable.
    fn transact_erased(
        &self,
        idempotency: Option<Idempotency>,
        op: TxOp,
    ) -> BoxFuture<'_, Result<ErasedCommitted, WriteFailure>>;

    /// Runs `op` on a read-only snapshot.
    fn read_boxed(&self, op: ReadOp) -> BoxFuture<'_, Result<(), LedgerError>>;

    /// Whether the store is reachable and its migrations are complete.
    fn ready(&self) -> BoxFuture<'_, Result<bool, LedgerError>>;

    /// Forgets what `policy` lets go (expired sessions, idempotency records past their
    /// period) in short transactions, and bounds the write-ahead log; never the journal.
    fn housekeep(
        &self,
        policy: crate::retention::RetentionPolicy,
    ) -> BoxFuture<'_, Result<crate::retention::HousekeepReport, LedgerError>>;

    /// Reports each committed (or failed) batch to `observer` from now on.
    fn observe(&self, observer: Arc<dyn StoreObserver>);

    /// The backend's name (`sqlite`, `postgres`), for metrics and pages.
    fn backend(&self) -> &'static str;

    /// Its connection pools now; none where the backend keeps fixed connections (SQLite).
    fn pools(&self) -> Vec<PoolStatus> {
        Vec::new()
    }
}

/// Wraps a typed operation for the backend: its value boxed, and serialised when keyed.
fn erase<T, E, F>(keyed: bool, op: F) -> TxOp
where
    T: Serialize + Send + 'static,
    E: From<LedgerError> + Send + 'static,
    F: Fn(&mut dyn LedgerTx) -> Result<T, E> + Send + 'static,
{
    Box::new(move |tx| {
        let value = op(tx).map_err(|e| Box::new(e) as OpRefusal)?;
        let record = match keyed.then(|| serde_json::to_string(&value)).transpose() {
            Ok(record) => record,
            Err(e) => {
                let error = E::from(LedgerError::Storage(format!(
                    "the result cannot be recorded: {e}"
                )));
                return Err(Box::new(error));
            }
        };
        Ok(OpOutput {
            value: Box::new(value),
            record,
        })
    })
}

/// Turns the backend's answer back into the caller's types.
fn unerase<T, E>(result: Result<ErasedCommitted, WriteFailure>) -> Result<Committed<T>, E>
where
    T: DeserializeOwned + 'static,
    E: From<LedgerError> + 'static,
{
    let unexpected = || E::from(LedgerError::Storage("an operation changed type".into()));
    match result {
        Ok(ErasedCommitted::Fresh(value)) => value
            .downcast::<T>()
            .map(|v| Committed::Fresh(*v))
            .map_err(|_| unexpected()),
        Ok(ErasedCommitted::Replayed(record)) => serde_json::from_str(&record)
            .map(Committed::Replayed)
            .map_err(|e| E::from(LedgerError::from(e))),
        Err(WriteFailure::Ledger(e)) => Err(E::from(e)),
        Err(WriteFailure::Op(refusal)) => refusal
            .downcast::<E>()
            .map(|e| Err(*e))
            .unwrap_or_else(|_| Err(unexpected())),
    }
}

impl dyn Store {
    /// Runs `op` in a write transaction (see `Store::transact_erased`). `op` may run more than
    /// once, so it must not have effects outside the transaction; its result is what a replay
    /// of the same key returns, so it must survive a JSON round trip.
    pub async fn transact<T, E, F>(
        &self,
        idempotency: Option<Idempotency>,
        op: F,
    ) -> Result<Committed<T>, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: From<LedgerError> + Send + 'static,
        F: Fn(&mut dyn LedgerTx) -> Result<T, E> + Send + 'static,
    {
        let keyed = idempotency.is_some();
        unerase(self.transact_erased(idempotency, erase(keyed, op)).await)
    }

    pub async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut dyn LedgerTx) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (reply, result) = oneshot::channel();
        self.read_boxed(Box::new(move |tx| {
            let _ = reply.send(op(tx));
        }))
        .await?;
        result
            .await
            .map_err(|_| LedgerError::Unavailable("read was abandoned".into()))?
    }

    /// Runs every ledger invariant check on a snapshot.
    pub async fn integrity(&self) -> Result<crate::IntegrityReport, LedgerError> {
        self.read(crate::integrity::check).await
    }
}
