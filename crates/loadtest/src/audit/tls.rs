//! TLS where it must be: an address other hosts can reach serves HTTPS, not plain HTTP; and
//! every HTTPS address refuses a TLS 1.1 hello, gives plain HTTP no answer, presents a
//! certificate the audit's CA (or the system) trusts and that stays valid for
//! `MIN_DAYS_LEFT` more days, and sends HSTS on its answers.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::doors::host_port;
use super::{Auditor, Status};
use crate::http::Call;

/// A certificate that expires sooner than this is a finding: renewal failed or is late.
pub const MIN_DAYS_LEFT: u64 = 14;
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A TLS 1.1 ClientHello (no supported_versions extension, so it can only mean 1.1):
/// ECDHE and RSA AES-CBC suites, x25519/P-256, uncompressed points.
const TLS11_HELLO_BODY_HEAD: [u8; 2] = [0x03, 0x02];
const TLS11_SUITES: [u8; 8] = [0x00, 0x06, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x2f];
const TLS11_EXTENSIONS: [u8; 18] = [
    0x00, 0x10, // extensions length
    0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, // supported_groups
    0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats
];

fn tls11_client_hello() -> Vec<u8> {
    let mut hello = TLS11_HELLO_BODY_HEAD.to_vec();
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&TLS11_SUITES);
    hello.extend_from_slice(&[0x01, 0x00]); // compression: null
    hello.extend_from_slice(&TLS11_EXTENSIONS);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Sends `bytes` to `address` and reads what comes back first (empty: closed).
async fn first_answer(address: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(bytes).await?;
        let mut answer = vec![0; 64];
        let read = stream.read(&mut answer).await.unwrap_or(0);
        answer.truncate(read);
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, exchange).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Ok(Vec::new()),
    }
}

fn is_loopback(address: &str) -> bool {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Auditor {
    fn every_address(&self) -> Vec<String> {
        let mut all = vec![self.targets.gateway.clone()];
        all.extend(self.targets.admin.iter().cloned());
        all.extend(self.targets.nodes.iter().cloned());
        all.extend(self.targets.control.iter().cloned());
        all
    }

    pub(super) async fn tls(&mut self) {
        for url in self.every_address() {
            let Some(address) = host_port(&url) else {
                continue;
            };
            if url.starts_with("https://") {
                self.old_protocols_refused(&url, &address).await;
                self.plain_http_refused(&url, &address).await;
                self.certificate_lasts(&url, &address).await;
                self.hsts(&url).await;
            } else if is_loopback(&address) {
                let detail = "plain HTTP on loopback only (no other host reaches it)";
                self.note("tls_on", &url, Status::Skip, detail);
            } else {
                let detail = "plain HTTP on an address other hosts reach: tokens and balances travel in clear";
                self.note("tls_on", &url, Status::Fail, detail);
            }
        }
    }

    async fn old_protocols_refused(&mut self, url: &str, address: &str) {
        let (status, detail) = match first_answer(address, &tls11_client_hello()).await {
            Ok(answer) if answer.first() == Some(&0x16) => (
                Status::Fail,
                "a TLS 1.1 hello was answered with a server hello".to_owned(),
            ),
            Ok(answer) if answer.first() == Some(&0x15) => (
                Status::Pass,
                "a TLS 1.1 hello got an alert (TLS 1.2+ only)".to_owned(),
            ),
            Ok(_) => (Status::Pass, "a TLS 1.1 hello got no answer".to_owned()),
            Err(e) => (Status::Fail, format!("could not be checked: {e}")),
        };
        self.note("tls_versions", url, status, detail);
    }

    async fn plain_http_refused(&mut self, url: &str, address: &str) {
        let request = format!("GET / HTTP/1.1\r\nHost: {address}\r\n\r\n");
        let (status, detail) = match first_answer(address, request.as_bytes()).await {
            Ok(answer) if answer.starts_with(b"HTTP/") => (
                Status::Fail,
                "plain HTTP was answered on the TLS port".to_owned(),
            ),
            Ok(_) => (Status::Pass, "plain HTTP got no answer".to_owned()),
            Err(e) => (Status::Fail, format!("could not be checked: {e}")),
        };
        self.note("tls_only", url, status, detail);
    }

    async fn certificate_lasts(&mut self, url: &str, address: &str) {
        let (status, detail) = match self.certificate_check(address).await {
            Ok(()) => (
                Status::Pass,
                format!("trusted, and still valid in {MIN_DAYS_LEFT} days"),
            ),
            Err(e) => (Status::Fail, e),
        };
        self.note("tls_certificate", url, status, detail);
    }

    /// Handshakes as the audit's client (trust now), then checks the chain again as of
    /// `MIN_DAYS_LEFT` days from now.
    async fn certificate_check(&self, address: &str) -> Result<(), String> {
        let tcp = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| "no connection".to_owned())?
            .map_err(|e| e.to_string())?;
        let host = address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .to_owned();
        let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(self.http.tls());
        let stream = tokio::time::timeout(PROBE_TIMEOUT, connector.connect(name.clone(), tcp))
            .await
            .map_err(|_| "handshake timed out".to_owned())?
            .map_err(|e| format!("not trusted now: {e}"))?;
        let chain: Vec<CertificateDer<'static>> = stream
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .to_vec();
        let (end, intermediates) = chain.split_first().ok_or("no certificate")?;
        let later = SystemTime::now() + Duration::from_secs(MIN_DAYS_LEFT * 86_400);
        let later = UnixTime::since_unix_epoch(
            later
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        croupier_web::tls::verify_at(&self.targets.tls, end, intermediates, &name, later)
            .map_err(|e| format!("not valid in {MIN_DAYS_LEFT} days: {e}"))
    }

    async fn hsts(&mut self, url: &str) {
        let answer = self.send(Call::get(format!("{url}/healthz"))).await;
        let hsts = answer
            .as_ref()
            .ok()
            .and_then(|a| a.header("strict-transport-security"))
            .is_some_and(|v| v.contains("max-age="));
        let (status, detail) = if hsts {
            (Status::Pass, "Strict-Transport-Security is sent")
        } else {
            (
                Status::Fail,
                "no Strict-Transport-Security on an HTTPS answer",
            )
        };
        self.note("tls_hsts", url, status, detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls11_hello_is_one_well_formed_record() {
        let hello = tls11_client_hello();
        assert_eq!(&hello[..3], &[0x16, 0x03, 0x01]);
        let record_len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        assert_eq!(record_len, hello.len() - 5);
        assert_eq!(hello[5], 0x01, "a ClientHello");
        assert_eq!(&hello[9..11], &[0x03, 0x02], "asking for TLS 1.1");
    }

    #[test]
    fn loopback_is_told_from_addresses_other_hosts_reach() {
        assert!(is_loopback("127.0.0.1:8000"));
        assert!(is_loopback("localhost:8000"));
        assert!(is_loopback("[::1]:8000"));
        assert!(!is_loopback("10.0.0.5:8000"));
        assert!(!is_loopback("casino.example:443"));
    }
}
