//! WebSocket proxying: the client's socket is upgraded here and bridged frame by frame to a
//! socket opened on the chosen node. When that node is set draining or into maintenance, when
//! it dies, or when the gateway stops, the client gets a close frame 1012 ("service restart")
//! and reconnects through the gateway to another node.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use croupier_web::caps::Caps;
use croupier_web::wire;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{
    self, client::IntoClientRequest, protocol::frame::coding::CloseCode,
};

use crate::Gateway;
use crate::pool::{NodeState, PlayerKey, is_refusal};
use crate::proxy::{failed_try, no_node, refusal};

pub const CLOSE_SERVICE_RESTART: u16 = 1012;

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Whether a request asks for a WebSocket: a GET with `Upgrade: websocket`. Any other method
/// carrying the header is a plain request (the header is hop-by-hop: it is not forwarded).
pub fn is_upgrade(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// WebSockets open now, per client address and per player.
pub struct WsCaps {
    pub per_ip: Caps<IpAddr>,
    pub per_player: Caps<String>,
}

impl WsCaps {
    pub fn new(per_ip: Option<usize>, per_player: Option<usize>) -> Self {
        WsCaps {
            per_ip: Caps::new(per_ip),
            per_player: Caps::new(per_player),
        }
    }
}

fn too_many_sockets(gateway: &Gateway, per: &'static str) -> Response {
    crate::metrics::Metrics::count(&gateway.metrics.refused, per);
    refusal(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_websockets",
        "too many WebSockets open; close some first",
    )
}

/// The player a node's 101 answer names, else the token's key (a node without the header).
fn player_of(
    response: &tungstenite::handshake::client::Response,
    player: Option<PlayerKey>,
) -> String {
    response
        .headers()
        .get(wire::PLAYER)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| format!("~token:{}", player.unwrap_or(0)), str::to_owned)
}

/// The request that opens the player's WebSocket on a node: same path, same credentials.
fn upstream_request(
    base: &str,
    path: &str,
    headers: &HeaderMap,
) -> Option<tungstenite::handshake::client::Request> {
    let url = format!("{}{path}", croupier_web::websocket_base(base));
    let mut request = url.into_client_request().ok()?;
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, auth.clone());
    }
    Some(request)
}

pub async fn handle(
    gateway: Arc<Gateway>,
    request: Request,
    player: Option<PlayerKey>,
    client: IpAddr,
) -> Response {
    let Some(address_slot) = gateway.ws_caps.per_ip.try_take(client) else {
        return too_many_sockets(&gateway, "websockets_per_ip");
    };
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade.read_buffer_size(croupier_web::WEBSOCKET_READ_BUFFER),
        Err(rejection) => return croupier_web::not_a_websocket(rejection),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let (index, upstream, answer) =
        match open_upstream(&gateway, &parts.headers, path, player).await {
            Ok(opened) => opened,
            Err(answer) => return answer,
        };
    let Some(player_slot) = gateway
        .ws_caps
        .per_player
        .try_take(player_of(&answer, player))
    else {
        return too_many_sockets(&gateway, "websockets_per_player");
    };
    upgrade.on_upgrade(move |client| async move {
        let _slots = (address_slot, player_slot);
        bridge(gateway, index, client, upstream).await;
    })
}

/// Opens the player's WebSocket on a node, trying the next one when a node is draining or
/// cannot be reached: the node's index, the socket and the node's 101 answer; or what the
/// player is answered (the node's own refusal, or no node).
async fn open_upstream(
    gateway: &Gateway,
    headers: &HeaderMap,
    path: &str,
    player: Option<PlayerKey>,
) -> Result<(usize, Upstream, tungstenite::handshake::client::Response), Response> {
    let mut tried = Vec::new();
    loop {
        let Some(index) = crate::queue::pick_or_wait(gateway, player, &tried).await else {
            return Err(no_node(gateway));
        };
        tried.push(index);
        let backend = &gateway.pool.backends[index];
        let Some(request) = upstream_request(&backend.base, path, headers) else {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "cannot forward this WebSocket",
            ));
        };
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(small_reads()),
            true,
            Some(tokio_tungstenite::Connector::Rustls(
                gateway.node_tls.clone(),
            )),
        );
        match tokio::time::timeout(gateway.config.upstream_timeout, connect).await {
            Ok(Ok((upstream, answer))) => return Ok((index, upstream, answer)),
            // The node answered without upgrading (bad token, draining…): pass it on, unless
            // it is draining, in which case another node may take the socket.
            Ok(Err(tungstenite::Error::Http(response))) => {
                if response.headers().contains_key(wire::DRAINING) {
                    continue;
                }
                let status = response.status();
                let body = response.into_body().unwrap_or_default();
                return Err(
                    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
                );
            }
            // Refused (nothing listens: a dead node) ejects at once; a timeout or a failed
            // handshake may be a node too busy, and counts like any failure. Either is
            // counted as plain requests' failures are (`croupier_gateway_upstream_errors_total`).
            failed => {
                let refused =
                    matches!(&failed, Ok(Err(tungstenite::Error::Io(e))) if is_refusal(e));
                let kind = match (&failed, refused) {
                    (_, true) => "connect",
                    (Err(_), _) => "timeout",
                    _ => "ws_handshake",
                };
                failed_try(gateway, index, kind, refused);
                if tried.len() >= gateway.pool.backends.len() {
                    return Err(no_node(gateway));
                }
            }
        }
    }
}

fn to_upstream(message: ws::Message) -> tungstenite::Message {
    match message {
        ws::Message::Text(text) => tungstenite::Message::Text(text.as_str().into()),
        ws::Message::Binary(bytes) => tungstenite::Message::Binary(bytes),
        ws::Message::Ping(bytes) => tungstenite::Message::Ping(bytes),
        ws::Message::Pong(bytes) => tungstenite::Message::Pong(bytes),
        ws::Message::Close(frame) => {
            tungstenite::Message::Close(frame.map(|f| tungstenite::protocol::CloseFrame {
                code: CloseCode::from(f.code),
                reason: f.reason.as_str().into(),
            }))
        }
    }
}

fn to_client(message: tungstenite::Message) -> Option<ws::Message> {
    Some(match message {
        tungstenite::Message::Text(text) => ws::Message::Text(text.as_str().into()),
        tungstenite::Message::Binary(bytes) => ws::Message::Binary(bytes),
        tungstenite::Message::Ping(bytes) => ws::Message::Ping(bytes),
        tungstenite::Message::Pong(bytes) => ws::Message::Pong(bytes),
        tungstenite::Message::Close(frame) => ws::Message::Close(frame.map(|f| ws::CloseFrame {
            code: u16::from(f.code),
            reason: f.reason.as_str().into(),
        })),
        tungstenite::Message::Frame(_) => return None,
    })
}

fn restart_frame(reason: &str) -> ws::Message {
    ws::Message::Close(Some(ws::CloseFrame {
        code: CLOSE_SERVICE_RESTART,
        reason: reason.into(),
    }))
}

async fn bridge(
    gateway: Arc<Gateway>,
    index: usize,
    mut client: WebSocket,
    mut upstream: Upstream,
) {
    let backend = &gateway.pool.backends[index];
    backend.websockets.fetch_add(1, Ordering::SeqCst);
    let mut admin = backend.admin_watch();
    admin.borrow_and_update();
    let mut stopping = gateway.stopping.subscribe();
    loop {
        tokio::select! {
            from_client = client.recv() => match from_client {
                Some(Ok(message)) => {
                    let closing = matches!(message, ws::Message::Close(_));
                    if upstream.send(to_upstream(message)).await.is_err() || closing {
                        break;
                    }
                }
                _ => {
                    let _ = upstream.close(None).await;
                    break;
                }
            },
            from_node = upstream.next() => match from_node {
                Some(Ok(message)) => {
                    let closing = matches!(message, tungstenite::Message::Close(_));
                    if let Some(message) = to_client(message)
                        && (client.send(message).await.is_err() || closing)
                    {
                        break;
                    }
                }
                _ => {
                    let _ = client.send(restart_frame("game node lost: reconnect")).await;
                    break;
                }
            },
            changed = admin.changed() => {
                if changed.is_err() || *admin.borrow() != NodeState::Active {
                    let _ = client.send(restart_frame("node draining: reconnect")).await;
                    let _ = upstream.close(None).await;
                    break;
                }
            },
            changed = stopping.changed() => {
                let stop = changed.is_err() || *stopping.borrow();
                if stop {
                    let _ = client.send(restart_frame("gateway restarting: reconnect")).await;
                    let _ = upstream.close(None).await;
                    break;
                }
            },
        }
    }
    backend.websockets.fetch_sub(1, Ordering::SeqCst);
}

/// The node side of a bridged socket reads as little at a time as the player side.
fn small_reads() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(croupier_web::WEBSOCKET_READ_BUFFER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{NodeKind, NodeLabel};

    /// A player's WebSocket that finds its node refusing connections is counted as a plain
    /// request's failed try is (`upstream_errors{kind="connect"}`) and ejects the node at once
    /// (`ejections`). Before, the ejection happened but neither counter moved: a node failing
    /// only its players' sockets looked healthy on every dashboard.
    #[tokio::test]
    async fn a_refused_websocket_is_counted_and_ejects_its_node() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let nodes = vec![("n0".to_owned(), format!("http://{closed}"))];
        let gateway = Gateway::new(crate::GatewayConfig::new(nodes, "t".repeat(32))).unwrap();
        let opened = open_upstream(&gateway, &HeaderMap::new(), "/api/v1/ws", None).await;
        assert_eq!(
            opened.err().map(|answer| answer.status()),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        let errors = gateway
            .metrics
            .upstream_errors
            .get_or_create(&NodeKind {
                node: "n0".into(),
                kind: "connect".into(),
            })
            .get();
        let ejections = gateway
            .metrics
            .ejections
            .get_or_create(&NodeLabel { node: "n0".into() })
            .get();
        assert_eq!((errors, ejections), (1, 1));
    }
}
