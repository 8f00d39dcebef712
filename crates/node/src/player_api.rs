//! The player API, `/api/v1/...` (sign-in is `sessions`): lobby, wallet and its history, rounds (play, act,
//! list, show, verify) and fairness seeds.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use croupier_games::blackjack::Action;
use croupier_games::{GameId, GameInfo, catalog};
use croupier_ledger::{Account, Committed, EntryKind, Idempotency, LedgerError};
use croupier_web::wire;
use croupier_web::wire::ops::GameStatus;
use croupier_web::wire::player::{Act, Lobby, Play};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::events::PlayerMessage;
use crate::extract::{
    IdempotencyKey, JsonBody, PathParam, PlayerAuth, QueryParams, idempotency_key,
};
use crate::rounds::{
    self, ActiveSeed, NewRound, Played, Rotated, RoundError, RoundView, Verification,
};
use crate::state::AppState;
use axum::extract::State;

const MAX_PAGE: u32 = 200;
const DEFAULT_PAGE: u32 = 50;
const MAX_CLIENT_SEED: usize = 64;

/// A game in the lobby with its status on this node.
#[derive(Serialize)]
pub struct LobbyGame {
    #[serde(flatten)]
    info: GameInfo,
    status: GameStatus,
}

pub async fn lobby(State(state): State<AppState>, _: PlayerAuth) -> Json<Lobby<LobbyGame>> {
    let games = catalog()
        .into_iter()
        .map(|info| LobbyGame {
            status: state.game_status(info.id.as_str()),
            info,
        })
        .collect();
    Json(Lobby {
        games,
        node: state.node_id.clone(),
        demo: state.players.demo,
    })
}

#[derive(Serialize)]
pub struct Wallet {
    player: String,
    balance: i64,
    currency: String,
}

pub async fn wallet(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
) -> Result<Json<Wallet>, ApiError> {
    let account = Account::player(&player);
    let (balance, currency) = state
        .store
        .read(move |tx| Ok((tx.balance(&account)?, tx.currency().to_owned())))
        .await?;
    Ok(Json(Wallet {
        player,
        balance,
        currency,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    before: Option<i64>,
    limit: Option<u32>,
}

impl Page {
    fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n @ 1..=MAX_PAGE) => Ok(n),
            Some(n) => Err(ApiError::bad_request(
                "invalid_query",
                format!("limit {n} is outside 1..={MAX_PAGE}"),
            )),
        }
    }
}

/// A journal entry as the player sees it: the amount is signed (negative when money left).
#[derive(Serialize)]
pub struct HistoryEntry {
    seq: i64,
    ts_ms: i64,
    kind: EntryKind,
    round_id: Option<String>,
    /// The operator's transaction id of a deposit or withdrawal.
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_id: Option<String>,
    amount: i64,
    currency: String,
}

#[derive(Serialize)]
pub struct HistoryPage {
    entries: Vec<HistoryEntry>,
    next_before: Option<i64>,
}

pub async fn history(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<HistoryPage>, ApiError> {
    let limit = page.limit()?;
    let account = Account::player(&player);
    let entries = state
        .store
        .read(move |tx| tx.history(&account, page.before, limit))
        .await?;
    let me = Account::player(&player);
    let next_before = (entries.len() as u32 == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    let entries = entries
        .into_iter()
        .map(|e| {
            let cashier = matches!(e.kind, EntryKind::Deposit | EntryKind::Withdraw);
            let (round_id, transaction_id) = if cashier {
                (None, e.round_id)
            } else {
                (e.round_id, None)
            };
            HistoryEntry {
                amount: if e.credit == me { e.amount } else { -e.amount },
                seq: e.seq,
                ts_ms: e.ts_ms,
                kind: e.kind,
                round_id,
                transaction_id,
                currency: e.currency,
            }
        })
        .collect();
    Ok(Json(HistoryPage {
        entries,
        next_before,
    }))
}

/// A replay answers exactly as the first try did (status and body), marked by a header: a
/// client or the gateway retrying after a lost answer must not see a different success.
fn respond(committed: Committed<Played>, created: bool) -> Response {
    let replayed = committed.is_replay();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(committed.into_value())).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(wire::IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// Counts a fresh round's money in the metrics and tells the player's sockets the balance.
fn after_commit(state: &AppState, player: &str, committed: &Committed<Played>, raised: i64) {
    if committed.is_replay() {
        return;
    }
    let played = committed.value();
    let round = &played.round;
    state
        .metrics
        .record_round(&round.game, raised, round.payout);
    if let (Some(payout), Ok(game)) = (round.payout, round.game.parse::<GameId>()) {
        state.flags.settled(player, game, round.stake, payout);
    }
    state.publish(
        Some(player),
        PlayerMessage::Balance {
            balance: played.balance,
            round_id: round.id.clone(),
        },
    );
}

/// A key reused for a different request counts toward the player's conflict flag.
fn note_refusal(state: &AppState, player: &str, error: &RoundError) {
    if matches!(error, RoundError::Ledger(LedgerError::IdempotencyKeyReused)) {
        state.flags.conflict(player);
    }
}

pub async fn play(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    IdempotencyKey(key): IdempotencyKey,
    // The bet is JSON here, at the edge, and read by its game (`parse_bet`).
    body: JsonBody<Play<Value>>,
) -> Result<Response, ApiError> {
    if state.is_draining() {
        return Err(ApiError::draining());
    }
    let Play { game, stake, bet } = body.value;
    let bet = bet.unwrap_or(Value::Null);
    let game: GameId = game.parse()?;
    if state.game_status(game.as_str()) != GameStatus::Open {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "game_unavailable",
            format!("{game} is closed for maintenance"),
        ));
    }
    if stake <= 0 {
        return Err(ApiError::unprocessable(
            "invalid_stake",
            format!("stake must be positive, got {stake}"),
        ));
    }
    let bet = croupier_games::parse_bet(game, stake, bet)?;
    let new_round = NewRound {
        id: rounds::new_round_id(),
        player: player.clone(),
        stake,
        bet,
        node: state.node_id.clone(),
    };
    let idempotency = Idempotency {
        key: format!("{player}:{key}"),
        fingerprint: body.fingerprint,
    };
    let committed = state
        .store
        .transact(state.idempotency(idempotency), move |tx| {
            rounds::start_round(tx, &new_round)
        })
        .await
        .inspect_err(|e| note_refusal(&state, &player, e))?;
    if !committed.is_replay() {
        state
            .metrics
            .bets
            .get_or_create(&crate::metrics::GameLabels {
                game: game.to_string(),
            })
            .inc();
    }
    after_commit(&state, &player, &committed, stake);
    Ok(respond(committed, true))
}

pub async fn act(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    IdempotencyKey(key): IdempotencyKey,
    PathParam(round_id): PathParam<String>,
    body: JsonBody<Act>,
) -> Result<Response, ApiError> {
    let action = Action::parse(&body.value.action)?;
    let idempotency = Idempotency {
        key: format!("{player}:{key}"),
        fingerprint: body.fingerprint,
    };
    let node = state.node_id.clone();
    let who = player.clone();
    let committed = state
        .store
        .transact(state.idempotency(idempotency), move |tx| {
            rounds::act(tx, &who, &round_id, action, &node)
        })
        .await
        .inspect_err(|e| note_refusal(&state, &player, e))?;
    let raised = if action == Action::Double {
        committed.value().round.stake / 2
    } else {
        0
    };
    after_commit(&state, &player, &committed, raised);
    Ok(respond(committed, false))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundPage {
    before_ms: Option<i64>,
    limit: Option<u32>,
}

#[derive(Serialize)]
pub struct RoundList {
    rounds: Vec<RoundView>,
    next_before_ms: Option<i64>,
}

pub async fn list_rounds(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    QueryParams(page): QueryParams<RoundPage>,
) -> Result<Json<RoundList>, ApiError> {
    let limit = Page {
        before: None,
        limit: page.limit,
    }
    .limit()?;
    let list = state
        .store
        .read(move |tx| tx.rounds(&player, page.before_ms, limit))
        .await?;
    let next = (list.len() as u32 == limit)
        .then(|| list.last().map(|r| r.created_ms))
        .flatten();
    let rounds = list.iter().map(|r| RoundView::new(r, None)).collect();
    Ok(Json(RoundList {
        rounds,
        next_before_ms: next,
    }))
}

/// The player's own round with its seed; another player's round is "not found".
async fn own_round(
    state: &AppState,
    player: String,
    round_id: &str,
) -> Result<(croupier_ledger::Round, Option<croupier_ledger::Seed>), ApiError> {
    let lookup = round_id.to_owned();
    let found = state
        .store
        .read(move |tx| {
            let Some(round) = tx.round(&lookup)?.filter(|r| r.player == player) else {
                return Ok(None);
            };
            let seed = tx.seed(round.seed_id)?;
            Ok(Some((round, seed)))
        })
        .await?;
    found.ok_or_else(|| ApiError::not_found(format!("round {round_id}")))
}

pub async fn show_round(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    PathParam(round_id): PathParam<String>,
) -> Result<Json<RoundView>, ApiError> {
    let (round, seed) = own_round(&state, player, &round_id).await?;
    Ok(Json(RoundView::new(&round, seed.as_ref())))
}

pub async fn verify_round(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    PathParam(round_id): PathParam<String>,
) -> Result<Json<Verification>, ApiError> {
    let (round, seed) = own_round(&state, player, &round_id).await?;
    let seed = seed.ok_or_else(|| ApiError::not_found(format!("the seed of round {round_id}")))?;
    Ok(Json(Verification::of(&round, &seed)?))
}

pub async fn seeds(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
) -> Result<Json<ActiveSeed>, ApiError> {
    let seed = state.store.read(move |tx| tx.active_seed(&player)).await?;
    let seed = seed.ok_or_else(|| ApiError::not_found("no active seed"))?;
    Ok(Json(ActiveSeed {
        server_seed_hash: seed.server_seed_hash,
        client_seed: seed.client_seed,
        next_nonce: seed.next_nonce,
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    client_seed: Option<String>,
}

pub async fn rotate_seed(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    headers: HeaderMap,
    body: JsonBody<Rotate>,
) -> Result<Json<Rotated>, ApiError> {
    let client_seed = body.value.client_seed;
    if let Some(seed) = &client_seed
        && (seed.is_empty()
            || seed.len() > MAX_CLIENT_SEED
            || !seed.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err(ApiError::unprocessable(
            "invalid_client_seed",
            format!("a client seed is 1 to {MAX_CLIENT_SEED} printable ASCII characters"),
        ));
    }
    let idempotency = idempotency_key(&headers)?.map(|key| Idempotency {
        key: format!("{player}:{key}"),
        fingerprint: body.fingerprint.clone(),
    });
    let committed = state
        .store
        .transact(idempotency, move |tx| {
            rounds::rotate_seed(tx, &player, client_seed.as_deref())
        })
        .await?;
    Ok(Json(committed.into_value()))
}
