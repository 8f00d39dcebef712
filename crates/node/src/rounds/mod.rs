//! What a player's request does to the ledger, as operations run inside one store transaction:
//! sign-in (a demo player gets a starting balance and a seed pair), starting a round, taking a
//! blackjack action, rotating the fairness seed. Stakes go to escrow first; a settled round
//! moves its stakes from escrow to the house and pays winnings from the house.

use croupier_games::blackjack::{Action, Hand};
use croupier_games::{Bet, BetRequest, FairRng, server_seed_hash};
use croupier_ledger::{
    Account, EntryKind, LedgerError, LedgerTx, Round, RoundStatus, Seed, Transfer,
};

mod error;
mod state;
mod views;

pub use error::RoundError;
pub use state::{HandState, RoundState};
pub use views::{
    ActiveSeed, Fairness, Played, RevealedSeed, Rotated, RoundView, SignedIn, Verification,
};

/// A demo player's starting balance in minor units (1 000.00).
pub const STARTING_BALANCE: i64 = 100_000;
pub const SESSION_TTL_MS: i64 = 24 * 3600 * 1000;
/// Open sessions a player keeps by default: signing in once more revokes the oldest.
pub const MAX_SESSIONS_PER_PLAYER: u32 = 10;

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

/// A demo sign-in: a new player gets `STARTING_BALANCE`.
pub fn sign_in(
    tx: &mut dyn LedgerTx,
    player: &str,
    token_hash: &str,
) -> Result<SignedIn, RoundError> {
    open_session(tx, player, token_hash, true, MAX_SESSIONS_PER_PLAYER)
}

/// Opens a session for `player`, creating the player (with a seed pair, and with
/// `STARTING_BALANCE` when `demo_grant`; else an empty wallet the operator's cashier funds).
/// The player keeps `max_sessions` open sessions at most: the oldest beyond are revoked.
pub fn open_session(
    tx: &mut dyn LedgerTx,
    player: &str,
    token_hash: &str,
    demo_grant: bool,
    max_sessions: u32,
) -> Result<SignedIn, RoundError> {
    let created = ensure_player(tx, player, demo_grant)?;
    let expires_ms = tx.now_ms() + SESSION_TTL_MS;
    tx.insert_session(token_hash, player, expires_ms)?;
    tx.keep_newest_sessions(player, max_sessions)?;
    Ok(SignedIn {
        player: player.to_owned(),
        created,
        balance: tx.balance(&Account::player(player))?,
        currency: tx.currency().to_owned(),
        expires_ms,
    })
}

/// Creates `player` if new, with a seed pair (and `STARTING_BALANCE` when `demo_grant`);
/// whether it was created. A launch and a cashier deposit may each be a player's first call.
pub fn ensure_player(
    tx: &mut dyn LedgerTx,
    player: &str,
    demo_grant: bool,
) -> Result<bool, LedgerError> {
    if tx.player_exists(player)? {
        return Ok(false);
    }
    tx.create_player(player)?;
    if demo_grant {
        tx.post(&Transfer {
            kind: EntryKind::Grant,
            round_id: None,
            debit: Account::House,
            credit: Account::player(player),
            amount: STARTING_BALANCE,
        })?;
    }
    let server_seed = random_hex(32);
    tx.insert_seed(
        player,
        &server_seed,
        &server_seed_hash(&server_seed),
        &random_hex(8),
    )?;
    Ok(true)
}

pub(crate) fn settle(
    tx: &mut dyn LedgerTx,
    round: &mut Round,
    payout: i64,
) -> Result<(), LedgerError> {
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

/// A round a player asked for: its bet was read and checked at the edge (`parse_bet`).
pub struct NewRound {
    pub id: String,
    pub player: String,
    pub stake: i64,
    pub bet: BetRequest,
    pub node: String,
}

/// The first step of a round: its state and, once it is over, its payout.
fn first_step(bet: &Bet, stake: i64, rng: &mut FairRng) -> (RoundState, Option<i64>) {
    if *bet == Bet::Blackjack {
        let hand = Hand::deal(stake, rng);
        let payout = hand.payout();
        return (RoundState::hand(hand), payout);
    }
    let outcome = croupier_games::play(bet, stake, rng);
    (RoundState::Outcome(outcome.detail), outcome.payout)
}

pub fn start_round(tx: &mut dyn LedgerTx, new: &NewRound) -> Result<Played, RoundError> {
    let bet = croupier_games::validate(new.stake, &new.bet)?;
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
    let (state, payout) = first_step(&bet, new.stake, &mut rng);
    let now = tx.now_ms();
    let mut round = Round {
        id: new.id.clone(),
        player: new.player.clone(),
        game: new.bet.game().as_str().to_owned(),
        status: RoundStatus::Open,
        stake: new.stake,
        payout: None,
        bet: new.bet.to_text(),
        state: state.to_text(),
        seed_id: seed.id,
        nonce,
        node: new.node.clone(),
        created_ms: now,
        updated_ms: now,
    };
    if let Some(payout) = payout {
        settle(tx, &mut round, payout)?;
    }
    tx.insert_round(&round)?;
    let balance = tx.balance(&Account::player(&round.player))?;
    Ok(Played {
        round: RoundView::new(&round, Some(&seed)),
        balance,
    })
}

pub fn act(
    tx: &mut dyn LedgerTx,
    player: &str,
    round_id: &str,
    action: Action,
    node: &str,
) -> Result<Played, RoundError> {
    let mut round = tx
        .round(round_id)?
        .filter(|r| r.player == player)
        .ok_or_else(|| LedgerError::NotFound(format!("round {round_id}")))?;
    if round.status != RoundStatus::Open {
        return Err(RoundError::Settled(round_id.to_owned()));
    }
    let HandState { mut hand, .. } = RoundState::of(&round)?.into_hand(&round)?;
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
    )?;
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
    let payout = hand.payout();
    round.state = RoundState::hand(hand).to_text();
    round.node = node.to_owned();
    round.updated_ms = tx.now_ms();
    if let Some(payout) = payout {
        settle(tx, &mut round, payout)?;
    }
    tx.update_round(&round)?;
    let balance = tx.balance(&Account::player(player))?;
    Ok(Played {
        round: RoundView::new(&round, Some(&seed)),
        balance,
    })
}

pub fn rotate_seed(
    tx: &mut dyn LedgerTx,
    player: &str,
    client_seed: Option<&str>,
) -> Result<Rotated, RoundError> {
    if tx.open_round_count(player)? > 0 {
        return Err(RoundError::OpenRounds);
    }
    let old = active_seed(tx, player)?;
    tx.reveal_seed(old.id)?;
    let server_seed = random_hex(32);
    let hash = server_seed_hash(&server_seed);
    let client_seed = client_seed.map_or_else(|| random_hex(8), str::to_owned);
    tx.insert_seed(player, &server_seed, &hash, &client_seed)?;
    Ok(Rotated {
        revealed: RevealedSeed {
            server_seed: old.server_seed,
            server_seed_hash: old.server_seed_hash,
            client_seed: old.client_seed,
            rounds_played: old.next_nonce,
        },
        active: ActiveSeed {
            server_seed_hash: hash,
            client_seed,
            next_nonce: 0,
        },
    })
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;
