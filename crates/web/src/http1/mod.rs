//! The client side of HTTP/1.1 that the load generator and the gateway share: keep-alive
//! connections driven inline by the task that sends (no connection task, no channel, no
//! header map), so that a request costs one wake-up, its answer arriving, as in wrk or
//! HAProxy. `wire` writes request heads and frames answers as pure functions over bytes,
//! `conn` drives one connection, `idle` keeps the idle ones per origin. What a request holds
//! (a player's call, a proxied request) is the caller's: it writes the request into the
//! connection's buffer with `wire`'s helpers.

pub mod conn;
pub mod idle;
pub mod wire;

pub use conn::{Conn, ConnectFailure, Failure};
pub use idle::Idle;
pub use wire::Target;

use hyper::body::Bytes;

/// An answer as received: its status, its head (status line and headers, as sent), where
/// each header lies in it, and its body (chunks decoded). Head and body are pieces of the
/// connection's read buffer, not copies.
#[derive(Debug, Clone)]
pub struct Received {
    pub status: u16,
    pub head: Bytes,
    pub headers: Vec<wire::HeaderAt>,
    pub body: Bytes,
}

impl Received {
    /// Each header's name and value, in order, as sent: pieces of `head`.
    pub fn each_header(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|at| (at.name_in(&self.head), at.value_in(&self.head)))
    }

    /// The first header `name`, when its value is visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        wire::find_header(&self.head, &self.headers, name)
    }
}
