//! The options of the built-in credential lockout (`croupier_web::lockout`) that every server
//! takes: the operators' networks, never blocked, and how many wrong credentials block an
//! address. `croupier up` hands them on to its children.

use clap::Args;
use croupier_web::lockout::{LockoutConfig, parse_allow};

#[derive(Debug, Clone, Args)]
pub struct LockoutArgs {
    /// The operators' networks, never blocked for wrong operator credentials: addresses or
    /// networks, comma-separated (`10.0.0.0/8,192.168.1.7`). None by default: the local
    /// host too is blocked after too many wrong tokens.
    #[arg(long, env = "CROUPIER_ALLOW_NETWORKS", default_value = "", value_parser = check_allow)]
    pub allow_networks: String,
    /// Wrong operator credentials from one address within 10 minutes that block it (for 1
    /// minute, twice as long each further time, up to an hour).
    #[arg(long, env = "CROUPIER_LOCKOUT_FAILURES", default_value_t = 10)]
    pub lockout_failures: u32,
}

fn check_allow(text: &str) -> Result<String, String> {
    parse_allow(text).map(|_| text.to_owned())
}

impl LockoutArgs {
    pub fn config(&self) -> LockoutConfig {
        LockoutConfig {
            max_failures: self.lockout_failures.max(1),
            allow: parse_allow(&self.allow_networks).unwrap_or_default(),
            ..LockoutConfig::default()
        }
    }

    /// The same options for a child process.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--allow-networks".to_owned(),
            self.allow_networks.clone(),
            "--lockout-failures".to_owned(),
            self.lockout_failures.to_string(),
        ]
    }
}
