//! Whether another store (another node) is writing to this store's database now, and what
//! this store's writers do about it: all of them take turns while it writes alone, one while
//! another writes too, and that one takes the database's shared turn (`shared_turn`).
//!
//! A second writer lets a node build its next batch while the server commits the last, which
//! is what one node alone needs (12 060–12 988 bets/s with two writers, 7 220–10 466 with
//! one). When several nodes write to one server, the server is the part they share, and it
//! pays a fixed cost for each batch (its statements, its commit and flush): two writers per
//! node split each node's work into batches half the size. Three nodes with two writers each
//! cost the server 0.200–0.277 ms per bet and did 0.74–0.81x of one node; with one writer
//! each, 0.152–0.167 ms and 0.88–1.12x (docs/benchmarks.md).
//!
//! So each store names its writers' connections (`application_name` = `croupier-writer`
//! and a tag of its own) and samples, a few times a second, whether another store's writer
//! is in a transaction on the same database. Seen in enough of the recent samples, the other
//! store is busy, and this store's writers beyond the first wait out of turn; seen no more,
//! they take turns again. A spare node's few synthetic bets are rarely caught mid-transaction
//! and do not count. Only throughput depends on it, never correctness: every writer is
//! always a whole writer, however many take turns.

use std::collections::VecDeque;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::watch;

/// The prefix of every store writer's `application_name`.
const WRITER_PREFIX: &str = "croupier-writer";
/// How often the database is asked which writers are mid-transaction.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// The samples a decision looks back over (two seconds' worth).
const WINDOW: usize = 8;
/// Samples of the window that must see another store's writer mid-transaction.
const BUSY_SAMPLES: usize = 2;

/// This store's name for its writers' connections.
#[derive(Clone, Debug)]
pub struct StoreTag(String);

impl StoreTag {
    pub fn random() -> StoreTag {
        let mut bytes = [0u8; 6];
        let _ = getrandom::fill(&mut bytes);
        StoreTag(format!("{WRITER_PREFIX} {}", hex::encode(bytes)))
    }

    pub fn application_name(&self) -> &str {
        &self.0
    }
}

/// Whether another store's writers are busy on this store's database now.
pub type Sharing = watch::Receiver<bool>;

/// Starts as writing alone; `watch_other_stores` moves it.
pub fn sharing() -> (watch::Sender<bool>, Sharing) {
    watch::channel(false)
}

/// Samples the database for other stores' busy writers and says whether there are any, until
/// the store (and with it this task's runtime) is gone. A failed sample counts as none seen:
/// with the database unreachable, no writer commits anyway.
pub async fn watch_other_stores(readers: Pool, tag: StoreTag, sharing: watch::Sender<bool>) {
    let mut window = VecDeque::with_capacity(WINDOW);
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let seen = other_store_mid_transaction(&readers, &tag)
            .await
            .unwrap_or(false);
        if window.len() == WINDOW {
            window.pop_front();
        }
        window.push_back(seen);
        let shared = others_busy(&window);
        // This task is the only sender.
        if *sharing.borrow() != shared {
            sharing.send_replace(shared);
            tracing::info!(
                "another node's writers {} this database",
                if shared { "share" } else { "no longer share" }
            );
        }
    }
}

/// Whether another store was busy in enough of the window's samples.
fn others_busy(window: &VecDeque<bool>) -> bool {
    window.iter().filter(|seen| **seen).count() >= BUSY_SAMPLES
}

/// How many of a store's `writers` take turns: one while another store shares the database.
pub fn writers_in_turn(writers: usize, shared: bool) -> usize {
    if shared { 1 } else { writers }
}

/// Whether a writer of another store is in a transaction on this database right now.
async fn other_store_mid_transaction(readers: &Pool, tag: &StoreTag) -> Option<bool> {
    let client = readers.get().await.ok()?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
               WHERE datname = current_database()
                 AND application_name LIKE $1 AND application_name <> $2
                 AND state IN ('active', 'idle in transaction'))",
            &[&format!("{WRITER_PREFIX} %"), &tag.application_name()],
        )
        .await
        .ok()?;
    Some(row.get(0))
}

/// Waits until writer `index` of `writers` may take turns; false once the store is gone.
pub async fn wait_in_turn(sharing: &mut Sharing, index: usize, writers: usize) -> bool {
    sharing
        .wait_for(|shared| index < writers_in_turn(writers, *shared))
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(seen: &[bool]) -> VecDeque<bool> {
        seen.iter().copied().collect()
    }

    #[test]
    fn one_writer_while_another_store_is_busy() {
        assert!(!others_busy(&window(&[false; 8])));
        // One sighting is a spare's synthetic bet, or chance.
        assert!(!others_busy(&window(&[true, false, false])));
        assert!(others_busy(&window(&[true, false, true])));
        assert!(others_busy(&window(&[true; 8])));
        assert_eq!(writers_in_turn(2, false), 2);
        assert_eq!(writers_in_turn(3, true), 1);
        assert_eq!(writers_in_turn(1, true), 1);
    }

    #[test]
    fn each_store_has_its_own_name() {
        let (a, b) = (StoreTag::random(), StoreTag::random());
        assert_ne!(a.application_name(), b.application_name());
        assert!(a.application_name().starts_with("croupier-writer "));
    }
}
