//! Opening a SQLite ledger with seed keys seals every unrevealed seed the sealing key has not
//! sealed yet (clear seeds of an older build, seeds of a rotated key), in one write
//! transaction, so from then on the file holds no unrevealed seed in clear (`seed_seal`).

use rusqlite::{Connection, params};

use super::tx::{SEED_COLUMNS, seed_from_row};
use crate::error::LedgerError;
use crate::model::Seed;
use crate::seed_seal::{Reseal, ResealReport, SeedVault, fresh_server_seed};

/// Seals what needs it; refuses (changing nothing) when a seed's key is missing and retiring
/// was not asked for.
pub fn reseal_unrevealed(
    conn: &Connection,
    seeds: &SeedVault,
) -> Result<ResealReport, LedgerError> {
    let Some(prefix) = seeds.sealing_prefix() else {
        return Ok(ResealReport::default());
    };
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match reseal_in_transaction(conn, seeds, &prefix) {
        Ok(report) => {
            conn.execute_batch("COMMIT")?;
            report.log();
            Ok(report)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn reseal_in_transaction(
    conn: &Connection,
    seeds: &SeedVault,
    prefix: &str,
) -> Result<ResealReport, LedgerError> {
    let pending: Vec<Seed> = conn
        .prepare(&format!(
            "SELECT {SEED_COLUMNS} FROM seeds
             WHERE revealed_ms IS NULL AND substr(server_seed, 1, ?1) <> ?2"
        ))?
        .query_map(params![prefix.len() as i64, prefix], seed_from_row)?
        .collect::<Result<_, _>>()?;
    let now = crate::clock::now_ms();
    let mut report = ResealReport::default();
    for seed in pending {
        match seeds.reseal(&seed)? {
            Reseal::Keep => {}
            Reseal::Rewrite(stored) => {
                conn.execute(
                    "UPDATE seeds SET server_seed = ?2 WHERE id = ?1",
                    params![seed.id, stored],
                )?;
                report.resealed += 1;
            }
            Reseal::Retire => {
                retire(conn, seeds, &seed, now)?;
                report.retired += 1;
            }
        }
    }
    Ok(report)
}

/// Reveals a seed whose key is lost (its server seed stays unreadable) and gives its player a
/// fresh one with the same client seed.
fn retire(conn: &Connection, seeds: &SeedVault, seed: &Seed, now: i64) -> Result<(), LedgerError> {
    conn.execute(
        "UPDATE seeds SET revealed_ms = ?2 WHERE id = ?1",
        params![seed.id, now],
    )?;
    let (server_seed, hash) = fresh_server_seed()?;
    let stored = seeds.to_stored(&seed.player, &hash, &server_seed)?;
    conn.execute(
        "INSERT INTO seeds (player, server_seed, server_seed_hash, client_seed, next_nonce, created_ms)
         VALUES (?1, ?2, ?3, ?4, 0, ?5)",
        params![seed.player, stored, hash, seed.client_seed, now],
    )?;
    Ok(())
}
