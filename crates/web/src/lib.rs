//! HTTP pieces every Croupier server shares (node, gateway, control plane, `up`'s
//! supervisor): serving a listener with the same connection hygiene (`serve`, `caps`),
//! reading a bearer token, comparing tokens in constant time, the security headers put on
//! every answer, the wire vocabulary (`wire`: header names, the error envelope), and the
//! client side of HTTP/1.1 the gateway and the load generator share (`http1`), and the
//! lanes a proxy serves its connections on (`lanes`).
#![forbid(unsafe_code)]

pub mod caps;
pub mod client;
pub mod extract;
pub mod http1;
pub mod lanes;
pub mod launch;
pub mod lockout;
pub mod scanning;
pub mod serve;
pub mod tls;
pub mod wire;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// Read buffer of every WebSocket Croupier opens or accepts (node, gateway both ways, load
/// generator). Tungstenite's default is 128 KiB, allocated per socket and zero-filled on
/// every read poll: profiled under load, that memset was 31% of a node's CPU, and 500
/// sockets held 64 MB. Player messages are well under 1 KiB.
pub const WEBSOCKET_READ_BUFFER: usize = 4 * 1024;

/// A request to a WebSocket route that is no WebSocket handshake (not a GET, an upgrade
/// header missing, another protocol version): the same status axum gives, as a JSON refusal
/// like every other, not axum's plain text.
pub fn not_a_websocket(rejection: WebSocketUpgradeRejection) -> Response {
    wire::Refusal::new(rejection.status(), "not_a_websocket", rejection.body_text()).into_response()
}

/// The WebSocket address of an HTTP base address: `http://` → `ws://`, `https://` → `wss://`.
pub fn websocket_base(http_base: &str) -> String {
    match http_base.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}"),
        None => http_base.replacen("http://", "ws://", 1),
    }
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The bearer token, or for WebSockets (whose browser API cannot set headers) a `token`
/// query parameter.
pub fn bearer_or_query<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    if headers.contains_key(header::AUTHORIZATION) {
        return bearer(headers);
    }
    uri.query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")))
}

/// Whether `presented` is `expected`, in time that does not depend on where they differ.
pub fn same_token(presented: &str, expected: &str) -> bool {
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// Whether the request carries `ops_token` as its bearer token.
pub fn is_ops(headers: &HeaderMap, ops_token: &str) -> bool {
    same_token(bearer(headers).unwrap_or(""), ops_token)
}

/// Security headers on every answer: no MIME sniffing, no framing, no referrer, and (unless a
/// handler set its own) a closed content policy and no caching, since answers carry balances
/// and tokens. For `axum::middleware::map_response`.
pub async fn secure_headers(mut response: Response) -> Response {
    add_secure_headers(response.headers_mut());
    response
}

/// The security headers every answer gets, whatever its handler (or, behind the gateway, its
/// node) set: a proxy need not copy them from the answer it passes on.
pub const ALWAYS_SECURE: [(header::HeaderName, &str); 3] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// What `secure_headers` puts on an answer, for a server without a middleware stack.
pub fn add_secure_headers(headers: &mut HeaderMap) {
    for (name, value) in ALWAYS_SECURE {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        assert_eq!(bearer(&with_auth("Bearer abc ")), Some("abc"));
        assert_eq!(bearer(&with_auth("Basic abc")), None);
        let uri: Uri = "/api/v1/ws?x=1&token=t0k".parse().unwrap();
        assert_eq!(bearer_or_query(&HeaderMap::new(), &uri), Some("t0k"));
        assert_eq!(bearer_or_query(&with_auth("Bearer h"), &uri), Some("h"));
        assert!(is_ops(&with_auth("Bearer s3cret"), "s3cret"));
        assert!(!is_ops(&with_auth("Bearer s3cre"), "s3cret"));
        assert!(!is_ops(&HeaderMap::new(), "s3cret"));
    }

    #[tokio::test]
    async fn a_handler_s_own_policy_and_caching_stay() {
        let mut response = Response::new(axum::body::Body::empty());
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        let response = secure_headers(response).await;
        assert_eq!(response.headers()[header::CACHE_CONTROL], "max-age=60");
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; frame-ancestors 'none'"
        );
    }
}
