//! The gateway's HTTP/1.1 client to its nodes, on `croupier_web::http1`: a request's own task
//! takes an idle keep-alive connection of the node, writes the request's head straight from
//! the player's parsed request into the connection's buffer, reads the whole answer and puts
//! the connection back. hyper's pooled client handed every request to a connection task and
//! back through channels and built a header map on the way out: two task wake-ups and the
//! allocations of a second request per proxied one, which is what HAProxy does not pay.

use std::net::IpAddr;

use axum::http::{HeaderMap, Method, header};
use croupier_web::http1::conn::{self, Conn, Dial};
use croupier_web::http1::wire::{self, decimal};
use croupier_web::http1::{Failure, Idle, Received};

/// Largest answer read from a node: far above any JSON answer, it bounds what a broken node
/// can make the gateway hold per request.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Headers of one connection, passed on neither way.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers of a player's request not passed on besides the hop-by-hop ones: the host and
/// body length the gateway writes itself, the client address, which the gateway sets rather
/// than believe, and `expect`: the body is read already and goes with the head.
const WRITTEN_BY_THE_GATEWAY: [&str; 4] = ["host", "content-length", "x-forwarded-for", "expect"];

/// A request for a node: the player's, or the gateway's own (`/readyz`).
pub struct Outgoing<'a> {
    pub method: &'a Method,
    /// Path and query.
    pub path: &'a str,
    pub headers: Option<&'a HeaderMap>,
    /// The player's address, sent as `x-forwarded-for`.
    pub client: Option<IpAddr>,
    pub body: &'a [u8],
}

impl<'a> Outgoing<'a> {
    /// A bare GET of `path` (a health probe).
    pub fn get(path: &'a str) -> Self {
        Outgoing {
            method: &Method::GET,
            path,
            headers: None,
            client: None,
            body: &[],
        }
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum Failed {
    /// No connection could be made; nothing was sent. `refused`: nothing listens there.
    Connect { refused: bool, reason: String },
    /// Sent (perhaps in part), and no whole answer came back: cut, or malformed.
    Exchange(Failure),
    /// The node's address is no `http://` or `https://` address.
    Unaddressable(String),
}

/// One node's address and its idle connections.
pub struct Upstream {
    /// `scheme://host:port`, no path.
    base: String,
    idle: Idle,
}

impl Upstream {
    pub fn new(base: &str) -> Upstream {
        Upstream {
            base: base.to_owned(),
            idle: Idle::default(),
        }
    }

    /// Sends `request` on an idle connection, or a new one, and reads the whole answer. An
    /// idle connection that turns out closed under a `replayable` request before one byte of
    /// answer came (the node closed it meanwhile) is replaced by a new one for a second
    /// send; any other request is checked for that before it goes, and not sent twice.
    pub async fn send(
        &self,
        dial: &Dial,
        request: &Outgoing<'_>,
        replayable: bool,
    ) -> Result<Received, Failed> {
        let target = wire::target(&self.base).map_err(Failed::Unaddressable)?;
        let (conn, reused) = match self.idle.take(target.origin, !replayable) {
            Some(conn) => (conn, true),
            None => (connect(&target, dial).await?, false),
        };
        let failure = match self.exchange(conn, request, target.authority).await {
            Ok(answer) => return Ok(answer),
            Err(failure) => failure,
        };
        if !(reused && replayable && failure.unanswered) {
            return Err(Failed::Exchange(failure));
        }
        let fresh = connect(&target, dial).await?;
        self.exchange(fresh, request, target.authority)
            .await
            .map_err(Failed::Exchange)
    }

    async fn exchange(
        &self,
        mut conn: Conn,
        request: &Outgoing<'_>,
        authority: &str,
    ) -> Result<Received, Failure> {
        encode(&mut conn.write, request, authority);
        let (answer, reusable) = conn
            .exchange(*request.method == Method::HEAD, MAX_ANSWER_BYTES)
            .await?;
        if reusable {
            self.idle.put(&self.base, conn);
        }
        Ok(answer)
    }
}

/// Boxed: connecting (TCP, perhaps TLS) is the rare path, and its future inline would make
/// every request's future larger.
async fn connect(target: &wire::Target<'_>, dial: &Dial) -> Result<Conn, Failed> {
    Box::pin(conn::connect(target, dial))
        .await
        .map_err(|failure| Failed::Connect {
            refused: failure.refused,
            reason: failure.reason,
        })
}

/// Writes `request` for the node at `authority` into `out`, replacing what it held: the
/// request line, the host, the player's headers but those `NOT_PASSED_ON`, the client's
/// address, the body's length and the body, so that it leaves in one write. Names and values
/// come from a parsed request (valid by construction: no CR, LF or NUL), the path too.
fn encode(out: &mut Vec<u8>, request: &Outgoing<'_>, authority: &str) {
    out.clear();
    for piece in [
        request.method.as_str().as_bytes(),
        b" ",
        request.path.as_bytes(),
        b" HTTP/1.1\r\nhost: ",
        authority.as_bytes(),
        b"\r\n",
    ] {
        out.extend_from_slice(piece);
    }
    for (name, value) in request.headers.into_iter().flatten() {
        let name_text = name.as_str();
        if !HOP_BY_HOP.contains(&name_text) && !WRITTEN_BY_THE_GATEWAY.contains(&name_text) {
            line(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if let Some(ip) = request.client {
        use std::io::Write;
        out.extend_from_slice(b"x-forwarded-for: ");
        let _ = write!(out, "{ip}");
        out.extend_from_slice(b"\r\n");
    }
    let carries_body = matches!(*request.method, Method::POST | Method::PUT | Method::PATCH);
    if !request.body.is_empty() || carries_body {
        let mut digits = [0u8; 20];
        let length = decimal(request.body.len(), &mut digits);
        line(
            out,
            header::CONTENT_LENGTH.as_str().as_bytes(),
            length.as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(request.body);
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_request_is_passed_on_without_its_connection_headers_or_claimed_address() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer t"),
            ("connection", "keep-alive, x-secret"),
            ("host", "casino.example"),
            ("content-length", "99"),
            ("transfer-encoding", "chunked"),
            ("x-forwarded-for", "10.9.9.9"),
            ("idempotency-key", "k-1"),
            ("expect", "100-continue"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        let request = Outgoing {
            method: &Method::POST,
            path: "/api/v1/rounds?x=1",
            headers: Some(&headers),
            client: Some("127.0.0.7".parse().unwrap()),
            body: b"{}",
        };
        let mut out = b"old".to_vec();
        encode(&mut out, &request, "127.0.0.1:7401");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /api/v1/rounds?x=1 HTTP/1.1\r\nhost: 127.0.0.1:7401\r\n\
             authorization: Bearer t\r\nidempotency-key: k-1\r\n\
             x-forwarded-for: 127.0.0.7\r\ncontent-length: 2\r\n\r\n{}"
        );
        let probe = Outgoing::get("/readyz");
        let mut out = Vec::new();
        encode(&mut out, &probe, "n:1");
        assert_eq!(out, b"GET /readyz HTTP/1.1\r\nhost: n:1\r\n\r\n");
    }
}
