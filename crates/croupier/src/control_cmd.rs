//! `croupier control`: the control plane, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use croupier_control::config::Deployment;
use croupier_control::engine::{Kind, Target};
use croupier_control::notify::{Format, Webhook};
use croupier_control::state::State;
use croupier_control::{Control, ControlConfig};
use croupier_vitals::reserve::Reserve;

use crate::node_cmd::ops_token_file;

#[derive(Args)]
pub struct ControlArgs {
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
    /// The players' address (the gateway) for synthetic checks: the lobby every second, a
    /// real test bet every five seconds.
    #[arg(long)]
    check_url: Option<String>,
    /// Back up this ledger file: ship its new rows every second, take the scheduled backups
    /// and prove them by restore tests (alerts when one fails or is overdue).
    #[arg(long)]
    backup_db: Option<PathBuf>,
    /// Where backups go: a folder or s3://bucket/prefix [default: <data>/backups].
    #[arg(long)]
    backup_target: Option<String>,
    /// The backup key file (64 hex digits; `croupier backup keygen`); otherwise
    /// CROUPIER_BACKUP_KEY or CROUPIER_BACKUP_KEY_FILE.
    #[arg(long)]
    backup_key_file: Option<PathBuf>,
    /// Seconds between restore tests.
    #[arg(long, default_value_t = 3_600)]
    backup_verify_every_s: u64,
    /// `croupier up`'s supervisor API, through which rolling updates replace a node's build.
    #[arg(long)]
    supervisor: Option<String>,
    /// A webhook receiving alerts as generic JSON; repeat for each.
    #[arg(long = "webhook")]
    webhooks: Vec<String>,
    /// A Slack-compatible incoming webhook; repeat for each.
    #[arg(long = "slack-webhook")]
    slack_webhooks: Vec<String>,
    /// Token for the operators' API (default: read from, or created in, <data>/ops-token).
    #[arg(long, env = "CROUPIER_OPS_TOKEN", hide_env_values = true)]
    ops_token: Option<String>,
    /// Test-only fault injection: `panic-under-lock` makes the first three monitor rounds
    /// panic while holding the series lock. Refused unless CROUPIER_TEST_FAULTS=1.
    #[arg(long, hide = true)]
    fault: Option<String>,
}

fn parse_target(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, url)) if !name.is_empty() && url.starts_with("http://") => {
            Ok((name.to_owned(), url.trim_end_matches('/').to_owned()))
        }
        _ => Err(format!("'{text}' is not name=http://host:port")),
    }
}

/// Room kept back for the control plane's own records on a full disk (control.db grows by
/// a few pages per incident; this is hundreds of incidents' worth).
const RESERVE_BYTES: u64 = 8 * 1024 * 1024;

pub fn run(args: ControlArgs) -> anyhow::Result<()> {
    let deployment = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Deployment::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Deployment::default(),
    };
    let listen: SocketAddr = match (args.listen, &deployment.listen) {
        (Some(listen), _) => listen,
        (None, Some(text)) => text
            .parse()
            .with_context(|| format!("listen = \"{text}\" is not host:port"))?,
        (None, None) => "127.0.0.1:8080".parse()?,
    };
    let data = args
        .data
        .clone()
        .or_else(|| deployment.data.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data"));
    std::fs::create_dir_all(&data)?;
    let ops_token = match args.ops_token {
        Some(token) => token,
        None => ops_token_file(&data.join("ops-token"))?,
    };
    let mut targets = deployment.targets();
    targets.extend(
        args.nodes
            .into_iter()
            .map(|(name, base)| Target::new(&name, Kind::Node, &base))
            .chain(
                args.gateways
                    .into_iter()
                    .map(|(name, base)| Target::new(&name, Kind::Gateway, &base)),
            ),
    );
    let mut webhooks = deployment.webhooks();
    webhooks.extend(
        args.webhooks
            .into_iter()
            .map(|url| Webhook {
                url,
                format: Format::Generic,
            })
            .chain(args.slack_webhooks.into_iter().map(|url| Webhook {
                url,
                format: Format::Slack,
            })),
    );
    let check_url = args.check_url.or_else(|| deployment.check_url.clone());
    let backup = match &args.backup_db {
        None => None,
        Some(db) => {
            let key = match &args.backup_key_file {
                Some(path) => croupier_backup::BackupKey::from_file(path),
                None => croupier_backup::BackupKey::from_env(),
            }
            .context("backups need a key")?;
            Some(croupier_control::backups::BackupConfig {
                db: db.clone(),
                target: args
                    .backup_target
                    .clone()
                    .unwrap_or_else(|| data.join("backups").display().to_string()),
                key,
                verify_every: std::time::Duration::from_secs(args.backup_verify_every_s.max(1)),
                policy: croupier_backup::Policy::default(),
                scratch_dir: data.join("restore-tests"),
                session_ttl_ms: croupier_node::rounds::SESSION_TTL_MS,
            })
        }
    };
    let mut update = deployment.update.clone();
    if args.supervisor.is_some() {
        update.supervisor = args.supervisor;
    }
    let state_path = data.join("control.db");
    let state =
        State::open(&state_path).with_context(|| format!("opening {}", state_path.display()))?;
    let inject_panics = crate::test_faults::panic_under_lock(args.fault.as_deref())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let control = Control::new(
            ControlConfig {
                reserve: Some(Reserve::keep(data.join("control-reserve"), RESERVE_BYTES)),
                targets,
                check_url,
                webhooks,
                ops_token,
                rules: deployment.rules(),
                slos: deployment.slos(),
                update,
                backup,
            },
            state,
        );
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let address = listener.local_addr()?;
        tracing::info!(
            "croupier control on http://{address}: status page http://{address}/status, \
             dashboard http://{address}/dashboard ({} targets)",
            control.config.targets.len()
        );
        if inject_panics {
            control.inject_panics(3);
        }
        croupier_control::spawn_monitor(control.clone());
        axum::serve(listener, croupier_control::api::router(control))
            .with_graceful_shutdown(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await?;
        anyhow::Ok(())
    })
}
