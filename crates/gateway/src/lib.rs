//! `croupier gateway`: the players' single address in front of the game nodes. Active health
//! checks plus passive outlier ejection take a dead node out of rotation within a few hundred
//! milliseconds; requests go to the node with the fewest outstanding requests, and a player
//! sticks to one node while it stays eligible; a request that could not connect, or met a
//! draining node, is retried on another node, other failures only when the request is
//! idempotent, all within a retry budget. Per-node operator states (active, draining,
//! maintenance) are set through an authenticated admin API; WebSockets are proxied and closed
//! with 1012 on drain so clients reconnect elsewhere. See ARCHITECTURE.md for why hyper.

pub mod access_log;
pub mod admin;
pub mod budget;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod restart;
pub mod server;
pub mod ws_proxy;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::watch;

use budget::RetryBudget;
use health::HealthConfig;
use limits::RateLimits;
use metrics::Metrics;
use pool::{Backend, OutlierConfig, Pool};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

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
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    /// Requests per second allowed per client address and per player; `None` = no limit.
    pub rate_per_ip: Option<u32>,
    pub rate_per_player: Option<u32>,
    pub admin_token: String,
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
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            rate_per_ip: Some(2_000),
            rate_per_player: Some(200),
            admin_token,
        }
    }
}

pub struct Gateway {
    pub config: GatewayConfig,
    pub pool: Pool,
    pub client: HttpClient,
    pub metrics: Metrics,
    pub budget: RetryBudget,
    pub limits: RateLimits,
    /// Set when the gateway stops: proxied WebSockets close with 1012.
    pub stopping: watch::Sender<bool>,
    pub access_log: access_log::AccessLog,
}

impl Gateway {
    pub fn new(config: GatewayConfig) -> Arc<Gateway> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(512)
            .build(connector);
        let pool = Pool::new(
            config
                .nodes
                .iter()
                .map(|(name, base)| Backend::new(name, base))
                .collect(),
        );
        Arc::new(Gateway {
            pool,
            client,
            metrics: Metrics::new(
                &config
                    .nodes
                    .iter()
                    .map(|(name, _)| name.clone())
                    .collect::<Vec<_>>(),
            ),
            budget: RetryBudget::new(config.retry_ratio, config.retry_floor_per_second),
            limits: RateLimits::new(config.rate_per_ip, config.rate_per_player),
            stopping: watch::Sender::new(false),
            access_log: access_log::AccessLog::default(),
            config,
        })
    }
}

/// Serves players on `player` and operators on `admin` until `shutdown` resolves; then stops
/// accepting, closes proxied WebSockets with 1012 and lets requests in flight finish.
pub async fn serve(
    player: TcpListener,
    admin: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    health::spawn_checks(gateway.clone());
    limits::spawn_sweeper(gateway.clone());
    let summaries = gateway.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(access_log::SUMMARY_EVERY);
        loop {
            every.tick().await;
            summaries.access_log.summarise();
        }
    });
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
    let players = server::serve(player, proxy::router(gateway.clone()), stop_rx.clone());
    let operators =
        axum::serve(admin, admin::router(gateway)).with_graceful_shutdown(wait(stop_rx));
    let ((), operators) = tokio::join!(players, operators.into_future());
    operators
}
