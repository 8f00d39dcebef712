//! The one shape of a background loop (sweepers, health checks, samplers, housekeeping,
//! leases, backup schedules): a round at a time, and a panic in a round is survived. Before,
//! each loop was a bare `loop` in a spawned task or thread, so one panic ended it without a
//! word: a gateway stopped checking a node, a node stopped closing abandoned rounds, a
//! control plane kept believing it led, backups stopped, and every health check still
//! passed. Now a round that panics is logged with the loop's name, counted among the
//! process's caught panics (`croupier_panics_caught`), and the next round runs as
//! usual; each loop keeps only plain data between rounds, valid after a half-done one.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Runs one round of the background loop `task`; `None` when it panicked (logged, counted).
pub async fn survive<F: Future>(task: &'static str, round: F) -> Option<F::Output> {
    match AssertUnwindSafe(round).catch_unwind().await {
        Ok(output) => Some(output),
        Err(panic) => {
            caught(task, panic.as_ref());
            None
        }
    }
}

/// `survive` for a round run on a thread of its own.
pub fn survive_blocking<T>(task: &'static str, round: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(round)) {
        Ok(output) => Some(output),
        Err(panic) => {
            caught(task, panic.as_ref());
            None
        }
    }
}

/// Spawns the loop `task`: `round` at once, then every `period` after the last one started
/// (a slow round delays the next rather than bunching them), until the runtime stops or the
/// handle is aborted.
pub fn spawn_every<F, Fut>(task: &'static str, period: Duration, mut round: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Called inside the future, so a panic before its first await is caught too.
            survive(task, async { round().await }).await;
        }
    })
}

fn caught(task: &'static str, payload: &(dyn std::any::Any + Send)) {
    crate::panics::record();
    tracing::error!(
        task,
        panic = crate::panics::message(payload),
        "a background round panicked; the next one runs as usual"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_loop_goes_on_after_rounds_that_panic() {
        let rounds = Arc::new(AtomicU32::new(0));
        let counted = rounds.clone();
        let before = crate::panics::count();
        let handle = spawn_every("test loop", Duration::from_millis(5), move || {
            let round = counted.fetch_add(1, Ordering::SeqCst);
            assert!(round != 0, "injected panic while making round 0");
            async move { assert!(round != 1, "injected panic in round 1") }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while rounds.load(Ordering::SeqCst) < 5 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!handle.is_finished(), "the loop ended");
        handle.abort();
        assert!(
            rounds.load(Ordering::SeqCst) >= 5,
            "the loop stopped after a panic"
        );
        assert!(
            crate::panics::count() >= before + 2,
            "the panics were not counted"
        );
    }

    #[test]
    fn a_thread_round_that_panics_is_none_and_counted() {
        let before = crate::panics::count();
        assert_eq!(survive_blocking("test thread", || 7), Some(7));
        assert_eq!(
            survive_blocking("test thread", || -> u8 { panic!("injected") }),
            None
        );
        assert!(crate::panics::count() > before);
    }
}
