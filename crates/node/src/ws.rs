//! A WebSocket per player: balance updates after each of the player's rounds on this node and
//! operator notices (maintenance ahead, incident updates). When the node drains or shuts
//! down, each socket gets a close frame 1012 ("service restart") so the client reconnects,
//! through the gateway, to another node.

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use croupier_ledger::Account;
use croupier_web::wire;

use crate::error::ApiError;
use crate::events::PlayerMessage;
use crate::extract::PlayerAuth;
use crate::state::AppState;

/// Most WebSockets one player holds open on this node; more are refused with 429. The gateway
/// caps them per player across its nodes too, from the player the node names in its 101
/// answer (`wire::PLAYER`).
pub const WS_PER_PLAYER: usize = 16;

/// RFC 6455 close code 1012: the service is restarting; reconnect.
pub const CLOSE_SERVICE_RESTART: u16 = 1012;

pub async fn connect(
    State(state): State<AppState>,
    PlayerAuth(player): PlayerAuth,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Ok(croupier_web::not_a_websocket(rejection)),
    };
    if state.is_draining() {
        return Err(ApiError::draining());
    }
    let Some(slot) = state.websockets.try_take(player.clone()) else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_websockets",
            format!("at most {WS_PER_PLAYER} WebSockets per player; close some first"),
        ));
    };
    let name = HeaderValue::from_str(&player).ok();
    let mut response = upgrade
        .read_buffer_size(croupier_web::WEBSOCKET_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            session(state, player, socket).await;
        })
        .into_response();
    if let Some(name) = name {
        response.headers_mut().insert(wire::PLAYER, name);
    }
    Ok(response)
}

async fn session(state: AppState, player: String, mut socket: WebSocket) {
    state.metrics.websockets.inc();
    let mut events = state.events.subscribe(&player);
    let mut drain = state.drain_watch();
    drain.borrow_and_update();
    let account = Account::player(&player);
    let balance = state.store.read(move |tx| tx.balance(&account)).await.ok();
    let hello = PlayerMessage::Hello {
        player: player.clone(),
        balance,
        node: state.node_id.clone(),
    };
    if socket
        .send(Message::Text(hello.to_json().into()))
        .await
        .is_err()
    {
        state.metrics.websockets.dec();
        return;
    }
    loop {
        tokio::select! {
            message = events.recv() => {
                if socket.send(Message::Text(message.to_json().into())).await.is_err() {
                    break;
                }
            },
            changed = drain.changed() => {
                if changed.is_err() || *drain.borrow() {
                    let frame = CloseFrame {
                        code: CLOSE_SERVICE_RESTART,
                        reason: "node draining: reconnect".into(),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break;
                }
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    state.metrics.websockets.dec();
}
