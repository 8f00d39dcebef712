//! Opening a PostgreSQL ledger with seed keys seals every unrevealed seed the sealing key has
//! not sealed yet (clear seeds of an older build, seeds of a rotated key) in one transaction.
//! Nodes opening at once each lock the rows they would change; one that waited finds them
//! sealed and skips them (the condition is checked again on the new row).

use tokio_postgres::Client;

use super::error::pg_error;
use super::rows::{SEED_COLUMNS, seed_from};
use crate::error::LedgerError;
use crate::model::Seed;
use crate::seed_seal::{Reseal, ResealReport, SeedVault, fresh_server_seed};

/// Seals what needs it; refuses (changing nothing) when a seed's key is missing and retiring
/// was not asked for.
pub async fn reseal_unrevealed(
    client: &mut Client,
    seeds: &SeedVault,
) -> Result<ResealReport, LedgerError> {
    let Some(prefix) = seeds.sealing_prefix() else {
        return Ok(ResealReport::default());
    };
    let tx = client.transaction().await.map_err(pg_error)?;
    // A ledger of many players: the whole pass may take longer than one statement may.
    tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '60s'")
        .await
        .map_err(pg_error)?;
    let pending: Vec<Seed> = tx
        .query(
            &format!(
                "SELECT {SEED_COLUMNS} FROM seeds
                 WHERE revealed_ms IS NULL AND NOT starts_with(server_seed, $1) FOR UPDATE"
            ),
            &[&prefix],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(seed_from)
        .collect();
    let mut report = ResealReport::default();
    let (mut ids, mut texts) = (Vec::new(), Vec::new());
    let mut retired = Vec::new();
    for seed in pending {
        match seeds.reseal(&seed)? {
            Reseal::Keep => {}
            Reseal::Rewrite(stored) => {
                ids.push(seed.id);
                texts.push(stored);
            }
            Reseal::Retire => retired.push(seed),
        }
    }
    report.resealed = ids.len();
    report.retired = retired.len();
    tx.execute(RESEAL_SEEDS, &[&ids, &texts])
        .await
        .map_err(pg_error)?;
    for seed in &retired {
        retire(&tx, seeds, seed).await?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(report)
}

/// Rewrites seeds' stored server seeds (see `batch::UPDATE_BALANCES` for the `= ANY`).
pub const RESEAL_SEEDS: &str = "UPDATE seeds SET server_seed = t.s
     FROM unnest($1::bigint[], $2::text[]) AS t(id, s)
     WHERE seeds.id = ANY($1::bigint[]) AND seeds.id = t.id";

/// Reveals a seed whose key is lost (its server seed stays unreadable) and gives its player a
/// fresh one with the same client seed.
async fn retire(
    tx: &tokio_postgres::Transaction<'_>,
    seeds: &SeedVault,
    seed: &Seed,
) -> Result<(), LedgerError> {
    let now = crate::clock::now_ms();
    tx.execute(
        "UPDATE seeds SET revealed_ms = $2 WHERE id = $1",
        &[&seed.id, &now],
    )
    .await
    .map_err(pg_error)?;
    let (server_seed, hash) = fresh_server_seed()?;
    let stored = seeds.to_stored(&seed.player, &hash, &server_seed)?;
    tx.execute(
        "INSERT INTO seeds (id, player, server_seed, server_seed_hash, client_seed, next_nonce, created_ms)
         VALUES (nextval('seeds_id_seq'), $1, $2, $3, $4, 0, $5)",
        &[&seed.player, &stored, &hash, &seed.client_seed, &now],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}
