//! The node's shared state: the store, its identity and ops token, drain state, caches, the
//! event bus for WebSockets, metrics, and the operator's side (cashier, abandoned rounds).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use croupier_ledger::{Idempotency, Store};
use croupier_web::launch::LaunchKeys;
use croupier_web::lockout::{Lockout, LockoutConfig};
use croupier_web::wire::ops::GameStatus;
use tokio::sync::watch;

use crate::abandon::AbandonPolicy;
use crate::cashier::auth::Cashier;
use crate::events::{PlayerEvents, PlayerMessage};
use crate::metrics::Metrics;
use crate::session_cache::SessionCache;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub node_id: String,
    pub ops_token: String,
    pub version: &'static str,
    /// How players sign in: demo mode, the operator's launch keys, the ledger's currency.
    pub players: Players,
    draining: AtomicBool,
    /// Test-only fault: money-moving requests skip the idempotency check (see
    /// `break_idempotency`).
    skip_idempotency: AtomicBool,
    drain_signal: watch::Sender<bool>,
    /// Token lookups, trusted for a while (bounded: swept by the refresh loop).
    pub sessions: SessionCache,
    /// Games whose status is not "open", refreshed from the store.
    pub game_status: RwLock<HashMap<String, GameStatus>>,
    /// Messages for the players' WebSockets: each player's to their own sockets.
    pub events: Arc<PlayerEvents>,
    pub metrics: Metrics,
    /// Wrong ops tokens per source address, and the addresses blocked for them.
    pub lockout: Arc<Lockout>,
    /// WebSockets open now per player (`ws::WS_PER_PLAYER` at most).
    pub websockets: croupier_web::caps::Caps<String>,
    /// The operator's cashier: its credential and rate limit.
    pub cashier: Cashier,
    /// When an untouched round is closed by the nodes.
    pub abandon: AbandonPolicy,
    /// Unusual play of the players this node serves (`crate::flags`).
    pub flags: crate::flags::PlayFlags,
}

/// What the operator's platform has on a node: the cashier, and the abandoned-round policy.
pub struct Operator {
    pub cashier: Cashier,
    pub abandon: AbandonPolicy,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// How players sign in on this node.
pub struct Players {
    /// Demo mode: sign-in by name, and each new player gets a demo balance. Off by default.
    pub demo: bool,
    /// The operator's keys for launch tokens (the only sign-in outside demo mode).
    pub launch_keys: LaunchKeys,
    /// The ledger's currency: launch tokens must be for it.
    pub currency: String,
    /// Open sessions one player keeps at most; signing in once more revokes the oldest.
    pub max_sessions: u32,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        node_id: String,
        ops_token: String,
        players: Players,
        lockout: LockoutConfig,
        operator: Operator,
    ) -> Self {
        let events = PlayerEvents::new();
        let (drain_signal, _) = watch::channel(false);
        let mut metrics = Metrics::new();
        let lockout = Arc::new(Lockout::new("node", lockout));
        lockout.register(metrics.registry_mut());
        let flags = crate::flags::PlayFlags::new(crate::flags::FlagConfig::default());
        metrics.registry_mut().register(
            "play_flags",
            "Players flagged for unusual play now",
            flags.gauge(),
        );
        metrics
            .store
            .info
            .get_or_create(&crate::store_metrics::BackendLabels {
                backend: store.backend().to_owned(),
            })
            .set(1);
        store.observe(Arc::new(crate::store_notice::NodeStoreObserver::new(
            metrics.store.clone(),
            events.clone(),
        )));
        AppState(Arc::new(Inner {
            store,
            node_id,
            ops_token,
            version: crate::build::version(),
            players,
            draining: AtomicBool::new(false),
            skip_idempotency: AtomicBool::new(false),
            drain_signal,
            sessions: SessionCache::default(),
            game_status: RwLock::new(HashMap::new()),
            events,
            metrics,
            lockout,
            websockets: croupier_web::caps::Caps::new(Some(crate::ws::WS_PER_PLAYER)),
            cashier: operator.cashier,
            abandon: operator.abandon,
            flags,
        }))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::SeqCst);
        self.metrics.draining.set(i64::from(draining));
        self.drain_signal.send_replace(draining);
    }

    /// Fires whenever the drain state changes.
    pub fn drain_watch(&self) -> watch::Receiver<bool> {
        self.drain_signal.subscribe()
    }

    /// A DELIBERATELY BROKEN node for the drills' tests: replayed bets and actions move
    /// money again. `croupier node` only turns this on behind a hidden flag plus
    /// `CROUPIER_I_KNOW_THIS_BREAKS_MONEY=1`, and logs an error when it does.
    pub fn break_idempotency(&self) {
        tracing::error!(node = %self.node_id, "FAULT INJECTED: idempotency checks are skipped; replays will move money again");
        self.skip_idempotency.store(true, Ordering::SeqCst);
    }

    /// The idempotency guard for a request, or none when the fault is injected.
    pub fn idempotency(&self, guard: Idempotency) -> Option<Idempotency> {
        (!self.skip_idempotency.load(Ordering::SeqCst)).then_some(guard)
    }

    /// Pushes `message` to `player`'s WebSockets on this node, or to every one when `None`.
    pub fn publish(&self, player: Option<&str>, message: PlayerMessage) {
        // No socket is not an error: nobody is connected.
        self.events.send(player, message);
    }

    pub fn game_status(&self, game: &str) -> GameStatus {
        self.game_status
            .read()
            .get(game)
            .copied()
            .unwrap_or(GameStatus::Open)
    }
}
