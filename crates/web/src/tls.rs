//! TLS for every listener that can leave the host and for every hop between components
//! (gateway → node, control plane → nodes and gateways, load generator → gateway), with
//! rustls: TLS 1.2 and 1.3 only, the ring provider's AEAD suites only.
//!
//! A server reads its certificate chain and key from PEM files and reads them again when
//! they change (checked at most once per `RELOAD_CHECK_EVERY`, on accept): a renewed
//! certificate serves new connections at once, connections already open keep theirs. A file
//! that fails to parse keeps the previous certificate and says why in the log. With a client
//! CA, clients must present a certificate it signed (mutual TLS: the gateway → node hop).
//!
//! A client trusts the CA file it is given (an internal CA, as `croupier tls init` makes) or
//! else the system's roots, and may present its own certificate for mutual TLS; it too reads
//! its files again when they change (`client_files`), so a renewal needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use parking_lot::Mutex;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub mod blocking;
mod client_files;
pub mod local_ca;
mod reloaded;

use reloaded::Reloaded;

/// How often, at most, a server or a client looks at its certificate files for a change.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {message}")]
    File {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("making a certificate: {0}")]
    Generate(String),
}

/// Where a server finds its certificate chain, its key and (for mutual TLS) the CA its
/// clients' certificates must chain to.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: certificate revocation lists (PEM, one file) the clients'
    /// certificates are checked against, as `ClientFiles::crl` checks servers' (the whole
    /// chain, an unknown status refused, a list past its next update still used).
    pub crl: Option<PathBuf>,
}

impl ServerFiles {
    fn paths(&self) -> Vec<PathBuf> {
        let crl = self.client_ca.as_ref().and(self.crl.as_ref());
        [
            Some(&self.cert),
            Some(&self.key),
            self.client_ca.as_ref(),
            crl,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    pem_objects(path, what, "certificate")
}

/// Every PEM object of its type (`kind`) in the file at `path` (`what` it is, for the error);
/// none is an error, as a missing file is.
fn pem_objects<T: PemObject>(
    path: &Path,
    what: &'static str,
    kind: &str,
) -> Result<Vec<T>, TlsError> {
    let fail = |message: String| TlsError::File {
        what,
        path: path.to_path_buf(),
        message,
    };
    let objects = T::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if objects.is_empty() {
        return Err(fail(format!("no {kind} in it")));
    }
    Ok(objects)
}

/// A private key, refused when others may read its file, as PostgreSQL and libpq refuse
/// theirs: a key owned by its user must be readable by that user alone (0600), one owned by
/// root by root and its group at most (0640, as a Kubernetes secret mounted for an
/// `fsGroup`). A file that cannot be looked at is left to the reading to report.
fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let refused = |message: String| TlsError::File {
        what: "private key",
        path: path.to_path_buf(),
        message,
    };
    if let Some(mode) = open_to_others(path) {
        return Err(refused(format!(
            "others may read it (mode {mode:o}; chmod 600, or 640 for a key owned by root)"
        )));
    }
    PrivateKeyDer::from_pem_file(path).map_err(|e| refused(e.to_string()))
}

/// The permission bits of the file at `path` when they let others than its owner (and, for
/// a file owned by root, its group's reading) at it.
fn open_to_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let others = if meta.uid() == 0 { 0o037 } else { 0o077 };
    (meta.mode() & others != 0).then_some(meta.mode() & 0o7777)
}

/// The certificate revocation lists of a PEM file; none in it is an error, as a missing file
/// is: a party told to check revocations must not check against nothing.
fn revocation_lists(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    pem_objects(
        path,
        "certificate revocation lists",
        "certificate revocation list",
    )
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path, "CA certificates")? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// A server configuration from `files`: TLS 1.2+ only; mutual TLS when a client CA is given.
pub fn server_config(files: &ServerFiles) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider());
            if let Some(crl) = &files.crl {
                verifier = verifier.with_crls(revocation_lists(crl)?);
            }
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config =
        builder.with_single_cert(certs(&files.cert, "certificate")?, key(&files.key)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A server's TLS, reloaded when its files change.
#[derive(Clone)]
pub struct Acceptor {
    files: Arc<ServerFiles>,
    current: Arc<Mutex<Reloaded<tokio_rustls::TlsAcceptor>>>,
}

fn acceptor(files: &ServerFiles) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    Ok(Arc::new(server_config(files)?).into())
}

impl Acceptor {
    /// Loads `files` now: a server with a broken certificate must not start.
    pub fn load(files: ServerFiles) -> Result<Acceptor, TlsError> {
        let loaded = Reloaded::load("TLS certificate", files.paths(), || acceptor(&files))?;
        Ok(Acceptor {
            files: Arc::new(files),
            current: Arc::new(Mutex::new(loaded)),
        })
    }

    /// The acceptor for a new connection: the files' newest good contents.
    pub fn current(&self) -> tokio_rustls::TlsAcceptor {
        self.current.lock().current(|| acceptor(&self.files))
    }
}

/// What a client presents and trusts.
#[derive(Debug, Clone, Default)]
pub struct ClientFiles {
    /// CA certificates to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// Certificate and key presented for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Certificate revocation lists (PEM, one file): a server whose certificate, or any CA
    /// certificate of its chain below the root, is listed is refused, and so is a chain with
    /// a CA none of the lists was issued by (as libpq's `sslcrl` does with OpenSSL's
    /// whole-chain check). A list past its next update is still used, unlike OpenSSL: a
    /// list left unrenewed must not cut every node off its ledger at once.
    pub crl: Option<PathBuf>,
}

impl ClientFiles {
    fn paths(&self) -> Vec<PathBuf> {
        let identity = self.identity.iter().flat_map(|(c, k)| [c, k]);
        self.ca
            .iter()
            .chain(identity)
            .chain(self.crl.iter())
            .cloned()
            .collect()
    }
}

/// A client configuration: TLS 1.2+ only, trusting `files.ca` (or the system's roots), with
/// the client certificate of `files.identity` when given; both read again when their files
/// change (`client_files`). Broken files are an error now, and later keep the last good ones.
pub fn client_config(files: &ClientFiles) -> Result<ClientConfig, TlsError> {
    let reloading = client_files::Reloading::load(files)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(reloading.clone());
    Ok(match files.identity {
        None => builder.with_no_client_auth(),
        Some(_) => builder.with_client_cert_resolver(reloading),
    })
}

/// Whether the chain `end` + `intermediates` is valid for `name` at `time`, by what `files`
/// trusts: a handshake checks now, this checks the certificate still will be (the audit's
/// "renewed in time").
pub fn verify_at(
    files: &ClientFiles,
    end: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    name: &ServerName<'_>,
    time: UnixTime,
) -> Result<(), TlsError> {
    let roots = match &files.ca {
        Some(ca) => roots(ca)?,
        None => system_roots(),
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    verifier.verify_server_cert(end, intermediates, name, &[], time)?;
    Ok(())
}

/// `http` (its timeouts, socket options and source address as the caller set them) for
/// `http://` and `https://` addresses alike, TLS as `tls` says (`client_config`).
pub fn https_connector(
    mut http: HttpConnector,
    tls: ClientConfig,
) -> HttpsConnector<HttpConnector> {
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// The operating system's trusted roots (unreadable ones are skipped: a client that needs
/// them fails its handshake with a clear certificate error instead).
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(error = %error, "a system root certificate could not be read");
    }
    roots.add_parsable_certificates(found.certs);
    roots
}

#[cfg(test)]
mod tests;
