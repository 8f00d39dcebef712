//! The locks behind the doors (issue 15, items 2 to 4): unrevealed server seeds sealed in the
//! ledger (when the audit runs on the host of a SQLite ledger), a cap on one player's open
//! sessions, scanning of the players' port blocked, and the block not escaped by naming another
//! client in `X-Forwarded-For`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::doors::host_port;
use super::{Auditor, Status, forwarded};
use crate::http::Call;

/// Sign-ins of one player the session check makes: twice the default cap, and one more.
const SIGN_INS: usize = 21;
/// Refused requests the scanning probe sends at most before it expects to be blocked.
const PROBES: usize = 300;
/// The loopback address the scanning probe comes from on a loopback deployment, so the
/// block it earns does not land on the operators' own address.
const PROBE_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 99);

/// Unrevealed server seeds stored in clear in the SQLite ledger at `db`.
fn clear_unrevealed_seeds(db: &std::path::Path) -> Result<(u64, u64), String> {
    let conn = croupier_ledger::sqlite::connect(db, true).map_err(|e| e.to_string())?;
    let seeds: Vec<String> = conn
        .prepare("SELECT server_seed FROM seeds WHERE revealed_ms IS NULL")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .map_err(|e| e.to_string())?;
    let clear = seeds
        .iter()
        .filter(|s| !croupier_ledger::seed_seal::is_sealed(s))
        .count();
    Ok((clear as u64, seeds.len() as u64))
}

/// Where the scanning probe connects from and to on a loopback deployment; with TLS, the
/// name its certificate is checked against.
struct LoopbackProbe {
    target: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// The gateway's players' address when it is on loopback (plain HTTP or HTTPS).
fn loopback_probe(gateway: &str, tls: Arc<rustls::ClientConfig>) -> Option<LoopbackProbe> {
    let secure = gateway.starts_with("https://");
    let target = host_port(gateway)?.parse::<SocketAddr>().ok()?;
    if !target.ip().is_loopback() {
        return None;
    }
    let tls = match secure {
        true => Some((tls, ServerName::IpAddress(target.ip().into()))),
        false => None,
    };
    Some(LoopbackProbe { target, tls })
}

/// One HTTP request from `source` to the probe's target (over TLS when it has one); the
/// answer's status (0: none).
async fn status_from(source: IpAddr, probe: &LoopbackProbe, request: &str) -> u16 {
    let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
        return 0;
    };
    if socket.bind(SocketAddr::new(source, 0)).is_err() {
        return 0;
    }
    let Ok(stream) = socket.connect(probe.target).await else {
        return 0;
    };
    match &probe.tls {
        None => exchange(stream, request).await,
        Some((config, name)) => {
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            match connector.connect(name.clone(), stream).await {
                Ok(stream) => exchange(stream, request).await,
                Err(_) => 0,
            }
        }
    }
}

/// Writes `request`, reads the status line of the answer (0: none within 5 s).
async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, request: &str) -> u16 {
    if stream.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    let mut head = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head)).await;
    let Ok(Ok(n)) = read else {
        return 0;
    };
    String::from_utf8_lossy(&head[..n])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Auditor {
    /// On the host of a SQLite ledger (`--data` holds `ledger.db`): no unrevealed server
    /// seed may be in clear, or a copy of the file tells the next outcomes.
    pub(super) fn seeds_sealed(&mut self) {
        let Some(db) = self
            .targets
            .data
            .as_ref()
            .map(|d| d.join(crate::layout::LEDGER_FILE))
        else {
            return;
        };
        let target = db.display().to_string();
        if !db.is_file() {
            let why = "skipped: no SQLite ledger in the data folder on this host";
            self.note("seeds_sealed", &target, Status::Skip, why);
            return;
        }
        let (status, detail) = match clear_unrevealed_seeds(&db) {
            Ok((0, total)) => (
                Status::Pass,
                format!(
                    "all {total} unrevealed server seeds are sealed (a copy of the file does not tell the next outcomes)"
                ),
            ),
            Ok((clear, total)) => (
                Status::Fail,
                format!(
                    "{clear} of {total} unrevealed server seeds are in clear: whoever copies the file computes those players' next outcomes"
                ),
            ),
            Err(e) => (Status::Fail, format!("could not be checked: {e}")),
        };
        self.note("seeds_sealed", &target, status, detail);
    }

    /// One player signing in `SIGN_INS` times: the first session must have been revoked.
    pub(super) async fn session_cap(&mut self, name: &str) {
        let gateway = self.targets.gateway.clone();
        let mut tokens = Vec::new();
        for n in 0..SIGN_INS {
            match self.sign_in_for(name, 300 - n as i64).await {
                Ok(token) => tokens.push(token),
                Err(e) => {
                    let detail = format!("could not be checked: {e}");
                    self.note("sessions_per_player", &gateway, Status::Fail, detail);
                    return;
                }
            }
        }
        let url = format!("{gateway}/api/v1/wallet");
        let first = self.send(Call::get(&url).token(&tokens[0])).await;
        let newest = self
            .send(Call::get(&url).token(&tokens[SIGN_INS - 1]))
            .await;
        let (status, detail) = match (first, newest) {
            (Ok(first), Ok(newest)) if first.status == 401 && newest.status == 200 => (
                Status::Pass,
                format!("after {SIGN_INS} sign-ins of one player the oldest session is revoked"),
            ),
            (Ok(first), Ok(newest)) => (
                Status::Fail,
                format!(
                    "after {SIGN_INS} sign-ins of one player the oldest session answered {} (the newest {}): sessions are not capped",
                    first.status, newest.status
                ),
            ),
            (Err(e), _) | (_, Err(e)) => (Status::Fail, format!("could not be checked: {e}")),
        };
        self.note("sessions_per_player", &gateway, status, detail);
    }

    /// Paths that are not there, asked for until the players' port blocks the asker; then the
    /// blocked asker names another client in `X-Forwarded-For`, which must change nothing. On
    /// a loopback deployment (plain HTTP or TLS) the probe comes from `PROBE_SOURCE`;
    /// elsewhere from the auditor's own address, which stays blocked on the players' port for
    /// a while (run it last).
    pub(super) async fn scanning_blocked(&mut self) {
        let gateway = self.targets.gateway.clone();
        let loopback = loopback_probe(&gateway, self.http.tls());
        let mut blocked_after = None;
        for i in 0..PROBES {
            let status = self
                .status_of_probe(loopback.as_ref(), &format!("/audit-scan-{i}.php"), None)
                .await;
            if status == 429 {
                blocked_after = Some(i + 1);
                break;
            }
        }
        let (status, detail) = match blocked_after {
            Some(n) => (
                Status::Pass,
                format!("a scanner was blocked after {n} requests for paths that are not there"),
            ),
            None => (
                Status::Fail,
                format!(
                    "{PROBES} requests for paths that are not there and the scanner is not blocked (or its address is allow-listed)"
                ),
            ),
        };
        self.note("scanning_blocked", &gateway, status, detail);
        self.forwarded_for_believed(loopback.as_ref(), blocked_after.is_some())
            .await;
    }

    /// The blocked scanner asks again for a path that is there, naming another client in
    /// `X-Forwarded-For` (`forwarded`).
    async fn forwarded_for_believed(&mut self, loopback: Option<&LoopbackProbe>, blocked: bool) {
        let gateway = self.targets.gateway.clone();
        if !blocked {
            let why = "skipped: the scanner was not blocked, so there is no block to escape";
            self.note(forwarded::CHECK, &gateway, Status::Skip, why);
            return;
        }
        let header = Some(forwarded::spoofed_header());
        let answer = self
            .status_of_probe(loopback, "/api/v1/wallet", header)
            .await;
        let (status, detail) = forwarded::verdict("the blocked scanner", answer);
        self.note(forwarded::CHECK, &gateway, status, detail);
    }

    /// The status of a GET of `path` on the players' port from the scanning probe's address:
    /// `PROBE_SOURCE` on loopback, the auditor's own elsewhere (0: no answer).
    async fn status_of_probe(
        &self,
        loopback: Option<&LoopbackProbe>,
        path: &str,
        header: Option<(&'static str, String)>,
    ) -> u16 {
        match loopback {
            Some(probe) => {
                let extra = header.map_or(String::new(), |(name, value)| {
                    format!("{name}: {value}\r\n")
                });
                let request = format!(
                    "GET {path} HTTP/1.1\r\nHost: audit\r\n{extra}Connection: close\r\n\r\n"
                );
                status_from(IpAddr::V4(PROBE_SOURCE), probe, &request).await
            }
            None => {
                let mut call = Call::get(format!("{}{path}", self.targets.gateway));
                call.extra_headers.extend(header);
                self.send(call).await.map_or(0, |a| a.status)
            }
        }
    }
}
