//! What the player API answers for sign-ins, rounds and seeds: the typed results of the round
//! operations, which are also what an idempotent replay returns (stored as JSON with the key).

use croupier_games::{BetRequest, Detail, GameId, server_seed_hash};
use croupier_ledger::{Round, RoundStatus, Seed};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Who signed in: shared with the clients (`croupier_web::wire::player`).
pub use croupier_web::wire::player::SignedIn;

use super::RoundError;
use super::state::{self, HandState, RoundState};
use crate::abandon::{Closure, SettledAs};

/// The fairness data a player needs to verify a round once the seed is revealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fairness {
    pub server_seed_hash: String,
    pub client_seed: String,
    pub nonce: u64,
}

/// The public view of a round: the dealer's hole card stays hidden while a hand is open. The
/// bet and the outcome are `null` if the round's stored documents do not read (as they were
/// before these were typed). An idempotency record of it reads back through `RoundRecord`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RoundRecord")]
pub struct RoundView {
    pub id: String,
    pub game: String,
    pub status: RoundStatus,
    pub stake: i64,
    pub payout: Option<i64>,
    pub bet: Option<BetRequest>,
    pub outcome: Option<Detail>,
    pub nonce: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fair: Option<Fairness>,
    /// Why the node closed the round itself (an abandoned round), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<Closure>,
}

impl RoundView {
    pub fn new(round: &Round, seed: Option<&Seed>) -> RoundView {
        let state = RoundState::of(round).ok();
        RoundView {
            id: round.id.clone(),
            game: round.game.clone(),
            status: round.status,
            stake: round.stake,
            payout: round.payout,
            bet: state::bet(round).ok(),
            outcome: state.as_ref().map(RoundState::public),
            nonce: round.nonce,
            created_ms: round.created_ms,
            updated_ms: round.updated_ms,
            fair: seed.map(|seed| Fairness {
                server_seed_hash: seed.server_seed_hash.clone(),
                client_seed: seed.client_seed.clone(),
                nonce: round.nonce,
            }),
            closed_by: state.as_ref().and_then(RoundState::closure).cloned(),
        }
    }
}

/// A round view as its idempotency record keeps it: the bet and the outcome read by the game.
#[derive(Deserialize)]
struct RoundRecord {
    id: String,
    game: String,
    status: RoundStatus,
    stake: i64,
    payout: Option<i64>,
    bet: Box<RawValue>,
    outcome: Box<RawValue>,
    nonce: u64,
    created_ms: i64,
    updated_ms: i64,
    #[serde(default)]
    fair: Option<Fairness>,
    #[serde(default)]
    closed_by: Option<Closure>,
}

impl TryFrom<RoundRecord> for RoundView {
    type Error = croupier_games::BetError;

    fn try_from(record: RoundRecord) -> Result<RoundView, Self::Error> {
        let game: GameId = record.game.parse()?;
        Ok(RoundView {
            bet: BetRequest::from_text(game, record.bet.get()).ok(),
            outcome: Detail::from_text(game, record.outcome.get()).ok(),
            id: record.id,
            game: record.game,
            status: record.status,
            stake: record.stake,
            payout: record.payout,
            nonce: record.nonce,
            created_ms: record.created_ms,
            updated_ms: record.updated_ms,
            fair: record.fair,
            closed_by: record.closed_by,
        })
    }
}

/// A round just played or advanced, and the player's balance after it.
pub type Played = croupier_web::wire::player::Played<RoundView>;

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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recomputed {
    pub outcome: Detail,
    pub payout: Option<i64>,
}

/// A round recomputed from its revealed seed next to what was recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub fn of(round: &Round, seed: &Seed) -> Result<Verification, RoundError> {
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
        let state = RoundState::of(round)?;
        let recomputed = recompute(round, &state, seed)?;
        let recorded = Recomputed {
            outcome: state.public(),
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

fn recompute(round: &Round, state: &RoundState, seed: &Seed) -> Result<Recomputed, RoundError> {
    let (actions, first_stake) = match state {
        RoundState::Hand(HandState { hand, .. }) => (hand.actions.as_slice(), hand.stake),
        RoundState::Outcome(_) => (&[][..], round.stake),
    };
    let outcome = croupier_games::replay(
        first_stake,
        &state::bet(round)?,
        actions,
        &seed.server_seed,
        &seed.client_seed,
        round.nonce,
    )?;
    // A hand the node refunded stays unfinished: the refund rule gives back what was staked.
    let refunded = state
        .closure()
        .is_some_and(|c| c.settled_as == SettledAs::Refund);
    let payout = match outcome.payout {
        None if refunded => Some(round.stake),
        payout => payout,
    };
    Ok(Recomputed {
        outcome: outcome.detail,
        payout,
    })
}
