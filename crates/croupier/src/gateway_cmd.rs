//! `croupier gateway`: the players' address in front of the game nodes, until Ctrl-C or
//! SIGTERM; SIGUSR2 hands the listening sockets to a fresh process (graceful restart).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use croupier_gateway::pool::Balance;
use croupier_gateway::{Gateway, GatewayConfig, restart};
use croupier_loadtest::layout::OPS_TOKEN_FILE;
use tokio::signal::unix::{SignalKind, signal};

use crate::node_cmd::ops_token_file;

#[derive(Args)]
pub struct GatewayArgs {
    /// Address players connect to.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Address of the admin API, /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:8001")]
    admin_listen: SocketAddr,
    /// A game node, as name=http://host:port; repeat for each node.
    #[arg(long = "node", value_parser = parse_node, required = true)]
    nodes: Vec<(String, String)>,
    /// Data folder holding the ops token (unless --ops-token is given).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Token for the admin API (default: read from, or created in, <data>/ops-token).
    #[arg(long, env = "CROUPIER_OPS_TOKEN", hide_env_values = true)]
    ops_token: Option<String>,
    /// Milliseconds between health checks of each node.
    #[arg(long, default_value_t = 200)]
    check_interval_ms: u64,
    /// Milliseconds a health check may take.
    #[arg(long, default_value_t = 150)]
    check_timeout_ms: u64,
    /// Passing checks in a row that bring a node up.
    #[arg(long, default_value_t = 2)]
    rise: u32,
    /// Failing checks in a row that take a node down.
    #[arg(long, default_value_t = 2)]
    fall: u32,
    /// Most tries of one request, on different nodes.
    #[arg(long, default_value_t = 3)]
    max_tries: usize,
    /// Retries and hedges allowed as a share of requests (0.2 = 20%).
    #[arg(long, default_value_t = 0.2)]
    retry_ratio: f64,
    /// Retries and hedges allowed per second whatever the traffic (ten seconds' worth can be
    /// saved up).
    #[arg(long, default_value_t = 10.0)]
    retry_floor_per_second: f64,
    /// Requests per second per client address (0 = no limit).
    #[arg(long, default_value_t = 2_000)]
    rate_per_ip: u32,
    /// Requests per second per player (0 = no limit).
    #[arg(long, default_value_t = 200)]
    rate_per_player: u32,
    /// Sign-ins (in demo mode, sign-ups) per client address and minute (0 = no limit).
    #[arg(long, default_value_t = 120)]
    sign_ins_per_minute: u32,
    /// Connections open at once per client address on the players' port (0 = no cap).
    #[arg(long, default_value_t = 512)]
    conns_per_ip: usize,
    /// WebSockets open at once per player (0 = no cap).
    #[arg(long, default_value_t = 16)]
    ws_per_player: usize,
    /// WebSockets open at once per client address (0 = no cap).
    #[arg(long, default_value_t = 256)]
    ws_per_ip: usize,
    /// Threads serving the players' connections (lanes), each with a runtime of its own and
    /// its own idle connections to the nodes; new connections go to the lane with the fewest
    /// open (default: one per core, as HAProxy's `nbthread`). The admin port, health checks
    /// and the accept loop run on one more thread.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Milliseconds a request waits for an eligible node when none is (a node back from a
    /// restart whose health checks have not caught up yet), before a 503; 0 answers at once.
    #[arg(long, default_value_t = 3_000)]
    queue_timeout_ms: u64,
    /// Most requests waiting for an eligible node; more get a 503 at once.
    #[arg(long, default_value_t = 1_000)]
    queue_max: usize,
    /// Most requests one node holds at once (HAProxy's server `maxconn`); more wait in the
    /// gateway, up to --queue-timeout-ms, for one of them to end, then get a 503.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    node_max_requests: u32,
    /// How new work is spread over the eligible nodes, as HAProxy's `balance`: `leastconn`,
    /// the node with the fewest requests in flight, a player sticking to one node while it is
    /// eligible; or `first`, the first node in --node order with a free place of its
    /// --node-max-requests, the next only past that or while it is out (nodes sharing one
    /// SQLite file: `croupier up` chooses it for them).
    #[arg(long, default_value = "leastconn")]
    balance: Balance,
    /// Lowest hedge delay, in milliseconds, of a retry-safe request (GET/HEAD or with an
    /// Idempotency-Key): after the node's recent p99 times --try-timeout-factor, at least
    /// this, without an answer, the request also goes to another node (within the retry
    /// budget) and the first answer wins; the first try is not given up.
    #[arg(long, default_value_t = 250)]
    try_timeout_floor_ms: u64,
    /// Hedge delay of a retry-safe request, as a multiple of the node's recent p99.
    #[arg(long, default_value_t = 4)]
    try_timeout_factor: u32,
    /// Highest hedge delay, in milliseconds, whatever the node's recent latency (just after
    /// a slow spell, or before enough is known of the node).
    #[arg(long, default_value_t = 500)]
    try_timeout_cap_ms: u64,
    /// Milliseconds to wait for a node's response headers.
    #[arg(long, default_value_t = 10_000)]
    upstream_timeout_ms: u64,
    #[command(flatten)]
    lockout: crate::lockout_args::LockoutArgs,
    #[command(flatten)]
    proxies: crate::proxy_args::ProxyArgs,
    /// Refused requests (404, 405, 401, odd methods, the address's rate limits) from one
    /// address within a minute that block it on the players' port (for 1 minute, twice as
    /// long each further time, up to an hour; never the --allow-networks); 0: never.
    #[arg(long, default_value_t = 100)]
    scan_failures: u32,
    /// TLS of both ports, and of the calls to `https://` nodes (mutual TLS when the nodes ask).
    #[command(flatten)]
    tls: crate::tls_args::TlsArgs,
    /// Test-only fault injection: `panic-under-lock` makes the first three picks of a node
    /// panic while holding the affinity lock. Refused unless CROUPIER_TEST_FAULTS=1.
    #[arg(long, hide = true)]
    fault: Option<String>,
}

fn parse_node(text: &str) -> Result<(String, String), String> {
    let (name, url) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not name=http(s)://host:port"))?;
    // Requests are forwarded to the node's origin (scheme and authority) with the player's
    // own path: a URL that is not an origin alone would be forwarded somewhere else.
    let origin_only = url
        .trim_end_matches('/')
        .parse::<axum::http::Uri>()
        .is_ok_and(|uri| uri.authority().is_some() && uri.path() == "/" && uri.query().is_none());
    if name.is_empty()
        || !(url.starts_with("http://") || url.starts_with("https://"))
        || !origin_only
    {
        return Err(format!("'{text}' is not name=http(s)://host:port"));
    }
    Ok((name.to_owned(), url.to_owned()))
}

impl GatewayArgs {
    /// The gateway's settings from the flags; `token` guards the admin API.
    fn config(&self, token: String) -> anyhow::Result<GatewayConfig> {
        let mut config = GatewayConfig::new(self.nodes.clone(), token);
        config.health.interval = Duration::from_millis(self.check_interval_ms);
        config.health.timeout = Duration::from_millis(self.check_timeout_ms);
        config.health.rise = self.rise;
        config.health.fall = self.fall;
        config.max_tries = self.max_tries;
        config.retry_ratio = self.retry_ratio;
        config.retry_floor_per_second = self.retry_floor_per_second.max(0.0);
        self.set_limits(&mut config);
        config.upstream_timeout = Duration::from_millis(self.upstream_timeout_ms);
        config.queue_timeout = Duration::from_millis(self.queue_timeout_ms);
        config.node_max_requests = self.node_max_requests as usize;
        config.balance = self.balance;
        if let Some(threads) = self.threads {
            config.lanes = usize::from(threads);
        }
        config.try_timeout.floor = Duration::from_millis(self.try_timeout_floor_ms);
        config.try_timeout.factor = self.try_timeout_factor.max(1);
        config.try_timeout.cap = Duration::from_millis(self.try_timeout_cap_ms);
        anyhow::ensure!(
            config.try_timeout.cap >= config.try_timeout.floor,
            "--try-timeout-cap-ms must be at least --try-timeout-floor-ms"
        );
        config.queue_max = self.queue_max;
        config.node_tls = self.tls.client();
        Ok(config)
    }

    /// Rate and connection limits (0: none), the operators' lockout and the scanners' blocks.
    fn set_limits(&self, config: &mut GatewayConfig) {
        config.rate_per_ip = (self.rate_per_ip > 0).then_some(self.rate_per_ip);
        config.rate_per_player = (self.rate_per_player > 0).then_some(self.rate_per_player);
        config.sign_ins_per_minute =
            (self.sign_ins_per_minute > 0).then_some(self.sign_ins_per_minute);
        config.conns_per_ip = (self.conns_per_ip > 0).then_some(self.conns_per_ip);
        config.trusted_proxies = self.proxies.proxies();
        config.ws_per_player = (self.ws_per_player > 0).then_some(self.ws_per_player);
        config.ws_per_ip = (self.ws_per_ip > 0).then_some(self.ws_per_ip);
        config.lockout = self.lockout.config();
        config.scanning = croupier_web::lockout::LockoutConfig {
            max_failures: if self.scan_failures == 0 {
                u32::MAX
            } else {
                self.scan_failures
            },
            allow: config.lockout.allow.clone(),
            ..croupier_gateway::scanning_defaults()
        };
    }
}

/// The runtime of the accept loop, the admin port and the health checks (the players'
/// connections are served on the lanes).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The players' address and second handles on both listening sockets, kept to hand them
/// over on SIGUSR2.
type Handover = (SocketAddr, std::os::fd::OwnedFd, std::os::fd::OwnedFd);

/// Waits for Ctrl-C or SIGTERM, or for a SIGUSR2 restart that handed the sockets over; on
/// SIGUSR2 under a supervisor, asks it for the restart instead (it stops this process).
async fn until_stop(handover: Handover) {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut upgrade = signal(SignalKind::user_defined2()).expect("SIGUSR2 handler");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = upgrade.recv() => if let Some(supervisor) = restart::supervisor() {
                // The supervisor starts the new process and stops this one.
                match restart::ask_supervisor(supervisor) {
                    Ok(()) => tracing::info!(supervisor, "graceful restart asked of the supervisor"),
                    Err(e) => tracing::error!(error = %e, "cannot ask the supervisor for a graceful restart"),
                }
            } else {
                match restart::upgrade(&handover.1, &handover.2).await {
                    Ok(pid) => {
                        tracing::info!(new_pid = pid, listen = %handover.0, "replacement gateway serves; stopping this one");
                        break;
                    }
                    Err(e) => tracing::error!(error = %e, "graceful restart failed; still serving"),
                }
            },
        }
    }
}

pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let token = match args.ops_token.clone() {
        Some(token) => token,
        None => ops_token_file(&args.data.join(OPS_TOKEN_FILE))?,
    };
    let config = args.config(token)?;
    let tls = args.tls.acceptor()?;
    let scheme = args.tls.scheme();
    let (player, admin) = restart::listeners(args.listen, args.admin_listen)
        .with_context(|| format!("listening on {} and {}", args.listen, args.admin_listen))?;
    runtime()?.block_on(async move {
        let player = tokio::net::TcpListener::from_std(player)?;
        let admin = tokio::net::TcpListener::from_std(admin)?;
        // Through the log, never straight to stderr: a failed eprintln! panics (full disk).
        tracing::info!(
            "croupier gateway (pid {}) for players on {scheme}://{}, admin on {scheme}://{} ({} nodes)",
            std::process::id(),
            player.local_addr()?,
            admin.local_addr()?,
            config.nodes.len()
        );
        let handover = (player.local_addr()?, std_clone(&player)?, std_clone(&admin)?);
        let gateway = Gateway::new(config).context("the TLS files for calling the nodes")?;
        if crate::test_faults::panic_under_lock(args.fault.as_deref())? {
            gateway.pool.inject_panics(3);
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            until_stop(handover).await;
            let _ = stop_tx.send(());
        });
        let stopped = async {
            let _ = stop_rx.await;
        };
        let serving = croupier_gateway::serve(player, admin, gateway, stopped, tls);
        restart::notify_parent_ready();
        serving.await?;
        Ok(())
    })
}

/// A second handle on a listening socket (same socket, new descriptor).
fn std_clone(listener: &tokio::net::TcpListener) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    listener.as_fd().try_clone_to_owned()
}

#[cfg(test)]
mod tests {
    use super::parse_node;

    #[test]
    fn a_node_is_a_name_and_an_origin() {
        assert_eq!(
            parse_node("n0=http://127.0.0.1:7001"),
            Ok(("n0".to_owned(), "http://127.0.0.1:7001".to_owned()))
        );
        assert!(parse_node("n0=https://node.example:7001/").is_ok());
        for refused in [
            "n0",
            "=http://127.0.0.1:7001",
            "n0=ftp://127.0.0.1:7001",
            "n0=http://127.0.0.1:7001/prefix",
            "n0=http://127.0.0.1:7001?x=1",
            "n0=http://bad host:7001",
            "n0=http://",
        ] {
            assert!(parse_node(refused).is_err(), "{refused}");
        }
    }
}
