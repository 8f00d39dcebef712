//! Operator-credential guessing, throttled and blocked (fail2ban-style, built in). Every
//! surface that checks the ops token (node `/ops`, gateway admin, control plane API and
//! dashboard sign-in, `up`'s supervisor API) wears `layer`: it counts the refused credentials
//! (401 answers to requests that presented one) per source address, and past
//! `max_failures` within `window` blocks the address for `first_block`, twice as long for each
//! further block (up to `max_block`). A blocked address gets 429 with `Retry-After`, the right
//! token included, until the block expires or an operator lifts it. Addresses in the operators'
//! networks (`allow`) are never blocked. Each block is logged (warn, with the address),
//! counted (`security_blocks_total`, `security_blocked`) and handed to `on_block`, where the
//! control plane writes its audit entry.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// How many refusals block an address, and for how long.
#[derive(Debug, Clone)]
pub struct LockoutConfig {
    pub max_failures: u32,
    /// Failures older than this are forgotten.
    pub window: Duration,
    pub first_block: Duration,
    pub max_block: Duration,
    /// The operators' networks: never blocked.
    pub allow: Vec<IpNet>,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            max_failures: 10,
            window: Duration::from_secs(600),
            first_block: Duration::from_secs(60),
            max_block: Duration::from_secs(3_600),
            allow: Vec::new(),
        }
    }
}

/// Parses an allow-list: addresses or networks (`10.0.0.0/8`, `::1`), comma-separated.
pub fn parse_allow(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("'{s}' is neither an address nor a network (10.0.0.0/8)"))
        })
        .collect()
}

#[derive(Default)]
struct Entry {
    failures: Vec<Instant>,
    blocked_until: Option<Instant>,
    /// Blocks so far: each lasts twice the one before.
    blocks: u32,
    last_seen: Option<Instant>,
}

/// A block as operators see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Block {
    pub address: IpAddr,
    /// Unix milliseconds when it ends.
    pub until_ms: i64,
    pub seconds_left: u64,
    /// Blocks of this address so far (the length doubles with each).
    pub blocks: u32,
    pub surface: &'static str,
}

type OnBlock = Box<dyn Fn(&Block) + Send + Sync>;

/// The failure counts and blocks of one surface.
pub struct Lockout {
    surface: &'static str,
    config: LockoutConfig,
    entries: Mutex<HashMap<IpAddr, Entry>>,
    blocks_total: Counter,
    blocked: Gauge,
    on_block: Option<OnBlock>,
    /// Paths whose POST is a sign-in form (a credential without a bearer token).
    sign_in: &'static [&'static str],
    /// What the blocked address did, as its answer and the log say it.
    reason: &'static str,
}

fn unix_ms_in(left: Duration) -> i64 {
    let at = SystemTime::now() + left;
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Lockout {
    pub fn new(surface: &'static str, config: LockoutConfig) -> Self {
        Lockout {
            surface,
            config,
            entries: Mutex::new(HashMap::new()),
            blocks_total: Counter::default(),
            blocked: Gauge::default(),
            on_block: None,
            sign_in: &[],
            reason: "too many wrong operator credentials",
        }
    }

    /// What a blocked address did, for its answer and the log (by default: too many wrong
    /// operator credentials).
    pub fn reason(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    /// Paths whose POST is a sign-in form: a 401 there is a failure too.
    pub fn sign_in_paths(mut self, paths: &'static [&'static str]) -> Self {
        self.sign_in = paths;
        self
    }

    /// Called with each new block (the control plane writes it to its audit log).
    pub fn on_block(mut self, notify: impl Fn(&Block) + Send + Sync + 'static) -> Self {
        self.on_block = Some(Box::new(notify));
        self
    }

    /// Adds `security_blocks_total` and `security_blocked` to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        self.register_as(registry, "security");
    }

    /// Adds `<prefix>_blocks_total` and `<prefix>_blocked` to `registry` (a second lockout of
    /// one process counts apart).
    pub fn register_as(&self, registry: &mut Registry, prefix: &str) {
        registry.register(
            format!("{prefix}_blocks"),
            format!("Source addresses blocked: {}", self.reason),
            self.blocks_total.clone(),
        );
        registry.register(
            format!("{prefix}_blocked"),
            "Source addresses blocked now",
            self.blocked.clone(),
        );
    }

    fn allowed(&self, address: IpAddr) -> bool {
        self.config.allow.iter().any(|net| net.contains(&address))
    }

    /// Whether any address may be blocked now (a lock-free look before `blocked_for`, for
    /// surfaces that see every request).
    pub fn may_block(&self) -> bool {
        self.blocked.get() > 0
    }

    /// Time left on `address`'s block, if it is blocked.
    pub fn blocked_for(&self, address: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let until = self.entries.lock().get(&address)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a refused credential; returns the block it started, if any.
    pub fn failure(&self, address: IpAddr) -> Option<Block> {
        if self.allowed(address) {
            return None;
        }
        let now = Instant::now();
        let block = {
            let mut entries = self.entries.lock();
            let entry = entries.entry(address).or_default();
            entry.last_seen = Some(now);
            entry
                .failures
                .retain(|t| now.duration_since(*t) < self.config.window);
            entry.failures.push(now);
            if entry.failures.len() < self.config.max_failures as usize {
                return None;
            }
            entry.failures.clear();
            let doubling = 2u32.saturating_pow(entry.blocks.min(16));
            let length = (self.config.first_block * doubling).min(self.config.max_block);
            entry.blocks += 1;
            entry.blocked_until = Some(now + length);
            Block {
                address,
                until_ms: unix_ms_in(length),
                seconds_left: length.as_secs(),
                blocks: entry.blocks,
                surface: self.surface,
            }
        };
        self.blocks_total.inc();
        self.refresh_gauge();
        tracing::warn!(
            client = %address, surface = self.surface, seconds = block.seconds_left,
            blocks = block.blocks, reason = self.reason, "address blocked"
        );
        if let Some(notify) = &self.on_block {
            notify(&block);
        }
        Some(block)
    }

    /// A credential was accepted: the address's failures are forgotten (not its past blocks).
    pub fn success(&self, address: IpAddr) {
        if let Some(entry) = self.entries.lock().get_mut(&address) {
            entry.failures.clear();
        }
    }

    /// The blocks in force now.
    pub fn blocks(&self) -> Vec<Block> {
        let now = Instant::now();
        let mut blocks: Vec<Block> = self
            .entries
            .lock()
            .iter()
            .filter_map(|(address, entry)| {
                let until = entry.blocked_until.filter(|u| *u > now)?;
                Some(Block {
                    address: *address,
                    until_ms: unix_ms_in(until - now),
                    seconds_left: (until - now).as_secs(),
                    blocks: entry.blocks,
                    surface: self.surface,
                })
            })
            .collect();
        blocks.sort_by_key(|b| b.address);
        blocks
    }

    /// Lifts `address`'s block and forgets its history; whether it was blocked.
    pub fn lift(&self, address: IpAddr) -> bool {
        let was = self
            .entries
            .lock()
            .remove(&address)
            .is_some_and(|e| e.blocked_until.is_some_and(|u| u > Instant::now()));
        self.refresh_gauge();
        was
    }

    /// Forgets expired blocks' gauges and addresses idle for longer than a day.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.entries.lock().retain(|_, e| {
            e.blocked_until.is_some_and(|u| u > now)
                || e.last_seen
                    .is_some_and(|t| now.duration_since(t) < Duration::from_secs(86_400))
        });
        self.refresh_gauge();
    }

    fn refresh_gauge(&self) {
        let now = Instant::now();
        let blocked = self
            .entries
            .lock()
            .values()
            .filter(|e| e.blocked_until.is_some_and(|u| u > now))
            .count();
        self.blocked.set(i64::try_from(blocked).unwrap_or(i64::MAX));
    }
}

/// The JSON body of a refusal to a blocked address.
#[derive(Serialize)]
struct BlockedBody {
    error: &'static str,
    message: String,
    retry_after_s: u64,
}

/// The answer to a blocked address.
pub(crate) fn blocked(reason: &str, left: Duration) -> Response {
    let seconds = left.as_secs().max(1);
    let body = BlockedBody {
        error: "blocked",
        message: format!("{reason} from this address; try again in {seconds} s"),
        retry_after_s: seconds,
    };
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Whether the request presented a credential: a bearer token, or a sign-in form (a POST to
/// one of `sign_in`).
fn presents_credential(request: &Request, sign_in: &[&str]) -> bool {
    request.headers().contains_key(header::AUTHORIZATION)
        || (request.method() == Method::POST && sign_in.contains(&request.uri().path()))
}

/// The middleware: blocked addresses are refused before anything else; a 401 to a request
/// that presented a credential counts as a failure, any other answer to one as a success.
/// Needs `ConnectInfo<SocketAddr>` (`crate::serve` puts it on every request).
/// For `axum::middleware::from_fn_with_state(lockout, guard)`.
pub async fn guard(State(lockout): State<Arc<Lockout>>, request: Request, next: Next) -> Response {
    let Some(address) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return next.run(request).await;
    };
    if let Some(left) = lockout.blocked_for(address) {
        return blocked(lockout.reason, left);
    }
    let credential = presents_credential(&request, lockout.sign_in);
    let response = next.run(request).await;
    if credential {
        if response.status() == StatusCode::UNAUTHORIZED {
            if let Some(block) = lockout.failure(address) {
                return blocked(lockout.reason, Duration::from_secs(block.seconds_left));
            }
        } else {
            lockout.success(address);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> LockoutConfig {
        LockoutConfig {
            max_failures: 3,
            allow: parse_allow("10.0.0.0/8, ::1").unwrap(),
            ..LockoutConfig::default()
        }
    }

    #[test]
    fn failures_past_the_threshold_block_for_a_growing_time() {
        let lockout = Lockout::new("test", quick());
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(lockout.failure(a).is_none());
        assert!(lockout.failure(a).is_none());
        let first = lockout.failure(a).expect("the third failure blocks");
        assert_eq!(first.seconds_left, 60);
        assert!(lockout.blocked_for(a).is_some());
        assert_eq!(lockout.blocks().len(), 1);
        assert_eq!(lockout.blocked.get(), 1);
        assert!(lockout.lift(a));
        assert!(lockout.blocked_for(a).is_none());
        assert_eq!(lockout.blocked.get(), 0);
        for _ in 0..2 {
            lockout.failure(a);
        }
        // Lifting forgets the history: the next block is a first one again.
        assert_eq!(lockout.failure(a).unwrap().seconds_left, 60);
        // Without a lift, each further block doubles.
        for _ in 0..2 {
            lockout.failure(a);
        }
        assert_eq!(lockout.failure(a).unwrap().seconds_left, 120);
        assert_eq!(lockout.blocks_total.get(), 3);
    }

    #[test]
    fn a_success_clears_failures_and_the_allow_list_is_never_blocked() {
        let lockout = Lockout::new("test", quick());
        let a: IpAddr = "192.0.2.8".parse().unwrap();
        lockout.failure(a);
        lockout.failure(a);
        lockout.success(a);
        assert!(lockout.failure(a).is_none(), "failures were forgotten");
        for allowed in ["10.1.2.3", "::1"] {
            let ip: IpAddr = allowed.parse().unwrap();
            assert!((0..100).all(|_| lockout.failure(ip).is_none()));
            assert!(lockout.blocked_for(ip).is_none());
        }
        assert!(parse_allow("10.0.0.0/33").is_err());
        assert!(parse_allow("").unwrap().is_empty());
    }
}
