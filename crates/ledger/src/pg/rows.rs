//! How a seed's and a round's rows are read: the columns, in order, and the row made a model
//! value. Shared by the snapshot reads (`tx`), the batch's prefetch and the seeds' reseal.

use tokio_postgres::Row;

use crate::error::LedgerError;
use crate::model::{Round, RoundStatus, Seed};

pub const SEED_COLUMNS: &str =
    "id, player, server_seed, server_seed_hash, client_seed, next_nonce, created_ms, revealed_ms";
pub const ROUND_COLUMNS: &str = "id, player, game, status, stake, payout, bet, state, seed_id, nonce, node, created_ms, updated_ms";

pub fn seed_from(row: &Row) -> Seed {
    Seed {
        id: row.get(0),
        player: row.get(1),
        server_seed: row.get(2),
        server_seed_hash: row.get(3),
        client_seed: row.get(4),
        next_nonce: row.get::<_, i64>(5) as u64,
        created_ms: row.get(6),
        revealed_ms: row.get(7),
    }
}

pub fn round_from(row: &Row) -> Result<Round, LedgerError> {
    let status: String = row.get(3);
    Ok(Round {
        id: row.get(0),
        player: row.get(1),
        game: row.get(2),
        status: match status.as_str() {
            "open" => RoundStatus::Open,
            "settled" => RoundStatus::Settled,
            other => {
                return Err(LedgerError::Storage(format!(
                    "unknown round status '{other}'"
                )));
            }
        },
        stake: row.get(4),
        payout: row.get(5),
        bet: row.get(6),
        state: row.get(7),
        seed_id: row.get(8),
        nonce: row.get::<_, i64>(9) as u64,
        node: row.get(10),
        created_ms: row.get(11),
        updated_ms: row.get(12),
    })
}
