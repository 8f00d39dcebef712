//! The store trait every backend implements. Writes go through `transact`: an operation runs
//! inside one transaction with the ledger primitives of `LedgerTx`, guarded by an idempotency
//! key, and is acknowledged only once durably committed. Backends batch many operations into
//! one commit (group commit). Reads run the same primitives on a read-only snapshot.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::LedgerError;
use crate::model::{Account, JournalEntry, Round, Seed, Transfer};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An operation run inside a write transaction; its JSON result is what an idempotent replay
/// returns.
pub type TxOp = Box<dyn FnOnce(&mut dyn LedgerTx) -> Result<Value, LedgerError> + Send>;

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
pub enum Committed {
    /// The operation ran now and is durable.
    Fresh(Value),
    /// The key was seen before: this is the first result, and nothing moved.
    Replayed(Value),
}

impl Committed {
    pub fn value(&self) -> &Value {
        match self {
            Committed::Fresh(v) | Committed::Replayed(v) => v,
        }
    }
    pub fn is_replay(&self) -> bool {
        matches!(self, Committed::Replayed(_))
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
    /// The player a live session token (by hash) belongs to.
    fn session_player(&mut self, token_hash: &str) -> Result<Option<String>, LedgerError>;

    fn balance(&mut self, account: &Account) -> Result<i64, LedgerError>;
    /// Appends a transfer to the journal and updates both balances. Refuses (changing
    /// nothing) a non-positive amount or one that would take a player below zero.
    fn post(&mut self, transfer: &Transfer) -> Result<JournalEntry, LedgerError>;
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
    fn open_rounds_on_node(&mut self, node: &str) -> Result<i64, LedgerError>;

    fn set_game_status(&mut self, game: &str, status: &str) -> Result<(), LedgerError>;
    /// Games with a status other than the default "open".
    fn game_statuses(&mut self) -> Result<Vec<(String, String)>, LedgerError>;

    /// Streams the whole journal in `seq` order.
    fn for_each_entry(
        &mut self,
        visit: &mut dyn FnMut(JournalEntry) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError>;
    /// Every stored balance: (account, currency, balance).
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
    fn transact_boxed(
        &self,
        idempotency: Option<Idempotency>,
        op: TxOp,
    ) -> BoxFuture<'_, Result<Committed, LedgerError>>;

    /// Runs `op` on a read-only snapshot.
    fn read_boxed(&self, op: ReadOp) -> BoxFuture<'_, Result<(), LedgerError>>;

    /// The schema version in the store, and whether migrations are complete.
    fn ready(&self) -> BoxFuture<'_, Result<bool, LedgerError>>;

    /// Forgets what `policy` lets go (expired sessions, idempotency records past their
    /// period) in short transactions, and bounds the write-ahead log; never the journal.
    fn housekeep(
        &self,
        policy: crate::retention::RetentionPolicy,
    ) -> BoxFuture<'_, Result<crate::retention::HousekeepReport, LedgerError>>;
}

impl dyn Store {
    pub async fn transact(
        &self,
        idempotency: Option<Idempotency>,
        op: impl FnOnce(&mut dyn LedgerTx) -> Result<Value, LedgerError> + Send + 'static,
    ) -> Result<Committed, LedgerError> {
        self.transact_boxed(idempotency, Box::new(op)).await
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
