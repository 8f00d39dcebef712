//! `croupier up`: everything on one machine, for a first look and for small casinos. Starts
//! three game nodes on one ledger (a SQLite file under the data folder, or a PostgreSQL
//! database with `--store`), the gateway in front of them
//! and the control plane watching them all, as supervised child processes: a child that dies
//! is restarted with back-off; Ctrl-C or SIGTERM stops them all gracefully. The supervisor's
//! API (loopback, ops token) lets the control plane's rolling update swap a node's binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use croupier_ledger::StoreLocation;
use croupier_vitals::logs;

use crate::log_args::{LogArgs, LogTo};
use crate::node_cmd::ops_token_file;
use crate::supervisor::{Supervised, Supervisor};

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    lockout: crate::lockout_args::LockoutArgs,
    #[command(flatten)]
    operator: crate::operator_args::OperatorArgs,
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
    /// Demo mode: players sign in by name and get play money (the README's first bet).
    /// Without it, only launch tokens signed with a key of <data>/launch-keys sign players in.
    #[arg(long)]
    demo: bool,
    /// A webhook for alerts (generic JSON); repeat for each.
    #[arg(long = "webhook")]
    webhooks: Vec<String>,
    /// A Slack-compatible incoming webhook for alerts; repeat for each.
    #[arg(long = "slack-webhook")]
    slack_webhooks: Vec<String>,
    /// Player requests per second one node serves (measure it with `croupier loadtest`):
    /// rolling updates then never leave fewer nodes eligible than the current load needs.
    #[arg(long)]
    node_capacity_rps: Option<f64>,
    /// TLS rehearsal: a local CA and certificate in <data>/tls (`croupier tls init`), every
    /// component serves HTTPS, and the nodes serve only clients presenting that certificate
    /// (the gateway and the control plane: mutual TLS). Off by default: plain loopback.
    #[arg(long)]
    tls: bool,
}

/// The TLS of the children: none, or `up --tls`'s local files.
struct ChildTls {
    files: Option<croupier_web::tls::local_ca::LocalFiles>,
}

impl ChildTls {
    fn new(tls: bool, data: &Path) -> anyhow::Result<ChildTls> {
        let hosts = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let files = tls
            .then(|| crate::tls_cmd::ensure(&data.join("tls"), &hosts, false))
            .transpose()?;
        Ok(ChildTls { files })
    }

    fn scheme(&self) -> &'static str {
        if self.files.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `scheme://127.0.0.1:port`.
    fn url(&self, port: u16) -> String {
        format!("{}://127.0.0.1:{port}", self.scheme())
    }

    /// The TLS options of a child; nodes also ask their clients for the certificate.
    fn args(&self, node: bool) -> crate::tls_args::TlsArgs {
        let Some(files) = &self.files else {
            return crate::tls_args::TlsArgs::default();
        };
        crate::tls_args::TlsArgs {
            tls_cert: Some(files.cert.clone()),
            tls_key: Some(files.key.clone()),
            tls_ca: Some(files.ca.clone()),
            tls_client_ca: node.then(|| files.ca.clone()),
        }
    }
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

/// The gateway's two listening sockets (players, admin), held by the supervisor so that they
/// outlive every gateway process.
fn gateway_sockets(port: u16) -> anyhow::Result<Vec<std::os::fd::OwnedFd>> {
    [port, port + 1]
        .into_iter()
        .map(|p| {
            let listener = std::net::TcpListener::bind(("127.0.0.1", p))
                .with_context(|| format!("listening on 127.0.0.1:{p} for the gateway"))?;
            Ok(std::os::fd::OwnedFd::from(listener))
        })
        .collect()
}

/// How long `up` waits for each tier to serve before starting the next one anyway.
const TIER_READY_WITHIN: Duration = Duration::from_secs(30);

/// Starts the children in the order players need them: the nodes; the gateway once they are
/// ready; the control plane once the gateway can route to one. The control plane's first
/// checks then see a serving casino instead of paging for one still starting (a node on a
/// PostgreSQL ledger takes a moment to connect).
fn start_in_order(
    children: &mut [Supervised],
    args: &UpArgs,
    tls: &ChildTls,
) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .tls_config(crate::tls_args::ureq_tls(&tls.args(false).client())?)
        .build()
        .into();
    let nodes = usize::from(args.nodes);
    for child in children.iter_mut().take(nodes) {
        child.spawn()?;
    }
    for i in 0..args.nodes {
        let node = tls.url(args.first_node_port + i);
        wait_ready(&agent, &format!("{node}/readyz"));
    }
    for child in children.iter_mut().skip(nodes) {
        child.spawn()?;
        if child.name == "gateway" {
            let admin = tls.url(args.gateway_port + 1);
            wait_ready(&agent, &format!("{admin}/readyz"));
        }
    }
    Ok(())
}

/// Waits until `url` answers 200, for at most `TIER_READY_WITHIN`; says so if it never does.
fn wait_ready(agent: &ureq::Agent, url: &str) {
    let deadline = std::time::Instant::now() + TIER_READY_WITHIN;
    while std::time::Instant::now() < deadline {
        if agent.get(url).call().is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::warn!(%url, "not ready in time; starting the next tier anyway");
}

/// How players sign in: by name in demo mode (said loudly), else with a launch token.
fn print_sign_in(args: &UpArgs, data: &Path, tls: &ChildTls) {
    let players = format!("{}/api/v1", tls.url(args.gateway_port));
    if args.demo {
        println!("  DEMO MODE: play money, players sign in by name alone");
        println!(
            "  players:       {players}   (sign in: POST /api/v1/sessions {{\"player\": \"alice\"}})"
        );
    } else {
        println!(
            "  players:       {players}   (sign in: POST /api/v1/sessions {{\"launch_token\": \"$(croupier launch-token --data {} --player alice)\"}})",
            data.display()
        );
    }
}

pub fn run(args: UpArgs, log: &LogArgs) -> anyhow::Result<()> {
    // Before anything is written: the ledger holds the unrevealed server seeds.
    crate::private_files::secure_data_folder(&args.data)?;
    let data = std::fs::canonicalize(&args.data)?;
    let token_path = data.join("ops-token");
    ops_token_file(&token_path)?;
    // The operator's cashier credential, made here once so the nodes do not race to make it.
    ops_token_file(&data.join(crate::operator_args::CASHIER_TOKEN_FILE))?;
    // The key sealing unrevealed seeds at rest, shared by the nodes (and the staging node).
    crate::seed_key_args::ensure_seed_key(&data)?;
    // Backups go to <data>/backups, sealed with a key made here on the first run.
    let backup_key = data.join("backup-key");
    if !backup_key.exists() {
        crate::backup_cmd::keygen_file(&backup_key)?;
    }
    // The operator's first launch key, made on the first run; the test player signs with it.
    let launch_key = crate::launch_cmd::ensure_key(&data)?;
    let tls = ChildTls::new(args.tls, &data)?;
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
        format!("gateway={}", tls.url(args.gateway_port + 1)),
        "--check-url".to_owned(),
        tls.url(args.gateway_port),
        "--supervisor".to_owned(),
        format!("http://127.0.0.1:{}", args.control_port + 1),
    ];
    if args.demo {
        control_args.push("--demo".to_owned());
    }
    // Even in demo mode: the checks' test player signs in with a launch token, under a name
    // no one may sign in as by name.
    control_args.extend(["--launch-key".to_owned(), launch_key.display().to_string()]);
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
    if let Some(capacity) = args.node_capacity_rps {
        control_args.extend(["--node-capacity-rps".to_owned(), capacity.to_string()]);
    }
    for i in 0..args.nodes {
        let port = args.first_node_port + i;
        let name = format!("node-{}", i + 1);
        control_args.extend(["--node".to_owned(), format!("{name}={}", tls.url(port))]);
        gateway_args.extend(["--node".to_owned(), format!("{name}={}", tls.url(port))]);
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
        if args.demo {
            node_args.push("--demo".into());
        }
        node_args.extend(child_logging(log, &data, &name));
        node_args.extend(args.lockout.to_args());
        node_args.extend(tls.args(true).to_args());
        node_args.extend(args.operator.to_args());
        children.push(Supervised::new(&name, binary.clone(), node_args, None));
    }
    let mut sockets = gateway_sockets(args.gateway_port)?;
    for (name, mut child_args) in [("gateway", gateway_args), ("control", control_args)] {
        child_args.extend(child_logging(log, &data, name));
        child_args.extend(args.lockout.to_args());
        child_args.extend(tls.args(false).to_args());
        let child = Supervised::new(name, binary.clone(), child_args, None);
        children.push(if name == "gateway" {
            child.with_sockets(std::mem::take(&mut sockets))
        } else {
            child
        });
    }
    // A gateway signals SIGUSR1 once it serves and passes SIGUSR2 (a graceful restart) on to
    // this process: both are handled before the first gateway starts, since their default
    // action would end the supervisor.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut restart_asked, mut new_gateway_serves) = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::user_defined2())?,
            signal(SignalKind::user_defined1())?,
        )
    };
    start_in_order(&mut children, &args, &tls)?;
    let children = children;
    println!("croupier is up (supervisor pid {})", std::process::id());
    print_sign_in(&args, &data, &tls);
    println!(
        "  gateway admin: {}/admin/nodes, /metrics",
        tls.url(args.gateway_port + 1)
    );
    for i in 0..args.nodes {
        println!(
            "  node-{}:        {}  (/healthz, /readyz, /metrics, /ops/...)",
            i + 1,
            tls.url(args.first_node_port + i)
        );
    }
    let control = tls.url(args.control_port);
    println!("  status page:   {control}/status   (feeds: /status/feed.atom, /status/feed.json)");
    println!("  dashboard:     {control}/dashboard   (sign in with the ops token)");
    println!("  control API:   {control}/api/v1   (OpenAPI: /api/v1/openapi.json; `croupier ctl`)");
    if let Some(files) = &tls.files {
        println!(
            "  TLS:           CA {} (clients trust it: curl --cacert, ctl/loadtest --tls-ca)",
            files.ca.display()
        );
    }
    println!(
        "  supervisor:    http://127.0.0.1:{}/supervisor/children   (ops token; used by rolling updates)",
        args.control_port + 1
    );
    println!("  ops token:     {}", token_path.display());
    println!(
        "  cashier token: {}   (the operator's platform: /cashier/v1 on the nodes)",
        data.join(crate::operator_args::CASHIER_TOKEN_FILE)
            .display()
    );
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
    runtime.block_on(async {
        // Without its API the casino still runs; only rolling updates cannot swap builds.
        match tokio::net::TcpListener::bind(("127.0.0.1", args.control_port + 1)).await {
            Ok(api) => {
                tokio::spawn(croupier_web::serve::serve(
                    api,
                    crate::supervisor::router(supervisor_api, args.lockout.config()),
                    std::future::pending(),
                    croupier_web::serve::Hygiene::operators(),
                    None,
                ));
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
                _ = restart_asked.recv() => supervisor.replace_socket_holders(),
                _ = new_gateway_serves.recv() => supervisor.replacement_ready(),
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
