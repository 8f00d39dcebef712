//! The `croupier` binary: one subcommand per component (see DESIGN.md). Parses arguments,
//! sets up logging and hands over to the library crates.

mod backup_cmd;
mod control_cmd;
mod gateway_cmd;
mod node_cmd;
mod tools_cmd;
mod up_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "croupier", version, about = "Keeps online casino games live")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on this machine: three game nodes on one ledger and the gateway, supervised.
    Up(up_cmd::UpArgs),
    /// Run a game server: player API, WebSocket and ops API.
    Node(node_cmd::NodeArgs),
    /// Run the players' gateway in front of the game nodes.
    Gateway(gateway_cmd::GatewayArgs),
    /// Run the control plane: monitoring, alerts, webhooks, incidents, status feed.
    Control(control_cmd::ControlArgs),
    /// Recompute a round's outcome from its revealed server seed.
    Verify(tools_cmd::VerifyArgs),
    /// Check every ledger invariant of a store and print the report.
    Integrity(tools_cmd::IntegrityArgs),
    /// Backups proven by restores: snapshot, ship, restore, verify, list, prune, run.
    Backup(backup_cmd::BackupArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Up(args) => up_cmd::run(args),
        Command::Node(args) => node_cmd::run(args),
        Command::Gateway(args) => gateway_cmd::run(args),
        Command::Control(args) => control_cmd::run(args),
        Command::Verify(args) => tools_cmd::verify(args),
        Command::Integrity(args) => tools_cmd::integrity(args),
        Command::Backup(args) => backup_cmd::run(args),
    }
}
