//! The players' port as one hyper service per connection, without a router or middleware
//! stack. Every request there takes the same road (whatever passes the limits is forwarded),
//! so what the other servers' layers do is called here in order as plain functions: an
//! address blocked for scanning is refused first (the address: the peer's, or behind a trusted
//! proxy the player's it names, `croupier_web::client`), the body is read whole within the port's
//! deadline, a panic in the handler is answered 500, each answer that tells a probe or a
//! flood counts against its address, and every answer gets the security headers (and HSTS
//! on TLS). One boxed future per request: axum's router and the four layers boxed and moved
//! the request's future once each, a cost HAProxy does not pay per request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use croupier_web::scanning;
use croupier_web::serve::{Connections, Hygiene, add_strict_transport, read_whole_body};
use futures_util::FutureExt;
use hyper::body::Incoming;

use crate::Gateway;
use crate::proxy::PlayerRequest;

/// The players' port of `gateway`, with its listener's hygiene, over TLS or not.
pub struct PlayersPort {
    pub gateway: Arc<Gateway>,
    pub hygiene: Hygiene,
    pub tls: bool,
}

impl Connections for PlayersPort {
    type Service = PlayerConnection;

    fn connection(&self, remote: SocketAddr) -> PlayerConnection {
        PlayerConnection {
            gateway: self.gateway.clone(),
            hygiene: self.hygiene,
            tls: self.tls,
            remote,
        }
    }
}

/// One player connection's service.
pub struct PlayerConnection {
    gateway: Arc<Gateway>,
    hygiene: Hygiene,
    tls: bool,
    remote: SocketAddr,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for PlayerConnection {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: hyper::Request<Incoming>) -> Answer {
        let (gateway, hygiene, tls, remote) =
            (self.gateway.clone(), self.hygiene, self.tls, self.remote);
        Box::pin(async move {
            let mut response = answer(gateway, hygiene, remote, request).await;
            croupier_web::add_secure_headers(response.headers_mut());
            if tls {
                add_strict_transport(response.headers_mut());
            }
            Ok(response)
        })
    }
}

async fn answer(
    gateway: Arc<Gateway>,
    hygiene: Hygiene,
    remote: SocketAddr,
    request: hyper::Request<Incoming>,
) -> Response {
    let proxies = &gateway.config.trusted_proxies;
    let address = proxies.client(remote.ip(), request.headers());
    let remote = SocketAddr::new(address, remote.port());
    if let Some(refusal) = scanning::refuse_blocked(&gateway.scanning, address) {
        return refusal;
    }
    let (parts, body) = request.into_parts();
    let body = match read_whole_body(Body::new(body), &hygiene, parts.uri.path()).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let method = parts.method.clone();
    let request = PlayerRequest::from_parts(parts, body);
    let handled = AssertUnwindSafe(crate::proxy::handle(gateway.clone(), remote, request))
        .catch_unwind()
        .await;
    let response = handled.unwrap_or_else(croupier_vitals::panics::answer);
    scanning::count(&gateway.scanning, address, &method, response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{Outgoing, Upstream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the layers of every other server do, the port does without them: security
    /// headers and HSTS on every answer, a scanner blocked before its requests reach a node,
    /// a body that does not arrive in time answered 408.
    #[tokio::test]
    async fn the_port_keeps_every_layers_promise_without_the_layers() {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let wallet = axum::routing::get(move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            "{}"
        });
        let gateway = gateway_before(wallet, "").await;
        let hygiene = Hygiene {
            body_read: Duration::from_millis(300),
            ..Hygiene::players()
        };
        let address = serve_port(&gateway, hygiene, true).await;
        let player = Upstream::new(&format!("http://{address}"));
        let get = async |path: &str| {
            let request = Outgoing::get(path);
            player.send(&gateway.dial, &request, true).await.unwrap()
        };

        let answer = get("/api/v1/wallet").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(answer.header("x-frame-options"), Some("DENY"));
        assert!(answer.header("strict-transport-security").is_some());
        assert_eq!(answer.header("croupier-node"), Some("n0"));
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(get("/admin/secrets").await.status);
        }
        assert_eq!(&statuses[..2], [404, 404]);
        let refused = get("/api/v1/wallet").await;
        assert_eq!(refused.status, 429, "a blocked scanner: {statuses:?}");
        assert_eq!(refused.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "a blocked request reached the node"
        );

        assert!(gateway.scanning.lift("127.0.0.1".parse().unwrap()));
        let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
        slow.write_all(b"POST /api/v1/rounds HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n{}")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut answer));
        read.await
            .expect("the slow body was cut within the deadline")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout"), "{answer}");
    }

    /// A node's answer reaches the player with its own headers, repeated ones included, but
    /// the hop-by-hop ones; the security headers the port sets on every answer replace the
    /// node's (one of each, the port's value), and a content policy of the node's own stays.
    #[tokio::test]
    async fn a_nodes_headers_are_passed_on_and_the_ports_security_headers_win() {
        let wallet = axum::routing::get(|| async {
            let mut response = axum::response::Response::new(axum::body::Body::from("{}"));
            for (name, value) in [
                ("x-frame-options", "SAMEORIGIN"),
                ("referrer-policy", "origin"),
                ("content-security-policy", "default-src 'self'"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("x-game", "dice"),
                ("keep-alive", "timeout=5"),
            ] {
                response.headers_mut().append(name, value.parse().unwrap());
            }
            response
        });
        let gateway = gateway_before(wallet, "").await;
        let address = serve_port(&gateway, Hygiene::players(), false).await;
        let player = Upstream::new(&format!("http://{address}"));
        let answer = player
            .send(&gateway.dial, &Outgoing::get("/api/v1/wallet"), true)
            .await
            .unwrap();
        let values = |wanted: &str| -> Vec<String> {
            answer
                .each_header()
                .filter(|(name, _)| name.eq_ignore_ascii_case(wanted.as_bytes()))
                .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
                .collect()
        };
        assert_eq!(answer.status, 200);
        assert_eq!(values("x-frame-options"), ["DENY"]);
        assert_eq!(values("referrer-policy"), ["no-referrer"]);
        assert_eq!(values("x-content-type-options"), ["nosniff"]);
        assert_eq!(values("content-security-policy"), ["default-src 'self'"]);
        assert_eq!(values("set-cookie"), ["a=1", "b=2"]);
        assert_eq!(values("x-game"), ["dice"]);
        assert_eq!(values("croupier-node"), ["n0"]);
        assert!(
            values("keep-alive").is_empty(),
            "a hop-by-hop header passed on"
        );
    }

    /// A gateway, trusting `trusted` proxies and blocking a scanner after 3 probes, in front
    /// of a node that answers `wallet` on the player API's wallet route.
    async fn gateway_before(wallet: axum::routing::MethodRouter, trusted: &str) -> Arc<Gateway> {
        let node = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node_base = format!("http://{}", node.local_addr().unwrap());
        let app = axum::Router::new().route("/api/v1/wallet", wallet);
        tokio::spawn(async move { axum::serve(node, app).await });
        let mut config = crate::GatewayConfig::new(vec![("n0".into(), node_base)], "t".repeat(32));
        config.scanning.max_failures = 3;
        config.trusted_proxies = croupier_web::client::TrustedProxies::parse(trusted).unwrap();
        Gateway::new(config).unwrap()
    }

    /// The players' port of `gateway`, served on a port of its own; its address.
    async fn serve_port(gateway: &Arc<Gateway>, hygiene: Hygiene, tls: bool) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let port = PlayersPort {
            gateway: gateway.clone(),
            hygiene,
            tls,
        };
        let proxies = gateway.config.trusted_proxies.clone();
        let serving = croupier_web::serve::serve_connections(
            listener,
            port,
            std::future::pending(),
            hygiene,
            None,
            proxies,
            None,
        );
        tokio::spawn(serving);
        address
    }

    /// Behind a CDN or an ingress every player comes from the proxy's address: with the proxy
    /// trusted, one player's probes block that player, not everyone behind the proxy, and
    /// the node is told the player's address. A peer that is no trusted proxy cannot name
    /// another address to escape its block.
    #[tokio::test]
    async fn behind_a_trusted_proxy_a_scanner_is_blocked_and_its_neighbours_are_not() {
        for (trusted, neighbour_served) in [("127.0.0.0/8", true), ("10.0.0.0/8", false)] {
            let wallet = axum::routing::get(|headers: axum::http::HeaderMap| async move {
                let forwarded = headers.get("x-forwarded-for").cloned();
                forwarded.map_or_else(String::new, |v| v.to_str().unwrap_or("").to_owned())
            });
            let gateway = gateway_before(wallet, trusted).await;
            let address = serve_port(&gateway, Hygiene::players(), false).await;
            let proxy = Upstream::new(&format!("http://{address}"));
            let from = async |player: &str, path: &str| {
                let request = Outgoing {
                    client: Some(player.parse().unwrap()),
                    ..Outgoing::get(path)
                };
                proxy.send(&gateway.dial, &request, true).await.unwrap()
            };
            let first = from("203.0.113.1", "/api/v1/wallet").await;
            assert_eq!(first.status, 200);
            let seen = String::from_utf8_lossy(&first.body).into_owned();
            let expected = if neighbour_served {
                "203.0.113.1"
            } else {
                "127.0.0.1"
            };
            assert_eq!(seen, expected, "the node is told the player's address");
            for _ in 0..4 {
                from("203.0.113.1", "/admin/secrets").await;
            }
            assert_eq!(from("203.0.113.1", "/api/v1/wallet").await.status, 429);
            let neighbour = from("203.0.113.2", "/api/v1/wallet").await.status;
            if neighbour_served {
                assert_eq!(neighbour, 200, "another player behind the same proxy");
            } else {
                assert_eq!(neighbour, 429, "an untrusted peer escaped its block");
            }
        }
    }
}
