//! A client's TLS files read again when they change: the CA certificates it trusts and the
//! certificate it presents. A long-running client (the gateway to its nodes, the control
//! plane to nodes and gateways, a node's pools to PostgreSQL) kept what it read at start, so
//! a renewal done in place (cert-manager rewriting a mounted secret, `croupier tls init` run
//! again) was not seen until a restart: after a new CA every new connection failed, and once
//! the old client certificate expired the server refused it, while the process looked
//! healthy. libpq reads its files at each connection; here they are read again when one's
//! modification time changes, looked at no more than once per `RELOAD_CHECK_EVERY`, at a
//! handshake. Files that fail to load keep the previous ones, and the log says why.
//!
//! The server's certificate is still verified by rustls's own WebPKI verifier (the chain to
//! the trusted roots, the name, the validity dates, the signatures, and the revocation lists
//! when given): `Reloading` only chooses which roots and lists it is built from.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::{ClientFiles, Reloaded, TlsError, certs, key, provider, revocation_lists, roots};

/// What a client trusts and presents, from its files' newest good contents.
pub struct Reloading {
    files: ClientFiles,
    current: Mutex<Reloaded<Loaded>>,
}

/// A verifier of servers and the identity presented to them.
type Loaded = (Arc<WebPkiServerVerifier>, Option<Arc<CertifiedKey>>);

impl Reloading {
    /// Loads `files` now: a client whose files are broken must not start.
    pub fn load(files: &ClientFiles) -> Result<Arc<Reloading>, TlsError> {
        let files = files.clone();
        let current = Reloaded::load("client TLS files", files.paths(), || loaded(&files))?;
        Ok(Arc::new(Reloading {
            files,
            current: Mutex::new(current),
        }))
    }

    /// The verifier and identity to use now, read again first when a file changed.
    fn current(&self) -> Loaded {
        self.current.lock().current(|| loaded(&self.files))
    }
}

/// The files' contents as a verifier of servers and the identity presented to them.
fn loaded(files: &ClientFiles) -> Result<Loaded, TlsError> {
    let roots = match &files.ca {
        Some(ca) => roots(ca)?,
        None => super::system_roots(),
    };
    let mut verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider());
    if let Some(crl) = &files.crl {
        verifier = verifier.with_crls(revocation_lists(crl)?);
    }
    let verifier = verifier
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let identity = match &files.identity {
        None => None,
        Some((cert, key_path)) => Some(Arc::new(CertifiedKey::from_der(
            certs(cert, "client certificate")?,
            key(key_path)?,
            &provider(),
        )?)),
    };
    Ok((verifier, identity))
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish()
    }
}

impl ServerCertVerifier for Reloading {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (verifier, _) = self.current();
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let (verifier, _) = self.current();
        verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let (verifier, _) = self.current();
        verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().0.supported_verify_schemes()
    }
}

impl ResolvesClientCert for Reloading {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current().1
    }

    fn has_certs(&self) -> bool {
        self.files.identity.is_some()
    }
}
