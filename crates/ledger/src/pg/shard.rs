//! Which row of the house and escrow balances a writer changes. Those two accounts take a
//! delta from every bet, so each writer adds its deltas to a row of its own (one of `SHARDS`)
//! and readers sum the rows. Two writers on one row queue behind each other's row lock from
//! their balance update to their commit: picked at random, three writers shared a row about
//! one time in five, and a third node then cost throughput instead of adding it. So each new
//! writer connection claims a free row with a session advisory lock (held while the
//! connection lives, released with it); with every row taken, it shares one at random.
//! Sharing is only slower, never wrong: rows change by delta.

use std::sync::Arc;
use std::sync::atomic::{AtomicI16, Ordering};

use deadpool_postgres::{ClientWrapper, Hook, HookError};

use super::schema::SHARDS;

/// The advisory-lock namespace of shard claims (the two-key form, which never meets the
/// one-key locks of migrations, idempotency keys or the control plane's lease).
const SHARD_LOCKS: i32 = 0x4352_5348;

/// The shard a writer's current connection claimed; read by each flush.
#[derive(Clone, Default)]
pub struct ShardClaim(Arc<AtomicI16>);

impl ShardClaim {
    pub fn get(&self) -> i16 {
        self.0.load(Ordering::Relaxed)
    }

    /// A pool hook: each new connection claims a free shard (see the module doc).
    pub fn on_connect(&self) -> Hook {
        let claim = self.clone();
        Hook::async_fn(move |client, _| {
            let claim = claim.clone();
            Box::pin(async move {
                let shard = claim_free_shard(client).await.map_err(HookError::Backend)?;
                claim.0.store(shard, Ordering::Relaxed);
                Ok(())
            })
        })
    }
}

/// Tries each shard from a random one on; the first whose lock is free is this connection's.
async fn claim_free_shard(client: &ClientWrapper) -> Result<i16, tokio_postgres::Error> {
    let start = random_shard();
    for step in 0..SHARDS {
        let shard = (start + step) % SHARDS;
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&SHARD_LOCKS, &i32::from(shard)],
            )
            .await?;
        if row.get::<_, bool>(0) {
            return Ok(shard);
        }
    }
    Ok(start)
}

fn random_shard() -> i16 {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    i16::from(byte[0]) % SHARDS
}
