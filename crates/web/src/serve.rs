//! One way to serve HTTP for every Croupier server (node, the gateway's two ports, control
//! plane, `up`'s supervisor API), with the same connection hygiene everywhere:
//!
//! - a client has `header_read` to send its request headers (slowloris) and `body_read` to
//!   send its body (slow bodies): past either the connection is closed (headers) or the
//!   request answered 408 and the connection closed (body);
//! - one client address holds at most `conns_per_ip` connections; one more is answered `429
//!   too_many_connections` (JSON, `Retry-After: 1`) and closed, as nginx's `limit_conn`
//!   answers rather than cutting, so a player behind a busy NAT reads why. At most
//!   `REFUSALS_AT_ONCE` are being answered at once, each given `REFUSAL_READ` to send its
//!   request; past that, and on TLS listeners (a handshake per refusal is what a flood
//!   wants), the connection is closed unanswered;
//! - stopping is gentle: first stop accepting, then give connections accepted a moment ago
//!   the time to send their request, then ask every connection to finish what it is doing and
//!   close, within `stop_deadline`. A request that reached the server is answered; only a
//!   keep-alive connection idle at that moment is closed.
//!
//! With TLS (`tls::Acceptor`) the handshake must also finish within `header_read`.
//!
//! Handlers find the client's address in `ConnectInfo<SocketAddr>`: the peer's, or behind
//! trusted reverse proxies (`serve_behind`, `crate::client`) the one their `X-Forwarded-For`
//! names. A server whose every
//! request takes one road (the gateway's players' port) may serve its own `Connections`
//! without a router, calling `read_whole_body` and `add_strict_transport` itself.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::caps::Caps;
use crate::client::TrustedProxies;
use crate::lanes::Lanes;
use crate::tls::Acceptor;
use crate::wire::Refusal;

/// After accepting stops: time for just-accepted connections to send their request.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);
/// Pause after a failed accept: out of descriptors (`ulimit -n`) the listener stays readable,
/// and accepting again at once would spin a core without serving anyone.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections over their address's cap being answered at once, per listener.
pub const REFUSALS_AT_ONCE: usize = 64;
/// How long a connection over the cap has to send its request before it is closed.
pub const REFUSAL_READ: Duration = Duration::from_secs(2);

/// The connection hygiene of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Hygiene {
    /// How long a client has to send its request headers.
    pub header_read: Duration,
    /// How long a client has to send its request body, once the headers are in.
    pub body_read: Duration,
    /// Largest body read (each route may refuse smaller ones).
    pub max_body_bytes: usize,
    /// Most connections open at once from one client address (`None`: no cap).
    pub conns_per_ip: Option<usize>,
    /// Longest wait for requests in flight once the server stops.
    pub stop_deadline: Duration,
}

impl Hygiene {
    /// An operator listener (admin, control plane, supervisor): few clients, each with few
    /// connections.
    pub fn operators() -> Self {
        Hygiene {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            conns_per_ip: Some(64),
            stop_deadline: Duration::from_secs(20),
        }
    }

    /// A listener players reach: many players may share an address (a carrier's NAT).
    pub fn players() -> Self {
        Hygiene {
            conns_per_ip: Some(512),
            ..Hygiene::operators()
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// What answers a listener's connections: the service of each, told the client's address.
pub trait Connections: Send + 'static {
    type Service: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = Infallible,
            Future: Send,
        > + Send
        + 'static;

    fn connection(&self, remote: SocketAddr) -> Self::Service;
}

/// A router's connections: each request carries the client's address as
/// `ConnectInfo<SocketAddr>`.
struct Routed(Router);

impl Connections for Routed {
    type Service = TowerToHyperService<Router>;

    fn connection(&self, remote: SocketAddr) -> Self::Service {
        TowerToHyperService::new(
            self.0
                .clone()
                .layer(axum::Extension(ConnectInfo::<SocketAddr>(remote))),
        )
    }
}

/// Serves `router` on `listener` until `stop` resolves, with `hygiene` (bodies read whole
/// within `body_read`), over TLS when given (HSTS on every answer).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
    hygiene: Hygiene,
    tls: Option<Acceptor>,
) {
    serve_behind(
        listener,
        router,
        stop,
        hygiene,
        tls,
        TrustedProxies::default(),
    )
    .await;
}

/// As `serve`, for a listener behind reverse proxies (`crate::client`): a request from one
/// of `proxies` carries the client its `X-Forwarded-For` names as `ConnectInfo`, and the
/// proxies' own connections are not capped per address (each carries many clients).
pub async fn serve_behind(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
    hygiene: Hygiene,
    tls: Option<Acceptor>,
    proxies: TrustedProxies,
) {
    let mut router = router.layer(axum::middleware::from_fn(move |request, next| {
        read_body(request, next, hygiene)
    }));
    if tls.is_some() {
        router = router.layer(axum::middleware::map_response(strict_transport));
    }
    if !proxies.is_empty() {
        router = router.layer(axum::middleware::from_fn_with_state(
            proxies.clone(),
            crate::client::resolve,
        ));
    }
    serve_connections(listener, Routed(router), stop, hygiene, tls, proxies, None).await;
}

/// Serves `connections` on `listener` as `serve` does a router, with the same connection
/// hygiene (header timeout, connections per address but those of `proxies`, gentle stop,
/// TLS); reading bodies within `body_read`, HSTS and finding the client behind `proxies`
/// are the service's. With `lanes`, each connection is served on one of them (`lanes`); the
/// cap per address and the refusals stay this accept loop's, shared by every lane, and the
/// gentle stop waits for the connections of every lane.
pub async fn serve_connections<C: Connections>(
    listener: TcpListener,
    connections: C,
    stop: impl Future<Output = ()> + Send + 'static,
    hygiene: Hygiene,
    tls: Option<Acceptor>,
    proxies: TrustedProxies,
    lanes: Option<&Lanes>,
) {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        stop_tx.send_replace(true);
    });
    let per_ip: Arc<Caps<IpAddr>> = Arc::new(Caps::new(hygiene.conns_per_ip));
    // Each connection task holds a sender; when all are gone, every connection has closed.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    let (close_now, _) = watch::channel(false);
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing before the next accept");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stopped(&mut stop_rx) => break,
        };
        // A trusted proxy's connections carry many clients: they take no place of the cap.
        let trusted = proxies.trusts(remote.ip());
        let slot = if trusted {
            None
        } else {
            per_ip.try_take(remote.ip())
        };
        if !trusted && slot.is_none() {
            refuse_over_cap(stream, remote, &refusals, tls.is_some());
            continue;
        }
        let _ = stream.set_nodelay(true);
        let service = connections.connection(remote);
        let (alive, closing) = (alive.clone(), close_now.subscribe());
        let tls = tls.as_ref().map(Acceptor::current);
        let connection = move |stream: TcpStream| async move {
            let (_alive, _slot) = (alive, slot);
            let Some(tls) = tls else {
                return run_connection::<_, C>(TokioIo::new(stream), service, hygiene, closing)
                    .await;
            };
            match tokio::time::timeout(hygiene.header_read, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    run_connection::<_, C>(TokioIo::new(stream), service, hygiene, closing).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(client = %remote.ip(), error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(client = %remote.ip(), "TLS handshake not done in time"),
            }
        };
        match lanes {
            Some(lanes) => lanes.serve(stream, connection),
            None => {
                tokio::spawn(connection(stream));
            }
        }
    }
    drop(listener);
    drop(alive);
    tokio::time::sleep(FIRST_REQUEST_GRACE).await;
    close_now.send_replace(true);
    let _ = tokio::time::timeout(hygiene.stop_deadline, all_closed.recv()).await;
}

/// Answers a connection past its address's cap (see the module's doc) and closes it.
fn refuse_over_cap(stream: TcpStream, remote: SocketAddr, refusals: &Arc<Semaphore>, tls: bool) {
    let answering = (!tls).then(|| refusals.clone().try_acquire_owned().ok());
    let Some(Some(permit)) = answering else {
        tracing::debug!(client = %remote.ip(), "too many connections from one address; closed");
        return;
    };
    tracing::debug!(client = %remote.ip(), "too many connections from one address; answered 429");
    tokio::spawn(async move {
        let _permit = permit;
        let answer = hyper::service::service_fn(|_request| async {
            let mut response = refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections",
                "too many connections from your address at once; close some, or retry in a second",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok::<_, std::convert::Infallible>(crate::secure_headers(response).await)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(REFUSAL_READ)
            .keep_alive(false)
            .serve_connection(TokioIo::new(stream), answer);
        let _ = tokio::time::timeout(REFUSAL_READ * 2, connection).await;
    });
}

/// Serves one connection until it closes, or until `closing` asks it to finish what it is
/// doing and close.
async fn run_connection<I, C: Connections>(
    io: I,
    service: C::Service,
    hygiene: Hygiene,
    mut closing: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(hygiene.header_read)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopped(&mut closing) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// Reads the whole body within `body_read` (bodies are small JSON everywhere), so a handler
/// never waits on a client that sends its body a byte at a time.
async fn read_body(request: Request, next: Next, hygiene: Hygiene) -> Response {
    let (parts, body) = request.into_parts();
    match read_whole_body(body, &hygiene, parts.uri.path()).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(refused) => refused,
    }
}

/// The whole body of a request to `path`, read within `hygiene`'s `body_read` and size; past
/// either, the refusal to answer (413, or 408 and the connection closed).
pub async fn read_whole_body(
    body: Body,
    hygiene: &Hygiene,
    path: &str,
) -> Result<hyper::body::Bytes, Response> {
    let read = axum::body::to_bytes(body, hygiene.max_body_bytes);
    match tokio::time::timeout(hygiene.body_read, read).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is too large or was cut",
        )),
        Err(_) => {
            tracing::info!(%path, "request body not received in time; connection closed");
            Err(refusal(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive in time",
            ))
        }
    }
}

/// HSTS on every answer of a TLS listener: browsers that saw it never fall back to plain
/// HTTP for this host for a year.
async fn strict_transport(mut response: Response) -> Response {
    add_strict_transport(response.headers_mut());
    response
}

/// What `serve` puts on every answer of a TLS listener, for a service of its own.
pub fn add_strict_transport(headers: &mut HeaderMap) {
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
}

/// A JSON refusal that also closes the connection (what is left of the body is unread).
fn refusal(status: StatusCode, code: &'static str, message: &'static str) -> Response {
    let mut response = Refusal::new(status, code, message).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;

    use super::*;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

    /// A connection that was served once, and stays open.
    fn served(address: SocketAddr) -> StdStream {
        let mut stream = StdStream::connect(address).unwrap();
        stream.write_all(GET).unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        while !answer.ends_with(b"ok") {
            let read = stream.read(&mut buffer).unwrap();
            assert!(read > 0, "closed before answering");
            answer.extend_from_slice(&buffer[..read]);
        }
        stream
    }

    /// Two connections per address, and a router answering "ok".
    fn capped_at_two() -> (Hygiene, Router) {
        let hygiene = Hygiene {
            conns_per_ip: Some(2),
            ..Hygiene::operators()
        };
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        (hygiene, router)
    }

    /// The answer to a third connection from this address while two are served and held.
    async fn answer_to_the_third(address: SocketAddr) -> String {
        tokio::task::spawn_blocking(move || {
            let _held = [served(address), served(address)];
            let mut third = StdStream::connect(address).unwrap();
            third.write_all(GET).unwrap();
            let mut answer = String::new();
            third.read_to_string(&mut answer).map(|_| answer)
        })
        .await
        .unwrap()
        .expect("an answer, not a reset")
    }

    #[tokio::test]
    async fn a_connection_over_the_address_cap_is_answered_429_and_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (hygiene, router) = capped_at_two();
        tokio::spawn(serve(
            listener,
            router,
            std::future::pending(),
            hygiene,
            None,
        ));
        let answer = answer_to_the_third(address).await;
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("retry-after: 1"), "{answer}");
        assert!(lower.contains("connection: close"), "{answer}");
        assert!(
            lower.contains("x-content-type-options: nosniff"),
            "{answer}"
        );
        assert!(
            answer.contains(r#""error":"too_many_connections""#),
            "{answer}"
        );
    }

    /// On lanes, an address's connections are counted once for all of them: two lanes
    /// serving one connection each still refuse the address's third.
    #[tokio::test]
    async fn on_lanes_the_address_cap_is_shared_by_every_lane() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (hygiene, router) = capped_at_two();
        let counts =
            crate::lanes::counts_in(&mut prometheus_client::registry::Registry::default(), 2);
        let lanes = Arc::new(crate::lanes::Lanes::start(&counts, "cap-lane").unwrap());
        let serving = lanes.clone();
        tokio::spawn(async move {
            let connections = Routed(router);
            serve_connections(
                listener,
                connections,
                std::future::pending(),
                hygiene,
                None,
                TrustedProxies::default(),
                Some(&serving),
            )
            .await;
        });
        let answer = answer_to_the_third(address).await;
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        let accepted: Vec<u64> = counts.iter().map(|lane| lane.accepted.get()).collect();
        assert_eq!(accepted, [1, 1], "one connection on each lane");
    }

    /// The address each request is served as, over a connection of its own that stays open
    /// (`X-Forwarded-For: <claims>`), or the refusal.
    fn served_as(address: SocketAddr, claims: &str) -> (StdStream, String) {
        let mut stream = StdStream::connect(address).unwrap();
        let request = format!("GET / HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: {claims}\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        while !answer.ends_with(b"<") {
            let read = stream.read(&mut buffer).unwrap();
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..read]);
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let client = match answer.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200") => {
                body.trim_end_matches('<').to_owned()
            }
            _ => answer,
        };
        (stream, client)
    }

    /// A router answering the client's address as the handlers see it (`ConnectInfo`).
    fn echo_client() -> Router {
        Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(client): ConnectInfo<SocketAddr>| async move {
                format!("{}<", client.ip())
            }),
        )
    }

    /// Behind a trusted proxy, each request is the client's its `X-Forwarded-For` names, and
    /// the proxy's many connections are not capped as one client's; a peer that is no
    /// trusted proxy is its own address whatever it claims, and stays capped.
    #[tokio::test]
    async fn behind_a_trusted_proxy_the_forwarded_client_is_the_client() {
        let hygiene = Hygiene {
            conns_per_ip: Some(1),
            ..Hygiene::operators()
        };
        let trusted = TrustedProxies::parse("127.0.0.0/8").unwrap();
        let behind = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let behind_address = behind.local_addr().unwrap();
        let serving = serve_behind(
            behind,
            echo_client(),
            std::future::pending(),
            hygiene,
            None,
            trusted,
        );
        tokio::spawn(serving);
        let direct = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let direct_address = direct.local_addr().unwrap();
        tokio::spawn(serve(
            direct,
            echo_client(),
            std::future::pending(),
            hygiene,
            None,
        ));

        let (behind_proxy, spoofing) = tokio::task::spawn_blocking(move || {
            let first = served_as(behind_address, "1.2.3.4, 203.0.113.9");
            let second = served_as(behind_address, "198.51.100.7");
            let own = served_as(direct_address, "203.0.113.9");
            let over_cap = served_as(direct_address, "198.51.100.7");
            ((first.1, second.1), (own.1, over_cap.1))
        })
        .await
        .unwrap();
        assert_eq!(behind_proxy.0, "203.0.113.9");
        assert_eq!(
            behind_proxy.1, "198.51.100.7",
            "the proxy's second connection"
        );
        assert_eq!(spoofing.0, "127.0.0.1");
        assert!(spoofing.1.starts_with("HTTP/1.1 429"), "{}", spoofing.1);
    }
}
