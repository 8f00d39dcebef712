//! When no node is eligible for a moment (a node just restarted, the health checks not yet
//! caught up, a passive ejection running out), a request waits for one instead of getting a
//! 503 at once, like HAProxy's `timeout queue`: for at most `queue_timeout`, with at most
//! `queue_max` requests waiting. It is sent as soon as a node is eligible. Only a node the
//! operators keep `active` can come back by itself, so with none active (every node drained
//! or in maintenance, a deliberate outage) there is nothing to wait for: 503 at once, as after
//! the timeout or with the queue full.
//!
//! A node also holds at most `node_max_requests` at once (HAProxy's server `maxconn`): a
//! request past that waits here for a place on it, for as long, and moves to another node if
//! its node is taken out meanwhile (down by the checks, drained; `place_on`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::SemaphorePermit;

use crate::Gateway;
use crate::metrics::Metrics;
use crate::pool::{Backend, NodeState, PlayerKey};

/// What a request waiting for a place on its node got.
pub enum NodePlace<'a> {
    /// A place, kept until its answer is read.
    Held(SemaphorePermit<'a>),
    /// The node was taken out (down by the checks, drained): nothing was sent. A node only
    /// ejected for failures keeps its waiting requests: under an overload every node fails
    /// some tries, and moving hundreds of requests at each ejection only moved the queue.
    NodeOut,
    /// No place came within `queue_timeout`.
    TimedOut,
}

/// The requests waiting for a node.
#[derive(Default)]
pub struct Queue {
    waiting: AtomicUsize,
}

/// Leaves the queue when the waiting request is answered or abandoned.
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Queue {
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    fn enter(&self, max: usize) -> Option<Place<'_>> {
        self.waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Place(&self.waiting))
    }
}

/// A node for new work, skipping `tried`: at once when one is eligible, else after waiting
/// in the queue for any node to be eligible again (a node tried already may take the
/// request once it is back: the tries that lead here are those that can be repeated);
/// `None` when none came (the caller answers 503).
pub async fn pick_or_wait(
    gateway: &Gateway,
    player: Option<PlayerKey>,
    tried: &[usize],
) -> Option<usize> {
    if let Some(index) = gateway.pool.pick(player, tried) {
        return Some(index);
    }
    let config = &gateway.config;
    if config.queue_timeout.is_zero() || !may_come_back(gateway) {
        return None;
    }
    let Some(_place) = gateway.queue.enter(config.queue_max) else {
        Metrics::count(&gateway.metrics.queued, "full");
        return None;
    };
    let deadline = Instant::now() + config.queue_timeout;
    // Woken when a node comes back, or when an ejection ends: not polling, since up to
    // `queue_max` requests wait here at once, in an outage, when the CPU is needed most.
    loop {
        let back = gateway.pool.back();
        tokio::pin!(back);
        back.as_mut().enable();
        if let Some(index) = gateway.pool.pick(player, &[]) {
            Metrics::count(&gateway.metrics.queued, "sent");
            return Some(index);
        }
        let wake = gateway
            .pool
            .next_ejection_end()
            .map_or(deadline, |end| end.min(deadline));
        if Instant::now() >= deadline {
            Metrics::count(&gateway.metrics.queued, "timeout");
            return None;
        }
        tokio::select! {
            () = &mut back => {}
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// Whether a node is one the operators keep active (so only its health check or an
/// ejection holds it out, and both end by themselves).
fn may_come_back(gateway: &Gateway) -> bool {
    gateway
        .pool
        .backends
        .iter()
        .any(|b| b.admin_state() == NodeState::Active)
}

/// A place among the requests `backend` holds at once: at once when one is free, else after
/// waiting (in turn) for one to end. Past its capacity a node accepts connections too slowly:
/// a request waiting here costs nothing, where a connection opened to it timed out, was
/// retried elsewhere and spent the retry budget.
pub async fn place_on<'a>(gateway: &Gateway, backend: &'a Backend) -> NodePlace<'a> {
    if let Ok(free) = backend.slots.try_acquire() {
        return NodePlace::Held(free);
    }
    Metrics::count(&gateway.metrics.queued, "node_full");
    // Woken, not polling: thousands may wait at once past the nodes' capacity.
    let taken_out = backend.taken_out.notified();
    tokio::pin!(taken_out);
    taken_out.as_mut().enable();
    if backend.held_out() {
        return NodePlace::NodeOut;
    }
    tokio::select! {
        place = backend.slots.acquire() => match place {
            Ok(place) => NodePlace::Held(place),
            Err(_closed) => NodePlace::TimedOut,
        },
        () = &mut taken_out => NodePlace::NodeOut,
        () = tokio::time::sleep(gateway.config.queue_timeout) => NodePlace::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::GatewayConfig;
    use crate::pool::OutlierConfig;

    const WAITERS: usize = 20;

    fn gateway() -> Arc<Gateway> {
        let node = ("n0".to_owned(), "http://127.0.0.1:1".to_owned());
        let mut config = GatewayConfig::new(vec![node], "t".repeat(32));
        config.queue_timeout = Duration::from_secs(5);
        Gateway::new(config).unwrap()
    }

    /// `WAITERS` requests queued for a node; their picks after `held` of waiting; each got.
    async fn queue_while(gateway: &Arc<Gateway>, held: Duration, back: impl FnOnce()) -> usize {
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| {
                let gateway = gateway.clone();
                tokio::spawn(async move { pick_or_wait(&gateway, None, &[]).await })
            })
            .collect();
        tokio::time::sleep(held).await;
        let picks = gateway.pool.picks();
        back();
        for waiter in waiters {
            assert_eq!(
                waiter.await.unwrap(),
                Some(0),
                "a queued request got no node"
            );
        }
        picks
    }

    #[tokio::test]
    async fn queued_requests_are_woken_when_a_node_comes_back_not_polling() {
        let gateway = gateway();
        let node = &gateway.pool.backends[0];
        node.set_healthy(false);
        let picks = queue_while(&gateway, Duration::from_millis(300), || {
            node.set_healthy(true);
        })
        .await;
        // Each waiter looks once on arrival and once more on joining the queue; polling
        // every 10 ms looked 30 times each in the same 300 ms.
        assert!(
            picks <= WAITERS * 2,
            "{picks} picks while no node could be picked"
        );
        assert_eq!(gateway.queue.waiting(), 0);
    }

    #[tokio::test]
    async fn queued_requests_go_when_an_ejection_ends() {
        let gateway = gateway();
        let outlier = OutlierConfig {
            base_ejection: Duration::from_millis(300),
            ..OutlierConfig::default()
        };
        assert!(gateway.pool.record_failure(0, true, &outlier), "ejected");
        let picks = queue_while(&gateway, Duration::from_millis(100), || {}).await;
        assert!(
            picks <= WAITERS * 2,
            "{picks} picks while the node was ejected"
        );
        assert!(!gateway.pool.backends[0].is_ejected());
    }
}
