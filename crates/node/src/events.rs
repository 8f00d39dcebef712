//! What the node pushes to connected players over their WebSocket: a typed message per kind,
//! serialised with a `type` tag (`hello`, `balance`, `notice`, `game_status`), and how it
//! reaches them.
//!
//! A message for one player (their balance after a round) goes only to that player's sockets,
//! each through a bounded queue of its own; a message for everyone (a notice, a game status)
//! goes through one broadcast. A bet therefore wakes its own player's socket and no other:
//! a single broadcast of every balance made each bet wake every socket on the node (most of a
//! node's CPU at a few hundred players), and a player's own balance could be pushed out of
//! the broadcast's ring by other players' before their socket read it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use croupier_web::wire::ops::GameStatus;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};

/// Messages waiting for one socket whose client reads slower than its player plays; past
/// this, the newest are dropped for that socket (the wallet API still has the balance).
pub const SOCKET_QUEUE: usize = 64;

/// Messages for everyone waiting for a socket; a socket further behind skips the oldest.
const EVERYONE_QUEUE: usize = 64;

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

/// The node's post office for WebSocket messages.
pub struct PlayerEvents {
    everyone: broadcast::Sender<PlayerMessage>,
    sockets: Mutex<HashMap<String, Vec<Socket>>>,
    next_socket: AtomicU64,
}

struct Socket {
    id: u64,
    queue: mpsc::Sender<PlayerMessage>,
}

impl PlayerEvents {
    pub fn new() -> Arc<PlayerEvents> {
        Arc::new(PlayerEvents {
            everyone: broadcast::channel(EVERYONE_QUEUE).0,
            sockets: Mutex::new(HashMap::new()),
            next_socket: AtomicU64::new(0),
        })
    }

    /// Delivers `message` to `player`'s sockets, or to every socket when `player` is `None`.
    /// Returns how many sockets it was queued for (none connected is not an error).
    pub fn send(&self, player: Option<&str>, message: PlayerMessage) -> usize {
        let Some(player) = player else {
            return self.everyone.send(message).unwrap_or(0);
        };
        let sockets = self.sockets.lock();
        let Some(sockets) = sockets.get(player) else {
            return 0;
        };
        let queued = sockets
            .iter()
            .filter(|socket| socket.queue.try_send(message.clone()).is_ok())
            .count();
        if queued < sockets.len() {
            tracing::debug!(
                player,
                "a WebSocket reads too slowly: a message was dropped"
            );
        }
        queued
    }

    /// A socket of `player`'s, receiving their messages and everyone's until dropped.
    pub fn subscribe(self: &Arc<Self>, player: &str) -> Subscription {
        let (queue, own) = mpsc::channel(SOCKET_QUEUE);
        let id = self.next_socket.fetch_add(1, Ordering::Relaxed);
        self.sockets
            .lock()
            .entry(player.to_owned())
            .or_default()
            .push(Socket { id, queue });
        Subscription {
            events: self.clone(),
            player: player.to_owned(),
            id,
            own,
            everyone: self.everyone.subscribe(),
        }
    }

    fn unsubscribe(&self, player: &str, id: u64) {
        let mut sockets = self.sockets.lock();
        if let Some(list) = sockets.get_mut(player) {
            list.retain(|socket| socket.id != id);
            if list.is_empty() {
                sockets.remove(player);
            }
        }
    }
}

/// One socket's messages: its player's and everyone's. Dropping it unsubscribes.
pub struct Subscription {
    events: Arc<PlayerEvents>,
    player: String,
    id: u64,
    own: mpsc::Receiver<PlayerMessage>,
    everyone: broadcast::Receiver<PlayerMessage>,
}

impl Subscription {
    /// The next message for this socket; cancel-safe (nothing is lost when another branch of
    /// a `select!` wins).
    pub async fn recv(&mut self) -> PlayerMessage {
        loop {
            tokio::select! {
                Some(message) = self.own.recv() => return message,
                received = self.everyone.recv() => match received {
                    Ok(message) => return message,
                    // Notices sent while this socket was behind are skipped, as before.
                    Err(RecvError::Lagged(_)) => continue,
                    // The sender lives as long as the post office this holds: never closed.
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                },
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.events.unsubscribe(&self.player, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balance(round_id: &str) -> PlayerMessage {
        PlayerMessage::Balance {
            balance: 1,
            round_id: round_id.into(),
        }
    }

    fn notice() -> PlayerMessage {
        PlayerMessage::Notice {
            level: "info".into(),
            message: "hello all".into(),
        }
    }

    async fn next(subscription: &mut Subscription) -> Option<PlayerMessage> {
        tokio::time::timeout(std::time::Duration::from_millis(50), subscription.recv())
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_players_message_reaches_only_their_sockets_and_a_notice_reaches_all() {
        let events = PlayerEvents::new();
        let mut alice_phone = events.subscribe("alice");
        let mut alice_laptop = events.subscribe("alice");
        let mut bob = events.subscribe("bob");
        assert_eq!(events.send(Some("alice"), balance("r1")), 2);
        assert_eq!(events.send(Some("carol"), balance("r2")), 0);
        assert_eq!(next(&mut alice_phone).await, Some(balance("r1")));
        assert_eq!(next(&mut alice_laptop).await, Some(balance("r1")));
        assert_eq!(next(&mut bob).await, None, "bob woke for alice's balance");
        assert_eq!(events.send(None, notice()), 3);
        for socket in [&mut alice_phone, &mut alice_laptop, &mut bob] {
            assert_eq!(next(socket).await, Some(notice()));
        }
    }

    #[tokio::test]
    async fn other_players_messages_never_push_out_a_players_own() {
        let events = PlayerEvents::new();
        let mut alice = events.subscribe("alice");
        let _others: Vec<_> = (0..100)
            .map(|i| events.subscribe(&format!("p{i}")))
            .collect();
        events.send(Some("alice"), balance("mine"));
        for i in 0..5_000 {
            events.send(Some(&format!("p{}", i % 100)), balance("theirs"));
        }
        assert_eq!(next(&mut alice).await, Some(balance("mine")));
    }

    #[tokio::test]
    async fn a_slow_socket_keeps_the_oldest_of_its_queue_and_others_are_not_held_up() {
        let events = PlayerEvents::new();
        let mut slow = events.subscribe("alice");
        let mut other = events.subscribe("alice");
        for i in 0..SOCKET_QUEUE {
            events.send(Some("alice"), balance(&i.to_string()));
            assert_eq!(next(&mut other).await, Some(balance(&i.to_string())));
        }
        assert_eq!(
            events.send(Some("alice"), balance("late")),
            1,
            "only the reading socket"
        );
        assert_eq!(next(&mut other).await, Some(balance("late")));
        assert_eq!(next(&mut slow).await, Some(balance("0")));
    }

    #[tokio::test]
    async fn a_dropped_subscription_leaves_nothing_behind() {
        let events = PlayerEvents::new();
        let first = events.subscribe("alice");
        let second = events.subscribe("alice");
        assert_eq!(events.sockets.lock().len(), 1);
        drop(first);
        assert_eq!(events.send(Some("alice"), balance("r")), 1);
        drop(second);
        assert_eq!(events.sockets.lock().len(), 0);
        assert_eq!(events.send(Some("alice"), balance("r")), 0);
    }
}
