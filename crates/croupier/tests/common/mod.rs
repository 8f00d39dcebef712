//! Helpers for whole-process tests: start real `croupier node` processes on a temporary data
//! folder, talk HTTP to them, and check the ledger invariants at the end.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use croupier_ledger::StoreLocation;
use croupier_ledger::pg::scratch::{ScratchDb, test_server};
use croupier_ledger::test_store;
use croupier_loadtest::layout::{LEDGER_FILE, Layout};
use croupier_web::wire;
use serde_json::{Value, json};

mod browser;
mod ports;
mod s3;
mod smtp;
#[allow(unused_imports)] // each test binary uses its own subset
pub use browser::*;
pub use ports::{free_port, free_ports};
#[allow(unused_imports)]
pub use s3::*;
#[allow(unused_imports)]
pub use smtp::*;

pub const OPS_TOKEN: &str = "test-ops-token-0123456789abcdef0123456789";

pub fn croupier() -> Command {
    Command::new(env!("CARGO_BIN_EXE_croupier"))
}

/// A running `croupier node` process, killed when dropped.
pub struct Node {
    pub child: Child,
    pub base: String,
    pub id: String,
}

impl Node {
    /// A node in demo mode (sign-in by name, play money), as most tests want.
    pub fn start(data: &Path, id: &str) -> Node {
        Node::start_with(data, id, &["--demo"])
    }

    /// A node with `extra` arguments (no `--demo` unless given).
    pub fn start_with(data: &Path, id: &str, extra: &[&str]) -> Node {
        Node::start_on(data, id, &ledger(data).as_arg(), extra)
    }

    /// A node on the ledger `store` (a path or a URL), with `extra` arguments.
    pub fn start_on(data: &Path, id: &str, store: &str, extra: &[&str]) -> Node {
        let port = free_port();
        let log = std::fs::File::create(data.join(format!("{id}.log"))).unwrap();
        let child = croupier()
            .args([
                "node",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--node-id",
                id,
            ])
            .arg("--data")
            .arg(data)
            .args(["--store", store])
            .args(extra)
            .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("croupier binary runs");
        let node = Node {
            child,
            base: format!("http://127.0.0.1:{port}"),
            id: id.to_owned(),
        };
        node.wait_ready();
        node
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _)) = get(&format!("{}/readyz", self.base), None) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node {} did not become ready", self.id);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn finish(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, Value), String> {
    let mut response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

pub fn get(url: &str, token: Option<&str>) -> Result<(u16, Value), String> {
    let mut request = agent().get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    finish(request.call())
}

/// POSTs a raw body with optional bearer token and Idempotency-Key.
pub fn post_raw(
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: &str,
) -> Result<(u16, Value), String> {
    let mut request = agent().post(url).header("Content-Type", "application/json");
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    if let Some(key) = key {
        request = request.header(wire::IDEMPOTENCY_KEY, key);
    }
    finish(request.send(body))
}

pub fn delete(url: &str, token: Option<&str>) -> Result<(u16, Value), String> {
    let mut request = agent().delete(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    finish(request.call())
}

pub fn post(
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), String> {
    post_raw(url, token, key, &body.to_string())
}

pub fn sign_in(node: &Node, player: &str) -> String {
    sign_in_at(&node.base, player)
}

pub fn balance(node: &Node, token: &str) -> i64 {
    let (status, body) = get(&node.url("/api/v1/wallet"), Some(token)).unwrap();
    assert_eq!(status, 200, "{body}");
    body["balance"].as_i64().unwrap()
}

pub fn dice_bet(stake: i64) -> Value {
    json!({"game": "dice", "stake": stake, "bet": {"target": 5000, "direction": "over"}})
}

/// A keyed dice bet of `stake` by the player of `token`, straight to `node`; the round it
/// played (201 asserted).
pub fn played(node: &Node, token: &str, key: &str, stake: i64) -> Value {
    let (status, body) = post(
        &node.url("/api/v1/rounds"),
        Some(token),
        Some(key),
        &dice_bet(stake),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

/// The ledger report from a node's ops API.
pub fn integrity(node: &Node) -> Value {
    let (status, report) = get(&node.url("/ops/integrity"), Some(OPS_TOKEN)).unwrap();
    assert_eq!(status, 200, "integrity violated: {report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    report
}

/// Runs `croupier integrity` on the ledger file itself, as an operator would.
pub fn integrity_cli(db: &Path) {
    integrity_of(&StoreLocation::Sqlite(db.to_owned()));
}

fn integrity_of(ledger: &StoreLocation) {
    let output = croupier()
        .arg("integrity")
        .args(["--store", &ledger.as_arg()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "croupier integrity failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn ledger_path(data: &Path) -> PathBuf {
    data.join(LEDGER_FILE)
}

/// The ledger of the processes a test starts on `data`: the SQLite file in it, or, when the
/// suite runs on PostgreSQL (`CROUPIER_TEST_STORE=postgres`), a scratch database made for this
/// folder on first use (its URL kept in `data/ledger.url`; scripts/test.sh drops it after).
pub fn ledger(data: &Path) -> StoreLocation {
    if !test_store::postgres() {
        return StoreLocation::Sqlite(ledger_path(data));
    }
    let marker = data.join("ledger.url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return StoreLocation::Postgres(url);
    }
    let url = ScratchDb::create(&test_server(), "test").unwrap().keep();
    std::fs::write(&marker, &url).unwrap();
    StoreLocation::Postgres(url)
}

/// For a test that only means something on SQLite: true (and says why) when the suite runs
/// on PostgreSQL, so the test returns early.
pub fn sqlite_only(why: &str) -> bool {
    let skip = test_store::postgres();
    if skip {
        eprintln!("skipped on PostgreSQL: {why}");
    }
    skip
}

/// Runs `croupier integrity` on the ledger of the processes started on `data`.
pub fn ledger_integrity(data: &Path) {
    integrity_of(&ledger(data));
}

/// A running `croupier gateway` process in front of `nodes`, killed when dropped.
pub struct GatewayProcess {
    pub child: Child,
    pub base: String,
    pub admin: String,
}

impl GatewayProcess {
    pub fn start(data: &Path, nodes: &[&Node], extra: &[&str]) -> GatewayProcess {
        let (port, admin_port) = (free_port(), free_port());
        let log = std::fs::File::create(data.join(format!("gateway-{port}.log"))).unwrap();
        let mut command = croupier();
        command
            .args(["gateway", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(extra)
            .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
            .stdout(Stdio::null())
            .stderr(log);
        for node in nodes {
            command.args(["--node", &format!("{}={}", node.id, node.base)]);
        }
        let gateway = GatewayProcess {
            child: command.spawn().expect("croupier gateway runs"),
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while get(&format!("{}/readyz", gateway.admin), None).map(|r| r.0) != Ok(200) {
            assert!(Instant::now() < deadline, "gateway did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn set_state(&self, node: &str, state: &str) {
        let (status, body) = agent()
            .put(&format!("{}/admin/nodes/{node}", self.admin))
            .header("Authorization", &format!("Bearer {OPS_TOKEN}"))
            .send(json!({"state": state}).to_string())
            .map(|mut r| (r.status().as_u16(), r.body_mut().read_to_string().unwrap()))
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }

    /// A counter or gauge from the gateway's /metrics, 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics_text()
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// The sum of every series of the metric `name` (all label values).
    pub fn metric_total(&self, name: &str) -> f64 {
        self.metrics_text()
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn metrics_text(&self) -> String {
        agent()
            .get(&format!("{}/metrics", self.admin))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status, JSON body and the `croupier-node` header the gateway adds.
fn with_node(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, Value, String), String> {
    let mut response = response.map_err(|e| e.to_string())?;
    let node = response
        .headers()
        .get(wire::NODE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        node,
    ))
}

/// POST returning status, body and the answering node.
pub fn post_via(
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: &Value,
) -> Result<(u16, Value, String), String> {
    let mut request = agent().post(url).header("Content-Type", "application/json");
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    if let Some(key) = key {
        request = request.header(wire::IDEMPOTENCY_KEY, key);
    }
    with_node(request.send(body.to_string()))
}

/// GET returning status, body and the answering node.
pub fn get_via(url: &str, token: Option<&str>) -> Result<(u16, Value, String), String> {
    let mut request = agent().get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    with_node(request.call())
}

/// What a failed player request was, counted apart as issue #13 asks: a non-2xx answer, a
/// refused connection (never sent), a connection reset or closed before the answer (it may
/// have been acted on), or another transport failure (a timeout).
pub fn failure_kind(result: &Result<(u16, Value, String), String>) -> &'static str {
    match result {
        Ok((200..=299, _, _)) => "ok",
        Ok(_) => "non_2xx",
        Err(e) => {
            let e = e.to_lowercase();
            if e.contains("refused") {
                "refused"
            } else if ["reset", "eof", "closed", "broken pipe"]
                .iter()
                .any(|w| e.contains(w))
            {
                "reset"
            } else {
                "other"
            }
        }
    }
}

/// "non_2xx N, refused N, reset N, other N" for failures labelled by `failure_kind`
/// ("kind: what").
pub fn tally(failures: &[String]) -> String {
    ["non_2xx", "refused", "reset", "other"]
        .map(|kind| {
            let n = failures
                .iter()
                .filter(|f| f.starts_with(&format!("{kind}:")))
                .count();
            format!("{kind} {n}")
        })
        .join(", ")
}

pub type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// A player's WebSocket at `base` (a node or the gateway), with a 10 s read timeout.
pub fn ws_connect(base: &str, token: &str) -> Socket {
    use tungstenite::client::IntoClientRequest;
    let url = format!("{base}/api/v1/ws").replace("http://", "ws://");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tungstenite::connect(request).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_mut() {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
    socket
}

/// Signs `player` in at `base` (a node or the gateway) and returns the token.
pub fn sign_in_at(base: &str, player: &str) -> String {
    let (status, body) = post(
        &format!("{base}/api/v1/sessions"),
        None,
        None,
        &json!({"player": player}),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// `croupier launch-token` with `args`, signing with the keys of `data`, as the operator's
/// platform would.
pub fn launch_token(data: &Path, args: &[&str]) -> String {
    let out = croupier()
        .arg("launch-token")
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `folder` and every file and folder under it (symbolic links not followed); one removed
/// while it is read is left out.
pub fn paths_under(folder: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            pending.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        }
        found.push(path);
    }
    found
}

/// The pid of a process whose command line holds all of `needles`.
pub fn find_process(needles: &[&str]) -> Option<u32> {
    find_processes(needles).into_iter().next()
}

/// The pids of every live process whose command line holds all of `needles`.
pub fn find_processes(needles: &[&str]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            needles.iter().all(|n| cmdline.contains(n)).then_some(pid)
        })
        .collect()
}

/// A croupier process (`up`, `control`), stopped with SIGTERM (then SIGKILL) if the test ends
/// early.
pub struct Up(pub std::process::Child);

impl Up {
    /// `croupier up --demo` on `layout` with the test ops token, its output thrown away; not
    /// waited for.
    pub fn demo_quiet(layout: &Layout) -> Up {
        Up(croupier()
            .args(layout.up_command())
            .envs(layout.environment())
            .arg("--demo")
            .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap())
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").arg(self.0.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls `ready` until it holds, failing after 20 s.
pub fn wait_for(what: &str, ready: impl FnMut() -> bool) {
    assert!(
        within(Duration::from_secs(20), ready),
        "{what} did not happen in time"
    );
}

/// Polls `ready` every 50 ms until it holds (true) or `limit` has passed (false).
pub fn within(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Waits until the gateway whose admin API is at `admin` routes to `nodes` nodes: a node is
/// ready before the gateway's health checks have seen it rise.
pub fn wait_eligible(admin: &str, nodes: usize) {
    let url = format!("{admin}/admin/nodes");
    wait_for("every node eligible at the gateway", || {
        get(&url, Some(OPS_TOKEN)).is_ok_and(|(status, body)| {
            status == 200
                && body["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().filter(|n| n["eligible"] == true).count() == nodes)
        })
    });
}

/// The layout of a `croupier up` stack on `data` on free ports: three nodes, the gateway
/// and the control plane (each with the port next to it free too); the ledger left to `up`.
pub fn free_layout(data: &Path) -> Layout {
    Layout {
        first_node_port: free_ports(3),
        gateway_port: free_ports(2),
        control_port: free_ports(2),
        ..Layout::new(data.to_owned())
    }
}

/// `free_layout` on the test run's ledger (`ledger`).
pub fn up_layout(data: &Path) -> Layout {
    Layout {
        store: Some(ledger(data)),
        ..free_layout(data)
    }
}

/// What a failed start's log says: every line that reports an error, a warning or a panic
/// (a backtrace alone does not say what went wrong), then the last lines.
fn log_summary(log: &str) -> String {
    let telling = [
        "ERROR",
        "WARN",
        "Error:",
        "panicked",
        "Caused by",
        "exited",
        "restart",
    ];
    let mut lines: Vec<&str> = log
        .lines()
        .filter(|line| telling.iter().any(|word| line.contains(word)))
        .take(40)
        .collect();
    lines.push("…");
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    lines.extend(tail.into_iter().rev());
    lines.join("\n")
}

/// A whole `croupier up` stack on free ports: three nodes, the gateway, the control plane.
pub struct UpStack {
    pub up: Up,
    pub layout: Layout,
}

impl UpStack {
    /// Starts `croupier up --demo` on `data` with `extra` arguments and waits until every
    /// part is ready.
    pub fn start(data: &Path, extra: &[&str]) -> UpStack {
        UpStack::start_with(data, true, extra)
    }

    /// `start`, in demo mode or not.
    pub fn start_with(data: &Path, demo: bool, extra: &[&str]) -> UpStack {
        std::fs::create_dir_all(data).unwrap();
        let layout = up_layout(data);
        let log_path = data.with_extension("up.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let up = Up(croupier()
            .args(layout.up_command())
            .envs(layout.environment())
            .args(demo.then_some("--demo"))
            .args(extra)
            .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap());
        let stack = UpStack { up, layout };
        let mut ready = vec![stack.admin_url("/readyz"), stack.control_url("/readyz")];
        ready.extend((0..3).map(|i| format!("{}/readyz", stack.layout.node_url(i))));
        for url in ready {
            let up = || get(&url, None).map(|r| r.0) == Ok(200);
            if !within(Duration::from_secs(20), up) {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!(
                    "{url} did not answer 200 within 20 s; up's log said:\n{}",
                    log_summary(&log)
                );
            }
        }
        wait_eligible(&stack.admin_url(""), 3);
        stack
    }

    pub fn players_url(&self, path: &str) -> String {
        format!("{}{path}", self.layout.players_url())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.layout.admin_url())
    }

    pub fn control_url(&self, path: &str) -> String {
        format!("{}{path}", self.layout.control_url())
    }
}

/// What a `json_receiver` got: each JSON body with its Authorization header.
pub type Received = std::sync::Arc<parking_lot::Mutex<Vec<(String, Value)>>>;

/// A stand-in for a webhook or report endpoint: a plain HTTP server on a thread at `path`
/// that answers 201 and keeps each JSON body with its Authorization header.
pub fn json_receiver(path: &str) -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    let received = Received::default();
    let store = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut auth) = (0, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_owned();
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(json) = serde_json::from_slice::<Value>(&body)
            {
                store.lock().push((auth, json));
            }
            let _ = stream.write_all(
                b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (url, received)
}

/// `croupier control` on `port` with `data` and `data/deploy.toml` (and `extra` arguments),
/// its log in `data/control.log`; not waited for.
pub fn control_with_config(data: &Path, port: u16, extra: &[&str]) -> Up {
    let log = std::fs::File::create(data.join("control.log")).unwrap();
    Up(croupier()
        .args(["control", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(data.join("deploy.toml"))
        .args(extra)
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap())
}

/// A control plane on `data` with `data/deploy.toml`, watching `node` as node-1; returns
/// once it sees the node up (the process and its base URL).
pub fn control_watching(data: &Path, node: &Node) -> (Up, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let watched = format!("node-1={}", node.base);
    let control = control_with_config(data, port, &["--node", &watched]);
    wait_for("the node watched", || {
        get(&format!("{base}/api/v1/targets"), Some(OPS_TOKEN))
            .is_ok_and(|(_, t)| t["targets"][0]["up"] == true)
    });
    (control, base)
}

/// Tests that run a whole stack and a load on a 2-core machine and judge its timing take this
/// first, so they run one at a time within their test binary (each binary has its own lock).
pub fn one_at_a_time() -> parking_lot::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    ONE_AT_A_TIME.lock()
}
