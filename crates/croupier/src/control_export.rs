//! `croupier control export`: the control plane's alerting as files for the operators' own
//! Prometheus and Grafana (`croupier_monitor::promrules`, `croupier_monitor::grafana`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use croupier_control::config::Deployment;
use croupier_monitor::{grafana, promrules};

#[derive(Args)]
pub struct ExportArgs {
    /// The deployment file whose rules and SLOs to export (the built-in ones otherwise).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the threshold rules, SLO burn-rate alerts, synthetic checks and the lease's
    /// alerts as a Prometheus rule file (YAML) here.
    #[arg(long, required_unless_present = "grafana_dashboard")]
    prometheus_rules: Option<PathBuf>,
    /// Write a Grafana dashboard (JSON) over the same metric names here.
    #[arg(long)]
    grafana_dashboard: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let deployment = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Deployment::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Deployment::default(),
    };
    if let Some(path) = &args.prometheus_rules {
        let groups = promrules::groups(&deployment.rules(), &deployment.slos());
        std::fs::write(path, promrules::to_yaml(&groups))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.grafana_dashboard {
        std::fs::write(path, grafana::dashboard())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
