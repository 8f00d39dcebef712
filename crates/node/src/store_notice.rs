//! Tells connected players when bets stop and start again because the ledger refuses writes
//! (its server lost, a failover under way, a full disk): the first batch the store could not
//! commit puts a warning notice on every WebSocket, the next committed batch an all-clear.
//! Players' own requests meanwhile get 503 + Retry-After; the notice says why, and that
//! nothing was lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use croupier_ledger::{BatchTimings, StoreObserver};

use crate::events::{PlayerEvents, PlayerMessage};
use crate::store_metrics::StoreMetrics;

pub const PAUSED: &str = "Bets are paused for a moment while the wallet store recovers. \
                          Nothing was lost: retry shortly.";
pub const RESUMED: &str = "Bets are open again.";

/// The node's observer of the store: metrics, then the players' notices.
pub struct NodeStoreObserver {
    pub metrics: Arc<StoreMetrics>,
    pub events: Arc<PlayerEvents>,
    paused: AtomicBool,
}

impl NodeStoreObserver {
    pub fn new(metrics: Arc<StoreMetrics>, events: Arc<PlayerEvents>) -> Self {
        NodeStoreObserver {
            metrics,
            events,
            paused: AtomicBool::new(false),
        }
    }

    fn notify(&self, level: &str, message: &str) {
        // No subscriber is not an error: nobody is connected.
        self.events.send(
            None,
            PlayerMessage::Notice {
                level: level.to_owned(),
                message: message.to_owned(),
            },
        );
    }
}

impl StoreObserver for NodeStoreObserver {
    fn checkpoint(&self, took: std::time::Duration) {
        self.metrics.checkpoint(took);
    }

    fn batch(&self, timings: &BatchTimings) {
        self.metrics.batch(timings);
        let was_paused = self.paused.swap(!timings.committed, Ordering::SeqCst);
        match (was_paused, timings.committed) {
            (false, false) => {
                tracing::warn!("the store refused a batch; players are told bets are paused");
                self.notify("warning", PAUSED);
            }
            (true, true) => {
                tracing::info!("the store commits again; players are told bets are open");
                self.notify("info", RESUMED);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(committed: bool) -> BatchTimings {
        BatchTimings {
            jobs: 1,
            queue_wait: Default::default(),
            turn_wait: Default::default(),
            build: Default::default(),
            commit: Default::default(),
            retries: 0,
            committed,
            writers_in_turn: 1,
        }
    }

    /// The notices a socket has been sent so far.
    async fn notices(socket: &mut crate::events::Subscription) -> Vec<String> {
        let mut levels = Vec::new();
        let wait = std::time::Duration::from_millis(20);
        while let Ok(message) = tokio::time::timeout(wait, socket.recv()).await {
            match message {
                PlayerMessage::Notice { level, .. } => levels.push(level),
                other => panic!("not a notice: {other:?}"),
            }
        }
        levels
    }

    #[tokio::test]
    async fn one_warning_when_writes_stop_and_one_all_clear_when_they_resume() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(StoreMetrics::register(&mut registry));
        let events = PlayerEvents::new();
        let mut socket = events.subscribe("alice");
        let observer = NodeStoreObserver::new(metrics, events);
        observer.batch(&batch(true));
        assert!(
            notices(&mut socket).await.is_empty(),
            "nothing while writes work"
        );
        observer.batch(&batch(false));
        observer.batch(&batch(false));
        assert_eq!(
            notices(&mut socket).await,
            ["warning"],
            "one warning per outage"
        );
        observer.batch(&batch(true));
        observer.batch(&batch(true));
        assert_eq!(notices(&mut socket).await, ["info"], "one all-clear");
    }
}
