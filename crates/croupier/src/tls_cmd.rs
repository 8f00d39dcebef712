//! `croupier tls init`: a local CA and one certificate for the given hosts, for one machine
//! and for TLS rehearsals (`croupier up --tls` runs it for its data folder). A fleet gives
//! each component certificates from its own PKI instead.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use croupier_web::tls::local_ca::{LocalCa, LocalFiles};

use crate::console::outln;

#[derive(Args)]
pub struct TlsCmdArgs {
    #[command(subcommand)]
    command: TlsCommand,
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Make a CA and a certificate for the hosts (server and client use) in a folder.
    Init(InitArgs),
}

#[derive(Args)]
struct InitArgs {
    /// Folder for ca.pem, cert.pem and key.pem (created).
    #[arg(long, default_value = "data/tls")]
    dir: PathBuf,
    /// Host names and IP addresses the certificate is for (repeat the flag).
    #[arg(long = "host", default_values = ["localhost", "127.0.0.1"])]
    hosts: Vec<String>,
    /// Replace certificates already in the folder.
    #[arg(long)]
    force: bool,
}

pub fn run(args: TlsCmdArgs) -> anyhow::Result<()> {
    let TlsCommand::Init(init) = args.command;
    let files = ensure(&init.dir, &init.hosts, init.force)?;
    outln!(
        "CA {}\ncertificate {} (for {})\nkey {}",
        files.ca.display(),
        files.cert.display(),
        init.hosts.join(", "),
        files.key.display()
    )?;
    Ok(())
}

/// The local TLS files in `dir`, made when missing (or when `force`).
pub fn ensure(dir: &std::path::Path, hosts: &[String], force: bool) -> anyhow::Result<LocalFiles> {
    let files = LocalFiles::in_folder(dir);
    if !force && files.ca.exists() && files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    Ok(LocalCa::write(dir, hosts)?)
}
