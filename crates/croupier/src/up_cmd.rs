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
use tokio::signal::unix::{Signal, SignalKind, signal};

use croupier_ledger::pg::provision::{self, Database};
use croupier_ledger::{LedgerError, StoreLocation};
use croupier_loadtest::layout::{CONTROL, GATEWAY, HOST, Layout};
use croupier_vitals::background::survive_blocking;
use croupier_vitals::logs;

use crate::console::outln;
use crate::exit_status::{EX_CONFIG, RestartCannotHelp};
use crate::log_args::{LogArgs, LogTo};
use crate::node_cmd::ops_token_file;
use crate::supervisor::{Supervised, Supervisor};

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    lockout: crate::lockout_args::LockoutArgs,
    // Handed to the gateway and the control plane, the two public listeners.
    #[command(flatten)]
    proxies: crate::proxy_args::ProxyArgs,
    #[command(flatten)]
    operator: crate::operator_args::OperatorArgs,
    /// Data folder: the ledger, the ops token and the children's logs.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// The ledger every node shares: `postgres://user@host:port/db` for a PostgreSQL server,
    /// or a SQLite file (default: <data>/ledger.db, backed up into <data>/backups). Also read
    /// from CROUPIER_STORE, which keeps a password in the URL off the command line.
    #[arg(long, env = "CROUPIER_STORE", hide_env_values = true)]
    store: Option<StoreLocation>,
    /// How many game nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// How the gateway spreads the players' work over the nodes (`croupier gateway
    /// --balance`): `first` (node-1 while it has room, the others its spares) or `leastconn`
    /// (every node). Default: `first`, on either store: every node runs on this machine, and
    /// more nodes writing only split the same bets into smaller batches.
    #[arg(long, value_parser = ["leastconn", "first"])]
    balance: Option<String>,
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
    /// With `--store postgres://…`: back the ledger up with pgBackRest from the control plane
    /// (the flags of `croupier backup --pg-data`: the cluster's data folder, port, socket,
    /// stanza); `--backup-target` is the repository.
    #[command(flatten)]
    backup_pg: crate::backup_pg_cmd::PgArgs,
    /// pgBackRest's repository with `--pg-data`: a folder or s3://bucket/path (the S3 keys
    /// from pgBackRest's own environment variables, which the control plane inherits).
    #[arg(long, requires = "pg_data")]
    backup_target: Option<String>,
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
    fn new(layout: &Layout) -> anyhow::Result<ChildTls> {
        let hosts = ["localhost".to_owned(), HOST.to_owned()];
        let files = layout
            .tls
            .then(|| crate::tls_cmd::ensure(&layout.tls_dir(), &hosts, false))
            .transpose()?;
        Ok(ChildTls { files })
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
            tls_crl: None,
        }
    }
}

/// Each child's log: a rotated file in `<data>/logs` (options passed on), or, when this
/// supervisor's own output is collected by systemd or Kubernetes or `--log-to stdout` was
/// asked for, the supervisor's stderr.
fn child_logging(log: &LogArgs, layout: &Layout, name: &str) -> Vec<String> {
    if log.log_to == LogTo::Stdout || (log.log_to == LogTo::Auto && logs::managed_output()) {
        return Vec::new();
    }
    log.for_child(layout.log_file(name))
}

/// The gateway's two listening sockets (players, admin), held by the supervisor so that they
/// outlive every gateway process.
fn gateway_sockets(layout: &Layout) -> anyhow::Result<Vec<std::os::fd::OwnedFd>> {
    [layout.gateway_port, layout.admin_port()]
        .into_iter()
        .map(|p| {
            let listener = std::net::TcpListener::bind((HOST, p))
                .with_context(|| format!("listening on {HOST}:{p} for the gateway"))?;
            Ok(std::os::fd::OwnedFd::from(listener))
        })
        .collect()
}

/// The stack's layout from `up`'s options, on the data folder made private first (the
/// ledger holds the unrevealed server seeds).
fn layout(args: &UpArgs) -> anyhow::Result<Layout> {
    crate::private_files::secure_data_folder(&args.data)?;
    Ok(Layout {
        data: std::fs::canonicalize(&args.data)?,
        nodes: args.nodes,
        first_node_port: args.first_node_port,
        gateway_port: args.gateway_port,
        control_port: args.control_port,
        store: args.store.clone(),
        tls: args.tls,
        balance: args.balance.clone(),
    })
}

/// The files the children share, made here before any starts (so they do not race to make
/// them); the operator's first launch key, which the control plane's test player signs with.
fn prepare_data(layout: &Layout) -> anyhow::Result<PathBuf> {
    ops_token_file(&layout.ops_token_file())?;
    // The operator's cashier credential.
    ops_token_file(&layout.data.join(crate::operator_args::CASHIER_TOKEN_FILE))?;
    // The key sealing unrevealed seeds at rest, shared by the nodes (and the staging node).
    crate::seed_key_args::ensure_seed_key(&layout.data)?;
    // Backups go to <data>/backups, sealed with a key made here on the first run.
    let backup_key = layout.backup_key_file();
    if !backup_key.exists() {
        crate::backup_cmd::keygen_file(&backup_key)?;
    }
    crate::launch_cmd::ensure_key(&layout.data)
}

/// What `up` builds its children from: its options, its own log settings, the layout and
/// the children's TLS.
struct Plan<'a> {
    args: &'a UpArgs,
    log: &'a LogArgs,
    layout: &'a Layout,
    tls: &'a ChildTls,
}

impl Plan<'_> {
    /// The options every child takes from `up`'s own: its log, the lockout policy, TLS; and
    /// the public listeners (gateway, control plane: not a node) the trusted proxies.
    fn shared_options(&self, name: &str, node: bool) -> Vec<String> {
        let mut options = child_logging(self.log, self.layout, name);
        options.extend(self.args.lockout.to_args());
        options.extend(self.tls.args(node).to_args());
        if !node {
            options.extend(self.args.proxies.to_args());
        }
        options
    }

    fn node_args(&self, index: u16) -> Vec<String> {
        let mut node_args = self.layout.node_command(index);
        if self.args.demo {
            node_args.push("--demo".into());
        }
        node_args.extend(self.shared_options(&self.layout.node_name(index), true));
        node_args.extend(self.args.operator.to_args());
        node_args
    }

    /// The control plane's backups: it ships and restore-tests a SQLite ledger itself; a
    /// PostgreSQL ledger through pgBackRest when `--pg-data` names its cluster (otherwise the
    /// database's own tools, docs/backups.md).
    fn backup_args(&self) -> anyhow::Result<Vec<String>> {
        let args = self.args;
        let mut backup = match self.layout.store() {
            StoreLocation::Sqlite(db) => {
                anyhow::ensure!(
                    args.backup_pg.pg_data.is_none(),
                    "--pg-data backs up a PostgreSQL ledger: give --store postgres://…"
                );
                vec![
                    "--backup-db".to_owned(),
                    db.display().to_string(),
                    "--backup-key-file".to_owned(),
                    self.layout.backup_key_file().display().to_string(),
                ]
            }
            StoreLocation::Postgres(_) if args.backup_pg.pg_data.is_some() => {
                // Not a folder in <data> by default: that is private, and pgBackRest runs as
                // the cluster's owner.
                let target = args.backup_target.clone().context(
                    "--pg-data needs --backup-target: pgBackRest's repository, a folder the \
                     cluster's owner can write or s3://bucket/path",
                )?;
                let mut pg = args.backup_pg.to_args()?;
                pg.extend(["--backup-target".to_owned(), target]);
                pg
            }
            StoreLocation::Postgres(_) => return Ok(Vec::new()),
        };
        backup.extend([
            "--backup-verify-every-s".to_owned(),
            args.backup_verify_every_s.to_string(),
        ]);
        Ok(backup)
    }

    fn control_args(&self, launch_key: &Path) -> anyhow::Result<Vec<String>> {
        let args = self.args;
        let mut control_args = self.layout.control_command();
        if args.demo {
            control_args.push("--demo".to_owned());
        }
        // Even in demo mode: the checks' test player signs in with a launch token, under a
        // name no one may sign in as by name.
        control_args.extend(["--launch-key".to_owned(), launch_key.display().to_string()]);
        control_args.extend(self.backup_args()?);
        for url in &args.webhooks {
            control_args.extend(["--webhook".to_owned(), url.clone()]);
        }
        for url in &args.slack_webhooks {
            control_args.extend(["--slack-webhook".to_owned(), url.clone()]);
        }
        if let Some(capacity) = args.node_capacity_rps {
            control_args.extend(["--node-capacity-rps".to_owned(), capacity.to_string()]);
        }
        control_args.extend(self.shared_options(CONTROL, false));
        Ok(control_args)
    }

    /// The nodes, then the gateway (holding the listening sockets) and the control plane.
    fn children(&self, launch_key: &Path) -> anyhow::Result<Vec<Supervised>> {
        let binary = std::env::current_exe()?;
        let mut children: Vec<Supervised> = (0..self.layout.nodes)
            .map(|i| {
                let name = self.layout.node_name(i);
                Supervised::new(&name, binary.clone(), self.node_args(i), None)
                    .with_environment(self.layout.environment())
            })
            .collect();
        let mut gateway_args = self.layout.gateway_command();
        gateway_args.extend(self.shared_options(GATEWAY, false));
        let gateway = Supervised::new(GATEWAY, binary.clone(), gateway_args, None);
        children.push(gateway.with_sockets(gateway_sockets(self.layout)?));
        let control_args = self.control_args(launch_key)?;
        // The ledger, for the control plane to watch its PostgreSQL server.
        children.push(
            Supervised::new(CONTROL, binary, control_args, None)
                .with_environment(self.layout.environment()),
        );
        Ok(children)
    }
}

/// How long `up` waits for each tier to serve before starting the next one anyway.
const TIER_READY_WITHIN: Duration = Duration::from_secs(30);

/// Starts the children in the order players need them: the nodes; the gateway once they are
/// ready; the control plane once the gateway can route to one. The control plane's first
/// checks then see a serving casino instead of paging for one still starting (a node on a
/// PostgreSQL ledger takes a moment to connect).
/// A stop asked for meanwhile (Ctrl-C, SIGTERM) ends the start: `false`, and the caller stops
/// what started.
fn start_in_order(
    children: &mut [Supervised],
    layout: &Layout,
    tls: &ChildTls,
    signals: &mut Signals,
) -> anyhow::Result<bool> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .build();
    let agent = croupier_web::tls::blocking::agent(config, &tls.args(false).client())?;
    let nodes = usize::from(layout.nodes);
    for child in children.iter_mut().take(nodes) {
        child.spawn()?;
    }
    for (i, node) in (0..layout.nodes).zip(children.iter_mut()) {
        let url = format!("{}/readyz", layout.node_url(i));
        if !wait_ready(&agent, &url, node, signals)? {
            return Ok(false);
        }
    }
    for child in children.iter_mut().skip(nodes) {
        child.spawn()?;
        let url = format!("{}/readyz", layout.admin_url());
        if child.name == GATEWAY && !wait_ready(&agent, &url, child, signals)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Waits until `url` answers 200, for at most `TIER_READY_WITHIN`; says so if it never does.
/// The child is supervised meanwhile: one that exits while starting is restarted after its
/// back-off, as it would be once everything runs, unless it exited saying its configuration
/// cannot work (`refused_configuration`, an error). `false` when a stop was asked for.
fn wait_ready(
    agent: &ureq::Agent,
    url: &str,
    child: &mut Supervised,
    signals: &mut Signals,
) -> anyhow::Result<bool> {
    let deadline = std::time::Instant::now() + TIER_READY_WITHIN;
    while std::time::Instant::now() < deadline {
        if agent.get(url).call().is_ok() {
            return Ok(true);
        }
        child.supervise()?;
        if child.refused_its_configuration() {
            return Err(refused_configuration(child));
        }
        if signals.stop_within(Duration::from_millis(50)) {
            return Ok(false);
        }
    }
    tracing::warn!(%url, "not ready in time; starting the next tier anyway");
    Ok(true)
}

/// A child that exited while starting because its configuration cannot work (a node whose
/// PostgreSQL server refuses its database or login): the stack's start ends on it, with
/// where its reason is, instead of restarting it forever.
fn refused_configuration(child: &Supervised) -> anyhow::Error {
    let reason = match &child.log {
        Some(log) => format!("its reason is in {}", log.display()),
        None => "its reason is above".to_owned(),
    };
    anyhow::anyhow!(
        "{} cannot start with this configuration (it exited with status {EX_CONFIG}; {reason})",
        child.name
    )
    .context(RestartCannotHelp)
}

/// How players sign in: by name in demo mode (said loudly), else with a launch token.
fn print_sign_in(demo: bool, layout: &Layout) -> std::io::Result<()> {
    let players = format!("{}/api/v1", layout.players_url());
    if demo {
        outln!("  DEMO MODE: play money, players sign in by name alone")?;
        outln!(
            "  players:       {players}   (sign in: POST /api/v1/sessions {{\"player\": \"alice\"}})"
        )?;
    } else {
        outln!(
            "  players:       {players}   (sign in: POST /api/v1/sessions {{\"launch_token\": \"$(croupier launch-token --data {} --player alice)\"}})",
            layout.data.display()
        )?;
    }
    Ok(())
}

/// Where each part serves, for the operator at the terminal.
fn print_addresses(demo: bool, layout: &Layout, tls: &ChildTls) -> std::io::Result<()> {
    outln!("croupier is up (supervisor pid {})", std::process::id())?;
    print_sign_in(demo, layout)?;
    outln!(
        "  gateway admin: {}/admin/nodes, /metrics",
        layout.admin_url()
    )?;
    for i in 0..layout.nodes {
        outln!(
            "  {}:        {}  (/healthz, /readyz, /metrics, /ops/...)",
            layout.node_name(i),
            layout.node_url(i)
        )?;
    }
    let control = layout.control_url();
    outln!("  status page:   {control}/status   (feeds: /status/feed.atom, /status/feed.json)")?;
    outln!("  dashboard:     {control}/dashboard   (sign in with the ops token)")?;
    outln!("  control API:   {control}/api/v1   (OpenAPI: /api/v1/openapi.json; `croupier ctl`)")?;
    if let Some(files) = &tls.files {
        outln!(
            "  TLS:           CA {} (clients trust it: curl --cacert, ctl/loadtest --tls-ca)",
            files.ca.display()
        )?;
    }
    print_files(layout)?;
    outln!("Ctrl-C stops everything.")
}

/// The supervisor's API and the files an operator needs.
fn print_files(layout: &Layout) -> std::io::Result<()> {
    outln!(
        "  supervisor:    {}/supervisor/children   (ops token; used by rolling updates)",
        layout.supervisor_url()
    )?;
    outln!("  ops token:     {}", layout.ops_token_file().display())?;
    outln!(
        "  cashier token: {}   (the operator's platform: /cashier/v1 on the nodes)",
        layout
            .data
            .join(crate::operator_args::CASHIER_TOKEN_FILE)
            .display()
    )?;
    outln!(
        "  ledger:        {}   logs: {}/*.log",
        layout.store(),
        layout.logs_dir().display()
    )
}

/// The signals `up` acts on, handled before the first child starts: their default action
/// would end the supervisor and leave its children running unwatched. A stop (SIGINT, which a
/// shell's background job may even have been started ignoring, or SIGTERM), and what a
/// gateway sends: SIGUSR2 passed on (a graceful restart asked for) and SIGUSR1 (a new gateway
/// serves).
struct Signals<'r> {
    runtime: &'r tokio::runtime::Runtime,
    interrupt: Signal,
    terminate: Signal,
    restart_asked: Signal,
    new_gateway_serves: Signal,
}

impl Signals<'_> {
    fn handle(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Signals<'_>> {
        let _entered = runtime.enter();
        Ok(Signals {
            runtime,
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            restart_asked: signal(SignalKind::user_defined2())?,
            new_gateway_serves: signal(SignalKind::user_defined1())?,
        })
    }

    /// Waits `wait` (while the children start); whether a stop came meanwhile, or before.
    fn stop_within(&mut self, wait: Duration) -> bool {
        self.runtime.block_on(async {
            tokio::select! {
                _ = self.interrupt.recv() => true,
                _ = self.terminate.recv() => true,
                _ = tokio::time::sleep(wait) => false,
            }
        })
    }
}

/// The ops token of the supervisor's API: the children read CROUPIER_OPS_TOKEN when it is
/// set, like every croupier command, else the data folder's.
fn ops_token(layout: &Layout) -> anyhow::Result<String> {
    match std::env::var("CROUPIER_OPS_TOKEN") {
        Ok(token) if !token.is_empty() => Ok(token),
        _ => ops_token_file(&layout.ops_token_file()),
    }
}

/// Serves the supervisor's API next to the control plane. Without it the casino still runs;
/// only rolling updates cannot swap builds.
async fn serve_supervisor_api(
    supervisor: Supervisor,
    port: u16,
    lockout: croupier_web::lockout::LockoutConfig,
) {
    match tokio::net::TcpListener::bind((HOST, port)).await {
        Ok(api) => {
            tokio::spawn(croupier_web::serve::serve(
                api,
                crate::supervisor::router(supervisor, lockout),
                std::future::pending(),
                croupier_web::serve::Hygiene::operators(),
                None,
            ));
        }
        Err(e) => tracing::error!(
            port,
            error = %e,
            "no supervisor API: rolling updates cannot replace builds"
        ),
    }
}

/// Supervises the children until Ctrl-C or SIGTERM. A round that panics is logged and the
/// next one runs: a supervisor that ended would leave its children running unwatched.
async fn supervise(supervisor: &Supervisor, signals: &mut Signals<'_>) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = signals.interrupt.recv() => break,
            _ = signals.terminate.recv() => break,
            _ = signals.restart_asked.recv() => {
                survive_blocking("gateway restart", || supervisor.replace_socket_holders());
            }
            _ = signals.new_gateway_serves.recv() => {
                survive_blocking("gateway hand-over", || supervisor.replacement_ready());
            }
            _ = tick.tick() => {
                survive_blocking("supervision", || supervisor.supervise_all());
            }
        }
    }
    Ok(())
}

/// On PostgreSQL, the ledger's database created when the server does not have it yet, as the
/// SQLite file is (`croupier_ledger::pg::provision`). A server that cannot be reached yet is
/// left to the nodes, which wait for it; a refusal (a role that may not create it, or that
/// the server does not know) ends the start with the server's reason.
fn provision_store(layout: &Layout) -> anyhow::Result<()> {
    let store = layout.store();
    let StoreLocation::Postgres(url) = &store else {
        return Ok(());
    };
    match provision::create_if_missing(url) {
        Ok(Database::Created(name)) => {
            let _ = outln!("created the database {name} on the PostgreSQL server");
            Ok(())
        }
        Ok(Database::Existed) => Ok(()),
        Err(LedgerError::Unavailable(why)) => {
            tracing::warn!(%why, "the PostgreSQL server cannot be reached yet; the nodes wait for it");
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e)
            .context(format!("preparing the ledger {store}"))
            .context(RestartCannotHelp)),
    }
}

pub fn run(args: UpArgs, log: &LogArgs) -> anyhow::Result<()> {
    let layout = layout(&args)?;
    let launch_key = prepare_data(&layout)?;
    provision_store(&layout)?;
    let tls = ChildTls::new(&layout)?;
    let plan = Plan {
        args: &args,
        log,
        layout: &layout,
        tls: &tls,
    };
    let mut children = plan.children(&launch_key)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut signals = Signals::handle(&runtime)?;
    let started = start_in_order(&mut children, &layout, &tls, &mut signals);
    let supervisor = Supervisor::new(children, ops_token(&layout)?);
    let outcome = match started {
        Ok(true) => {
            if let Err(e) = print_addresses(args.demo, &layout, &tls) {
                tracing::warn!(error = %e, "could not print the addresses; the stack runs on");
            }
            runtime.block_on(async {
                let lockout = args.lockout.config();
                serve_supervisor_api(supervisor.clone(), layout.supervisor_port(), lockout).await;
                supervise(&supervisor, &mut signals).await
            })
        }
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    // Best effort: a terminal that is gone must not keep the children from being stopped.
    let _ = outln!("stopping: draining nodes and the gateway");
    supervisor.stop_all();
    let _ = outln!("stopped");
    outcome
}
