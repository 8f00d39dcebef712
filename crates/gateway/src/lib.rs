//! `croupier gateway`: the players' single address in front of the game nodes. Active health
//! checks plus passive outlier ejection take a dead node out of rotation within a few hundred
//! milliseconds; requests go to the node with the fewest outstanding requests, and a player
//! sticks to one node while it stays eligible; a request that could not connect, or met a
//! draining node, is retried on another node, other failures only when the request is
//! idempotent, all within a retry budget. Per-node operator states (active, draining,
//! maintenance) are set through an authenticated admin API; WebSockets are proxied and closed
//! with 1012 on drain so clients reconnect elsewhere. When no node is eligible for a moment,
//! requests wait a bounded time for one (`queue`) before a 503. See ARCHITECTURE.md for why hyper.

pub mod access_log;
pub mod admin;
pub mod budget;
pub mod health;
pub mod latency;
pub mod limits;
pub mod metrics;
pub mod paths;
pub mod players_port;
pub mod pool;
pub mod proxy;
pub mod queue;
pub mod restart;
pub mod upstream;
pub mod ws_proxy;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use croupier_web::client::TrustedProxies;
use croupier_web::http1::conn::{Dial, tls_connector};
use croupier_web::lanes::Lanes;
use croupier_web::lockout::{Lockout, LockoutConfig};
use croupier_web::serve::Hygiene;
use croupier_web::tls::{Acceptor, ClientFiles, TlsError};
use tokio::net::TcpListener;
use tokio::sync::watch;

use budget::RetryBudget;
use health::HealthConfig;
use limits::RateLimits;
use metrics::Metrics;
use pool::{Backend, Balance, OutlierConfig, Pool};

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// (name, base URL) of each game node.
    pub nodes: Vec<(String, String)>,
    pub health: HealthConfig,
    pub outlier: OutlierConfig,
    /// Most tries of one request, the first included.
    pub max_tries: usize,
    /// Retries allowed as a share of requests, and per second whatever the traffic.
    pub retry_ratio: f64,
    pub retry_floor_per_second: f64,
    pub connect_timeout: Duration,
    /// Longest wait for a node's response headers, per try.
    pub upstream_timeout: Duration,
    /// Hedge delay of retry-safe requests, from the node's recent latency.
    pub try_timeout: latency::TryTimeout,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    /// Requests per second allowed per client address and per player; `None` = no limit.
    pub rate_per_ip: Option<u32>,
    pub rate_per_player: Option<u32>,
    /// Sign-ins (sign-ups in demo mode) per client address and minute; `None` = no limit.
    pub sign_ins_per_minute: Option<u32>,
    /// Longest wait for an eligible node when none is (0: answer 503 at once).
    pub queue_timeout: Duration,
    /// Most requests waiting for a node; more get 503 at once.
    pub queue_max: usize,
    /// Most requests one node holds at once (HAProxy's server `maxconn`): more wait in the
    /// gateway, up to `queue_timeout`, for one to end, instead of opening connections the
    /// node is too busy to accept.
    pub node_max_requests: usize,
    /// How new work is spread over the eligible nodes.
    pub balance: Balance,
    /// Threads serving the players' connections, each on a runtime of its own
    /// (`croupier_web::lanes`).
    pub lanes: usize,
    /// Most connections open at once from one client address on the players' port (a
    /// trusted proxy's are not counted).
    pub conns_per_ip: Option<usize>,
    /// Reverse proxies in front of the players' port (a CDN, an ingress) whose
    /// `X-Forwarded-For` names the player's address (`croupier_web::client`); none by
    /// default.
    pub trusted_proxies: TrustedProxies,
    /// Most WebSockets open at once per player and per client address.
    pub ws_per_player: Option<usize>,
    pub ws_per_ip: Option<usize>,
    /// When wrong admin tokens get an address blocked.
    pub lockout: LockoutConfig,
    /// When refused requests on the players' port (scanning, floods) get an address blocked.
    pub scanning: LockoutConfig,
    pub admin_token: String,
    /// What the gateway trusts and presents when it calls `https://` nodes.
    pub node_tls: ClientFiles,
}

impl GatewayConfig {
    pub fn new(nodes: Vec<(String, String)>, admin_token: String) -> Self {
        GatewayConfig {
            nodes,
            health: HealthConfig::default(),
            outlier: OutlierConfig::default(),
            max_tries: 3,
            retry_ratio: 0.2,
            retry_floor_per_second: 10.0,
            connect_timeout: Duration::from_millis(250),
            upstream_timeout: Duration::from_secs(10),
            try_timeout: latency::TryTimeout::default(),
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            rate_per_ip: Some(2_000),
            rate_per_player: Some(200),
            sign_ins_per_minute: Some(120),
            queue_timeout: Duration::from_secs(3),
            queue_max: 1_000,
            node_max_requests: 128,
            balance: Balance::default(),
            lanes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            conns_per_ip: Some(512),
            trusted_proxies: TrustedProxies::default(),
            ws_per_player: Some(16),
            ws_per_ip: Some(256),
            lockout: LockoutConfig::default(),
            scanning: scanning_defaults(),
            admin_token,
            node_tls: ClientFiles::default(),
        }
    }
}

/// A player's client sees a few refusals a minute at most; a scanner or a flood, hundreds.
pub fn scanning_defaults() -> LockoutConfig {
    LockoutConfig {
        max_failures: 100,
        window: Duration::from_secs(60),
        ..LockoutConfig::default()
    }
}

pub struct Gateway {
    pub config: GatewayConfig,
    pub pool: Pool,
    /// How connections to the nodes are made (each node keeps its idle ones: `upstream`).
    pub dial: Dial,
    pub metrics: Metrics,
    pub budget: RetryBudget,
    pub limits: RateLimits,
    /// Set when the gateway stops: proxied WebSockets close with 1012.
    pub stopping: watch::Sender<bool>,
    pub access_log: access_log::AccessLog,
    /// Requests waiting for an eligible node.
    pub queue: queue::Queue,
    /// WebSockets open now, per client address and per player.
    pub ws_caps: ws_proxy::WsCaps,
    /// TLS of WebSockets to `https://` nodes (the HTTP client has its own copy).
    pub node_tls: Arc<rustls::ClientConfig>,
    /// Wrong admin tokens per address, and the addresses blocked for them.
    pub lockout: Arc<Lockout>,
    /// Refused requests per address on the players' port, and the addresses blocked for them.
    pub scanning: Arc<Lockout>,
    /// The connections of each lane serving the players' port.
    pub lanes: croupier_web::lanes::Counts,
}

impl Gateway {
    /// A gateway for `config`; fails when its TLS files for the nodes cannot be read.
    pub fn new(config: GatewayConfig) -> Result<Arc<Gateway>, TlsError> {
        let tls = croupier_web::tls::client_config(&config.node_tls)?;
        let dial = Dial {
            local: None,
            timeout: config.connect_timeout,
            tls: tls_connector(&tls),
        };
        let node_tls = Arc::new(tls);
        let pool = Pool::new(
            config
                .nodes
                .iter()
                .map(|(name, base)| {
                    Backend::new(name, base, config.node_max_requests, config.lanes)
                })
                .collect(),
            config.balance,
        );
        let mut metrics = Metrics::new(
            &config
                .nodes
                .iter()
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>(),
        );
        let lockout = Arc::new(Lockout::new("gateway_admin", config.lockout.clone()));
        lockout.register(metrics.security_mut());
        let scanning = Arc::new(
            Lockout::new("players", config.scanning.clone()).reason(croupier_web::scanning::REASON),
        );
        scanning.register_as(metrics.security_mut(), "security_scan");
        let lanes = croupier_web::lanes::counts_in(metrics.registry_mut(), config.lanes);
        Ok(Arc::new(Gateway {
            pool,
            node_tls,
            dial,
            metrics,
            lockout,
            scanning,
            budget: RetryBudget::new(config.retry_ratio, config.retry_floor_per_second),
            limits: RateLimits::new(config.rate_per_ip, config.rate_per_player)
                .with_sign_ins(config.sign_ins_per_minute),
            stopping: watch::Sender::new(false),
            access_log: access_log::AccessLog::default(),
            queue: queue::Queue::default(),
            ws_caps: ws_proxy::WsCaps::new(config.ws_per_ip, config.ws_per_player),
            lanes,
            config,
        }))
    }
}

/// Serves players on `player` and operators on `admin` until `shutdown` resolves; then stops
/// accepting, closes proxied WebSockets with 1012 and lets requests in flight finish.
pub async fn serve(
    player: TcpListener,
    admin: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tls: Option<Acceptor>,
) -> std::io::Result<()> {
    health::spawn_checks(gateway.clone());
    limits::spawn_sweeper(gateway.clone());
    let summaries = gateway.clone();
    croupier_vitals::background::spawn_every(
        "access-log summary",
        access_log::SUMMARY_EVERY,
        move || {
            summaries.access_log.summarise();
            std::future::ready(())
        },
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = gateway.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("gateway stopping: no new connections, finishing requests in flight");
        stopping.stopping.send_replace(true);
        stop_tx.send_replace(true);
    });
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut players = Hygiene::players();
    players.conns_per_ip = gateway.config.conns_per_ip;
    let lanes = Lanes::start(&gateway.lanes, "players-lane")?;
    let players = croupier_web::serve::serve_connections(
        player,
        players_port::PlayersPort {
            gateway: gateway.clone(),
            hygiene: players,
            tls: tls.is_some(),
        },
        wait(stop_rx.clone()),
        players,
        tls.clone(),
        gateway.config.trusted_proxies.clone(),
        Some(&lanes),
    );
    let operators = croupier_web::serve::serve(
        admin,
        admin::router(gateway),
        wait(stop_rx),
        Hygiene::operators(),
        tls,
    );
    tokio::join!(players, operators);
    // Every lane's connections have finished (or passed the stop's deadline): end the lanes.
    drop(lanes);
    Ok(())
}
