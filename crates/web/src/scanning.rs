//! Scanning and floods on the players' port, blocked like credential guessing (`lockout`, the
//! same growing blocks, allow-list, metrics and `on_block`). A player's client gets almost
//! nothing but answers it can use; a scanner walks paths (404), tries methods no client uses
//! (405, or one outside the usual few), guesses tokens (401), and a flood runs into its
//! address's rate limits (a 429 the server marks `Flood`; a player over their own limit is
//! not a flood of the address). Each such answer counts against the source address; past the
//! lockout's threshold within its window, the address is blocked.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::lockout::{Lockout, blocked};

/// Put on a refusal (as a response extension) that refuses one address's flood: it counts
/// against the address like a probe.
#[derive(Debug, Clone, Copy)]
pub struct Flood;

/// What a blocked scanner is told, and the log says.
pub const REASON: &str = "too many refused requests (scanning or flooding)";

/// Methods a player's client uses; any other is a probe.
fn usual(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .contains(method)
}

/// Answers that tell a probe from a player: a path or method that is not there, a token that
/// is not one.
fn suspicious(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::UNAUTHORIZED
            | StatusCode::NOT_IMPLEMENTED
    )
}

/// The middleware of the players' port, for
/// `axum::middleware::from_fn_with_state(lockout, guard)`: a blocked address is refused
/// before anything runs; each suspicious answer or odd method counts against its address.
/// Needs `ConnectInfo<SocketAddr>` (`crate::serve` puts it on every request).
pub async fn guard(State(lockout): State<Arc<Lockout>>, request: Request, next: Next) -> Response {
    let Some(address) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return next.run(request).await;
    };
    if let Some(refusal) = refuse_blocked(&lockout, address) {
        return refusal;
    }
    let method = request.method().clone();
    let response = next.run(request).await;
    count(&lockout, address, &method, response)
}

/// The refusal of an address blocked now, before anything runs (`guard`'s first half, for a
/// server without a middleware stack).
pub fn refuse_blocked(lockout: &Lockout, address: IpAddr) -> Option<Response> {
    if !lockout.may_block() {
        return None;
    }
    Some(blocked(REASON, lockout.blocked_for(address)?))
}

/// Counts `response` to a `method` request against `address` when it tells a probe or a
/// flood; the block's refusal instead once the address is blocked (`guard`'s second half).
pub fn count(lockout: &Lockout, address: IpAddr, method: &Method, response: Response) -> Response {
    let flood = response.extensions().get::<Flood>().is_some();
    if (!usual(method) || flood || suspicious(response.status()))
        && let Some(block) = lockout.failure(address)
    {
        return blocked(REASON, Duration::from_secs(block.seconds_left));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_told_from_players() {
        assert!(!usual(&Method::TRACE) && !usual(&Method::CONNECT));
        assert!(!usual(&Method::from_bytes(b"PROPFIND").unwrap()));
        assert!(usual(&Method::POST));
        for status in [404, 405, 401, 501] {
            assert!(suspicious(StatusCode::from_u16(status).unwrap()));
        }
        // A 429 counts only when marked `Flood` (an address's limit, not a player's).
        for status in [200, 201, 400, 403, 409, 422, 429, 503] {
            assert!(!suspicious(StatusCode::from_u16(status).unwrap()));
        }
    }
}
