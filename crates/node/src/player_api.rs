//! The player API, `/api/v1/...`: sign in, lobby, wallet and its history, rounds (play, act,
//! list, show, verify) and fairness seeds.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use croupier_games::blackjack::Action;
use croupier_games::{GameId, catalog};
use croupier_ledger::{Account, Committed, Idempotency};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{IdempotencyKey, JsonBody, PathParam, PlayerAuth, QueryParams, token_hash};
use crate::rounds::{self, NewRound, random_hex};
use crate::state::AppState;
use axum::extract::State;

const MAX_PAGE: u32 = 200;
const DEFAULT_PAGE: u32 = 50;
const MAX_PLAYER_NAME: usize = 32;
const MAX_CLIENT_SEED: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    player: String,
}

pub async fn sign_in(
    State(state): State<AppState>,
    body: JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    if state.is_draining() {
        return Err(ApiError::draining());
    }
    let player = body.value.player;
    let valid = !player.is_empty()
        && player.len() <= MAX_PLAYER_NAME
        && player
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(ApiError::unprocessable(
            "invalid_player",
            format!("player names are 1 to {MAX_PLAYER_NAME} letters, digits, '_' or '-'"),
        ));
    }
    let token = random_hex(32);
    let hash = token_hash(&token);
    let committed = state
        .store
        .transact(None, move |tx| rounds::sign_in(tx, &player, &hash))
        .await?;
    let mut body = committed.value().clone();
    body["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn lobby(State(state): State<AppState>, _: PlayerAuth) -> Json<Value> {
    let games: Vec<Value> = catalog()
        .into_iter()
        .map(|info| {
            let mut game = serde_json::to_value(&info).expect("game info serialises");
            game["status"] = json!(state.game_status(info.id.as_str()));
            game
        })
        .collect();
    Json(json!({"games": games, "node": state.node_id}))
}

pub async fn wallet(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
) -> Result<Json<Value>, ApiError> {
    let account = Account::player(&player);
    let (balance, currency) = state
        .store
        .read(move |tx| Ok((tx.balance(&account)?, tx.currency().to_owned())))
        .await?;
    Ok(Json(
        json!({"player": player, "balance": balance, "currency": currency}),
    ))
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

pub async fn history(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = page.limit()?;
    let account = Account::player(&player);
    let entries = state
        .store
        .read(move |tx| tx.history(&account, page.before, limit))
        .await?;
    let me = Account::player(&player);
    let items: Vec<Value> = entries
        .iter()
        .map(|e| {
            let signed = if e.credit == me { e.amount } else { -e.amount };
            json!({
                "seq": e.seq, "ts_ms": e.ts_ms, "kind": e.kind, "round_id": e.round_id,
                "amount": signed, "currency": e.currency,
            })
        })
        .collect();
    let next = (entries.len() as u32 == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({"entries": items, "next_before": next})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Play {
    game: String,
    stake: i64,
    #[serde(default)]
    bet: Value,
}

fn respond(committed: Committed, created: bool) -> Response {
    let replayed = committed.is_replay();
    let status = if created && !replayed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(committed.value().clone())).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn after_commit(
    state: &AppState,
    player: &str,
    committed: &Committed,
    raised: impl Fn(&Value) -> i64,
) {
    if committed.is_replay() {
        return;
    }
    let value = committed.value();
    let round = &value["round"];
    let game = round["game"].as_str().unwrap_or("unknown");
    state
        .metrics
        .record_round(game, raised(round), round["payout"].as_i64());
    state.publish(
        Some(player.to_owned()),
        json!({"type": "balance", "balance": value["balance"], "round_id": round["id"]}),
    );
}

pub async fn play(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<Play>,
) -> Result<Response, ApiError> {
    if state.is_draining() {
        return Err(ApiError::draining());
    }
    let Play {
        game,
        stake,
        bet: bet_json,
    } = body.value;
    let game: GameId = game.parse()?;
    if state.game_status(game.as_str()) != "open" {
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
    let bet = croupier_games::parse_bet(game, stake, &bet_json)?;
    let new_round = NewRound {
        id: rounds::new_round_id(),
        player: player.clone(),
        game,
        stake,
        bet_json,
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
            rounds::start_round(tx, new_round)
        })
        .await?;
    if !committed.is_replay() {
        state
            .metrics
            .bets
            .get_or_create(&crate::metrics::GameLabels {
                game: game.to_string(),
            })
            .inc();
    }
    after_commit(&state, &player, &committed, |_| stake);
    Ok(respond(committed, true))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    action: String,
}

pub async fn act(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    IdempotencyKey(key): IdempotencyKey,
    PathParam(round_id): PathParam<String>,
    body: JsonBody<ActionBody>,
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
        .await?;
    after_commit(&state, &player, &committed, |round| {
        if action == Action::Double {
            round["stake"].as_i64().unwrap_or(0) / 2
        } else {
            0
        }
    });
    Ok(respond(committed, false))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundPage {
    before_ms: Option<i64>,
    limit: Option<u32>,
}

pub async fn list_rounds(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    QueryParams(page): QueryParams<RoundPage>,
) -> Result<Json<Value>, ApiError> {
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
    let rounds: Vec<Value> = list.iter().map(|r| rounds::round_view(r, None)).collect();
    Ok(Json(json!({"rounds": rounds, "next_before_ms": next})))
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
) -> Result<Json<Value>, ApiError> {
    let (round, seed) = own_round(&state, player, &round_id).await?;
    Ok(Json(rounds::round_view(&round, seed.as_ref())))
}

pub async fn verify_round(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    PathParam(round_id): PathParam<String>,
) -> Result<Json<Value>, ApiError> {
    let (round, seed) = own_round(&state, player, &round_id).await?;
    let seed = seed.ok_or_else(|| ApiError::not_found(format!("the seed of round {round_id}")))?;
    Ok(Json(rounds::verification(&round, &seed)?))
}

pub async fn seeds(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
) -> Result<Json<Value>, ApiError> {
    let seed = state.store.read(move |tx| tx.active_seed(&player)).await?;
    let seed = seed.ok_or_else(|| ApiError::not_found("no active seed"))?;
    Ok(Json(json!({
        "server_seed_hash": seed.server_seed_hash,
        "client_seed": seed.client_seed,
        "next_nonce": seed.next_nonce,
    })))
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
) -> Result<Json<Value>, ApiError> {
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
    let idempotency = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|key| Idempotency {
            key: format!("{player}:{key}"),
            fingerprint: body.fingerprint.clone(),
        });
    let committed = state
        .store
        .transact(idempotency, move |tx| {
            rounds::rotate_seed(tx, &player, client_seed)
        })
        .await?;
    Ok(Json(committed.value().clone()))
}
