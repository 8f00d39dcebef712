//! Forwarding a player's request: limits first (rate, headers, body), then up to `max_tries`
//! tries on different nodes. A refused connection or a draining node's refusal is always
//! retried; a reset or timeout only when the request is idempotent (GET/HEAD, or carries an
//! Idempotency-Key, which the node uses to apply it at most once); every retry spends the
//! retry budget. A retry-safe try that is not the last waits only a few times the node's
//! recent p99 (`latency`), so a frozen node costs a player that, not the whole freeze. When no node can serve, a request waits a bounded time for one (`queue`);
//! then players get a 503 maintenance notice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use croupier_web::http1::Received;
use croupier_web::wire::player::SessionCreated;
use croupier_web::wire::{self, Refusal};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use serde::Serialize;
use std::hash::BuildHasher;

use crate::Gateway;
use crate::metrics::{Metrics, NodeKind, NodeLabel};
use crate::pool::{Backend, PlayerKey};
use crate::queue::NodePlace;
use crate::upstream::{Failed, HOP_BY_HOP, Outgoing};

/// The retry reason of a request that waited for a place on a node taken out meanwhile.
const NODE_OUT: &str = "node_out";

/// Seconds players are told to wait when no node can serve.
pub const NO_NODE_RETRY_AFTER: u32 = 5;

/// A JSON error the gateway answers itself.
pub fn refusal(status: StatusCode, code: &'static str, message: &str) -> Response {
    Refusal::new(status, code, message).into_response()
}

/// How long the maintenance notice asks players to wait.
#[derive(Serialize)]
struct RetryAfter {
    retry_after_s: u32,
}

pub fn no_node(gateway: &Gateway) -> Response {
    Metrics::count(&gateway.metrics.refused, "no_node");
    let mut response = Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "maintenance",
        "The games are briefly unavailable while we restore service. Your balance and any round in progress are safe; please retry in a few seconds.",
    )
    .with(RetryAfter {
        retry_after_s: NO_NODE_RETRY_AFTER,
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(NO_NODE_RETRY_AFTER));
    response
}

/// The player's bearer token (header, or `token` query parameter for WebSockets), hashed with
/// this process's random SipHash key: the key for affinity and the per-player rate limit.
pub fn player_key(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<PlayerKey> {
    let token = croupier_web::bearer_or_query(headers, uri)?;
    Some(key_of(token.trim()))
}

/// A token or a player name as a key (SipHash with this process's random key).
fn key_of(text: &str) -> PlayerKey {
    static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    KEYS.get_or_init(std::hash::RandomState::new).hash_one(text)
}

const SIGN_IN: &str = "/api/v1/sessions";

/// After a sign-in, remembers the new token's player for the per-player rate limit.
async fn learn_player(gateway: &Gateway, response: Response) -> Response {
    let (head, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(head, Body::empty());
    };
    let bytes = collected.to_bytes();
    // Whose token it is, from the node's answer.
    if let Ok(session) = serde_json::from_slice::<SessionCreated>(&bytes) {
        let player = &session.signed_in.player;
        gateway.limits.learn(key_of(&session.token), key_of(player));
    }
    Response::from_parts(head, Body::from(bytes))
}

fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || headers.contains_key(wire::IDEMPOTENCY_KEY)
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

/// A player's request with its whole body, read within the port's deadline
/// (`players_port`).
pub type PlayerRequest = axum::http::Request<Bytes>;

/// Answers a player's request from `client`: the limits, then a WebSocket bridged or the
/// request forwarded.
pub async fn handle(gateway: Arc<Gateway>, client: SocketAddr, request: PlayerRequest) -> Response {
    let admitted = match admit(&gateway, client, &request) {
        Ok(admitted) => admitted,
        Err(limit) => return limit.refuse(&gateway),
    };
    let (parts, body) = request.into_parts();
    if crate::ws_proxy::is_upgrade(&parts.method, &parts.headers) {
        // Boxed: the WebSocket proxy's future is ~11 KB, and inline it made every plain
        // request's future that large.
        let request = Request::from_parts(parts, Body::empty());
        let upgrade = crate::ws_proxy::handle(gateway, request, admitted.player, client.ip());
        return Box::pin(upgrade).await;
    }
    if body.len() > gateway.config.max_body_bytes {
        return too_large(&gateway);
    }
    gateway.budget.deposit();
    let started = Instant::now();
    let mut response = forward(&gateway, &parts, body, admitted.player, client).await;
    if admitted.sign_in && response.status() == StatusCode::CREATED {
        response = learn_player(&gateway, response).await;
    }
    log_access(&gateway, &parts, &response, started, client);
    response
}

/// A request the limits let through: its player (when it names one), whether it signs in.
struct Admitted {
    player: Option<PlayerKey>,
    sign_in: bool,
}

/// The limits every request passes before anything is read or forwarded: the address's rate,
/// the player API only, the headers' size, the player's rate, the address's sign-in rate.
fn admit(
    gateway: &Gateway,
    client: SocketAddr,
    request: &PlayerRequest,
) -> Result<Admitted, Limit> {
    if !gateway.limits.allow_ip(client.ip()) {
        return Err(Limit::AddressRate);
    }
    if !crate::paths::is_player_path(request.uri().path()) {
        return Err(Limit::NotPlayerApi);
    }
    if header_bytes(request.headers()) > gateway.config.max_header_bytes {
        return Err(Limit::HeadersTooLarge);
    }
    let player = player_key(request.headers(), request.uri());
    if let Some(key) = player
        && !gateway.limits.allow_player(gateway.limits.player_of(key))
    {
        return Err(Limit::PlayerRate);
    }
    let sign_in = request.method() == Method::POST && request.uri().path() == SIGN_IN;
    if sign_in && !gateway.limits.allow_sign_in(client.ip()) {
        return Err(Limit::SignInRate);
    }
    Ok(Admitted { player, sign_in })
}

/// The limit a request was refused by.
#[derive(Debug, Clone, Copy)]
enum Limit {
    AddressRate,
    NotPlayerApi,
    HeadersTooLarge,
    PlayerRate,
    SignInRate,
}

impl Limit {
    /// Counts the refusal and answers it.
    fn refuse(self, gateway: &Gateway) -> Response {
        let (reason, answer) = match self {
            Limit::AddressRate => ("rate_limit_ip", flood()),
            Limit::NotPlayerApi => (
                "not_player_api",
                refusal(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such route on the players' address",
                ),
            ),
            Limit::HeadersTooLarge => (
                "headers_too_large",
                refusal(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "headers_too_large",
                    "request headers are too large",
                ),
            ),
            Limit::PlayerRate => ("rate_limit_player", too_many()),
            Limit::SignInRate => ("rate_limit_sign_in", flood()),
        };
        Metrics::count(&gateway.metrics.refused, reason);
        answer
    }
}

/// A 413 for a body past the gateway's limit.
fn too_large(gateway: &Gateway) -> Response {
    Metrics::count(&gateway.metrics.refused, "too_large");
    refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!(
            "request bodies are limited to {} bytes",
            gateway.config.max_body_bytes
        ),
    )
}

/// One line per request the access log keeps, naming the node that answered.
fn log_access(
    gateway: &Gateway,
    parts: &axum::http::request::Parts,
    response: &Response,
    started: Instant,
    client: SocketAddr,
) {
    let status = response.status().as_u16();
    if !gateway.access_log.keep(status) {
        return;
    }
    let node = response
        .headers()
        .get(wire::NODE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info!(
        method = %parts.method, path = %parts.uri.path(), status, node,
        ms = started.elapsed().as_secs_f64() * 1000.0, client = %client.ip(), "request"
    );
}

fn too_many() -> Response {
    let mut response = refusal(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests; slow down",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1));
    response
}

/// A refusal of one address's flood (its own rate limit, or its sign-ins'): it counts toward
/// blocking the address (`croupier_web::scanning`). A player over their own limit does not.
fn flood() -> Response {
    let mut response = too_many();
    response
        .extensions_mut()
        .insert(croupier_web::scanning::Flood);
    response
}

enum Try {
    Answer(Response),
    /// Failed in a way that allows another node: the reason for the metrics.
    Retry(&'static str),
    /// Failed and may not be retried.
    Fail(&'static str),
}

async fn try_node(
    gateway: &Gateway,
    index: usize,
    parts: &axum::http::request::Parts,
    body: &[u8],
    idempotent: bool,
    client: SocketAddr,
    limit: Duration,
) -> Try {
    let backend = &gateway.pool.backends[index];
    let failed = |kind: &str, immediate: bool| failed_try(gateway, index, kind, immediate);
    let in_flight = InFlight::start(backend);
    let _place = match crate::queue::place_on(gateway, backend).await {
        NodePlace::Held(place) => place,
        // Nothing was sent: another node may take it.
        NodePlace::NodeOut => return Try::Retry(NODE_OUT),
        NodePlace::TimedOut => {
            Metrics::count(&gateway.metrics.refused, "node_busy");
            return Try::Answer(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_busy",
                UNDER_STRAIN,
            ));
        }
    };
    let request = Outgoing {
        method: &parts.method,
        path: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        headers: Some(&parts.headers),
        client: Some(client.ip()),
        body,
    };
    // One deadline for the answer's headers and its body: a node that sends its headers and
    // then freezes must not hold the player (and the node's place) past it.
    let deadline = tokio::time::Instant::now() + limit;
    let sent = backend.upstream.send(&gateway.dial, &request, idempotent);
    let result = tokio::time::timeout_at(deadline, sent).await;
    gateway.metrics.observe_try(index, in_flight.finish());
    match result {
        Ok(Ok(answer)) => answered(gateway, index, answer, idempotent),
        // Refused: nothing listens, the node is dead. A connect timeout may be a node too busy
        // to accept (its listen queue full): a failure like any other, not proof of death.
        Ok(Err(Failed::Connect { refused, reason })) => {
            tracing::debug!(node = %backend.name, %reason, "connecting to node failed");
            match refused {
                true => failed("connect", true),
                false => failed("connect_timeout", false),
            }
            Try::Retry("connect")
        }
        Ok(Err(Failed::Exchange(failure))) => {
            tracing::debug!(node = %backend.name, reason = %failure.reason, "request to node failed");
            failed("reset", false);
            retry_if_idempotent(idempotent, "reset")
        }
        Ok(Err(Failed::Unaddressable(reason))) => {
            tracing::warn!(node = %backend.name, %reason, "the node's address is not usable");
            failed("connect", true);
            Try::Retry("connect")
        }
        Err(_) => {
            failed("timeout", false);
            retry_if_idempotent(idempotent, "timeout")
        }
    }
}

/// A try that failed after the request may have reached the node: another node may take it
/// only when it is idempotent.
fn retry_if_idempotent(idempotent: bool, kind: &'static str) -> Try {
    if idempotent {
        Try::Retry("idempotent")
    } else {
        Try::Fail(kind)
    }
}

/// The node answered: a draining node's refusal is retried elsewhere; any other answer is
/// counted and passed on, naming the node.
fn answered(gateway: &Gateway, index: usize, answer: Received, idempotent: bool) -> Try {
    let backend = &gateway.pool.backends[index];
    let Ok(status) = StatusCode::from_u16(answer.status) else {
        failed_try(gateway, index, "reset", false);
        return retry_if_idempotent(idempotent, "reset");
    };
    if status == StatusCode::SERVICE_UNAVAILABLE && answer.header(wire::DRAINING.as_str()).is_some()
    {
        return Try::Retry("draining");
    }
    // A 503 is the node, alive, saying it cannot serve now (its store is unavailable, a full
    // disk): every node would say the same, so the answer goes to the player and is not held
    // against the node. Ejecting for it kept players out for the whole ejection back-off
    // after the store came back.
    if matches!(status.as_u16(), 502 | 504) || status == StatusCode::INTERNAL_SERVER_ERROR {
        failed_try(gateway, index, "5xx", false);
    } else {
        backend.record_success();
    }
    if !status.is_server_error() {
        backend.record_served();
    }
    gateway.metrics.count_answer(index, status.as_u16());
    Try::Answer(passed_on(status, answer, backend.name_header.as_ref()))
}

/// Room for a node's usual answer headers and the gateway's own, so the map grows no more.
const ANSWER_HEADERS: usize = 16;

/// The node's answer as the player gets it: its status, headers but the hop-by-hop ones and
/// those every answer of the players' port gets anyway (`croupier_web::ALWAYS_SECURE`: set
/// again there, so not copied here), values shared with the received head, its body, and the
/// node's name.
fn passed_on(status: StatusCode, mut answer: Received, node: Option<&HeaderValue>) -> Response {
    let mut response = Response::new(Body::from(std::mem::take(&mut answer.body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.reserve(ANSWER_HEADERS);
    for (name, value) in answer.each_header() {
        let Ok(name) = HeaderName::from_bytes(name) else {
            continue;
        };
        if HOP_BY_HOP.contains(&name.as_str())
            || croupier_web::ALWAYS_SECURE
                .iter()
                .any(|(set, _)| *set == name)
        {
            continue;
        }
        if let Ok(value) = HeaderValue::from_maybe_shared(answer.head.slice_ref(value)) {
            headers.append(name, value);
        }
    }
    if let Some(name) = node {
        headers.insert(wire::NODE, name.clone());
    }
    response
}

/// A try in flight on a node: counted in the node's outstanding requests until it ends, its
/// time in the node's recent latency, also when it is dropped unanswered (a hedge answered
/// first): that time is a lower bound of the node's answer.
struct InFlight<'a> {
    backend: &'a Backend,
    started: Instant,
    /// When it ended, once it did (`finish`): the clock is read once per try.
    ended: Option<Instant>,
}

impl<'a> InFlight<'a> {
    fn start(backend: &'a Backend) -> Self {
        backend.outstanding.fetch_add(1, Ordering::SeqCst);
        InFlight {
            backend,
            started: Instant::now(),
            ended: None,
        }
    }

    /// The try got its answer (or failed) after the time returned.
    fn finish(mut self) -> Duration {
        *self.ended.insert(Instant::now()) - self.started
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.backend.outstanding.fetch_sub(1, Ordering::SeqCst);
        let ended = self.ended.unwrap_or_else(Instant::now);
        self.backend
            .recent
            .observe(ended.saturating_duration_since(self.started), ended);
    }
}

/// One retry-safe try on node `index`, hedged (as in "The Tail at Scale"): when the node has
/// not answered within its hedge delay (a few times its recent p99, see `latency`), the same
/// request also goes to another node if the retry budget has a token, and the first answer
/// wins; the slower try is dropped, and the node that lost is counted as slow (ejected after
/// several in a row: a frozen node). The first try is never given up for the hedge: when
/// every node is slow, a second try only doubles the work, so once the budget is spent the
/// player simply gets the first node's answer, where giving it up answered 503.
async fn hedged(
    gateway: &Gateway,
    index: usize,
    request: &Forwarded<'_>,
    tried: &mut Vec<usize>,
) -> Try {
    let ceiling = gateway.config.upstream_timeout;
    let hedge_after = gateway.pool.backends[index].recent.try_timeout(
        &gateway.config.try_timeout,
        ceiling,
        Instant::now(),
    );
    let first = request.to(gateway, index, ceiling);
    tokio::pin!(first);
    if let Ok(outcome) = tokio::time::timeout(hedge_after, &mut first).await {
        return outcome;
    }
    let Some(other) = gateway.pool.pick(request.player, tried) else {
        return first.await;
    };
    if !gateway.budget.try_withdraw() {
        Metrics::count(&gateway.metrics.hedges, "no_budget");
        return first.await;
    }
    tried.push(other);
    Metrics::count(&gateway.metrics.hedges, "sent");
    // Boxed: a hedge is rare, and inline its try would double every request's future.
    let mut second = Box::pin(request.to(gateway, other, ceiling));
    tokio::select! {
        outcome = &mut first => match outcome {
            Try::Answer(_) => outcome,
            Try::Retry(_) | Try::Fail(_) => second.await,
        },
        outcome = &mut second => match outcome {
            Try::Answer(_) => {
                Metrics::count(&gateway.metrics.hedges, "won");
                // Lost to a hedge: a frozen node, or one far slower than its peers.
                failed_try(gateway, index, "slow", false);
                outcome
            }
            Try::Retry(_) | Try::Fail(_) => first.await,
        },
    }
}

/// What a player is told when the gateway turns a request away unsent to spare the nodes (a
/// node's places all taken, or the retry budget spent): nothing ran, sending again is safe.
const UNDER_STRAIN: &str = "the games are under strain; retry shortly";

/// A failed try on `backend`, by kind, for the metrics and the outlier detection
/// (`immediate`: eject at once, as for a refused connection; else after several in a row).
pub(crate) fn failed_try(gateway: &Gateway, index: usize, kind: &str, immediate: bool) {
    let backend = &gateway.pool.backends[index];
    let metrics = &gateway.metrics;
    metrics
        .upstream_errors
        .get_or_create(&NodeKind {
            node: backend.name.clone(),
            kind: kind.to_owned(),
        })
        .inc();
    if gateway
        .pool
        .record_failure(index, immediate, &gateway.config.outlier)
    {
        metrics
            .ejections
            .get_or_create(&NodeLabel {
                node: backend.name.clone(),
            })
            .inc();
    }
}

/// What one request sends to a node, whichever node that is.
struct Forwarded<'a> {
    parts: &'a axum::http::request::Parts,
    body: &'a Bytes,
    player: Option<PlayerKey>,
    client: SocketAddr,
    idempotent: bool,
}

impl Forwarded<'_> {
    async fn to(&self, gateway: &Gateway, index: usize, limit: Duration) -> Try {
        try_node(
            gateway,
            index,
            self.parts,
            self.body,
            self.idempotent,
            self.client,
            limit,
        )
        .await
    }
}

async fn forward(
    gateway: &Gateway,
    parts: &axum::http::request::Parts,
    body: Bytes,
    player: Option<PlayerKey>,
    client: SocketAddr,
) -> Response {
    let request = Forwarded {
        parts,
        body: &body,
        player,
        client,
        idempotent: is_idempotent(&parts.method, &parts.headers),
    };
    let mut tried = Vec::new();
    loop {
        let Some(index) = crate::queue::pick_or_wait(gateway, player, &tried).await else {
            return no_node(gateway);
        };
        tried.push(index);
        let outcome = if request.idempotent && tried.len() < gateway.config.max_tries.max(1) {
            hedged(gateway, index, &request, &mut tried).await
        } else {
            request
                .to(gateway, index, gateway.config.upstream_timeout)
                .await
        };
        let reason = match outcome {
            Try::Answer(response) => return response,
            Try::Fail(kind) => {
                return refusal(
                    StatusCode::BAD_GATEWAY,
                    "upstream_failed",
                    &format!(
                        "the game node failed ({kind}) and the request is not safe to repeat; check your balance and history before trying again"
                    ),
                );
            }
            Try::Retry(reason) => reason,
        };
        if tried.len() >= gateway.config.max_tries.max(1) {
            return if reason == "draining" || !gateway.pool.any_eligible() {
                no_node(gateway)
            } else {
                refusal(
                    StatusCode::BAD_GATEWAY,
                    "upstream_failed",
                    "no game node could answer; retry shortly",
                )
            };
        }
        // A request that never reached its node adds no load by moving: the budget, which
        // keeps retries from multiplying an overload, is not spent on it.
        if reason != NODE_OUT && !gateway.budget.try_withdraw() {
            Metrics::count(&gateway.metrics.refused, "retry_budget");
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "retry_budget_exhausted",
                UNDER_STRAIN,
            );
        }
        Metrics::count(&gateway.metrics.retries, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;

    /// Before: every request went to its node at once, each on a connection of its own, so
    /// past a node's capacity the gateway opened connections faster than the node accepted
    /// them, and the connect timeouts were retried until the retry budget ran out. Now a
    /// node holds at most `node_max_requests`; the others wait in the gateway, and past
    /// `queue_timeout` get a 503 without ever reaching the node.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_holds_at_most_its_share_of_requests_and_the_rest_wait() {
        use std::sync::atomic::AtomicUsize;
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let holding = |ms: u64| {
            let (now, most) = (now.clone(), most.clone());
            axum::routing::get(move || async move {
                most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                "{}"
            })
        };
        let app = Router::new()
            .route("/api/v1/wallet", holding(50))
            .route("/api/v1/lobby", holding(500));
        let node = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", node.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(node, app).await });
        let statuses = |path: &'static str, queue_timeout: Duration| {
            let nodes = vec![("n0".to_owned(), base.clone())];
            let mut config = crate::GatewayConfig::new(nodes, "t".repeat(32));
            config.node_max_requests = 2;
            config.queue_timeout = queue_timeout;
            let gateway = Gateway::new(config).unwrap();
            let client: SocketAddr = "127.0.0.1:5".parse().unwrap();
            let request = move |n: usize| {
                let request = Request::builder()
                    .uri(path)
                    .header("authorization", format!("Bearer player-{n}"))
                    .body(Bytes::new())
                    .unwrap();
                handle(gateway.clone(), client, request)
            };
            async move {
                let answers = futures_util::future::join_all((0..8).map(request)).await;
                let mut statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
                statuses.sort_unstable();
                statuses
            }
        };
        // Eight requests of 50 ms, two at a time, with seconds to wait: all answered.
        let waited = statuses("/api/v1/wallet", Duration::from_secs(3)).await;
        assert_eq!(waited, [200; 8]);
        assert_eq!(most.load(Ordering::SeqCst), 2);
        // Eight of 500 ms with 50 ms to wait: two answered, six turned away unsent.
        let turned_away = statuses("/api/v1/lobby", Duration::from_millis(50)).await;
        assert_eq!(turned_away, [200, 200, 503, 503, 503, 503, 503, 503]);
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    /// A request waiting for a place on a node that goes out of rotation (frozen, then
    /// found out by the checks) moves to another node at once, and spends no retry budget:
    /// it was never sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_waiting_on_a_node_gone_out_moves_to_another() {
        let node = |hold: Duration| async move {
            let held = axum::routing::get(move || async move {
                tokio::time::sleep(hold).await;
                "{}"
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let app = Router::new().route("/api/v1/wallet", held);
            tokio::spawn(async move { axum::serve(listener, app).await });
            base
        };
        let (slow, quick) = (
            node(Duration::from_secs(2)).await,
            node(Duration::ZERO).await,
        );
        let nodes = vec![("a".to_owned(), slow), ("b".to_owned(), quick)];
        let mut config = crate::GatewayConfig::new(nodes, "t".repeat(32));
        config.node_max_requests = 1;
        // No retry budget: a move that sent nothing must not need one.
        (config.retry_ratio, config.retry_floor_per_second) = (0.0, 0.0);
        let gateway = Gateway::new(config).unwrap();
        let (a, b) = (&gateway.pool.backends[0], &gateway.pool.backends[1]);
        b.set_healthy(false);
        let wallet = |n: usize| {
            let request = Request::builder()
                .uri("/api/v1/wallet")
                .header("authorization", format!("Bearer player-{n}"))
                .body(Bytes::new())
                .unwrap();
            let client: SocketAddr = "127.0.0.1:5".parse().unwrap();
            tokio::spawn(handle(gateway.clone(), client, request))
        };
        let holding = wallet(1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = wallet(2);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let moved_at = Instant::now();
        a.set_healthy(false);
        b.set_healthy(true);
        let moved = waiting.await.unwrap();
        assert_eq!(moved.status(), StatusCode::OK);
        assert_eq!(moved.headers()[wire::NODE], "b");
        assert!(moved_at.elapsed() < Duration::from_millis(500));
        // The held one is answered by a, in its time (no budget for a hedge).
        assert_eq!(holding.await.unwrap().headers()[wire::NODE], "a");
    }

    /// A node that sends an answer's headers and then freezes (cut off, stopped) mid-body:
    /// the try ends at the upstream deadline, the player is told, and the node's place is
    /// given back. Before, only the headers were bounded: the player and the place waited
    /// for as long as the socket stayed open.
    #[tokio::test]
    async fn a_node_frozen_mid_answer_costs_the_deadline_not_forever() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.read(&mut [0u8; 4096]).await;
                let half = b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n{\"balance\":";
                let _ = socket.write_all(half).await;
                held.push(socket);
            }
        });
        let mut config = crate::GatewayConfig::new(vec![("n0".to_owned(), base)], "t".repeat(32));
        config.upstream_timeout = Duration::from_millis(300);
        config.node_max_requests = 1;
        let gateway = Gateway::new(config).unwrap();
        let client: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let bet = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/rounds")
            .header("authorization", "Bearer player-1")
            .body(Bytes::from("{}"))
            .unwrap();
        let started = Instant::now();
        let handled = handle(gateway.clone(), client, bet);
        let answer = tokio::time::timeout(Duration::from_secs(5), handled).await;
        let answer = answer.expect("the player waited on the frozen node past 5 s");
        assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(gateway.pool.backends[0].slots.available_permits(), 1);
    }

    /// A stray `Upgrade: websocket` on a bet is a plain request (forwarded, answered by the
    /// node); a GET that is no full handshake is refused in JSON. Before, both went to the
    /// WebSocket proxy and got axum's text/plain 405 and 400; the bet never reached a node.
    #[tokio::test]
    async fn a_request_that_is_no_websocket_handshake_is_not_treated_as_one() {
        let app = Router::new().route("/api/v1/rounds", axum::routing::post(|| async { "{}" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = crate::GatewayConfig::new(vec![("n0".to_owned(), base)], "t".repeat(32));
        let gateway = Gateway::new(config).unwrap();
        let client: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let asking = |method: Method, path: &str| {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", "Bearer player-1")
                .header("upgrade", "websocket")
                .body(Bytes::new())
                .unwrap();
            handle(gateway.clone(), client, request)
        };
        let bet = asking(Method::POST, "/api/v1/rounds").await;
        assert_eq!(bet.status(), StatusCode::OK);
        let socket = asking(Method::GET, "/api/v1/ws").await;
        assert_eq!(socket.status(), StatusCode::BAD_REQUEST);
        let body = socket.into_body().collect().await.unwrap().to_bytes();
        let refusal: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!(refusal["error"], "not_a_websocket");
    }

    /// A refused connection is a dead node; a connect that times out (here a listener whose
    /// queue is full and that never accepts, as a node starved of CPU) is not. Before, both
    /// ejected the node at once, and under an overload every node was ejected in turn.
    #[tokio::test]
    async fn a_connect_timeout_is_no_refusal() {
        let nodes = vec![("n0".to_owned(), "http://127.0.0.1:9".to_owned())];
        let mut config = crate::GatewayConfig::new(nodes, "t".repeat(32));
        config.connect_timeout = Duration::from_millis(200);
        let gateway = Gateway::new(config).unwrap();
        let get = async |address: SocketAddr| {
            let node = crate::upstream::Upstream::new(&format!("http://{address}"));
            let request = Outgoing::get("/readyz");
            match node.send(&gateway.dial, &request, true).await {
                Err(Failed::Connect { refused, .. }) => refused,
                other => panic!("{other:?}"),
            }
        };
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(get(closed).await, "a closed port is a refusal");

        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let never_accepts = socket.listen(1).unwrap();
        let address = never_accepts.local_addr().unwrap();
        let mut queued = Vec::new();
        let connect = || tokio::net::TcpStream::connect(address);
        while let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(200), connect()).await
        {
            queued.push(stream);
            assert!(queued.len() < 64, "the listen queue never filled");
        }
        assert!(!get(address).await, "a full listen queue is no refusal");
    }

    /// Every layer in front of the handler boxes its future, copying it whole: a plain
    /// request's future must not carry the WebSocket proxy's or a hedge's (12 KB before).
    #[tokio::test]
    async fn a_plain_request_future_stays_small() {
        let nodes = vec![("n0".to_owned(), "http://127.0.0.1:9".to_owned())];
        let gateway = Gateway::new(crate::GatewayConfig::new(nodes, "t".repeat(32))).unwrap();
        let client: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let request = || {
            Request::builder()
                .uri("/api/v1/wallet")
                .body(Bytes::new())
                .unwrap()
        };
        let handled = handle(gateway.clone(), client, request());
        assert!(
            std::mem::size_of_val(&handled) <= 4096,
            "{} bytes",
            std::mem::size_of_val(&handled)
        );
        let (parts, _) = request().into_parts();
        let forwarded = forward(&gateway, &parts, Bytes::new(), None, client);
        let one_try = try_node(&gateway, 0, &parts, &[], true, client, Duration::ZERO);
        assert!(std::mem::size_of_val(&forwarded) < 2 * std::mem::size_of_val(&one_try));
    }
}
