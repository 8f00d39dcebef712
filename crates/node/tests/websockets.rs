//! The players' WebSockets through the node's real router and a real socket: a player's
//! balance reaches their own socket however many other players' messages the node sends
//! around it, and a notice reaches every socket.

mod common;

use std::sync::Arc;
use std::time::Duration;

use croupier_ledger::Store;
use croupier_ledger::sqlite::{SqliteConfig, SqliteStore};
use croupier_node::AppState;
use croupier_node::events::PlayerMessage;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A demo node on a loopback port, its state, and its ledger folder (kept while it runs).
async fn node() -> (String, AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path().join("ledger.db"))).unwrap());
    let state = common::demo_state(store, &dir.path().join("keys"), "ws-test");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = croupier_node::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (address.to_string(), state, dir)
}

/// One request on its own connection; the whole answer, head and body.
async fn exchange(address: &str, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
        .await
        .unwrap();
    answer
}

/// Signs `player` in (demo mode): their token.
async fn token_of(address: &str, player: &str) -> String {
    let body = format!(r#"{{"player":"{player}"}}"#);
    let request = format!(
        "POST /api/v1/sessions HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(address, &request).await;
    let json = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let signed_in: croupier_web::wire::player::SessionCreated = serde_json::from_str(json).unwrap();
    signed_in.token
}

/// Signs `player` in (demo mode) and opens their WebSocket, past its hello.
async fn socket_of(address: &str, player: &str) -> Socket {
    let token = token_of(address, player).await;
    let url = format!("ws://{address}/api/v1/ws?token={token}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = next_text(&mut socket).await.expect("a hello");
    assert!(hello.contains(r#""type":"hello""#), "{hello}");
    socket
}

/// A signed-in player's plain GET of the WebSocket route (no upgrade headers) is refused in
/// JSON like every other refusal; before, it was axum's text/plain 400.
#[tokio::test]
async fn a_websocket_route_asked_without_a_handshake_is_refused_in_json() {
    let (address, _state, _dir) = node().await;
    let token = token_of(&address, "carol").await;
    let request = format!(
        "GET /api/v1/ws?token={token} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n"
    );
    let answer = exchange(&address, &request).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let refusal: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(refusal["error"], "not_a_websocket", "{answer}");
}

async fn next_text(socket: &mut Socket) -> Option<String> {
    match tokio::time::timeout(Duration::from_secs(2), socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => Some(text.to_string()),
        _ => None,
    }
}

fn balance(round_id: &str) -> PlayerMessage {
    PlayerMessage::Balance {
        balance: 42,
        round_id: round_id.into(),
    }
}

// One thread: the burst below is sent before any socket task runs, as it is on a busy node.
#[tokio::test(flavor = "current_thread")]
async fn a_players_balance_survives_a_burst_of_other_players_balances() {
    let (address, state, _dir) = node().await;
    let mut alice = socket_of(&address, "alice").await;
    let mut bob = socket_of(&address, "bob").await;
    state.publish(Some("alice"), balance("alice-round"));
    for i in 0..5_000 {
        state.publish(Some(&format!("player-{i}")), balance("other-round"));
    }
    state.publish(Some("bob"), balance("bob-round"));
    let to_alice = next_text(&mut alice).await.expect("alice's balance");
    assert!(to_alice.contains("alice-round"), "{to_alice}");
    let to_bob = next_text(&mut bob).await.expect("bob's balance");
    assert!(to_bob.contains("bob-round"), "{to_bob}");
    state.publish(
        None,
        PlayerMessage::Notice {
            level: "info".into(),
            message: "maintenance at noon".into(),
        },
    );
    for socket in [&mut alice, &mut bob] {
        let notice = next_text(socket).await.expect("the notice");
        assert!(notice.contains("maintenance at noon"), "{notice}");
    }
}
