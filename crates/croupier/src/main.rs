//! The `croupier` binary: one subcommand per component (see docs/design.md). Parses arguments,
//! sets up logging and hands over to the library crates.

mod allocator;
mod audit_cmd;
mod backup_cmd;
mod backup_pg_cmd;
mod cashier_cmd;
mod console;
mod control_client;
mod control_cmd;
mod control_export;
mod ctl_cmd;
mod drain_cmd;
mod drill_cmd;
mod executable;
mod exit_status;
mod gateway_cmd;
mod launch_cmd;
mod loadtest_cmd;
mod lockout_args;
mod log_args;
mod maintenance_cmd;
mod node_cmd;
mod operator_args;
mod private_files;
mod proxy_args;
mod seed_key_args;
mod supervisor;
mod test_faults;
mod tls_args;
mod tls_cmd;
mod tools_cmd;
mod up_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "croupier", version, about = "Keeps online casino games live")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: log_args::LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on this machine: three game nodes on one ledger and the gateway, supervised.
    Up(up_cmd::UpArgs),
    /// Run a game server: player API, WebSocket and ops API.
    Node(node_cmd::NodeArgs),
    /// Run the players' gateway in front of the game nodes.
    Gateway(gateway_cmd::GatewayArgs),
    /// Run the control plane: monitoring, alerts, SLOs, incidents, status page, dashboard.
    Control(Box<control_cmd::ControlArgs>),
    /// Drain a node and wait until it has nothing in flight (a preStop hook, a stop by hand).
    Drain(drain_cmd::DrainArgs),
    /// Talk to the control plane's API: status, alerts, incidents, silences, drain, audit.
    Ctl(ctl_cmd::CtlArgs),
    /// Rolling updates and maintenance windows, through the control plane.
    Maintenance(maintenance_cmd::MaintenanceArgs),
    /// Recompute a round's outcome from its revealed server seed.
    Verify(tools_cmd::VerifyArgs),
    /// Check every ledger invariant of a store and print the report.
    Integrity(tools_cmd::IntegrityArgs),
    /// Simulated players at peak against a players' address, with thresholds and reports.
    Loadtest(loadtest_cmd::LoadtestArgs),
    /// Failover drills under load, each ending with the bank checks and a verdict.
    Drill(drill_cmd::DrillArgs),
    /// Security sweep of a running deployment.
    Audit(audit_cmd::AuditArgs),
    /// Backups proven by restores: snapshot, ship, restore, verify, list, prune, run.
    Backup(backup_cmd::BackupArgs),
    /// Sign a player's launch token with an operator key, as the operator's platform does.
    LaunchToken(launch_cmd::LaunchTokenArgs),
    /// Certificates for TLS on one machine: a local CA and a certificate for its hosts.
    Tls(tls_cmd::TlsCmdArgs),
    /// The operator's cashier API on a node: deposit, withdraw, balance, lookup, export.
    Cashier(cashier_cmd::CashierArgs),
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    // Flushes the log's queue when main returns.
    let _log = match cli.log.init() {
        Ok(log) => log,
        Err(e) => return failed(&e),
    };
    let outcome = match cli.command {
        Command::Up(args) => up_cmd::run(args, &cli.log),
        Command::Node(args) => node_cmd::run(args),
        Command::Gateway(args) => gateway_cmd::run(args),
        Command::Control(args) => control_cmd::run(*args),
        Command::Ctl(args) => ctl_cmd::run(args),
        Command::Drain(args) => drain_cmd::run(args),
        Command::Maintenance(args) => maintenance_cmd::run(args),
        Command::Verify(args) => tools_cmd::verify(args),
        Command::Integrity(args) => tools_cmd::integrity(args),
        Command::Loadtest(args) => loadtest_cmd::run(args),
        Command::Drill(args) => drill_cmd::run(args),
        Command::Audit(args) => audit_cmd::run(args),
        Command::Backup(args) => backup_cmd::run(args),
        Command::LaunchToken(args) => launch_cmd::run(args),
        Command::Tls(args) => tls_cmd::run(args),
        Command::Cashier(args) => cashier_cmd::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e),
    }
}

/// Reports `e` as `main` returning it would (`Error: ` and its causes), with its exit status.
fn failed(e: &anyhow::Error) -> ExitCode {
    eprintln!("Error: {e:?}");
    exit_status::of(e)
}
