//! `croupier up`: everything on one machine, for a first look and for small casinos. Starts
//! three game nodes on one ledger (a SQLite file under the data folder, or a PostgreSQL
//! database with `--store`), the gateway in front of them
//! and the control plane watching them all, as supervised child processes: a child that dies
//! is restarted with back-off; Ctrl-C or SIGTERM stops them all gracefully. The supervisor's
//! API (loopback, ops token) lets the control plane's rolling update swap a node's binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use croupier_ledger::StoreLocation;
use croupier_vitals::logs;

use crate::log_args::{LogArgs, LogTo};
use crate::node_cmd::ops_token_file;
use crate::supervisor::{Supervised, Supervisor};

#[derive(Args)]
pub struct UpArgs {
    /// Data folder: the ledger, the ops token and the children's logs.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// The ledger every node shares: `postgres://user@host:port/db` for a PostgreSQL server,
    /// or a SQLite file (default: <data>/ledger.db, backed up into <data>/backups).
    #[arg(long)]
    store: Option<StoreLocation>,
    /// How many game nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Port of the first node; the others follow.
    #[arg(long, default_value_t = 7001)]
    first_node_port: u16,
    /// Port players connect to (the gateway); the gateway's admin port is the next one.
    #[arg(long, default_value_t = 8000)]
    gateway_port: u16,
    /// Port of the control plane; its supervisor API (for rolling updates) is the next one.
    #[arg(long, default_value_t = 8080)]
    control_port: u16,
    /// Seconds between the control plane's restore tests of the local backups.
    #[arg(long, default_value_t = 600)]
    backup_verify_every_s: u64,
    /// A webhook for alerts (generic JSON); repeat for each.
    #[arg(long = "webhook")]
    webhooks: Vec<String>,
    /// A Slack-compatible incoming webhook for alerts; repeat for each.
    #[arg(long = "slack-webhook")]
    slack_webhooks: Vec<String>,
}

/// Each child's log: a rotated file in `<data>/logs` (options passed on), or, when this
/// supervisor's own output is collected by systemd or Kubernetes or `--log-to stdout` was
/// asked for, the supervisor's stderr.
fn child_logging(log: &LogArgs, data: &Path, name: &str) -> Vec<String> {
    if log.log_to == LogTo::Stdout || (log.log_to == LogTo::Auto && logs::managed_output()) {
        return Vec::new();
    }
    log.for_child(data.join("logs").join(format!("{name}.log")))
}

/// How long `up` waits for each tier to serve before starting the next one anyway.
const TIER_READY_WITHIN: Duration = Duration::from_secs(30);

/// Starts the children in the order players need them: the nodes; the gateway once they are
/// ready; the control plane once the gateway can route to one. The control plane's first
/// checks then see a serving casino instead of paging for one still starting (a node on a
/// PostgreSQL ledger takes a moment to connect).
fn start_in_order(children: &mut [Supervised], args: &UpArgs) -> anyhow::Result<()> {
    let nodes = usize::from(args.nodes);
    for child in children.iter_mut().take(nodes) {
        child.spawn()?;
    }
    for i in 0..args.nodes {
        wait_ready(&format!(
            "http://127.0.0.1:{}/readyz",
            args.first_node_port + i
        ));
    }
    for child in children.iter_mut().skip(nodes) {
        child.spawn()?;
        if child.name == "gateway" {
            wait_ready(&format!(
                "http://127.0.0.1:{}/readyz",
                args.gateway_port + 1
            ));
        }
    }
    Ok(())
}

/// Waits until `url` answers 200, for at most `TIER_READY_WITHIN`; says so if it never does.
fn wait_ready(url: &str) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .into();
    let deadline = std::time::Instant::now() + TIER_READY_WITHIN;
    while std::time::Instant::now() < deadline {
        if agent.get(url).call().is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::warn!(%url, "not ready in time; starting the next tier anyway");
}

pub fn run(args: UpArgs, log: &LogArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data)?;
    let data = std::fs::canonicalize(&args.data)?;
    let token_path = data.join("ops-token");
    ops_token_file(&token_path)?;
    // Backups go to <data>/backups, sealed with a key made here on the first run.
    let backup_key = data.join("backup-key");
    if !backup_key.exists() {
        crate::backup_cmd::keygen_file(&backup_key)?;
    }
    let store = args
        .store
        .clone()
        .unwrap_or_else(|| StoreLocation::Sqlite(data.join("ledger.db")));
    let data_arg = data.display().to_string();
    let binary = std::env::current_exe()?;
    let mut children = Vec::new();
    let mut gateway_args = vec![
        "gateway".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{}", args.gateway_port),
        "--admin-listen".to_owned(),
        format!("127.0.0.1:{}", args.gateway_port + 1),
        "--data".to_owned(),
        data_arg.clone(),
    ];
    let mut control_args = vec![
        "control".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{}", args.control_port),
        "--data".to_owned(),
        data_arg.clone(),
        "--gateway".to_owned(),
        format!("gateway=http://127.0.0.1:{}", args.gateway_port + 1),
        "--check-url".to_owned(),
        format!("http://127.0.0.1:{}", args.gateway_port),
        "--supervisor".to_owned(),
        format!("http://127.0.0.1:{}", args.control_port + 1),
    ];
    // The control plane ships and restore-tests a SQLite ledger itself; a PostgreSQL ledger
    // is backed up by the database's own tools (docs/backups.md).
    if let StoreLocation::Sqlite(db) = &store {
        control_args.extend([
            "--backup-db".to_owned(),
            db.display().to_string(),
            "--backup-key-file".to_owned(),
            backup_key.display().to_string(),
            "--backup-verify-every-s".to_owned(),
            args.backup_verify_every_s.to_string(),
        ]);
    }
    for url in &args.webhooks {
        control_args.extend(["--webhook".to_owned(), url.clone()]);
    }
    for url in &args.slack_webhooks {
        control_args.extend(["--slack-webhook".to_owned(), url.clone()]);
    }
    for i in 0..args.nodes {
        let port = args.first_node_port + i;
        let name = format!("node-{}", i + 1);
        control_args.extend([
            "--node".to_owned(),
            format!("{name}=http://127.0.0.1:{port}"),
        ]);
        gateway_args.extend([
            "--node".to_owned(),
            format!("{name}=http://127.0.0.1:{port}"),
        ]);
        let mut node_args = vec![
            "node".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--node-id".into(),
            name.clone(),
            "--data".into(),
            data_arg.clone(),
            "--store".into(),
            store.as_arg(),
        ];
        node_args.extend(child_logging(log, &data, &name));
        children.push(Supervised::new(&name, binary.clone(), node_args, None));
    }
    for (name, mut args) in [("gateway", gateway_args), ("control", control_args)] {
        args.extend(child_logging(log, &data, name));
        children.push(Supervised::new(name, binary.clone(), args, None));
    }
    start_in_order(&mut children, &args)?;
    let children = children;
    println!("croupier is up (supervisor pid {})", std::process::id());
    println!(
        "  players:       http://127.0.0.1:{}/api/v1   (sign in: POST /api/v1/sessions {{\"player\": \"alice\"}})",
        args.gateway_port
    );
    println!(
        "  gateway admin: http://127.0.0.1:{}/admin/nodes, /metrics",
        args.gateway_port + 1
    );
    for i in 0..args.nodes {
        println!(
            "  node-{}:        http://127.0.0.1:{}  (/healthz, /readyz, /metrics, /ops/...)",
            i + 1,
            args.first_node_port + i
        );
    }
    println!(
        "  status page:   http://127.0.0.1:{}/status   (feeds: /status/feed.atom, /status/feed.json)",
        args.control_port
    );
    println!(
        "  dashboard:     http://127.0.0.1:{}/dashboard   (sign in with the ops token)",
        args.control_port
    );
    println!(
        "  control API:   http://127.0.0.1:{}/api/v1   (OpenAPI: /api/v1/openapi.json; `croupier ctl`)",
        args.control_port
    );
    println!(
        "  supervisor:    http://127.0.0.1:{}/supervisor/children   (ops token; used by rolling updates)",
        args.control_port + 1
    );
    println!("  ops token:     {}", token_path.display());
    println!(
        "  ledger:        {store}   logs: {}/logs/*.log",
        data.display()
    );
    println!("Ctrl-C stops everything.");

    // The children read CROUPIER_OPS_TOKEN when it is set, like every croupier command.
    let ops_token = match std::env::var("CROUPIER_OPS_TOKEN") {
        Ok(token) if !token.is_empty() => token,
        _ => ops_token_file(&token_path)?,
    };
    let supervisor = Supervisor::new(children, ops_token);
    let supervisor_api = supervisor.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Without its API the casino still runs; only rolling updates cannot swap builds.
        match tokio::net::TcpListener::bind(("127.0.0.1", args.control_port + 1)).await {
            Ok(api) => {
                tokio::spawn(async move {
                    axum::serve(api, crate::supervisor::router(supervisor_api)).await
                });
            }
            Err(e) => tracing::error!(
                port = args.control_port + 1,
                error = %e,
                "no supervisor API: rolling updates cannot replace builds"
            ),
        }
        let mut term = signal(SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => supervisor.supervise_all(),
            }
        }
        anyhow::Ok(())
    })?;

    println!("stopping: draining nodes and the gateway");
    supervisor.stop_all();
    println!("stopped");
    Ok(())
}
