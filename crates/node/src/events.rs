//! What the node pushes to connected players over their WebSocket: a typed message per kind,
//! serialised with a `type` tag (`hello`, `balance`, `notice`, `game_status`).

use croupier_web::wire::ops::GameStatus;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlayerMessage {
    /// The first message on a new socket.
    Hello {
        player: String,
        balance: Option<i64>,
        node: String,
    },
    /// The player's balance after one of their rounds.
    Balance { balance: i64, round_id: String },
    /// An operator's notice (maintenance ahead, incident update).
    Notice { level: String, message: String },
    /// A game opened or closed for maintenance.
    GameStatus { game: String, status: GameStatus },
}

impl PlayerMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// A message for connected players: to one player, or to all when `player` is `None`.
#[derive(Debug, Clone)]
pub struct PlayerEvent {
    pub player: Option<String>,
    pub message: PlayerMessage,
}
