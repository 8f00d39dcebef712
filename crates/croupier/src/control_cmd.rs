//! `croupier control`: the control plane, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use croupier_control::checks::TestPlayers;
use croupier_control::config::Deployment;
use croupier_control::lease::LeaseSource;
use croupier_control::notify::{Format, Webhook};
use croupier_control::paging::Pager;
use croupier_control::rollout::UpdateConfig;
use croupier_control::state::State;
use croupier_control::subscriptions::Subscriptions;
use croupier_control::{Control, ControlConfig};
use croupier_loadtest::layout::OPS_TOKEN_FILE;
use croupier_monitor::engine::{Kind, Target};
use croupier_vitals::reserve::Reserve;
use croupier_web::launch::SigningKey;

use crate::node_cmd::ops_token_file;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ControlArgs {
    #[command(subcommand)]
    command: Option<ControlCommand>,
    /// A deployment file (TOML) naming the nodes, gateways, stores and hosts to watch, the
    /// webhooks, rules and SLOs; see deploy/croupier.example.toml. Flags add to it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address of the API, the status page and the dashboard [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data folder: the control plane's state (control.db) and the ops token [default: data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// A game node to watch, as name=http://host:port; repeat for each.
    #[arg(long = "node", value_parser = parse_target)]
    nodes: Vec<(String, String)>,
    /// A gateway to watch, as name=http://host:admin-port; repeat for each.
    #[arg(long = "gateway", value_parser = parse_target)]
    gateways: Vec<(String, String)>,
    /// The nodes' ledger, watched as the store target `ledger` when it is a `postgres://` URL:
    /// whether a host accepts writes, its connections and transactions, its standbys' lag.
    /// Also read from CROUPIER_STORE, as the nodes read it (`croupier up` passes it so); a
    /// SQLite ledger is watched through its nodes.
    #[arg(long, env = "CROUPIER_STORE", hide_env_values = true)]
    store: Option<String>,
    /// The players' address (the gateway) for synthetic checks: the lobby every second, a
    /// real test bet every five seconds.
    #[arg(long)]
    check_url: Option<String>,
    /// The casino runs in demo mode (`croupier node --demo`): said on the status page, and the
    /// test player signs in by name.
    #[arg(long)]
    demo: bool,
    /// The operator's launch-token key the test player signs in with outside demo mode: a
    /// `<kid>.hs256` secret or an Ed25519 private key PEM (`croupier launch-token --help`).
    #[arg(long)]
    launch_key: Option<PathBuf>,
    /// The ledger's currency, for the test player's launch tokens.
    #[arg(long, default_value = "EUR")]
    currency: String,
    #[command(flatten)]
    backup: BackupFlags,
    /// `croupier up`'s supervisor API, through which rolling updates replace a node's build.
    #[arg(long)]
    supervisor: Option<String>,
    /// Player requests per second one node serves (overrides `node_capacity_rps` of the
    /// deployment file's [update]): rolling updates then keep as many nodes eligible as the
    /// current load needs.
    #[arg(long)]
    node_capacity_rps: Option<f64>,
    /// A webhook receiving alerts as generic JSON; repeat for each.
    #[arg(long = "webhook")]
    webhooks: Vec<String>,
    /// A Slack-compatible incoming webhook; repeat for each.
    #[arg(long = "slack-webhook")]
    slack_webhooks: Vec<String>,
    /// Token for the operators' API (default: read from, or created in, <data>/ops-token).
    #[arg(long, env = "CROUPIER_OPS_TOKEN", hide_env_values = true)]
    ops_token: Option<String>,
    /// Where the lease that picks the one leader among several control planes of this
    /// deployment lives: a postgres:// URL (control planes on several machines; a session
    /// advisory lock), or, by default, a file lock on <data>/control.lock (control planes
    /// sharing one data folder on one machine). Only the leader alerts, notifies and runs
    /// backups, checks and rolling updates; the others follow and take over within a second
    /// of its death.
    #[arg(long, env = "CROUPIER_CONTROL_LEASE", hide_env_values = true)]
    lease: Option<String>,
    /// Test-only fault injection: `panic-under-lock` makes the first three monitor rounds
    /// panic while holding the series lock. Refused unless CROUPIER_TEST_FAULTS=1.
    #[arg(long, hide = true)]
    fault: Option<String>,
    #[command(flatten)]
    lockout: crate::lockout_args::LockoutArgs,
    #[command(flatten)]
    proxies: crate::proxy_args::ProxyArgs,
    /// TLS of the API, status page and dashboard, and of the calls to `https://` nodes,
    /// gateways and checks.
    #[command(flatten)]
    tls: crate::tls_args::TlsArgs,
}

#[derive(Subcommand)]
enum ControlCommand {
    /// Write the alert rules, SLO burn-rate alerts and synthetic checks as a Prometheus rule
    /// file, and a Grafana dashboard over the same metric names.
    Export(Box<crate::control_export::ExportArgs>),
}

fn parse_target(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, url))
            if !name.is_empty() && (url.starts_with("http://") || url.starts_with("https://")) =>
        {
            Ok((name.to_owned(), url.trim_end_matches('/').to_owned()))
        }
        _ => Err(format!("'{text}' is not name=http(s)://host:port")),
    }
}

/// Room kept back for the control plane's own records on a full disk (control.db grows by
/// a few pages per incident; this is hundreds of incidents' worth).
const RESERVE_BYTES: u64 = 8 * 1024 * 1024;

/// The control plane's backups (the one backup daemon of `croupier-backup`).
#[derive(Args)]
struct BackupFlags {
    /// Back up this ledger file: ship its new rows every second, take the scheduled backups
    /// and prove them by restore tests (alerts when one fails or is overdue).
    #[arg(long)]
    pub backup_db: Option<PathBuf>,
    /// Where backups go: a folder or s3://bucket/prefix [default: <data>/backups].
    #[arg(long)]
    pub backup_target: Option<String>,
    /// The backup key file (64 hex digits; `croupier backup keygen`); otherwise
    /// CROUPIER_BACKUP_KEY or CROUPIER_BACKUP_KEY_FILE.
    #[arg(long)]
    pub backup_key_file: Option<PathBuf>,
    /// Seconds between restore tests.
    #[arg(long, default_value_t = 3_600)]
    pub backup_verify_every_s: u64,
    /// A ledger on PostgreSQL to back up with pgBackRest (instead of --backup-db): its
    /// cluster (--pg-data …) and stanza; --backup-target is the repository.
    #[command(flatten)]
    pub backup_pg: crate::backup_pg_cmd::PgArgs,
    /// The nodes' seed key file, for the staging node started on a restored backup (its
    /// unrevealed seeds are sealed with it) [default: <data>/seed-key when there is one].
    #[arg(long, env = "CROUPIER_SEED_KEY_FILE")]
    pub seed_key_file: Option<PathBuf>,
}

/// The deployment file, or an empty deployment without one (flags name everything).
fn deployment(path: Option<&Path>) -> anyhow::Result<Deployment> {
    let Some(path) = path else {
        return Ok(Deployment::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Deployment::parse(&text).with_context(|| format!("in {}", path.display()))
}

/// `--listen`, else the deployment file's, else 127.0.0.1:8080.
fn listen_address(flag: Option<SocketAddr>, deployment: &Deployment) -> anyhow::Result<SocketAddr> {
    Ok(match (flag, &deployment.listen) {
        (Some(listen), _) => listen,
        (None, Some(text)) => text
            .parse()
            .with_context(|| format!("listen = \"{text}\" is not host:port"))?,
        (None, None) => "127.0.0.1:8080".parse()?,
    })
}

/// The store target of the nodes' ledger given with `--store`.
const LEDGER_TARGET: &str = "ledger";

/// The deployment file's targets, then the nodes and gateways named by flags, and the ledger's
/// server when it is PostgreSQL and no store target of the file is named `ledger`.
fn targets(
    deployment: &Deployment,
    nodes: Vec<(String, String)>,
    gateways: Vec<(String, String)>,
    store: Option<&str>,
) -> Vec<Target> {
    let mut targets = deployment.targets();
    targets.extend(
        nodes
            .into_iter()
            .map(|(name, base)| Target::new(&name, Kind::Node, &base))
            .chain(
                gateways
                    .into_iter()
                    .map(|(name, base)| Target::new(&name, Kind::Gateway, &base)),
            ),
    );
    if let Some(url) = store.filter(|url| croupier_control::replication::is_postgres(url))
        && !targets.iter().any(|t| t.name == LEDGER_TARGET)
    {
        targets.push(Target::new(LEDGER_TARGET, Kind::Store, url));
    }
    targets
}

/// The deployment file's webhooks, then the generic and Slack ones named by flags.
fn webhooks(deployment: &Deployment, generic: Vec<String>, slack: Vec<String>) -> Vec<Webhook> {
    let mut webhooks = deployment.webhooks();
    let with = |format: Format| move |url| Webhook { url, format };
    webhooks.extend(
        generic
            .into_iter()
            .map(with(Format::Generic))
            .chain(slack.into_iter().map(with(Format::Slack))),
    );
    webhooks
}

/// How the synthetic checks' test player signs in: by name in demo mode, else with a launch
/// token signed by `--launch-key` (whose folder holds the keys the nodes accept).
fn test_players(args: &ControlArgs) -> anyhow::Result<TestPlayers> {
    let launch_key = match &args.launch_key {
        Some(path) => Some(std::sync::Arc::new(
            SigningKey::from_file(path, None)
                .with_context(|| format!("reading the launch key {}", path.display()))?,
        )),
        None => None,
    };
    Ok(TestPlayers {
        demo: args.demo,
        launch_key,
        currency: args.currency.clone(),
        launch_keys_dir: args
            .launch_key
            .as_ref()
            .and_then(|p| p.parent())
            .map(|p| p.to_path_buf()),
    })
}

/// The deployment file's `[update]` with the flags over it.
fn update_config(args: &ControlArgs, deployment: &Deployment) -> anyhow::Result<UpdateConfig> {
    let mut update = deployment.update.clone();
    if args.supervisor.is_some() {
        update.supervisor = args.supervisor.clone();
    }
    if args.node_capacity_rps.is_some() {
        update.node_capacity_rps = args.node_capacity_rps;
    }
    anyhow::ensure!(
        update
            .node_capacity_rps
            .is_none_or(|c| c.is_finite() && c > 0.0),
        "node_capacity_rps must be above zero"
    );
    Ok(update)
}

/// Paging and status-page subscriptions, when the deployment file has their sections. The
/// page key signs the links in pages and subscription messages (a server secret, kept beside
/// the ops token).
fn pager_and_subscriptions(
    deployment: &Deployment,
    data: &Path,
    listen: SocketAddr,
) -> anyhow::Result<(Option<Pager>, Option<Subscriptions>)> {
    let link_key = ops_token_file(&data.join("page-key"))?;
    let base = format!("http://{listen}");
    let pager = match deployment.oncall.clone() {
        Some(oncall) => Some(
            Pager::new(oncall, &link_key, &base, deployment.page_smtp_url())
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let subscriptions = match &deployment.subscriptions {
        Some(config) => {
            Some(Subscriptions::new(config, &link_key, &base).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    Ok((pager, subscriptions))
}

/// Where the leader's lease lives: `--lease postgres://…`, else a file lock in the folder.
fn lease_source(flag: Option<&str>, data: &Path) -> anyhow::Result<LeaseSource> {
    Ok(match flag {
        None => LeaseSource::in_folder(data),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            LeaseSource::Postgres(url.to_owned())
        }
        Some(other) => anyhow::bail!("--lease {other:?} is not a postgres:// URL"),
    })
}

/// Serves the API, status page and dashboard until Ctrl-C or SIGTERM, with the monitor
/// running beside them.
async fn serve(
    control: std::sync::Arc<Control>,
    listen: SocketAddr,
    tls: Option<croupier_web::tls::Acceptor>,
    scheme: &str,
    inject_panics: bool,
    proxies: croupier_web::client::TrustedProxies,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(
        "croupier control on {scheme}://{address}: status page {scheme}://{address}/status, \
         dashboard {scheme}://{address}/dashboard ({} targets)",
        control.config.targets.len()
    );
    if inject_panics {
        control.inject_panics(3);
    }
    croupier_control::spawn_monitor(control.clone());
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    croupier_web::serve::serve_behind(
        listener,
        croupier_control::api::router(control),
        stop,
        croupier_web::serve::Hygiene::operators(),
        tls,
        proxies,
    )
    .await;
    Ok(())
}

pub fn run(args: ControlArgs) -> anyhow::Result<()> {
    if let Some(ControlCommand::Export(export)) = args.command {
        return crate::control_export::run(*export);
    }
    let tls = args.tls.acceptor()?;
    let deployment = deployment(args.config.as_deref())?;
    let listen = listen_address(args.listen, &deployment)?;
    let data = args
        .data
        .clone()
        .or_else(|| deployment.data.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data"));
    crate::private_files::secure_data_folder(&data)?;
    let ops_token = match args.ops_token.clone() {
        Some(token) => token,
        None => ops_token_file(&data.join(OPS_TOKEN_FILE))?,
    };
    let test_players = test_players(&args)?;
    let backup = backup_config(&args.backup, &data)?;
    let update = update_config(&args, &deployment)?;
    let (pager, subscriptions) = pager_and_subscriptions(&deployment, &data, listen)?;
    let state_path = data.join("control.db");
    let state =
        State::open(&state_path).with_context(|| format!("opening {}", state_path.display()))?;
    let inject_panics = crate::test_faults::panic_under_lock(args.fault.as_deref())?;
    let lease = lease_source(args.lease.as_deref(), &data)?;
    // Control planes on several machines share what their leaders sent on the lease's database.
    let shared_alert_log = match &lease {
        LeaseSource::Postgres(url) => Some(url.clone()),
        LeaseSource::File(_) => None,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let config = ControlConfig {
            reserve: Some(Reserve::keep(data.join("control-reserve"), RESERVE_BYTES)),
            targets: targets(
                &deployment,
                args.nodes,
                args.gateways,
                args.store.as_deref(),
            ),
            check_url: args.check_url.or_else(|| deployment.check_url.clone()),
            test_players,
            webhooks: webhooks(&deployment, args.webhooks, args.slack_webhooks),
            ops_token,
            rules: deployment.rules(),
            slos: deployment.slos(),
            sla_credits: deployment.sla.credits.clone(),
            pager,
            subscriptions,
            update,
            backup,
            leadership: croupier_control::lease::spawn(lease),
            shared_alert_log,
            lockout: args.lockout.config(),
            client_tls: args.tls.client(),
            secure_cookies: tls.is_some(),
        };
        let control =
            Control::new(config, state).context("the TLS files for calling other components")?;
        let proxies = args.proxies.proxies();
        serve(
            control,
            listen,
            tls,
            args.tls.scheme(),
            inject_panics,
            proxies,
        )
        .await
    })
}

/// What the control plane backs up: a SQLite file (`--backup-db`) or a PostgreSQL ledger
/// through pgBackRest (`--pg-data`); nothing without either.
fn backup_config(
    args: &BackupFlags,
    data: &std::path::Path,
) -> anyhow::Result<Option<croupier_control::backups::BackupConfig>> {
    use croupier_control::backups::{BackupConfig, BackupLedger};
    let verify_every = std::time::Duration::from_secs(args.backup_verify_every_s.max(1));
    let seed_key_file = args.seed_key_file.clone().or_else(|| {
        let path = data.join(crate::seed_key_args::SEED_KEY_FILE);
        path.exists().then_some(path)
    });
    let target = args
        .backup_target
        .clone()
        .unwrap_or_else(|| data.join("backups").display().to_string());
    if let Some(pgbackrest) = args.backup_pg.config(&target)? {
        anyhow::ensure!(
            args.backup_db.is_none(),
            "--backup-db (a SQLite ledger) and --pg-data (a PostgreSQL one) exclude each other"
        );
        let policy = croupier_backup::Policy::default();
        let scratch_dir = crate::backup_pg_cmd::default_scratch();
        let schedule = croupier_backup::pgbackrest::scheduler::PgSchedule {
            full_every_ms: policy.full_every_ms,
            diff_every_ms: policy.incremental_every_ms,
            verify_every_ms: verify_every.as_millis() as i64,
            scratch_dir: scratch_dir.clone(),
            database: args.backup_pg.pg_database.clone(),
        };
        return Ok(Some(BackupConfig {
            ledger: BackupLedger::Postgres {
                pgbackrest,
                schedule,
            },
            verify_every,
            scratch_dir,
            seed_key_file,
        }));
    }
    let Some(db) = &args.backup_db else {
        return Ok(None);
    };
    let key = match &args.backup_key_file {
        Some(path) => croupier_backup::BackupKey::from_file(path),
        None => croupier_backup::BackupKey::from_env(),
    }
    .context("backups need a key")?;
    Ok(Some(BackupConfig {
        ledger: BackupLedger::Sqlite {
            db: db.clone(),
            target,
            key,
            policy: croupier_backup::Policy::default(),
            session_ttl_ms: croupier_node::rounds::SESSION_TTL_MS,
        },
        verify_every,
        scratch_dir: data.join("restore-tests"),
        seed_key_file,
    }))
}
