//! What the player API answers for sign-ins, rounds and seeds: the typed results of the round
//! operations, which are also what an idempotent replay returns (stored as JSON with the key).

use croupier_games::blackjack::Hand;
use croupier_games::{GameId, server_seed_hash};
use croupier_ledger::{Round, RoundStatus, Seed};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::abandon::{Closure, SettledAs};
use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedIn {
    pub player: String,
    /// Whether this sign-in created the player.
    pub created: bool,
    pub balance: i64,
    pub currency: String,
    pub expires_ms: i64,
}

/// The fairness data a player needs to verify a round once the seed is revealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fairness {
    pub server_seed_hash: String,
    pub client_seed: String,
    pub nonce: u64,
}

/// The public view of a round: the dealer's hole card stays hidden while a hand is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundView {
    pub id: String,
    pub game: String,
    pub status: RoundStatus,
    pub stake: i64,
    pub payout: Option<i64>,
    pub bet: Value,
    pub outcome: Value,
    pub nonce: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fair: Option<Fairness>,
    /// Why the node closed the round itself (an abandoned round), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<Closure>,
}

/// The node's closure of a round, from its state (`crate::abandon`).
fn closure(round: &Round) -> Option<Closure> {
    let state: Value = serde_json::from_str(&round.state).ok()?;
    serde_json::from_value(state.get("closed_by")?.clone()).ok()
}

impl RoundView {
    pub fn new(round: &Round, seed: Option<&Seed>) -> RoundView {
        RoundView {
            id: round.id.clone(),
            game: round.game.clone(),
            status: round.status,
            stake: round.stake,
            payout: round.payout,
            bet: serde_json::from_str(&round.bet).unwrap_or(Value::Null),
            outcome: public_outcome(round),
            nonce: round.nonce,
            created_ms: round.created_ms,
            updated_ms: round.updated_ms,
            fair: seed.map(|seed| Fairness {
                server_seed_hash: seed.server_seed_hash.clone(),
                client_seed: seed.client_seed.clone(),
                nonce: round.nonce,
            }),
            closed_by: closure(round),
        }
    }
}

fn public_outcome(round: &Round) -> Value {
    if round.game == GameId::Blackjack.as_str() {
        serde_json::from_str::<Hand>(&round.state)
            .map(|hand| hand.outcome().detail)
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&round.state).unwrap_or(Value::Null)
    }
}

/// A round just played or advanced, and the player's balance after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Played {
    pub round: RoundView,
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevealedSeed {
    pub server_seed: String,
    pub server_seed_hash: String,
    pub client_seed: String,
    pub rounds_played: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveSeed {
    pub server_seed_hash: String,
    pub client_seed: String,
    pub next_nonce: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rotated {
    pub revealed: RevealedSeed,
    pub active: ActiveSeed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recomputed {
    pub outcome: Value,
    pub payout: Option<i64>,
}

/// A round recomputed from its revealed seed next to what was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub round_id: String,
    pub game: String,
    pub server_seed_hash: String,
    pub client_seed: String,
    pub nonce: u64,
    pub revealed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_seed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_matches: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recomputed: Option<Recomputed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<Recomputed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<bool>,
}

impl Verification {
    /// Recomputes `round` from `seed`, if the seed has been revealed.
    pub fn of(round: &Round, seed: &Seed) -> Result<Verification, ApiError> {
        let mut report = Verification {
            round_id: round.id.clone(),
            game: round.game.clone(),
            server_seed_hash: seed.server_seed_hash.clone(),
            client_seed: seed.client_seed.clone(),
            nonce: round.nonce,
            revealed: seed.revealed_ms.is_some(),
            message: None,
            server_seed: None,
            hash_matches: None,
            recomputed: None,
            recorded: None,
            matches: None,
        };
        if seed.revealed_ms.is_none() {
            report.message = Some(
                "the server seed is still secret: rotate your seed to reveal it, then verify"
                    .into(),
            );
            return Ok(report);
        }
        let recomputed = recompute(round, seed)?;
        let recorded = Recomputed {
            outcome: public_outcome(round),
            payout: round.payout,
        };
        report.server_seed = Some(seed.server_seed.clone());
        report.hash_matches = Some(server_seed_hash(&seed.server_seed) == seed.server_seed_hash);
        report.matches = Some(recomputed == recorded);
        report.recomputed = Some(recomputed);
        report.recorded = Some(recorded);
        Ok(report)
    }
}

fn recompute(round: &Round, seed: &Seed) -> Result<Recomputed, ApiError> {
    let game: GameId = round.game.parse()?;
    let hand = (game == GameId::Blackjack)
        .then(|| serde_json::from_str::<Hand>(&round.state).ok())
        .flatten();
    let actions = hand.as_ref().map(|h| h.actions.clone()).unwrap_or_default();
    let first_stake = hand.as_ref().map_or(round.stake, |h| h.stake);
    let bet: Value = serde_json::from_str(&round.bet).unwrap_or(Value::Null);
    let outcome = croupier_games::replay(
        game,
        first_stake,
        &bet,
        &actions,
        &seed.server_seed,
        &seed.client_seed,
        round.nonce,
    )?;
    // A hand the node refunded stays unfinished: the refund rule gives back what was staked.
    let refunded = closure(round).is_some_and(|c| c.settled_as == SettledAs::Refund);
    let payout = match outcome.payout {
        None if refunded => Some(round.stake),
        payout => payout,
    };
    Ok(Recomputed {
        outcome: outcome.detail,
        payout,
    })
}
