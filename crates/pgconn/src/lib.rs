//! How every Croupier process reaches a PostgreSQL server from a URL (the store's pools, the
//! control plane's lease, alert log and replication reads, the drills and benchmarks): the
//! settings tokio-postgres reads from it, and TLS as libpq's parameters in it ask for.
//!
//! A store on a server of its own sends every bet over the network, and the server may be
//! reached through networks the casino does not own. tokio-postgres knows only
//! `sslmode=disable|prefer|require` and no certificate files, while operators write libpq's
//! URLs (`?sslmode=verify-full&sslrootcert=/etc/croupier/pg-ca.pem`). So libpq's TLS
//! parameters are taken out of a `postgres://` URL here and tokio-postgres is given the rest:
//! - `sslmode=require`, `verify-ca` or `verify-full`: TLS 1.2 or 1.3 (rustls, the policy of
//!   `croupier_web::tls::client_config`), the server's certificate verified against
//!   `sslrootcert` (a PEM file of CA certificates; without it, or with `system`, the system's
//!   roots) and for the host the URL names. Stricter than libpq, whose `require` accepts any
//!   certificate and `verify-ca` any name: the money is never sent to a server that anyone on
//!   the path could stand in for.
//! - `sslcert` and `sslkey` (PEM files): a client certificate, for a server whose `pg_hba.conf`
//!   asks for one (`hostssl … cert`).
//! - `sslcrl` (a PEM file of certificate revocation lists): a server certificate revoked by
//!   its CA is refused, and so is one whose issuer published no list in the file; the file is
//!   read again when it changes, as the others are.
//! - no `sslmode`, or `disable`, `allow`, `prefer`: no TLS, for a loopback or a private
//!   network. libpq's `prefer` encrypts opportunistically without verifying, which stops no
//!   active attacker; it is not pretended here.
//!
//! The key=value form (`host=… dbname=…`) is passed to tokio-postgres as it is: its `prefer`
//! (the default) means no TLS and its `require` verifies against the system's roots.
//!
//! A URL without a password, in either form, takes it from libpq's password file
//! (`passfile=`, `PGPASSFILE`, `~/.pgpass`: `passfile`); one without a user, or with an empty
//! one, logs in as `PGUSER`, else as the operating system's user, as libpq does.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use croupier_web::tls::{ClientFiles, TlsError, client_config};
use percent_encoding::percent_decode_str;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

mod passfile;
mod shown;
pub use shown::shown;

/// A connection's driver, as `Server::connect` returns it (to be spawned).
pub type Connection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// The protocol name a PostgreSQL server expects in a TLS handshake's ALPN (PostgreSQL 17
/// refuses a direct TLS connection without it; older servers ignore it).
const ALPN: &[u8] = b"postgresql";

#[derive(Debug, thiserror::Error)]
pub enum PgUrlError {
    #[error("invalid PostgreSQL URL: {0}")]
    Invalid(String),
    #[error(
        "invalid PostgreSQL URL: sslmode={0} is none of disable, allow, prefer, require, verify-ca, verify-full"
    )]
    SslMode(String),
    #[error("invalid PostgreSQL URL: {0} is given without {1}")]
    Unpaired(&'static str, &'static str),
    #[error("invalid PostgreSQL URL: {0} is not valid UTF-8 once decoded")]
    Encoding(&'static str),
    #[error("PostgreSQL password file: {0}")]
    PasswordFile(String),
    #[error("TLS to PostgreSQL: {0}")]
    Tls(#[from] TlsError),
}

/// A PostgreSQL server as a URL names it: tokio-postgres's settings (a caller adds its own)
/// and the TLS connector they are connected with.
#[derive(Clone)]
pub struct Server {
    pub config: Config,
    pub tls: MakeRustlsConnect,
}

impl Server {
    pub fn from_url(url: &str) -> Result<Server, PgUrlError> {
        let Some((base, query)) = url.split_once('?').filter(|_| is_url(url)) else {
            return key_value_form(url);
        };
        let mut wanted = TlsWanted::default();
        let mut passfile = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => wanted.mode = Some(decoded(value, "sslmode")?),
                "sslrootcert" => wanted.root = Some(decoded(value, "sslrootcert")?),
                "sslcert" => wanted.cert = Some(decoded(value, "sslcert")?.into()),
                "sslkey" => wanted.key = Some(decoded(value, "sslkey")?.into()),
                "sslcrl" => wanted.crl = Some(decoded(value, "sslcrl")?.into()),
                "passfile" => passfile = Some(decoded(value, "passfile")?.into()),
                _ => kept.push(pair),
            }
        }
        let rest = match kept.is_empty() {
            true => base.to_owned(),
            false => format!("{base}?{}", kept.join("&")),
        };
        let mut config = parsed(&rest)?;
        passfile::fill_password(&mut config, passfile)?;
        let tls = wanted.connector()?;
        config.ssl_mode(match tls {
            Some(_) => SslMode::Require,
            None => SslMode::Disable,
        });
        Ok(Server {
            config,
            tls: tls.unwrap_or_else(unused_connector),
        })
    }

    /// Whether connections are made over TLS only.
    pub fn encrypted(&self) -> bool {
        self.config.get_ssl_mode() == SslMode::Require
    }

    /// Whether a connection crosses a network in clear text: no TLS, and a host that is not
    /// this machine (a loopback address, `localhost` or a Unix socket).
    pub fn in_clear_across_a_network(&self) -> bool {
        let remote = |host: &Host| match host {
            Host::Tcp(name) => {
                name != "localhost" && !name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            Host::Unix(_) => false,
        };
        !self.encrypted() && self.config.get_hosts().iter().any(remote)
    }

    pub async fn connect(&self) -> Result<(Client, Connection), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }

    /// Connects, and drives the connection on the current runtime until it ends. An end
    /// other than the client's own close is logged as a warning naming the connection's
    /// `application_name`, with every cause: why the server or the network ended it
    /// ("terminating connection due to administrator command", "the database system is
    /// shutting down"), where tokio-postgres's own text, and deadpool's log of it, say only
    /// "db error".
    pub async fn connect_driven(
        &self,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        let (client, connection) = self.connect().await?;
        let session = self
            .config
            .get_application_name()
            .unwrap_or("croupier")
            .to_owned();
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(%session, error = %with_causes(&e), "a connection to the database ended");
            }
        });
        Ok((client, driver))
    }
}

/// An error and every cause under it, as one line: tokio-postgres's own text leaves the
/// cause out ("db error", "error performing TLS handshake"), which is what an operator needs
/// ("FATAL: no pg_hba.conf entry … no encryption", "invalid peer certificate: UnknownIssuer").
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

/// tokio-postgres's settings from `url`, with the user libpq would log in as (`fill_user`).
fn parsed(url: &str) -> Result<Config, PgUrlError> {
    let mut config = Config::from_str(url).map_err(|e| PgUrlError::Invalid(with_causes(&e)))?;
    fill_user(&mut config);
    Ok(config)
}

/// A URL naming no user, or an empty one (`postgres://@host/db`, what `postgres://$USER@host/db`
/// becomes where `$USER` is unset), logs in as libpq's would: as `PGUSER`, else as this
/// process's operating system user. (tokio-postgres sends an empty name as it is, which the
/// server refuses.)
fn fill_user(config: &mut Config) {
    if config.get_user().is_some_and(|user| !user.is_empty()) {
        return;
    }
    if let Some(user) = default_user(std::env::var("PGUSER").ok().as_deref()) {
        config.user(user);
    }
}

/// `PGUSER`'s value when it names one, else the operating system's user.
fn default_user(pguser: Option<&str>) -> Option<String> {
    pguser
        .filter(|user| !user.is_empty())
        .map(str::to_owned)
        .or_else(|| whoami::username().ok())
}

fn is_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn decoded(value: &str, name: &'static str) -> Result<String, PgUrlError> {
    percent_decode_str(value)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| PgUrlError::Encoding(name))
}

/// A URL without a query (nothing of libpq's to take out), or the key=value form.
fn key_value_form(url: &str) -> Result<Server, PgUrlError> {
    let mut config = parsed(url)?;
    passfile::fill_password(&mut config, None)?;
    let tls = match config.get_ssl_mode() {
        SslMode::Require => connector(&ClientFiles::default())?,
        _ => {
            config.ssl_mode(SslMode::Disable);
            unused_connector()
        }
    };
    Ok(Server { config, tls })
}

/// libpq's TLS parameters as a URL gave them.
#[derive(Default)]
struct TlsWanted {
    mode: Option<String>,
    root: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    crl: Option<PathBuf>,
}

impl TlsWanted {
    /// The connector of a mode that wants TLS; `None` for one that does not.
    fn connector(self) -> Result<Option<MakeRustlsConnect>, PgUrlError> {
        match self.mode.as_deref() {
            None | Some("disable" | "allow" | "prefer") => return Ok(None),
            Some("require" | "verify-ca" | "verify-full") => {}
            Some(other) => return Err(PgUrlError::SslMode(other.to_owned())),
        }
        let identity = match (self.cert, self.key) {
            // A key others may read is refused where it is read (`croupier_web::tls`).
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return Err(PgUrlError::Unpaired("sslcert", "sslkey")),
            (None, Some(_)) => return Err(PgUrlError::Unpaired("sslkey", "sslcert")),
        };
        let ca = self.root.filter(|root| root != "system").map(PathBuf::from);
        let crl = self.crl;
        connector(&ClientFiles { ca, identity, crl }).map(Some)
    }
}

fn connector(files: &ClientFiles) -> Result<MakeRustlsConnect, PgUrlError> {
    let mut config = client_config(files)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(MakeRustlsConnect::new(config))
}

/// The connector of a server reached without TLS: tokio-postgres never calls it
/// (`SslMode::Disable`), so it trusts nothing rather than load the system's roots.
fn unused_connector() -> MakeRustlsConnect {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

#[cfg(test)]
mod tests;
