//! A local certificate authority for one machine and for rehearsals (`croupier tls init`,
//! `croupier up --tls`, the tests): a CA and one certificate for the listed host names and
//! addresses, good for both ends (server and client authentication), so every component
//! can serve with it and present it on the mutual-TLS hops. A fleet uses its own PKI
//! (cert-manager, Vault, the operator's CA) and gives each component its files instead.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::TlsError;

/// How long a certificate from the local CA is good for.
pub const VALID_DAYS: i64 = 365;

/// The files `write` makes in a folder.
#[derive(Debug, Clone)]
pub struct LocalFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl LocalFiles {
    /// The file names in `folder`.
    pub fn in_folder(folder: &Path) -> LocalFiles {
        LocalFiles {
            ca: folder.join("ca.pem"),
            cert: folder.join("cert.pem"),
            key: folder.join("key.pem"),
        }
    }
}

/// A CA held in memory.
pub struct LocalCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn rcgen_error(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

impl LocalCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<LocalCa, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, VALID_DAYS);
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(rcgen_error)?;
        Ok(LocalCa { issuer })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate and its key (PEM) for `hosts` (names or IP addresses), good for `days`,
    /// for server and client authentication.
    pub fn issue(&self, hosts: &[String], days: i64) -> Result<(String, String), TlsError> {
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(rcgen_error)?;
        let first = hosts.first().map_or("croupier", String::as_str);
        params.distinguished_name.push(DnType::CommonName, first);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity(&mut params, days);
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes the CA certificate and a certificate for `hosts` with its key into `folder`
    /// (created; the key readable by its owner only). The CA's own key is not kept: nothing
    /// else can be signed by it later, so a stolen folder cannot mint certificates.
    pub fn write(folder: &Path, hosts: &[String]) -> Result<LocalFiles, TlsError> {
        let ca = LocalCa::new("Croupier local CA")?;
        let (cert, key) = ca.issue(hosts, VALID_DAYS)?;
        let files = LocalFiles::in_folder(folder);
        let io = |path: &Path, e: std::io::Error| TlsError::File {
            what: "writing",
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(folder).map_err(|e| io(folder, e))?;
        std::fs::write(&files.ca, ca.ca_pem()).map_err(|e| io(&files.ca, e))?;
        std::fs::write(&files.cert, cert).map_err(|e| io(&files.cert, e))?;
        write_private(&files.key, key.as_bytes()).map_err(|e| io(&files.key, e))?;
        Ok(files)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
