//! `croupier node`: a stateless game server. All state lives in the store, so any node can
//! serve any player and continue any round. Serves the player API (JSON over HTTP and a
//! WebSocket), the ops API (health, readiness, metrics, drain, integrity, recall) and the
//! operator's cashier API (`/cashier/v1`); closes abandoned rounds (`abandon`).
#![forbid(unsafe_code)]

pub mod abandon;
pub mod build;
pub mod cashier;
pub mod error;
pub mod events;
pub mod extract;
pub mod flags;
pub mod metrics;
pub mod ops_api;
pub mod player_api;
pub mod recall;
pub mod rounds;
pub mod session_cache;
pub mod sessions;
pub mod state;
pub mod store_metrics;
pub mod store_notice;
pub mod ws;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use croupier_web::serve::Hygiene;
use croupier_web::wire::ops::GameStatus;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use state::{AppState, Operator, Players};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most connections from one address: a gateway keeps up to 512 idle ones per node.
pub const NODE_CONNS_PER_IP: usize = 4096;
/// How long shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/sessions", post(sessions::sign_in))
        .route("/api/v1/lobby", get(player_api::lobby))
        .route("/api/v1/wallet", get(player_api::wallet))
        .route("/api/v1/wallet/history", get(player_api::history))
        .route(
            "/api/v1/rounds",
            post(player_api::play).get(player_api::list_rounds),
        )
        .route("/api/v1/rounds/{id}", get(player_api::show_round))
        .route("/api/v1/rounds/{id}/actions", post(player_api::act))
        .route("/api/v1/rounds/{id}/verify", get(player_api::verify_round))
        .route("/api/v1/recall", get(recall::own))
        .route("/api/v1/seeds", get(player_api::seeds))
        .route("/api/v1/seeds/rotate", post(player_api::rotate_seed))
        .route("/api/v1/ws", get(ws::connect))
        .route("/healthz", get(ops_api::healthz))
        .route("/readyz", get(ops_api::readyz))
        .route("/metrics", get(ops_api::metrics));
    // The ops API: wrong tokens are counted per address, and guessing gets the address blocked.
    let ops = Router::new()
        .route(
            "/ops/drain",
            get(ops_api::drain_status).post(ops_api::set_drain),
        )
        .route("/ops/integrity", get(ops_api::integrity))
        .route("/ops/notices", post(ops_api::notice))
        .route("/ops/games/{game}", put(ops_api::set_game_status))
        .route("/ops/players/{player}/recall", get(recall::any))
        .route("/ops/flags", get(ops_api::flags))
        .route_layer(axum::middleware::from_fn_with_state(
            state.lockout.clone(),
            croupier_web::lockout::guard,
        ));
    let api = api.merge(ops).merge(cashier::routes(&state)).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), metrics::track_requests),
    );
    croupier_web::extract::json_fallbacks(api)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(croupier_vitals::panics::layer())
        .layer(axum::middleware::map_response(croupier_web::secure_headers))
        .with_state(state)
}

/// Keeps host metrics and the game-status cache fresh, once a second.
fn spawn_background(state: AppState) {
    croupier_vitals::background::spawn_every("node refresh", Duration::from_secs(1), move || {
        refresh(state.clone())
    });
}

/// One round of `spawn_background`.
async fn refresh(state: AppState) {
    state.lockout.sweep();
    state.flags.sweep();
    state.sessions.sweep(extract::now_ms());
    let metrics_state = state.clone();
    let _ = tokio::task::spawn_blocking(move || metrics_state.metrics.sample_host()).await;
    if let Ok(statuses) = state.store.read(|tx| tx.game_statuses()).await {
        // A word this build does not know keeps its game closed.
        let fresh: HashMap<String, GameStatus> = statuses
            .into_iter()
            .map(|(game, word)| {
                let status = GameStatus::parse(&word).unwrap_or(GameStatus::Maintenance);
                (game, status)
            })
            .collect();
        *state.game_status.write() = fresh;
    }
}

/// Serves until `shutdown` resolves, with the connection hygiene every server has
/// (`croupier_web::serve`); then drains (WebSockets get 1012, new rounds are refused) and
/// waits up to `SHUTDOWN_GRACE` for requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tls: Option<croupier_web::tls::Acceptor>,
) -> std::io::Result<()> {
    spawn_background(state.clone());
    abandon::spawn_sweeper(state.clone());
    let drain_state = state.clone();
    let graceful = async move {
        shutdown.await;
        tracing::info!(node = %drain_state.node_id, "shutting down: draining");
        drain_state.set_draining(true);
    };
    let hygiene = Hygiene {
        stop_deadline: SHUTDOWN_GRACE,
        // The gateways' connections all come from their few addresses.
        conns_per_ip: Some(NODE_CONNS_PER_IP),
        ..Hygiene::operators()
    };
    croupier_web::serve::serve(listener, router(state), graceful, hygiene, tls).await;
    Ok(())
}
