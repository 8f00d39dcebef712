//! The TLS options every component takes, one set for its listeners and its calls to other
//! components: its certificate and key (served on its listeners, and presented to a peer that
//! asks for a client certificate), the CA it trusts when it calls other components, and the
//! CA whose certificates its clients must present (mutual TLS, for nodes). `croupier up`
//! hands them on to its children.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use croupier_web::tls::{Acceptor, ClientFiles, ServerFiles};

/// The environment variables of these options.
pub const ENVIRONMENT: [&str; 5] = [
    "CROUPIER_TLS_CERT",
    "CROUPIER_TLS_KEY",
    "CROUPIER_TLS_CA",
    "CROUPIER_TLS_CLIENT_CA",
    "CROUPIER_TLS_CRL",
];

#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Certificate chain (PEM) served on this component's listeners (HTTPS instead of HTTP),
    /// and presented to peers that ask for a client certificate. Read again when it changes.
    #[arg(long, env = "CROUPIER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "CROUPIER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) trusted when calling other components over HTTPS (default: the
    /// system's trusted roots).
    #[arg(long, env = "CROUPIER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by this CA (PEM).
    #[arg(long, env = "CROUPIER_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM, one file of your CAs' lists): a component whose
    /// certificate is listed is refused, as the server this one calls and as the client of
    /// its mutual TLS (--tls-client-ca), and so is one whose CA published no list in the
    /// file. Read again when it changes.
    #[arg(long, env = "CROUPIER_TLS_CRL")]
    pub tls_crl: Option<PathBuf>,
}

impl TlsArgs {
    /// The listeners' TLS, loaded now (a broken certificate stops the start), or none.
    pub fn acceptor(&self) -> anyhow::Result<Option<Acceptor>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let files = ServerFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: self.tls_client_ca.clone(),
            crl: self.tls_crl.clone(),
        };
        Acceptor::load(files)
            .map(Some)
            .context("loading the TLS certificate")
    }

    /// What this component trusts and presents when it calls another one.
    pub fn client(&self) -> ClientFiles {
        ClientFiles {
            ca: self.tls_ca.clone(),
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
            crl: self.tls_crl.clone(),
        }
    }

    /// The scheme of this component's own listeners.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The options as arguments for a child process.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: &Option<PathBuf>| {
            if let Some(value) = value {
                args.push(flag.to_owned());
                args.push(value.display().to_string());
            }
        };
        push("--tls-cert", &self.tls_cert);
        push("--tls-key", &self.tls_key);
        push("--tls-ca", &self.tls_ca);
        push("--tls-client-ca", &self.tls_client_ca);
        push("--tls-crl", &self.tls_crl);
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revocation_lists_reach_both_ends_and_a_child() {
        let args = TlsArgs {
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            tls_ca: Some("ca.pem".into()),
            tls_client_ca: Some("ca.pem".into()),
            tls_crl: Some("crl.pem".into()),
        };
        assert_eq!(args.client().crl, Some(PathBuf::from("crl.pem")));
        let passed = args.to_args().join(" ");
        assert!(passed.ends_with("--tls-crl crl.pem"), "{passed}");
        assert!(ENVIRONMENT.contains(&"CROUPIER_TLS_CRL"));
    }
}
