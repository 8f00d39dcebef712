//! Whole-process tests of the locked doors (issue 15): the players' port forwards only the
//! player API, every server cuts slow clients, one player's WebSockets are capped, and
//! guessing an operator token gets the guessing address blocked (from 127.0.0.2, while the
//! operator works from 127.0.0.1) until it expires or an operator lifts it.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Sends `request` (raw HTTP/1.1, `Connection: close`) to `target` from the loopback address
/// `source`, and returns the status and the JSON body.
fn raw_from(source: &str, target: SocketAddr, request: &str) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(target).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = stream;
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn get_from(source: &str, target: SocketAddr, path: &str, token: &str) -> (u16, Value) {
    raw_from(
        source,
        target,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    )
}

fn address(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

/// Opens a player's WebSocket at `base`, or returns the HTTP status that refused it.
fn try_ws(base: &str, token: &str) -> Result<Socket, u16> {
    use tungstenite::client::IntoClientRequest;
    let url = format!("{base}/api/v1/ws").replace("http://", "ws://");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    match tungstenite::connect(request) {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("WebSocket failed: {e}"),
    }
}

#[test]
fn the_players_port_forwards_only_the_player_api() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "a");
    let gateway = GatewayProcess::start(dir.path(), &[&node], &[]);
    let token = sign_in_at(&gateway.base, "door-tester");
    assert_eq!(
        get(&gateway.url("/api/v1/lobby"), Some(&token)).unwrap().0,
        200
    );
    for path in [
        "/metrics",
        "/ops/healthz",
        "/ops/drain",
        "/ops/integrity",
        "/healthz",
        "/readyz",
        "/api/v1/%2e%2e/metrics",
    ] {
        let (status, body) = get(&gateway.url(path), Some(OPS_TOKEN)).unwrap();
        assert_eq!(status, 404, "{path} on the players' port: {body}");
        assert_eq!(body["error"], "not_found", "{path}: a JSON refusal");
    }
    // The node itself still serves them to operators.
    assert_eq!(get(&node.url("/metrics"), None).unwrap().0, 200);
    assert_eq!(
        get(&node.url("/ops/drain"), Some(OPS_TOKEN)).unwrap().0,
        200
    );
}

#[test]
fn one_player_s_websockets_are_capped_whatever_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "a");
    let gateway = GatewayProcess::start(dir.path(), &[&node], &[]);
    let first = sign_in_at(&gateway.base, "many-tabs");
    let mut open: Vec<Socket> = (0..16)
        .map(|i| try_ws(&gateway.base, &first).unwrap_or_else(|s| panic!("socket {i}: {s}")))
        .collect();
    assert_eq!(
        try_ws(&gateway.base, &first).err(),
        Some(429),
        "the 17th socket"
    );
    // Signing in again gives a new token, not a new allowance.
    let second = sign_in_at(&gateway.base, "many-tabs");
    assert_eq!(try_ws(&gateway.base, &second).err(), Some(429));
    // Straight to the node: the node caps them too.
    assert_eq!(try_ws(&node.base, &second).err(), Some(429));
    // Another player is not affected; a closed socket gives its slot back.
    let other = sign_in_at(&gateway.base, "one-tab");
    assert!(try_ws(&gateway.base, &other).is_ok());
    let mut closed = open.pop().unwrap();
    closed.close(None).unwrap();
    let _ = closed.read();
    drop(closed);
    wait_for("the closed socket's slot to come back", || {
        try_ws(&gateway.base, &second).is_ok()
    });
}

/// Writes the headers of a request a byte a second (slowloris), or whole headers and then no
/// body; returns how long the server kept the connection open.
fn held_open(target: SocketAddr, slow_body: bool) -> Duration {
    let mut stream = std::net::TcpStream::connect(target).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let started = Instant::now();
    if slow_body {
        let head = "POST /api/v1/sessions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
        stream.write_all(head.as_bytes()).unwrap();
    }
    let mut buffer = [0u8; 512];
    let trickle =
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut next = 0;
    while started.elapsed() < Duration::from_secs(25) {
        if !slow_body
            && stream
                .write_all(&trickle[next % trickle.len()..][..1])
                .is_err()
        {
            break;
        }
        next += 1;
        match stream.read(&mut buffer) {
            // An answer (408) or the close.
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    started.elapsed()
}

fn operator_get(stack: &UpStack, path: &str) -> (u16, Value) {
    get_from(
        "127.0.0.1",
        address(&stack.control_url("")),
        path,
        OPS_TOKEN,
    )
}

#[test]
fn every_server_cuts_slow_clients_and_guessers_are_blocked_until_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stack = UpStack::start(
        &data,
        &["--lockout-failures", "5", "--allow-networks", "127.0.0.3"],
    );
    let servers = [
        ("node", format!("127.0.0.1:{}", stack.first_node_port)),
        ("players", format!("127.0.0.1:{}", stack.gateway_port)),
        ("admin", format!("127.0.0.1:{}", stack.gateway_port + 1)),
        ("control", format!("127.0.0.1:{}", stack.control_port)),
        (
            "supervisor",
            format!("127.0.0.1:{}", stack.control_port + 1),
        ),
    ];
    // Slow clients on every server, in the background while the guessing goes on.
    let slow: Vec<_> = servers
        .iter()
        .flat_map(|(name, target)| {
            let target: SocketAddr = target.parse().unwrap();
            [false, true].map(|body| {
                let name = *name;
                std::thread::spawn(move || (name, body, held_open(target, body)))
            })
        })
        .collect();

    // Guessing from 127.0.0.2: five wrong tokens block it on each surface, the right one too.
    let surfaces = [
        (servers[0].1.clone(), "/ops/drain"),
        (servers[2].1.clone(), "/admin/nodes"),
        (servers[3].1.clone(), "/api/v1/incidents"),
        (servers[4].1.clone(), "/supervisor/children"),
    ];
    for (target, path) in &surfaces {
        let target: SocketAddr = target.parse().unwrap();
        let statuses: Vec<u16> = (0..5)
            .map(|i| get_from("127.0.0.2", target, path, &format!("guess-{i}")).0)
            .collect();
        assert_eq!(statuses, [401, 401, 401, 401, 429], "{target}{path}");
        let (status, body) = get_from("127.0.0.2", target, path, OPS_TOKEN);
        assert_eq!(
            status, 429,
            "the right token from a blocked address: {body}"
        );
        assert_eq!(body["error"], "blocked");
        // The operator's own address is not affected.
        assert_eq!(
            get_from("127.0.0.1", target, path, OPS_TOKEN).0,
            200,
            "{path}"
        );
        // The allow-listed address is never blocked.
        for i in 0..8 {
            assert_eq!(get_from("127.0.0.3", target, path, &format!("x{i}")).0, 401);
        }
        assert_eq!(get_from("127.0.0.3", target, path, OPS_TOKEN).0, 200);
    }
    // The dashboard's sign-in counts too (the control plane's block is already in force).
    let control = address(&stack.control_url(""));
    let (status, _) = raw_from(
        "127.0.0.2",
        control,
        "POST /login HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntoken=x",
    );
    assert_eq!(status, 429);

    // Counted on the metrics of the node and the gateway.
    let metrics = agent()
        .get(&format!("http://{}/metrics", servers[0].1))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("croupier_security_blocks_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("croupier_security_blocked 1"));
    let admin_metrics = agent()
        .get(&stack.admin_url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(admin_metrics.contains("croupier_security_blocks_total 1"));

    // On the control plane: an audit entry, listed, lifted (audited), and the address is back.
    let (_, audit) = operator_get(&stack, "/api/v1/audit");
    let entries = audit["entries"]
        .as_array()
        .or(audit.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "block" && e["subject"] == "address/127.0.0.2"),
        "{audit}"
    );
    let listed = ctl(&stack, &["blocks"]);
    assert_eq!(listed["blocks"][0]["address"], "127.0.0.2", "{listed}");
    let lifted = ctl(&stack, &["blocks", "--lift", "127.0.0.2"]);
    assert_eq!(lifted["lifted"], "127.0.0.2");
    assert_eq!(
        get_from("127.0.0.2", control, "/api/v1/incidents", OPS_TOKEN).0,
        200
    );
    assert_eq!(ctl(&stack, &["blocks"])["blocks"], serde_json::json!([]));

    for handle in slow {
        let (name, body, held) = handle.join().unwrap();
        let what = if body { "slow body" } else { "slow headers" };
        assert!(
            held < Duration::from_secs(15),
            "{name} kept a client sending {what} for {held:?}"
        );
    }
}

fn ctl(stack: &UpStack, args: &[&str]) -> Value {
    let output = croupier()
        .args([
            "ctl",
            "--url",
            &stack.control_url(""),
            "--as",
            "security-test",
        ])
        .args(args)
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every path under `folder` whose mode lets group or others in, with its mode.
fn open_to_others(folder: &std::path::Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // removed meanwhile (a rotated segment)
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            found.push((path.display().to_string(), mode));
        }
        if meta.is_dir() {
            pending.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
        }
    }
    found
}

#[test]
fn the_data_folder_and_every_file_in_it_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A folder left open by an older build, with a file anyone could read.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("notes.txt"), "x").unwrap();
    std::fs::set_permissions(
        data.join("notes.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let stack = UpStack::start(&data, &[]);
    let token = sign_in_at(&stack.players_url(""), "private-player");
    for n in 0..5 {
        let (status, body, _) = post_via(
            &stack.players_url("/api/v1/rounds"),
            Some(&token),
            Some(&format!("private-{n}")),
            &dice_bet(10),
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
    }
    // Backups ship every second: wait for a segment, so their files are checked too (the
    // control plane's backups are of a SQLite ledger: none on PostgreSQL).
    if !croupier_ledger::test_store::postgres() {
        wait_for("a shipped backup", || {
            std::fs::read_dir(data.join("backups")).is_ok_and(|mut d| d.next().is_some())
        });
    }
    std::thread::sleep(Duration::from_millis(1500));
    let ledger = ledger_path(&data);
    if !croupier_ledger::test_store::postgres() && ledger.starts_with(&data) {
        assert!(ledger.exists(), "{}", ledger.display());
    }
    assert_eq!(open_to_others(&data), Vec::new());
    drop(stack);
    ledger_integrity(&data);
}

#[test]
fn no_one_signs_in_by_name_as_a_synthetic_check_player() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "a");
    for name in ["synthetic-check-20000", "Synthetic-check-1", "synthetic-x"] {
        let (status, body) = post(
            &node.url("/api/v1/sessions"),
            None,
            None,
            &serde_json::json!({ "player": name }),
        )
        .unwrap();
        assert_eq!(status, 403, "{name}: {body}");
        assert_eq!(body["error"], "reserved_player");
    }
    // Other names still sign in (demo mode).
    sign_in(&node, "synthetic_fan");
}

#[test]
fn an_expired_session_is_refused_by_a_node_that_cached_it() {
    if sqlite_only("expires the session by editing the SQLite ledger") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Node::start(dir.path(), "a"), Node::start(dir.path(), "b"));
    let token = sign_in(&a, "short-lived");
    // The session ends in 1.5 s (as if signed in a day ago).
    let db = rusqlite::Connection::open(ledger_path(dir.path())).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let ends = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 1_500;
    let changed = db
        .execute(
            "UPDATE sessions SET expires_ms = ?1 WHERE player = 'short-lived'",
            [ends],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    // Node b looks the session up and caches it; then it expires.
    assert_eq!(get(&b.url("/api/v1/wallet"), Some(&token)).unwrap().0, 200);
    std::thread::sleep(Duration::from_millis(2_000));
    for node in [&b, &a] {
        let (status, body) = get(&node.url("/api/v1/wallet"), Some(&token)).unwrap();
        assert_eq!(status, 401, "node {}: {body}", node.id);
    }
    ledger_integrity(dir.path());
}

#[test]
fn signing_in_again_gives_no_fresh_bucket_and_sign_ups_are_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "a");
    let gateway = GatewayProcess::start(dir.path(), &[&node], &["--rate-per-player", "5"]);
    let tokens = [
        sign_in_at(&gateway.base, "one-bucket"),
        sign_in_at(&gateway.base, "one-bucket"),
    ];
    // A burst of 10 (two seconds' worth) for the player, whichever token asks.
    let url = gateway.url("/api/v1/wallet");
    let allowed = (0..30)
        .filter(|i| get(&url, Some(&tokens[i % 2])).unwrap().0 == 200)
        .count();
    assert!(allowed <= 13, "{allowed} of 30 allowed: a bucket per token");
    // Demo sign-ups: 120 a minute from one address (two spent above), refilled at 2 a second
    // while the sign-ups run.
    let sessions = gateway.url("/api/v1/sessions");
    let started = std::time::Instant::now();
    let statuses: Vec<u16> = (0..130)
        .map(|i| {
            post(
                &sessions,
                None,
                None,
                &serde_json::json!({"player": format!("signup-{i}")}),
            )
            .unwrap()
            .0
        })
        .collect();
    let created = statuses.iter().filter(|s| **s == 201).count();
    let refilled = (started.elapsed().as_secs_f64() * 2.0).ceil() as usize;
    assert!(
        (110..=118 + refilled).contains(&created),
        "{created} sign-ups of 130 in {:?}",
        started.elapsed()
    );
    assert!(statuses.iter().all(|s| *s == 201 || *s == 429));
    ledger_integrity(dir.path());
}
