//! Who the client is when a reverse proxy stands in front (an ingress, a CDN, a load balancer
//! that speaks HTTP): every request then comes from the proxy's address, and whatever is kept
//! per address (rate limits, the subscription shares, the lockout and scanning blocks) would
//! treat the whole public as one client: one caller's flood or guesses would shut everybody
//! out. As nginx's `real_ip` module (`set_real_ip_from`, `real_ip_recursive on`) and
//! HAProxy's `option forwardfor` do it: only a peer in the operator's list of proxies is
//! believed, and its `X-Forwarded-For` is read from the right, past every hop that is itself a
//! trusted proxy; the first address that is not is the client. Anything to the left of it was
//! written by the client and proves nothing, so a hostile caller cannot pick its own address,
//! and a peer that is no trusted proxy is its own address whatever it sends.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The header proxies name the client in, each appending the address it took the request
/// from.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The reverse proxies whose `X-Forwarded-For` is believed (none by default).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// Addresses or networks, comma-separated (`10.0.0.0/8,192.168.1.7`); empty: none.
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        crate::lockout::parse_allow(text).map(|nets| TrustedProxies(nets.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `address` is one of the proxies.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client of a request that came from `peer` with `headers`: `peer` itself unless it
    /// is a trusted proxy; else the right-most address of `X-Forwarded-For` that is no
    /// trusted proxy. When every address there is a proxy, the left-most; when an entry is no
    /// address, the hop that handed it on (the last one believed).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        // A value that is no text reads as one entry that is no address: the walk stops there
        // (skipping it would believe what stands to its left).
        let values = headers.get_all(FORWARDED_FOR).iter().rev();
        for entry in values.flat_map(|v| v.to_str().unwrap_or("").rsplit(',')) {
            let Some(hop) = hop_address(entry.trim()) else {
                return client;
            };
            client = hop;
            if !self.trusts(hop) {
                return hop;
            }
        }
        client
    }
}

/// The middleware that puts the client's address (the peer's port kept) in place of the
/// peer's in `ConnectInfo`, for the layers and handlers after it; outside the layers that
/// count per address. `crate::serve::serve_behind` puts it on a listener with trusted
/// proxies, as `axum::middleware::from_fn_with_state(proxies, resolve)`.
pub async fn resolve(
    State(proxies): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(&ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let client = proxies.client(peer.ip(), request.headers());
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
    }
    next.run(request).await
}

/// One entry of `X-Forwarded-For`: an address, perhaps with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), as some proxies write it.
fn hop_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|a| a.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_peer_that_is_no_trusted_proxy_is_the_client_whatever_it_claims() {
        let none = TrustedProxies::default();
        let spoofed = headers(&["203.0.113.9"]);
        assert_eq!(
            none.client(ip("198.51.100.4"), &spoofed),
            ip("198.51.100.4")
        );
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            proxies.client(ip("198.51.100.4"), &spoofed),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").unwrap();
        // The client wrote a made-up address first; the edge proxy appended the real one,
        // the inner proxy the edge's.
        let chain = headers(&["1.2.3.4, 203.0.113.9", "192.168.1.7"]);
        assert_eq!(proxies.client(ip("10.1.2.3"), &chain), ip("203.0.113.9"));
        let one_header = headers(&["1.2.3.4,203.0.113.9 , 192.168.1.7"]);
        assert_eq!(
            proxies.client(ip("10.1.2.3"), &one_header),
            ip("203.0.113.9")
        );
        // Written with ports, and IPv6.
        let ports = headers(&["[2001:db8::5]:4711", "203.0.113.9:80"]);
        assert_eq!(proxies.client(ip("10.1.2.3"), &ports), ip("203.0.113.9"));
        let v6 = headers(&["2001:db8::5"]);
        assert_eq!(proxies.client(ip("10.1.2.3"), &v6), ip("2001:db8::5"));
    }

    #[test]
    fn what_cannot_be_read_stops_at_the_last_hop_believed() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // No header: the proxy itself.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // Garbage right after a trusted hop: that hop.
        let garbage = headers(&["203.0.113.9, unknown, 10.0.0.2"]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &garbage), ip("10.0.0.2"));
        // A value that is no text (obs-text bytes) stops the walk as garbage does.
        let mut unreadable = headers(&["203.0.113.9"]);
        unreadable.append(FORWARDED_FOR, HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(proxies.client(ip("10.0.0.1"), &unreadable), ip("10.0.0.1"));
        // Only proxies: the left-most of them.
        let inside = headers(&["10.0.0.3, 10.0.0.2"]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &inside), ip("10.0.0.3"));
    }

    #[test]
    fn an_ipv4_peer_on_a_dual_stack_socket_is_matched_as_ipv4() {
        let proxies = TrustedProxies::parse("127.0.0.0/8").unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(proxies.trusts(mapped));
        assert_eq!(
            proxies.client(mapped, &headers(&["203.0.113.9"])),
            ip("203.0.113.9")
        );
    }
}
