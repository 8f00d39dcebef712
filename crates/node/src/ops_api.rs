//! The ops API: `/healthz` (alive), `/readyz` (store reachable, migrations done, not draining),
//! `/metrics` (Prometheus text), and, behind the ops token, drain, integrity, notices to
//! players and per-game maintenance status.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use croupier_games::GameId;
use croupier_web::wire::ops::{
    DrainReport, Flags, GameStatus, GameStatusSet, Health, MAX_NOTICE_BYTES, Notice,
    NoticeDelivered, Readiness, SetDrain, SetGameStatus,
};
use serde_json::Value;

use crate::error::ApiError;
use crate::events::PlayerMessage;
use crate::extract::{JsonBody, OpsAuth, PathParam};
use crate::state::AppState;

pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        node: state.node_id.clone(),
        status: "ok".to_owned(),
        version: state.version.to_owned(),
    })
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.ready().await;
    let (ready, reason) = match (&store, state.is_draining()) {
        (_, true) => (false, Some("draining".to_owned())),
        (Ok(true), false) => (true, None),
        (Ok(false), false) => (false, Some("store migrations are not complete".to_owned())),
        (Err(e), false) => (false, Some(format!("store unreachable: {e}"))),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        draining: state.is_draining(),
        node: state.node_id.clone(),
        ready,
        reason,
    };
    (status, Json(body)).into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    // Before the read below, which waits for a reader when the pool has none left: the pools
    // are sampled as they are at the scrape, not once that wait has ended.
    state.metrics.store.record_pools(&state.store.pools());
    let node = state.node_id.clone();
    match state
        .store
        .read(move |tx| tx.open_rounds_on_node(&node))
        .await
    {
        Ok(open) => {
            state.metrics.rounds_in_flight.set(open);
            state.metrics.store_up.set(1);
        }
        Err(_) => {
            state.metrics.store_up.set(0);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn drain_report(state: &AppState) -> Result<DrainReport, ApiError> {
    let node = state.node_id.clone();
    let open_rounds = state
        .store
        .read(move |tx| tx.open_rounds_on_node(&node))
        .await?;
    Ok(DrainReport {
        draining: state.is_draining(),
        // This request itself is one of them.
        in_flight_requests: state.metrics.in_flight_requests.get() - 1,
        node: state.node_id.clone(),
        open_rounds,
        websockets: state.metrics.websockets.get(),
    })
}

pub async fn drain_status(
    State(state): State<AppState>,
    _: OpsAuth,
) -> Result<Json<DrainReport>, ApiError> {
    Ok(Json(drain_report(&state).await?))
}

pub async fn set_drain(
    State(state): State<AppState>,
    _: OpsAuth,
    body: JsonBody<SetDrain>,
) -> Result<Json<DrainReport>, ApiError> {
    state.set_draining(body.value.draining);
    tracing::info!(node = %state.node_id, draining = body.value.draining, "drain state changed");
    Ok(Json(drain_report(&state).await?))
}

pub async fn integrity(State(state): State<AppState>, _: OpsAuth) -> Result<Response, ApiError> {
    let report = state.store.integrity().await?;
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Ok((status, Json(report)).into_response())
}

pub async fn notice(
    State(state): State<AppState>,
    _: OpsAuth,
    body: JsonBody<Notice>,
) -> Result<Json<NoticeDelivered>, ApiError> {
    let Notice { message, level } = body.value;
    if message.is_empty() || message.len() > MAX_NOTICE_BYTES {
        return Err(ApiError::unprocessable(
            "invalid_notice",
            format!("a notice is 1 to {MAX_NOTICE_BYTES} bytes"),
        ));
    }
    if !["info", "warning", "critical"].contains(&level.as_str()) {
        return Err(ApiError::unprocessable(
            "invalid_notice",
            "level is info, warning or critical",
        ));
    }
    state.publish(
        None,
        PlayerMessage::Notice {
            level: level.clone(),
            message: message.clone(),
        },
    );
    Ok(Json(NoticeDelivered {
        delivered_to: state.metrics.websockets.get(),
    }))
}

pub async fn set_game_status(
    State(state): State<AppState>,
    _: OpsAuth,
    PathParam(game): PathParam<String>,
    body: JsonBody<SetGameStatus>,
) -> Result<Json<GameStatusSet>, ApiError> {
    let game: GameId = game.parse()?;
    let Some(status) = GameStatus::parse(&body.value.status) else {
        return Err(ApiError::unprocessable(
            "invalid_status",
            "status is open or maintenance",
        ));
    };
    state
        .store
        .transact(None, move |tx| {
            tx.set_game_status(game.as_str(), status.as_str())
        })
        .await
        .map_err(ApiError::from)?;
    state.game_status.write().insert(game.to_string(), status);
    state.publish(
        None,
        PlayerMessage::GameStatus {
            game: game.to_string(),
            status,
        },
    );
    Ok(Json(GameStatusSet {
        game: game.to_string(),
        status,
    }))
}

/// The players flagged for unusual play within the last day (`crate::flags`), newest first.
pub async fn flags(State(state): State<AppState>, _: OpsAuth) -> Json<Flags<Value>> {
    Json(Flags {
        flags: state.flags.list(),
    })
}
