//! The cashier API, `/cashier/v1/...`: how the operator's platform moves money into and out
//! of players' game wallets (server to server), reads a wallet, looks a movement up by its
//! transaction id and exports the journal for reconciliation. Its own credential and rate
//! limit (`auth`); never forwarded from the players' port (the gateway forwards only
//! `/api/v1/`). Every movement is idempotent by the operator's transaction id on every node:
//! the id is the ledger idempotency key `cashier:<id>` (kept as long as the journal) with a
//! fingerprint of what is asked, so the same id and request answer the first answer again and
//! the same id with another request is a 409.

pub mod auth;
mod export;
pub mod money;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use croupier_ledger::retention::CASHIER_KEY_PREFIX;
use croupier_ledger::{Account, Committed, Idempotency, LedgerError};
use croupier_web::launch::{reserved_player, valid_player};
use croupier_web::wire::{self, Refusal};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam};
use crate::state::AppState;
use auth::CashierAuth;
use money::{CashierError, Direction, Movement, MovementRequest};

/// Largest amount one movement may carry (minor units): 10 000 000.00.
pub const MAX_AMOUNT: i64 = 1_000_000_000;
const MAX_TRANSACTION_ID: usize = 64;

/// The cashier routes; wrong credentials count toward the node's lockout.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/cashier/v1/deposits", post(deposit))
        .route("/cashier/v1/withdrawals", post(withdraw))
        .route("/cashier/v1/players/{player}/balance", get(balance))
        .route("/cashier/v1/transactions/{id}", get(lookup))
        .route("/cashier/v1/journal", get(export::journal))
        .route_layer(axum::middleware::from_fn_with_state(
            state.lockout.clone(),
            croupier_web::lockout::guard,
        ))
}

async fn deposit(
    State(state): State<AppState>,
    _: CashierAuth,
    body: JsonBody<MovementRequest>,
) -> Result<Response, Response> {
    move_money(&state, Direction::Deposit, body.value).await
}

async fn withdraw(
    State(state): State<AppState>,
    _: CashierAuth,
    body: JsonBody<MovementRequest>,
) -> Result<Response, Response> {
    move_money(&state, Direction::Withdraw, body.value).await
}

fn valid_transaction_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TRANSACTION_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// A player the cashier may fund: a valid name, not one kept for the operators' checks.
fn check_player(player: &str) -> Result<(), ApiError> {
    if !valid_player(player) || reserved_player(player) {
        return Err(ApiError::unprocessable(
            "invalid_player",
            "player ids are 1 to 32 letters, digits, '_' or '-' (not a reserved name)",
        ));
    }
    Ok(())
}

fn check_request(request: &MovementRequest) -> Result<(), ApiError> {
    if !valid_transaction_id(&request.transaction_id) {
        return Err(ApiError::unprocessable(
            "invalid_transaction_id",
            format!(
                "transaction ids are 1 to {MAX_TRANSACTION_ID} letters, digits, '_', '-', '.' or ':'"
            ),
        ));
    }
    check_player(&request.player)?;
    if !(1..=MAX_AMOUNT).contains(&request.amount) {
        return Err(ApiError::unprocessable(
            "invalid_amount",
            format!("amount is a whole number of minor units from 1 to {MAX_AMOUNT}"),
        ));
    }
    Ok(())
}

async fn move_money(
    state: &AppState,
    direction: Direction,
    request: MovementRequest,
) -> Result<Response, Response> {
    check_request(&request).map_err(IntoResponse::into_response)?;
    let guard = Idempotency {
        key: format!("{CASHIER_KEY_PREFIX}{}", request.transaction_id),
        fingerprint: format!(
            "{}|{}|{}",
            direction.entry_kind().as_str(),
            request.player,
            request.amount
        ),
    };
    let id = request.transaction_id.clone();
    let committed = state
        .store
        .transact(state.idempotency(guard), move |tx| {
            money::apply(tx, direction, &request)
        })
        .await
        .map_err(|e| refusal(&id, e))?;
    if let Committed::Fresh(m) = &committed {
        tracing::info!(
            transaction_id = %m.transaction_id, kind = ?m.kind, player = %m.player,
            amount = m.amount, balance = m.balance, "cashier movement"
        );
    }
    let replayed = committed.is_replay();
    let mut response = (StatusCode::CREATED, Json(committed.into_value())).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(wire::IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A refused movement as JSON: the balance is said when it is why.
fn refusal(transaction_id: &str, error: CashierError) -> Response {
    let conflict =
        |code: &'static str, message: String| Refusal::new(StatusCode::CONFLICT, code, message);
    let message = error.to_string();
    match error {
        CashierError::Ledger(LedgerError::IdempotencyKeyReused) => conflict(
            "transaction_id_reused",
            format!("transaction {transaction_id} was already used for a different request"),
        )
        .into_response(),
        CashierError::Ledger(e) => ApiError::from(e).into_response(),
        CashierError::InsufficientFunds { balance, .. } => conflict("insufficient_funds", message)
            .with(RefusedBalance {
                balance,
                open_rounds: None,
            })
            .into_response(),
        CashierError::OpenRound {
            balance,
            open_rounds,
        } => conflict("open_round", message)
            .with(RefusedBalance {
                balance,
                open_rounds: Some(open_rounds),
            })
            .into_response(),
    }
}

/// What a refused movement says of the player's money.
#[derive(Serialize)]
struct RefusedBalance {
    balance: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    open_rounds: Option<i64>,
}

#[derive(Serialize)]
struct Balance {
    player: String,
    balance: i64,
    currency: String,
    open_rounds: i64,
}

async fn balance(
    State(state): State<AppState>,
    _: CashierAuth,
    PathParam(player): PathParam<String>,
) -> Result<Json<Balance>, ApiError> {
    check_player(&player)?;
    let who = player.clone();
    let found = state
        .store
        .read(move |tx| {
            if !tx.player_exists(&who)? {
                return Ok(None);
            }
            let balance = tx.balance(&Account::player(&who))?;
            Ok(Some((
                balance,
                tx.currency().to_owned(),
                tx.open_round_count(&who)?,
            )))
        })
        .await?;
    let (balance, currency, open_rounds) =
        found.ok_or_else(|| ApiError::not_found(format!("player {player}")))?;
    Ok(Json(Balance {
        player,
        balance,
        currency,
        open_rounds,
    }))
}

/// The answer a transaction got, read from its idempotency record.
async fn lookup(
    State(state): State<AppState>,
    _: CashierAuth,
    PathParam(id): PathParam<String>,
) -> Result<Json<Movement>, ApiError> {
    if !valid_transaction_id(&id) {
        return Err(ApiError::unprocessable(
            "invalid_transaction_id",
            "not a transaction id this cashier accepts",
        ));
    }
    let key = format!("{CASHIER_KEY_PREFIX}{id}");
    let record = state
        .store
        .read(move |tx| tx.idempotency_record(&key))
        .await?;
    let Some((_, answer)) = record else {
        return Err(ApiError::not_found(format!(
            "transaction {id} (a refused movement leaves no record; it may be sent again)"
        )));
    };
    Ok(Json(
        serde_json::from_str(&answer).map_err(LedgerError::from)?,
    ))
}
