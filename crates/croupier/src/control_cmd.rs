//! `croupier control`: the control plane, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use croupier_control::engine::{Kind, Target};
use croupier_control::notify::{Format, Webhook};
use croupier_control::state::State;
use croupier_control::{Control, ControlConfig};

use crate::node_cmd::ops_token_file;

#[derive(Args)]
pub struct ControlArgs {
    /// Address of the operators' API and the players' status feed.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Data folder: the control plane's state (control.db) and the ops token.
    #[arg(long, default_value = "data")]
    data: PathBuf,
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
    /// A webhook receiving alerts as generic JSON; repeat for each.
    #[arg(long = "webhook")]
    webhooks: Vec<String>,
    /// A Slack-compatible incoming webhook; repeat for each.
    #[arg(long = "slack-webhook")]
    slack_webhooks: Vec<String>,
    /// Token for the operators' API (default: read from, or created in, <data>/ops-token).
    #[arg(long, env = "CROUPIER_OPS_TOKEN", hide_env_values = true)]
    ops_token: Option<String>,
}

fn parse_target(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, url)) if !name.is_empty() && url.starts_with("http://") => {
            Ok((name.to_owned(), url.trim_end_matches('/').to_owned()))
        }
        _ => Err(format!("'{text}' is not name=http://host:port")),
    }
}

pub fn run(args: ControlArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data)?;
    let ops_token = match args.ops_token {
        Some(token) => token,
        None => ops_token_file(&args.data.join("ops-token"))?,
    };
    let targets = args
        .nodes
        .into_iter()
        .map(|(name, base)| Target {
            name,
            kind: Kind::Node,
            base,
        })
        .chain(args.gateways.into_iter().map(|(name, base)| Target {
            name,
            kind: Kind::Gateway,
            base,
        }))
        .collect();
    let webhooks = args
        .webhooks
        .into_iter()
        .map(|url| Webhook {
            url,
            format: Format::Generic,
        })
        .chain(args.slack_webhooks.into_iter().map(|url| Webhook {
            url,
            format: Format::Slack,
        }))
        .collect();
    let state_path = args.data.join("control.db");
    let state =
        State::open(&state_path).with_context(|| format!("opening {}", state_path.display()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let control = Control::new(
            ControlConfig {
                targets,
                check_url: args.check_url,
                webhooks,
                ops_token,
            },
            state,
        );
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!(
            "croupier control on http://{} (status feed /api/v1/status; {} targets)",
            listener.local_addr()?,
            control.config.targets.len()
        );
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
