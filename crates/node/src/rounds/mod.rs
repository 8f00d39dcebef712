//! What a player's request does to the ledger, as operations run inside one store transaction:
//! sign-in (a demo player gets a starting balance and a seed pair), starting a round, taking a
//! blackjack action, rotating the fairness seed. Stakes go to escrow first; a settled round
//! moves its stakes from escrow to the house and pays winnings from the house.

use croupier_games::blackjack::{Action, Hand};
use croupier_games::{Bet, FairRng, GameId, server_seed_hash};
use croupier_ledger::{
    Account, EntryKind, LedgerError, LedgerTx, Round, RoundStatus, Seed, Transfer,
};
use serde_json::{Value, json};

use crate::error::ApiError;

/// A demo player's starting balance in minor units (1 000.00).
pub const STARTING_BALANCE: i64 = 100_000;
pub const SESSION_TTL_MS: i64 = 24 * 3600 * 1000;

/// Random bytes from the OS, hex-encoded: tokens, seeds, round ids.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    hex::encode(buf)
}

/// A new round id: the creation time in milliseconds, then 80 random bits. Ids sort by time,
/// so new rounds land at the end of the store's index instead of on a random page.
pub fn new_round_id() -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("r_{now_ms:012x}{}", random_hex(10))
}

pub fn sign_in(
    tx: &mut dyn LedgerTx,
    player: &str,
    token_hash: &str,
) -> Result<Value, LedgerError> {
    let created = !tx.player_exists(player)?;
    if created {
        tx.create_player(player)?;
        tx.post(&Transfer {
            kind: EntryKind::Grant,
            round_id: None,
            debit: Account::House,
            credit: Account::player(player),
            amount: STARTING_BALANCE,
        })?;
        let server_seed = random_hex(32);
        tx.insert_seed(
            player,
            &server_seed,
            &server_seed_hash(&server_seed),
            &random_hex(8),
        )?;
    }
    let expires_ms = tx.now_ms() + SESSION_TTL_MS;
    tx.insert_session(token_hash, player, expires_ms)?;
    let balance = tx.balance(&Account::player(player))?;
    Ok(json!({
        "player": player,
        "created": created,
        "balance": balance,
        "currency": tx.currency(),
        "expires_ms": expires_ms,
    }))
}

/// The public view of a round: the dealer's hole card stays hidden while a hand is open.
pub fn round_view(round: &Round, seed: Option<&Seed>) -> Value {
    let outcome = if round.game == GameId::Blackjack.as_str() {
        serde_json::from_value::<Hand>(round.state.clone())
            .map(|hand| hand.outcome().detail)
            .unwrap_or(Value::Null)
    } else {
        round.state.clone()
    };
    let mut view = json!({
        "id": round.id,
        "game": round.game,
        "status": round.status,
        "stake": round.stake,
        "payout": round.payout,
        "bet": round.bet,
        "outcome": outcome,
        "nonce": round.nonce,
        "created_ms": round.created_ms,
        "updated_ms": round.updated_ms,
    });
    if let Some(seed) = seed {
        view["fair"] = json!({
            "server_seed_hash": seed.server_seed_hash,
            "client_seed": seed.client_seed,
            "nonce": round.nonce,
        });
    }
    view
}

fn settle(tx: &mut dyn LedgerTx, round: &mut Round, payout: i64) -> Result<(), LedgerError> {
    tx.post(&Transfer {
        kind: EntryKind::Settle,
        round_id: Some(round.id.clone()),
        debit: Account::InRound,
        credit: Account::House,
        amount: round.stake,
    })?;
    if payout > 0 {
        tx.post(&Transfer {
            kind: EntryKind::Payout,
            round_id: Some(round.id.clone()),
            debit: Account::House,
            credit: Account::player(&round.player),
            amount: payout,
        })?;
    }
    round.status = RoundStatus::Settled;
    round.payout = Some(payout);
    Ok(())
}

fn active_seed(tx: &mut dyn LedgerTx, player: &str) -> Result<Seed, LedgerError> {
    tx.active_seed(player)?
        .ok_or_else(|| LedgerError::Conflict(format!("player {player} has no active seed")))
}

pub struct NewRound {
    pub id: String,
    pub player: String,
    pub game: GameId,
    pub stake: i64,
    pub bet_json: Value,
    pub bet: Bet,
    pub node: String,
}

pub fn start_round(tx: &mut dyn LedgerTx, new: NewRound) -> Result<Value, LedgerError> {
    let (seed, nonce) = tx.take_nonce(&new.player)?.ok_or_else(|| {
        LedgerError::Conflict(format!("player {} has no active seed", new.player))
    })?;
    tx.post(&Transfer {
        kind: EntryKind::Stake,
        round_id: Some(new.id.clone()),
        debit: Account::player(&new.player),
        credit: Account::InRound,
        amount: new.stake,
    })?;
    let mut rng = FairRng::new(&seed.server_seed, &seed.client_seed, nonce);
    let (state, payout) = if new.game == GameId::Blackjack {
        let hand = Hand::deal(new.stake, &mut rng);
        (serde_json::to_value(&hand)?, hand.payout())
    } else {
        let outcome = croupier_games::play(&new.bet, new.stake, &mut rng);
        (outcome.detail, outcome.payout)
    };
    let now = tx.now_ms();
    let mut round = Round {
        id: new.id,
        player: new.player,
        game: new.game.as_str().to_owned(),
        status: RoundStatus::Open,
        stake: new.stake,
        payout: None,
        bet: new.bet_json,
        state,
        seed_id: seed.id,
        nonce,
        node: new.node,
        created_ms: now,
        updated_ms: now,
    };
    if let Some(payout) = payout {
        settle(tx, &mut round, payout)?;
    }
    tx.insert_round(&round)?;
    let balance = tx.balance(&Account::player(&round.player))?;
    Ok(json!({"round": round_view(&round, Some(&seed)), "balance": balance}))
}

pub fn act(
    tx: &mut dyn LedgerTx,
    player: &str,
    round_id: &str,
    action: Action,
    node: &str,
) -> Result<Value, LedgerError> {
    let mut round = tx
        .round(round_id)?
        .filter(|r| r.player == player)
        .ok_or_else(|| LedgerError::NotFound(format!("round {round_id}")))?;
    if round.status != RoundStatus::Open {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "round_settled",
            format!("round {round_id} is already settled"),
        )
        .into());
    }
    let mut hand: Hand = serde_json::from_value(round.state.clone())?;
    let seed = tx.seed(round.seed_id)?.ok_or_else(|| {
        LedgerError::Storage(format!(
            "seed {} of round {round_id} is missing",
            round.seed_id
        ))
    })?;
    let extra = hand.extra_stake_for(action);
    hand.act(
        action,
        &mut FairRng::new(&seed.server_seed, &seed.client_seed, round.nonce),
    )
    .map_err(|e| LedgerError::Refused(Box::new(e)))?;
    if extra > 0 {
        tx.post(&Transfer {
            kind: EntryKind::Raise,
            round_id: Some(round.id.clone()),
            debit: Account::player(player),
            credit: Account::InRound,
            amount: extra,
        })?;
    }
    round.stake = hand.total_stake();
    round.state = serde_json::to_value(&hand)?;
    round.node = node.to_owned();
    round.updated_ms = tx.now_ms();
    if let Some(payout) = hand.payout() {
        settle(tx, &mut round, payout)?;
    }
    tx.update_round(&round)?;
    let balance = tx.balance(&Account::player(player))?;
    Ok(json!({"round": round_view(&round, Some(&seed)), "balance": balance}))
}

pub fn rotate_seed(
    tx: &mut dyn LedgerTx,
    player: &str,
    client_seed: Option<String>,
) -> Result<Value, LedgerError> {
    if tx.open_round_count(player)? > 0 {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "open_rounds",
            "finish your open rounds before rotating the seed: revealing it would reveal their cards",
        )
        .into());
    }
    let old = active_seed(tx, player)?;
    tx.reveal_seed(old.id)?;
    let server_seed = random_hex(32);
    let hash = server_seed_hash(&server_seed);
    let client_seed = client_seed.unwrap_or_else(|| random_hex(8));
    tx.insert_seed(player, &server_seed, &hash, &client_seed)?;
    Ok(json!({
        "revealed": {
            "server_seed": old.server_seed,
            "server_seed_hash": old.server_seed_hash,
            "client_seed": old.client_seed,
            "rounds_played": old.next_nonce,
        },
        "active": {"server_seed_hash": hash, "client_seed": client_seed, "next_nonce": 0},
    }))
}

/// Recomputes a round from its seed, if the seed has been revealed.
pub fn verification(round: &Round, seed: &Seed) -> Result<Value, ApiError> {
    let mut report = json!({
        "round_id": round.id,
        "game": round.game,
        "server_seed_hash": seed.server_seed_hash,
        "client_seed": seed.client_seed,
        "nonce": round.nonce,
        "revealed": seed.revealed_ms.is_some(),
    });
    if seed.revealed_ms.is_none() {
        report["message"] =
            json!("the server seed is still secret: rotate your seed to reveal it, then verify");
        return Ok(report);
    }
    let game: GameId = round.game.parse()?;
    let actions = if game == GameId::Blackjack {
        serde_json::from_value::<Hand>(round.state.clone())
            .map(|h| h.actions)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let first_stake = if game == GameId::Blackjack {
        serde_json::from_value::<Hand>(round.state.clone())
            .map(|h| h.stake)
            .unwrap_or(round.stake)
    } else {
        round.stake
    };
    let recomputed = croupier_games::replay(
        game,
        first_stake,
        &round.bet,
        &actions,
        &seed.server_seed,
        &seed.client_seed,
        round.nonce,
    )?;
    let recorded = round_view(round, None)["outcome"].clone();
    report["server_seed"] = json!(seed.server_seed);
    report["hash_matches"] = json!(server_seed_hash(&seed.server_seed) == seed.server_seed_hash);
    report["recomputed"] = json!({"outcome": recomputed.detail, "payout": recomputed.payout});
    report["recorded"] = json!({"outcome": recorded, "payout": round.payout});
    report["matches"] = json!(recomputed.detail == recorded && recomputed.payout == round.payout);
    Ok(report)
}

#[cfg(test)]
mod tests;
