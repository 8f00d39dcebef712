//! Game recall: a player's last 10 rounds, each with every money step (stake, raise, settle,
//! payout) and the player's balance before and after it, and the round's own record (cards,
//! actions taken, result, and `closed_by` when the node closed it). For the player,
//! `GET /api/v1/recall`; for operators, any player's at `GET /ops/players/{player}/recall`.
//! Read in one snapshot: the balances are walked back from the balance now through the
//! player's journal entries, newest first.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use croupier_ledger::{Account, EntryKind, JournalEntry, LedgerError, LedgerTx, Round};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::{OpsAuth, PathParam, PlayerAuth};
use crate::rounds::RoundView;
use crate::state::AppState;

/// Rounds recalled: the last game and the 9 before it.
pub const RECALLED_ROUNDS: u32 = 10;
/// Journal entries read per step, and at most in all, looking for the rounds' steps.
const PAGE: u32 = 500;
const MAX_SCANNED: usize = 20_000;

#[derive(Serialize)]
pub struct Step {
    pub seq: i64,
    pub ts_ms: i64,
    pub kind: EntryKind,
    /// Signed as the player sees it: negative when money left the wallet.
    pub amount: i64,
    pub balance_before: i64,
    pub balance_after: i64,
}

#[derive(Serialize)]
pub struct RecalledRound {
    #[serde(flatten)]
    pub round: RoundView,
    pub steps: Vec<Step>,
}

#[derive(Serialize)]
pub struct Recall {
    pub player: String,
    pub balance: i64,
    pub currency: String,
    pub rounds: Vec<RecalledRound>,
}

fn signed(player: &Account, e: &JournalEntry) -> i64 {
    if &e.credit == player {
        e.amount
    } else {
        -e.amount
    }
}

/// The steps of `rounds`, walking the player's entries back from `balance`.
fn steps_of(
    tx: &mut dyn LedgerTx,
    player: &Account,
    balance: i64,
    rounds: &[Round],
) -> Result<HashMap<String, Vec<Step>>, LedgerError> {
    let mut steps: HashMap<String, Vec<Step>> = HashMap::new();
    let (mut after, mut before_seq, mut scanned) = (balance, None, 0);
    while scanned < MAX_SCANNED {
        let page = tx.history(player, before_seq, PAGE)?;
        let Some(last) = page.last() else { break };
        before_seq = Some(last.seq);
        scanned += page.len();
        for e in page {
            let amount = signed(player, &e);
            let before = after - amount;
            if let Some(id) = e.round_id.as_ref().filter(|_| !e.kind.is_roundless()) {
                steps.entry(id.clone()).or_default().push(Step {
                    seq: e.seq,
                    ts_ms: e.ts_ms,
                    kind: e.kind,
                    amount,
                    balance_before: before,
                    balance_after: after,
                });
            }
            after = before;
        }
        let staked = |r: &Round| {
            steps
                .get(&r.id)
                .is_some_and(|s| s.iter().any(|step| step.kind == EntryKind::Stake))
        };
        if rounds.iter().all(staked) {
            break;
        }
    }
    Ok(steps)
}

fn recall(tx: &mut dyn LedgerTx, player: &str) -> Result<Option<Recall>, LedgerError> {
    if !tx.player_exists(player)? {
        return Ok(None);
    }
    let account = Account::player(player);
    let balance = tx.balance(&account)?;
    let rounds = tx.rounds(player, None, RECALLED_ROUNDS)?;
    let mut steps = steps_of(tx, &account, balance, &rounds)?;
    let rounds = rounds
        .iter()
        .map(|round| {
            let mut round_steps = steps.remove(&round.id).unwrap_or_default();
            round_steps.sort_by_key(|s| s.seq);
            RecalledRound {
                round: RoundView::new(round, None),
                steps: round_steps,
            }
        })
        .collect();
    Ok(Some(Recall {
        player: player.to_owned(),
        balance,
        currency: tx.currency().to_owned(),
        rounds,
    }))
}

async fn read_recall(state: &AppState, player: String) -> Result<Json<Recall>, ApiError> {
    let who = player.clone();
    state
        .store
        .read(move |tx| recall(tx, &who))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("player {player}")))
}

/// `GET /api/v1/recall`: the signed-in player's last rounds.
pub async fn own(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
) -> Result<Json<Recall>, ApiError> {
    read_recall(&state, player).await
}

/// `GET /ops/players/{player}/recall`: any player's, for operators.
pub async fn any(
    State(state): State<AppState>,
    _: OpsAuth,
    PathParam(player): PathParam<String>,
) -> Result<Json<Recall>, ApiError> {
    read_recall(&state, player).await
}
