//! Sign-in, `POST /api/v1/sessions`: the operator's launch token is the way in (verified by
//! `croupier_web::launch`, its `jti` kept as an idempotency key so it signs in once); in demo
//! mode a bare player name also is, and a new player gets a demo balance.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use croupier_ledger::{Idempotency, LedgerError};
use croupier_web::launch::{LaunchError, Limits, RESERVED_PREFIX, reserved_player, valid_player};
use croupier_web::wire::player::{SessionCreated, SignIn};

use crate::error::ApiError;
use crate::extract::{JsonBody, token_hash};
use crate::rounds::{self, RoundError, random_hex};
use crate::state::AppState;

/// Who signs in, how their session is guarded against replays, and the operator's limits.
struct Admission {
    player: String,
    idempotency: Option<Idempotency>,
    limits: Option<Limits>,
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

fn launch_refused(e: &LaunchError) -> ApiError {
    tracing::info!(reason = %e, "launch token refused");
    unauthorized(e.code(), e.to_string())
}

/// Checks the sign-in: a valid launch token, or a valid name in demo mode.
fn admit(state: &AppState, body: SignIn) -> Result<Admission, ApiError> {
    match (body.player, body.launch_token) {
        (None, Some(token)) => {
            let claims = state
                .players
                .launch_keys
                .verify(&token, &state.players.currency)
                .map_err(|e| launch_refused(&e))?;
            // '~' is in no player name, so no player's Idempotency-Key can take this key.
            let idempotency = Idempotency {
                key: format!("~launch:{}", claims.jti),
                fingerprint: token_hash(&token),
            };
            Ok(Admission {
                player: claims.sub,
                idempotency: Some(idempotency),
                limits: claims.limits,
            })
        }
        (Some(_), None) if !state.players.demo => Err(unauthorized(
            "launch_token_required",
            "this casino signs players in with a launch token from the operator: send {\"launch_token\": \"<JWT>\"} (sign-in by name is demo mode only)",
        )),
        (Some(player), None) if reserved_player(&player) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "reserved_player",
            format!(
                "names starting with '{RESERVED_PREFIX}' are reserved for the operators' checks"
            ),
        )),
        (Some(player), None) if valid_player(&player) => Ok(Admission {
            player,
            idempotency: None,
            limits: None,
        }),
        (Some(_), None) => Err(ApiError::unprocessable(
            "invalid_player",
            "player names are 1 to 32 letters, digits, '_' or '-'",
        )),
        _ => Err(ApiError::unprocessable(
            "invalid_sign_in",
            "send either {\"launch_token\": …} or, in demo mode, {\"player\": …}",
        )),
    }
}

pub async fn sign_in(
    State(state): State<AppState>,
    body: JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    if state.is_draining() {
        return Err(ApiError::draining());
    }
    let Admission {
        player,
        idempotency,
        limits,
    } = admit(&state, body.value)?;
    let token = random_hex(32);
    let hash = token_hash(&token);
    let demo = state.players.demo;
    let max_sessions = state.players.max_sessions;
    let signed_in = player.clone();
    let committed = state
        .store
        .transact(idempotency, move |tx| {
            rounds::open_session(tx, &player, &hash, demo, max_sessions)
        })
        .await
        .map_err(|e| match e {
            RoundError::Ledger(LedgerError::IdempotencyKeyReused) => {
                launch_refused(&LaunchError::Replayed)
            }
            other => ApiError::from(other),
        })?;
    if committed.is_replay() {
        return Err(launch_refused(&LaunchError::Replayed));
    }
    // Sessions this sign-in revoked may be cached here: look the player's tokens up again.
    // (Other nodes drop theirs within `session_cache::TTL`.)
    state.sessions.forget_player(&signed_in);
    state.flags.signed_in(&signed_in);
    let body = SessionCreated {
        signed_in: committed.into_value(),
        token,
        demo,
        limits,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
