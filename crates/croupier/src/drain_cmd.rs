//! `croupier drain`: drains a node and waits until it has nothing in flight, for a stop
//! that costs players nothing: Kubernetes' preStop hook (the pod's endpoint removal races
//! SIGTERM), a systemd `ExecStop=`, or by hand. The node refuses new work at once (its
//! `/readyz` fails, so every gateway stops sending it players within two health checks);
//! requests in flight finish. The command returns when none is left, or at the deadline; it
//! never holds the stop longer. Open rounds (a blackjack hand) need no wait: they live in the
//! store and any node finishes them.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use croupier_web::wire::ops::{DrainReport, SetDrain};

#[derive(Args)]
pub struct DrainArgs {
    /// The node's address (its ops API).
    #[arg(long, default_value = "http://127.0.0.1:7001")]
    node: String,
    /// Seconds to wait for the node to finish what it has.
    #[arg(long, default_value_t = 30)]
    deadline_s: u64,
    /// The ops token.
    #[arg(long, env = "CROUPIER_OPS_TOKEN", hide_env_values = true)]
    ops_token: String,
    /// TLS towards an https:// node (its CA; a client certificate when it asks for one).
    #[command(flatten)]
    tls: crate::tls_args::TlsArgs,
}

/// The gateways' health checks see a draining node within two checks (200 ms each by
/// default); the wait starts after this.
const GATEWAYS_NOTICE: Duration = Duration::from_secs(1);

pub fn run(args: DrainArgs) -> anyhow::Result<()> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build();
    let agent = croupier_web::tls::blocking::agent(config, &args.tls.client())?;
    let url = format!("{}/ops/drain", args.node.trim_end_matches('/'));
    let auth = format!("Bearer {}", args.ops_token);
    let deadline = Instant::now() + Duration::from_secs(args.deadline_s);
    agent
        .post(&url)
        .header("authorization", &auth)
        .send_json(SetDrain { draining: true })
        .with_context(|| format!("draining {}", args.node))?;
    std::thread::sleep(GATEWAYS_NOTICE);
    loop {
        let report: DrainReport = agent
            .get(&url)
            .header("authorization", &auth)
            .call()
            .and_then(|mut r| r.body_mut().read_json())
            .with_context(|| format!("reading {url}"))?;
        let busy = report.in_flight_requests;
        if busy == 0 {
            tracing::info!(node = %args.node, "drained");
            return Ok(());
        }
        if Instant::now() >= deadline {
            tracing::warn!(node = %args.node, busy, "drain deadline reached; stopping anyway");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
