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
use croupier_web::http1::{Failure, Idle, Received, Target};

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

/// One node's address, split once, and its idle connections.
pub struct Upstream {
    /// `Err`: the address given is no `http://` or `https://` address, and nothing can be
    /// sent there.
    address: Result<Address, String>,
    idle: Idle,
}

/// What a connection to a node needs of its address (`wire::Target`'s parts, owned).
struct Address {
    origin: String,
    tls: bool,
    authority: String,
    host: String,
    port: u16,
}

impl Address {
    fn target(&self) -> Target<'_> {
        Target {
            origin: &self.origin,
            tls: self.tls,
            authority: &self.authority,
            host: &self.host,
            port: self.port,
            path: "/",
        }
    }
}

impl Upstream {
    /// A node at `base`, called from tasks on no lane.
    pub fn new(base: &str) -> Upstream {
        Upstream::for_lanes(base, 0)
    }

    /// A node at `base`, called from tasks on `lanes` lanes, each keeping its own idle
    /// connections (`Idle::for_lanes`).
    pub fn for_lanes(base: &str, lanes: usize) -> Upstream {
        let address = wire::target(base).map(|t| Address {
            origin: t.origin.to_owned(),
            tls: t.tls,
            authority: t.authority.to_owned(),
            host: t.host.to_owned(),
            port: t.port,
        });
        Upstream {
            address,
            idle: Idle::for_lanes(lanes),
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
        let address = self
            .address
            .as_ref()
            .map_err(|reason| Failed::Unaddressable(reason.clone()))?;
        let target = address.target();
        let (conn, reused) = match self.idle.take(target.origin, !replayable) {
            Some(conn) => (conn, true),
            None => (connect(&target, dial).await?, false),
        };
        let failure = match self.exchange(conn, request, &target).await {
            Ok(answer) => return Ok(answer),
            Err(failure) => failure,
        };
        if !(reused && replayable && failure.unanswered) {
            return Err(Failed::Exchange(failure));
        }
        let fresh = connect(&target, dial).await?;
        self.exchange(fresh, request, &target)
            .await
            .map_err(Failed::Exchange)
    }

    /// One exchange on `conn`, which goes back idle under `target`'s origin (the key it is
    /// taken by) when it may carry another request.
    async fn exchange(
        &self,
        mut conn: Conn,
        request: &Outgoing<'_>,
        target: &Target<'_>,
    ) -> Result<Received, Failure> {
        encode(&mut conn.write, request, target.authority);
        let (answer, reusable) = conn
            .exchange(*request.method == Method::HEAD, MAX_ANSWER_BYTES)
            .await?;
        if reusable {
            self.idle.put(target.origin, conn);
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
            line(out, name_text.as_bytes(), value.as_bytes());
        }
    }
    if let Some(ip) = request.client {
        out.extend_from_slice(b"x-forwarded-for: ");
        write_address(out, ip);
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

/// `ip` as text; an IPv4 address octet by octet, without `fmt`'s machinery (a tenth of the
/// head's encoding when it went through `write!`).
fn write_address(out: &mut Vec<u8>, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        use std::io::Write;
        let _ = write!(out, "{ip}");
        return;
    };
    for (index, octet) in v4.octets().into_iter().enumerate() {
        if index > 0 {
            out.push(b'.');
        }
        let mut digits = [0u8; 20];
        out.extend_from_slice(decimal(usize::from(octet), &mut digits).as_bytes());
    }
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

    #[test]
    fn the_clients_address_is_written_as_std_writes_it() {
        for ip in [
            "0.0.0.0",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            write_address(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }

    /// A node's connection goes back idle under the key it is taken by, whatever its
    /// address holds past the authority. Before, it went back under the whole address and
    /// was taken by the origin: with a path in the address, every request opened a new
    /// connection and the idle ones piled up.
    #[tokio::test]
    async fn a_node_address_with_a_path_still_reuses_its_connections() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let accepted = Arc::new(AtomicUsize::new(0));
        let counting = accepted.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counting.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            stream.write_all(ok).await.unwrap();
                        }
                    }
                });
            }
        });
        let node = Upstream::new(&format!("http://{address}/prefix"));
        let dial = Dial {
            local: None,
            timeout: std::time::Duration::from_secs(1),
            tls: croupier_web::http1::conn::tls_connector(
                &croupier_web::tls::client_config(&Default::default()).unwrap(),
            ),
        };
        for _ in 0..3 {
            let answer = node
                .send(&dial, &Outgoing::get("/readyz"), true)
                .await
                .unwrap();
            assert_eq!(answer.status, 200);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "connections opened for 3 requests"
        );
    }
}
