//! The game nodes behind the gateway and how one is chosen: an operator state (active,
//! draining, maintenance), the active health check's verdict, passive outlier ejection with
//! back-off, and requests outstanding. New work goes by the pool's `Balance`: to the eligible
//! node with the fewest requests outstanding, a player sticking to one node while it stays
//! eligible; or to the first eligible node with room, in the order the nodes were given.

use axum::http::HeaderValue;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A node's state as operators set it: the admin API's word (`croupier_web::wire::admin`).
pub use croupier_web::wire::admin::NodeState;

/// Passive outlier detection: this many consecutive failures eject a node.
#[derive(Debug, Clone, Copy)]
pub struct OutlierConfig {
    pub consecutive_errors: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// Most nodes out for failures at once (ejected, or down by the health checks), as a share
    /// of them (always at least one), as Envoy's `max_ejection_percent`: when every node fails
    /// (an overload, the shared store stalling), ejecting them all only turns slow answers
    /// into 503s for everyone. A refused connection (nothing listens: a dead node) ejects
    /// whatever this says.
    pub max_ejection_percent: usize,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_errors: 3,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(30),
            max_ejection_percent: 10,
        }
    }
}

/// Whether a failed connection or handshake was refused (nothing listens at the node's
/// address: it is dead), as opposed to a timeout or a reset (it may be only too busy to
/// accept, its listen queue full under an overload).
pub fn is_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        cause = error.source();
    }
    false
}

pub struct Backend {
    pub name: String,
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// Its idle connections, and how requests are sent to it.
    pub upstream: crate::upstream::Upstream,
    /// The node's name as the `croupier-node` header of the answers it gives.
    pub name_header: Option<HeaderValue>,
    admin: watch::Sender<NodeState>,
    healthy: AtomicBool,
    pub outstanding: AtomicI64,
    consecutive_errors: AtomicU32,
    ejections_in_a_row: AtomicU32,
    ejected_until: Mutex<Option<Instant>>,
    pub websockets: AtomicI64,
    /// Player requests the node answered (not counting 5xx failures): the proof a rolling
    /// update waits for that a returned node serves real traffic again.
    answered: AtomicU64,
    /// Player requests it answered below 500: the proof the health check takes that a node
    /// whose probe timed out is busy, not dead (a node that only answers 503 proves nothing).
    served: AtomicU64,
    /// Its recent latency: the hedge delay of retry-safe requests.
    pub recent: crate::latency::Recent,
    /// Requests it may hold at once (HAProxy's server `maxconn`); more wait in the gateway.
    pub slots: tokio::sync::Semaphore,
    /// Wakes the requests waiting for a place when the node is taken out (`held_out`).
    pub taken_out: tokio::sync::Notify,
    /// Wakes the requests queued for any node (`Pool::back`) when this one may take work
    /// again: healthy, active, or its ejection cleared. An ejection's end is a time, which
    /// they wait for on their own (`Pool::next_ejection_end`).
    back: Arc<tokio::sync::Notify>,
}

impl Backend {
    /// A node at `base` that takes at most `max_requests` requests at once, called from
    /// `lanes` lanes.
    pub fn new(name: &str, base: &str, max_requests: usize, lanes: usize) -> Backend {
        let base = base.trim_end_matches('/');
        Backend {
            name: name.to_owned(),
            base: base.to_owned(),
            upstream: crate::upstream::Upstream::for_lanes(base, lanes),
            name_header: HeaderValue::from_str(name).ok(),
            admin: watch::Sender::new(NodeState::Active),
            // Up until the checks say otherwise, like HAProxy: a fresh gateway serves at once.
            healthy: AtomicBool::new(true),
            outstanding: AtomicI64::new(0),
            consecutive_errors: AtomicU32::new(0),
            ejections_in_a_row: AtomicU32::new(0),
            ejected_until: Mutex::new(None),
            websockets: AtomicI64::new(0),
            answered: AtomicU64::new(0),
            served: AtomicU64::new(0),
            recent: crate::latency::Recent::default(),
            slots: tokio::sync::Semaphore::new(max_requests),
            taken_out: tokio::sync::Notify::new(),
            back: Arc::default(),
        }
    }

    pub fn admin_state(&self) -> NodeState {
        *self.admin.borrow()
    }

    pub fn set_admin_state(&self, state: NodeState) {
        self.admin.send_replace(state);
        if self.held_out() {
            self.taken_out.notify_waiters();
        } else {
            self.back.notify_waiters();
        }
    }

    /// Fires when the operator state changes (WebSockets close on drain).
    pub fn admin_watch(&self) -> watch::Receiver<NodeState> {
        self.admin.subscribe()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
        if healthy {
            self.back.notify_waiters();
        } else {
            self.taken_out.notify_waiters();
        }
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until.lock();
        until.is_some_and(|t| Instant::now() < t)
    }

    /// When the node's ejection ends, if an ejection is all that keeps it out.
    fn ejection_ends(&self) -> Option<Instant> {
        let until = (*self.ejected_until.lock()).filter(|t| Instant::now() < *t)?;
        (!self.held_out()).then_some(until)
    }

    /// Out of rotation by the health checks or the operators (an ejection aside): the
    /// requests waiting for a place on it go elsewhere.
    pub fn held_out(&self) -> bool {
        self.admin_state() != NodeState::Active || !self.is_healthy()
    }

    /// May take new work: not held out, and not ejected.
    pub fn eligible(&self) -> bool {
        !self.held_out() && !self.is_ejected()
    }

    pub fn record_success(&self) {
        self.consecutive_errors.store(0, Ordering::SeqCst);
        self.ejections_in_a_row.store(0, Ordering::SeqCst);
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Counts a player request the node answered below 500.
    pub fn record_served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Forgets the passive ejection and its back-off: an operator put the node back in
    /// service, so the refused connections of its restart no longer count against it.
    pub fn clear_ejection(&self) {
        *self.ejected_until.lock() = None;
        self.consecutive_errors.store(0, Ordering::SeqCst);
        self.ejections_in_a_row.store(0, Ordering::SeqCst);
        self.back.notify_waiters();
    }

    /// Counts a failure; `immediate` (the node refused the connection) ejects at once, others
    /// after several in a row, while `may_eject` (the pool's share of ejected nodes allows
    /// one more). Returns whether the node was ejected now.
    fn record_failure(&self, immediate: bool, may_eject: bool, outlier: &OutlierConfig) -> bool {
        let errors = self.consecutive_errors.fetch_add(1, Ordering::SeqCst) + 1;
        if !immediate && (errors < outlier.consecutive_errors || !may_eject) {
            return false;
        }
        let mut until = self.ejected_until.lock();
        if until.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        let round = self
            .ejections_in_a_row
            .fetch_add(1, Ordering::SeqCst)
            .min(16);
        let ejection = (outlier.base_ejection * 2u32.pow(round)).min(outlier.max_ejection);
        *until = Some(Instant::now() + ejection);
        self.consecutive_errors.store(0, Ordering::SeqCst);
        tracing::warn!(node = %self.name, seconds = ejection.as_secs_f64(), "node ejected");
        true
    }
}

/// How new work is spread over the eligible nodes (HAProxy's `balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// The eligible node with the fewest requests outstanding (ties rotate); a player sticks
    /// to one node while it stays eligible (HAProxy's `leastconn` with stickiness). For nodes
    /// whose work adds up: each on its own cores, or writing to a store that scales with
    /// writers.
    #[default]
    LeastOutstanding,
    /// The first eligible node, in the order given, that has a free place (fewer requests
    /// than its `maxconn`); the next only past that, or when it is out (HAProxy's `balance
    /// first`); no stickiness, so the work comes back to the first node once it returns. For
    /// nodes that share one SQLite file: its writers take turns, so each node added to the
    /// work splits the same commits into smaller batches, each paying its turn, its fsync and
    /// the rereading of pages the others changed, on the same cores. The others stay warm
    /// spares, checked and ready, as HAProxy's `backup` servers.
    First,
}

impl Balance {
    /// The word of the command line and the logs: HAProxy's.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::LeastOutstanding => "leastconn",
            Balance::First => "first",
        }
    }
}

impl std::str::FromStr for Balance {
    type Err = String;

    fn from_str(text: &str) -> Result<Balance, String> {
        match text {
            "leastconn" => Ok(Balance::LeastOutstanding),
            "first" => Ok(Balance::First),
            _ => Err(format!("'{text}' is not a balance: leastconn or first")),
        }
    }
}

/// How long a player's affinity outlives their last request.
const AFFINITY_IDLE: Duration = Duration::from_secs(30 * 60);
const AFFINITY_SWEEP_EVERY: usize = 4096;

/// A player, as a keyed hash of their bearer token.
pub type PlayerKey = u64;

pub struct Pool {
    pub backends: Vec<Backend>,
    balance: Balance,
    /// Notified when a node may take work again (see `Backend::back`).
    back: Arc<tokio::sync::Notify>,
    affinity: Mutex<HashMap<PlayerKey, (usize, Instant)>>,
    picks: AtomicUsize,
    /// Test-only fault (`--fault panic-under-lock`): picks left that panic while holding the
    /// affinity lock.
    panics_left: AtomicU32,
}

impl Pool {
    pub fn new(mut backends: Vec<Backend>, balance: Balance) -> Pool {
        let back = Arc::new(tokio::sync::Notify::new());
        for backend in &mut backends {
            backend.back = back.clone();
        }
        Pool {
            backends,
            balance,
            back,
            affinity: Mutex::new(HashMap::new()),
            picks: AtomicUsize::new(0),
            panics_left: AtomicU32::new(0),
        }
    }

    /// Test-only: the next `count` picks panic while they hold the affinity lock, as a failed
    /// log write once did. The lock cannot poison: later picks go on as if nothing happened.
    pub fn inject_panics(&self, count: u32) {
        self.panics_left.store(count, Ordering::SeqCst);
    }

    pub fn find(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// Counts a failure of node `index` for the outlier detection (see
    /// `Backend::record_failure`); returns whether it was ejected now.
    pub fn record_failure(&self, index: usize, immediate: bool, outlier: &OutlierConfig) -> bool {
        let out = self
            .backends
            .iter()
            .filter(|b| b.is_ejected() || !b.is_healthy())
            .count();
        let most = (self.backends.len() * outlier.max_ejection_percent / 100).max(1);
        self.backends[index].record_failure(immediate, out < most, outlier)
    }

    /// Resolves when a node may have become eligible (enable it before looking).
    pub fn back(&self) -> tokio::sync::futures::Notified<'_> {
        self.back.notified()
    }

    /// The soonest end of an ejection that alone keeps a node out.
    pub fn next_ejection_end(&self) -> Option<Instant> {
        self.backends
            .iter()
            .filter_map(Backend::ejection_ends)
            .min()
    }

    /// Picks made so far.
    pub fn picks(&self) -> usize {
        self.picks.load(Ordering::Relaxed)
    }

    pub fn any_eligible(&self) -> bool {
        self.backends.iter().any(Backend::eligible)
    }

    /// Picks a node for new work, skipping `tried`, by the pool's `Balance`. Least
    /// outstanding: with an affinity key (a player), the player's node is kept while eligible;
    /// otherwise, and for a first request, the eligible node with the fewest requests
    /// outstanding (ties rotate). First: the first eligible node with a free place, else the
    /// eligible node with the fewest requests outstanding (where the request waits for one).
    pub fn pick(&self, affinity_key: Option<PlayerKey>, tried: &[usize]) -> Option<usize> {
        let picks = self.picks.fetch_add(1, Ordering::Relaxed);
        match self.balance {
            Balance::First => self.first_with_room(tried),
            Balance::LeastOutstanding => self.sticky_least_outstanding(affinity_key, tried, picks),
        }
    }

    fn usable(&self, index: usize, tried: &[usize]) -> bool {
        !tried.contains(&index) && self.backends[index].eligible()
    }

    /// The eligible node with the fewest requests outstanding, looking from `start` (ties
    /// rotate with it).
    fn least_outstanding(&self, tried: &[usize], start: usize) -> Option<usize> {
        let n = self.backends.len();
        (0..n)
            .map(|offset| (start + offset) % n)
            .filter(|&i| self.usable(i, tried))
            .min_by_key(|&i| self.backends[i].outstanding.load(Ordering::Relaxed))
    }

    fn first_with_room(&self, tried: &[usize]) -> Option<usize> {
        (0..self.backends.len())
            .find(|&i| self.usable(i, tried) && self.backends[i].slots.available_permits() > 0)
            .or_else(|| self.least_outstanding(tried, 0))
    }

    fn sticky_least_outstanding(
        &self,
        affinity_key: Option<PlayerKey>,
        tried: &[usize],
        picks: usize,
    ) -> Option<usize> {
        let mut table = self.affinity.lock();
        if self
            .panics_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("injected fault: a panic while the affinity lock is held");
        }
        if picks.is_multiple_of(AFFINITY_SWEEP_EVERY) {
            table.retain(|_, (_, seen)| seen.elapsed() < AFFINITY_IDLE);
        }
        if let Some(key) = affinity_key
            && let Some((index, seen)) = table.get_mut(&key)
            && self.usable(*index, tried)
        {
            *seen = Instant::now();
            return Some(*index);
        }
        let chosen = self.least_outstanding(tried, picks)?;
        if let Some(key) = affinity_key {
            table.insert(key, (chosen, Instant::now()));
        }
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        balanced(n, Balance::LeastOutstanding)
    }

    fn balanced(n: usize, balance: Balance) -> Pool {
        Pool::new(
            (0..n)
                .map(|i| Backend::new(&format!("n{i}"), "http://127.0.0.1:1", 8, 1))
                .collect(),
            balance,
        )
    }

    /// Takes `count` of node `index`'s places, as requests in flight on it do.
    fn occupy(p: &Pool, index: usize, count: u32) -> tokio::sync::SemaphorePermit<'_> {
        p.backends[index]
            .outstanding
            .fetch_add(count.into(), Ordering::SeqCst);
        p.backends[index].slots.try_acquire_many(count).unwrap()
    }

    /// Before: the work was spread over every node, however busy the first one was.
    #[test]
    fn first_keeps_the_work_on_the_first_node_until_its_places_are_taken() {
        let p = balanced(3, Balance::First);
        let some = occupy(&p, 0, 7);
        for player in 0..10 {
            assert_eq!(p.pick(Some(player), &[]), Some(0), "one place left on n0");
        }
        let rest = occupy(&p, 0, 1);
        assert_eq!(p.pick(Some(1), &[]), Some(1), "n0 full: the next node");
        let n1 = occupy(&p, 1, 8);
        let _n2 = occupy(&p, 2, 8);
        // Requests waiting in the gateway for a place count as outstanding.
        p.backends[0].outstanding.fetch_add(5, Ordering::SeqCst);
        p.backends[1].outstanding.fetch_add(2, Ordering::SeqCst);
        assert_eq!(
            p.pick(None, &[]),
            Some(2),
            "all full: the least outstanding"
        );
        drop(n1);
        assert_eq!(p.pick(None, &[]), Some(1), "the first with a free place");
        drop((some, rest));
        assert_eq!(p.pick(Some(1), &[]), Some(0), "back to n0: no stickiness");
        assert_eq!(p.pick(None, &[0]), Some(1), "a retry goes to the next");
    }

    #[test]
    fn first_skips_a_node_that_is_out_and_takes_it_back_when_it_returns() {
        let p = balanced(3, Balance::First);
        p.backends[0].set_healthy(false);
        p.backends[1].set_admin_state(NodeState::Draining);
        assert_eq!(p.pick(None, &[]), Some(2));
        p.backends[1].set_admin_state(NodeState::Active);
        assert_eq!(p.pick(None, &[]), Some(1));
        p.backends[0].set_healthy(true);
        assert_eq!(p.pick(None, &[]), Some(0));
    }

    #[test]
    fn balances_are_named_as_haproxy_names_them() {
        for balance in [Balance::LeastOutstanding, Balance::First] {
            assert_eq!(balance.as_str().parse::<Balance>(), Ok(balance));
        }
        assert!("roundrobin".parse::<Balance>().is_err());
    }

    #[test]
    fn least_outstanding_wins() {
        let p = pool(3);
        p.backends[0].outstanding.store(5, Ordering::SeqCst);
        p.backends[1].outstanding.store(1, Ordering::SeqCst);
        p.backends[2].outstanding.store(3, Ordering::SeqCst);
        assert_eq!(p.pick(None, &[]), Some(1));
        assert_eq!(p.pick(None, &[1]), Some(2));
    }

    #[test]
    fn players_stick_while_their_node_is_eligible() {
        let p = pool(3);
        let first = p.pick(Some(1), &[]).unwrap();
        for _ in 0..10 {
            p.backends[first]
                .outstanding
                .fetch_add(10, Ordering::SeqCst);
            assert_eq!(p.pick(Some(1), &[]), Some(first));
        }
        p.backends[first].set_admin_state(NodeState::Draining);
        let moved = p.pick(Some(1), &[]).unwrap();
        assert_ne!(moved, first);
        p.backends[first].set_admin_state(NodeState::Active);
        assert_eq!(p.pick(Some(1), &[]), Some(moved), "no flapping back");
    }

    #[test]
    fn ejection_backs_off_and_expires() {
        let b = Backend::new("n", "http://x", 8, 1);
        let outlier = OutlierConfig {
            consecutive_errors: 3,
            base_ejection: Duration::from_millis(40),
            max_ejection: Duration::from_secs(1),
            ..OutlierConfig::default()
        };
        assert!(!b.record_failure(false, true, &outlier));
        assert!(!b.record_failure(false, true, &outlier));
        assert!(b.record_failure(false, true, &outlier));
        assert!(!b.eligible());
        std::thread::sleep(Duration::from_millis(50));
        assert!(b.eligible());
        assert!(
            b.record_failure(true, true, &outlier),
            "a refused connection ejects at once"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !b.eligible(),
            "the second ejection in a row lasts twice as long"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.eligible());
    }

    #[test]
    fn clearing_an_ejection_makes_the_node_eligible_at_once() {
        let b = Backend::new("n", "http://x", 8, 1);
        let outlier = OutlierConfig::default();
        assert!(b.record_failure(true, true, &outlier));
        assert!(!b.eligible());
        b.clear_ejection();
        assert!(b.eligible());
        assert!(b.record_failure(true, true, &outlier));
        assert!(b.is_ejected(), "a later refusal ejects it again");
        assert_eq!(b.answered(), 0);
        b.record_success();
        assert_eq!(b.answered(), 1);
    }

    /// Before: each node failing three tries in a row was ejected, so an overload that made
    /// all three slow ejected all three, and players got 503 `no_node` from live nodes.
    #[test]
    fn at_most_the_ejection_share_of_nodes_is_out_for_failures_at_once() {
        let p = pool(3);
        let outlier = OutlierConfig::default();
        let fail_three_times = |index| (0..3).any(|_| p.record_failure(index, false, &outlier));
        assert!(fail_three_times(0));
        assert!(
            !fail_three_times(1),
            "a second node stays in while one is out"
        );
        assert!(!fail_three_times(2));
        assert_eq!((0..3).filter(|i| p.backends[*i].eligible()).count(), 2);
        assert!(
            p.record_failure(2, true, &outlier),
            "a refused connection ejects whatever the share"
        );
        p.backends[0].clear_ejection();
        p.backends[2].clear_ejection();
        p.backends[0].set_healthy(false);
        assert!(
            !p.record_failure(1, false, &outlier),
            "a node down counts as out"
        );
        p.backends[0].set_healthy(true);
        assert!(
            p.record_failure(1, false, &outlier),
            "its errors still count"
        );
    }

    #[test]
    fn no_eligible_node_means_none() {
        let p = pool(2);
        p.backends[0].set_healthy(false);
        p.backends[1].set_admin_state(NodeState::Maintenance);
        assert_eq!(p.pick(Some(2), &[]), None);
        assert!(!p.any_eligible());
    }
}
