//! The doors a penetration test found open (issue 15): what the players' port forwards
//! (nothing but the player API), whether every server cuts a client that sends its headers a
//! byte at a time, whether one player can open WebSockets without end, and, when the audit
//! runs on the deployment's host, whether the data folder is private to its owner.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{Auditor, Status};
use crate::http::Call;

/// Operator routes that must not be reachable on the players' port.
const PRIVATE_PATHS: [&str; 5] = [
    "/metrics",
    "/ops/drain",
    "/ops/integrity",
    "/healthz",
    "/readyz",
];
/// A server that keeps a slow-header client longer than this fails.
const SLOW_CLIENT_LIMIT: Duration = Duration::from_secs(15);
/// WebSockets one player tries to open; all of them accepted is a failure.
const SOCKETS_TRIED: usize = 64;

/// How long the server at `address` (host:port) kept a client writing its request headers
/// one byte a second.
async fn slow_headers_held(address: String) -> Result<Duration, String> {
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let trickle =
        b"GET /healthz HTTP/1.1\r\nHost: audit\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut buffer = [0u8; 256];
    for byte in trickle.iter().cycle() {
        if started.elapsed() > SLOW_CLIENT_LIMIT || stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await {
            Ok(_) => break, // an answer or the close
            Err(_) => continue,
        }
    }
    Ok(started.elapsed())
}

pub(super) fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    Some(rest.split('/').next()?.to_owned())
}

impl Auditor {
    pub(super) async fn players_port_paths(&mut self) {
        let gateway = self.targets.gateway.clone();
        let mut forwarded = Vec::new();
        for path in PRIVATE_PATHS {
            let url = format!("{gateway}{path}");
            match self.send(Call::get(&url)).await {
                Ok(a) if a.status == 404 && a.json()["error"] == "not_found" => {}
                Ok(a) => forwarded.push(format!("{path} answered {}", a.status)),
                Err(e) => forwarded.push(format!("{path}: {e}")),
            }
        }
        let (status, detail) = if forwarded.is_empty() {
            (Status::Pass, "only the player API is forwarded: the nodes' ops API, /metrics and health routes get 404".to_owned())
        } else {
            (
                Status::Fail,
                format!(
                    "operator routes reachable on the players' port: {}",
                    forwarded.join("; ")
                ),
            )
        };
        self.note("players_port_only_player_api", &gateway, status, detail);
    }

    pub(super) async fn slow_clients(&mut self) {
        let mut urls = vec![self.targets.gateway.clone()];
        urls.extend(self.targets.admin.iter().cloned());
        urls.extend(self.targets.nodes.iter().cloned());
        urls.extend(self.targets.control.iter().cloned());
        let probes: Vec<_> = urls
            .iter()
            .filter_map(|u| host_port(u))
            .map(|a| tokio::spawn(slow_headers_held(a)))
            .collect();
        for (url, probe) in urls.iter().zip(probes) {
            let (status, detail) = match probe.await.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(held) if held < SLOW_CLIENT_LIMIT => (
                    Status::Pass,
                    format!(
                        "a client sending its headers a byte a second was cut after {:.1} s",
                        held.as_secs_f64()
                    ),
                ),
                Ok(held) => (
                    Status::Fail,
                    format!(
                        "a client sending its headers a byte a second was still connected after {:.0} s (slowloris)",
                        held.as_secs_f64()
                    ),
                ),
                Err(e) => (Status::Fail, format!("could not be checked: {e}")),
            };
            self.note("slow_clients_cut", url, status, detail);
        }
    }

    pub(super) async fn websocket_cap(&mut self, player_token: &str) {
        let url = format!(
            "{}/api/v1/ws",
            croupier_web::websocket_base(&self.targets.gateway)
        );
        let tls = tokio_tungstenite::Connector::Rustls(self.http.tls());
        let mut open = Vec::new();
        let mut refused = None;
        for _ in 0..SOCKETS_TRIED {
            let Ok(mut request) = url.as_str().into_client_request() else {
                break;
            };
            if let Ok(value) = format!("Bearer {player_token}").parse() {
                request.headers_mut().insert("authorization", value);
            }
            let connect = tokio_tungstenite::connect_async_tls_with_config(
                request,
                None,
                false,
                Some(tls.clone()),
            );
            match connect.await {
                Ok((socket, _)) => open.push(socket),
                Err(e) => {
                    refused = Some(e.to_string());
                    break;
                }
            }
        }
        let count = open.len();
        for mut socket in open {
            let _ = socket.close(None).await;
        }
        let (status, detail) = match refused {
            Some(why) if count > 0 => (
                Status::Pass,
                format!("socket {} of one player was refused ({why})", count + 1),
            ),
            Some(why) => (Status::Fail, format!("could not be checked: {why}")),
            None => (
                Status::Fail,
                format!("one player opened {count} WebSockets, none refused"),
            ),
        };
        self.note(
            "websockets_per_player",
            &self.targets.gateway.clone(),
            status,
            detail,
        );
    }

    /// Run on the deployment's host (`--data` exists): nothing in the data folder may be
    /// readable by other users.
    pub(super) fn data_modes(&mut self) {
        let Some(folder) = self.targets.data.clone() else {
            return;
        };
        let target = folder.display().to_string();
        if !folder.is_dir() {
            self.note(
                "data_folder_private",
                &target,
                Status::Skip,
                "skipped: not on this host",
            );
            return;
        }
        let open = open_to_others(&folder);
        let (status, detail) = if open.is_empty() {
            (
                Status::Pass,
                "the folder and everything in it are private to their owner".to_owned(),
            )
        } else {
            let shown: Vec<String> = open
                .iter()
                .take(5)
                .map(|(p, m)| format!("{p} ({m:o})"))
                .collect();
            (
                Status::Fail,
                format!(
                    "{} paths readable by other users, e.g. {}",
                    open.len(),
                    shown.join(", ")
                ),
            )
        };
        self.note("data_folder_private", &target, status, detail);
    }
}

/// Paths under `folder` whose mode lets group or others in.
fn open_to_others(folder: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            found.push((path.display().to_string(), mode));
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            pending.extend(entries.flatten().map(|e| e.path()));
        }
    }
    found
}
