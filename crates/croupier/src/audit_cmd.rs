//! `croupier audit`: the security sweep of a running deployment; a table on stdout, JSON on
//! request, and a non-zero exit on any failed check.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use croupier_loadtest::audit::{self, AuditTargets, LaunchKey};
use croupier_loadtest::layout::OPS_TOKEN_FILE;
use croupier_web::launch::SigningKey;

use crate::console::out;

#[derive(Args)]
pub struct AuditArgs {
    /// The players' address (gateway).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    gateway: String,
    /// The gateway's admin address.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    admin: String,
    /// A game node's address; repeat for each (default: the three of `croupier up`).
    #[arg(long = "node", default_values = ["http://127.0.0.1:7001", "http://127.0.0.1:7002", "http://127.0.0.1:7003"])]
    nodes: Vec<String>,
    /// The control plane's address ("" to leave it out).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    control: String,
    /// The deployment's ops token, to rate its strength (default: <data>/ops-token if present).
    #[arg(long, env = "CROUPIER_OPS_TOKEN", hide_env_values = true)]
    ops_token: Option<String>,
    /// Data folder holding the ops token.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Requests in the rate-limit burst (one player).
    #[arg(long, default_value_t = 1_000)]
    burst: usize,
    /// The operator's launch key (`<kid>.hs256` or an Ed25519 private key PEM) the probe
    /// players sign in with, which also lets the audit try expired, foreign and replayed
    /// tokens [default: the first *.hs256 of <data>/launch-keys, if any].
    #[arg(long)]
    launch_key: Option<PathBuf>,
    /// The ledger's currency, for those tokens.
    #[arg(long, default_value = "EUR")]
    currency: String,
    /// Write the findings as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// CA certificates (PEM) trusted at https:// addresses (default: the system's roots).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for nodes that ask for one (mutual TLS), with --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let ops_token = args.ops_token.or_else(|| {
        std::fs::read_to_string(args.data.join(OPS_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_owned())
    });
    let launch_key = match args
        .launch_key
        .or_else(|| crate::launch_cmd::default_key(&args.data).ok())
    {
        Some(path) => Some(LaunchKey(std::sync::Arc::new(
            SigningKey::from_file(&path, None)
                .with_context(|| format!("reading the launch key {}", path.display()))?,
        ))),
        None => None,
    };
    let trim = |url: String| url.trim_end_matches('/').to_owned();
    let targets = AuditTargets {
        gateway: trim(args.gateway),
        admin: Some(trim(args.admin)).filter(|u| !u.is_empty()),
        nodes: args.nodes.into_iter().map(trim).collect(),
        control: Some(trim(args.control)).filter(|u| !u.is_empty()),
        ops_token,
        burst: args.burst,
        launch_key,
        currency: args.currency,
        data: Some(args.data.clone()),
        tls: croupier_web::tls::ClientFiles {
            ca: args.tls_ca.clone(),
            identity: args.tls_cert.clone().zip(args.tls_key.clone()),
            crl: None,
        },
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(audit::run(targets))?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let printed = out!("{}", audit::table(&report));
    anyhow::ensure!(report.ok, "{} audit check(s) failed", report.failed);
    Ok(printed?)
}
