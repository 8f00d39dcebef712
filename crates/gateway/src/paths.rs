//! What the players' port forwards: the player API (JSON over HTTP and its WebSocket, the
//! lobby included) and nothing else. The nodes also serve their ops API (`/ops/*`, guarded by
//! the ops token), `/metrics` (stakes and payouts per game, host details, no token) and their
//! health routes; none of that may be reachable from the players' side, where an attacker
//! could guess the ops token or read the metrics. An allow-list, so a route added to the node
//! later stays private until it is added here on purpose.

/// The prefix of every player route (`/api/v1/sessions`, `/lobby`, `/rounds`, `/ws`, …).
const PLAYER_API: &str = "/api/v1/";

/// Whether the players' port forwards `path`: under the player API, with no `.`/`..`
/// segment, no empty segment and no percent-encoded dot or slash that a node or a proxy
/// behind it could read as a way out of `/api/v1/`.
pub fn is_player_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix(PLAYER_API) else {
        return false;
    };
    if rest.contains('\\') || has_encoded_dot_or_slash(rest) {
        return false;
    }
    rest.split('/')
        .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

/// Whether `text` holds `%2e`, `%2f` or `%5c`, in either case (checked on every request, so
/// without a lowered copy).
fn has_encoded_dot_or_slash(text: &str) -> bool {
    text.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'e' | b'f') | (b'5', b'c')
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_player_api_is_forwarded() {
        for ok in [
            "/api/v1/sessions",
            "/api/v1/lobby",
            "/api/v1/rounds/r-1/actions",
            "/api/v1/ws",
            "/api/v1/no-such-route",
        ] {
            assert!(is_player_path(ok), "{ok}");
        }
        for refused in [
            "/metrics",
            "/ops/drain",
            "/ops/healthz",
            "/healthz",
            "/readyz",
            "/",
            "/api/v1",
            "/api/v1/",
            "/api/v10/lobby",
            "/API/v1/lobby",
            "/api/v1/../ops/drain",
            "/api/v1/./lobby",
            "/api/v1//lobby",
            "/api/v1/%2e%2e/metrics",
            "/api/v1/..%2Fmetrics",
            "/api/v1/..\\metrics",
            "/api/v1/%2E%2E/metrics",
            "/api/v1/rounds/%5Cx",
            "/api/v1/rounds/%5cx",
        ] {
            assert!(!is_player_path(refused), "{refused}");
        }
    }
}
