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
    let layout = &stack.layout;
    let servers = [
        ("node", layout.node_listen(0)),
        ("players", layout.players_listen()),
        ("admin", layout.admin_listen()),
        ("control", layout.control_listen()),
        ("supervisor", layout.supervisor_listen()),
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
    for path in paths_under(folder) {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // removed meanwhile (a rotated segment)
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            found.push((path.display().to_string(), mode));
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
    // A bucket per token would allow 20 at once; the bound allows for what the bucket
    // refilled while a loaded machine served the 30.
    let url = gateway.url("/api/v1/wallet");
    let started = std::time::Instant::now();
    let allowed = (0..30)
        .filter(|i| get(&url, Some(&tokens[i % 2])).unwrap().0 == 200)
        .count();
    let refilled = (5.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        allowed <= 10 + refilled + 1,
        "{allowed} of 30 allowed, {refilled} refilled: a bucket per token"
    );
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

/// Rows of `sql` (every column text) on a ledger, read as an intruder would: SQL on the
/// copied file or the database, no croupier code.
fn stolen_rows(ledger: &croupier_ledger::StoreLocation, sql: &str) -> Vec<Vec<String>> {
    match ledger {
        croupier_ledger::StoreLocation::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            let columns = stmt.column_count();
            stmt.query_map([], |r| {
                (0..columns).map(|i| r.get::<_, String>(i)).collect()
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        }
        croupier_ledger::StoreLocation::Postgres(url) => {
            let output = std::process::Command::new("psql")
                .args([url.as_str(), "-At", "-F", "|", "-c", sql])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "psql: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout)
                .unwrap()
                .lines()
                .map(|line| line.split('|').map(str::to_owned).collect())
                .collect()
        }
    }
}

/// What a copy of the ledger says of `player`'s unrevealed seed: the stored server seed, the
/// client seed and the next nonce.
fn stolen_active_seed(
    ledger: &croupier_ledger::StoreLocation,
    player: &str,
) -> (String, String, u64) {
    let rows = stolen_rows(
        ledger,
        &format!(
            "SELECT server_seed, client_seed, CAST(next_nonce AS TEXT) FROM seeds
             WHERE player = '{player}' AND revealed_ms IS NULL"
        ),
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    (
        rows[0][0].clone(),
        rows[0][1].clone(),
        rows[0][2].parse().unwrap(),
    )
}

/// A copy of the ledger's files (the SQLite file and its WAL) in `into`; on PostgreSQL the
/// database itself stands for its dump.
fn copy_ledger(data: &std::path::Path, into: &std::path::Path) -> croupier_ledger::StoreLocation {
    let live = ledger(data);
    let croupier_ledger::StoreLocation::Sqlite(db) = &live else {
        return live;
    };
    std::fs::create_dir_all(into).unwrap();
    for suffix in ["", "-wal"] {
        let from = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            std::fs::copy(&from, into.join(format!("ledger.db{suffix}"))).unwrap();
        }
    }
    croupier_ledger::StoreLocation::Sqlite(into.join("ledger.db"))
}

/// `croupier verify` of a dice bet of 100 with the given seeds: what an intruder computes.
fn predicted_dice(server_seed: &str, client_seed: &str, nonce: u64) -> Value {
    let output = croupier()
        .args(["verify", "--game", "dice", "--server-seed", server_seed])
        .args(["--client-seed", client_seed, "--nonce", &nonce.to_string()])
        .args(["--stake", "100", "--bet", &dice_bet(100)["bet"].to_string()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_copy_of_the_ledger_or_of_a_backup_does_not_tell_the_next_roll() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let node = Node::start(&data, "node-1");
    let token = sign_in(&node, "seer");
    let (_, active) = get(&node.url("/api/v1/seeds"), Some(&token)).unwrap();
    let committed = active["server_seed_hash"].as_str().unwrap().to_owned();
    let mut copies = Vec::new();
    let mut every_roll_foretold = true;
    for n in 0..3 {
        let copy = copy_ledger(&data, &dir.path().join(format!("stolen-{n}")));
        let (server_seed, client_seed, nonce) = stolen_active_seed(&copy, "seer");
        let prediction = predicted_dice(&server_seed, &client_seed, nonce);
        assert_ne!(
            prediction["server_seed_hash"], committed,
            "the copy holds the seed that deals the next roll"
        );
        let (status, played) = post(
            &node.url("/api/v1/rounds"),
            Some(&token),
            Some(&format!("seer-{n}")),
            &dice_bet(100),
        )
        .unwrap();
        assert_eq!(status, 201, "{played}");
        assert_eq!(played["round"]["nonce"], nonce, "{played}");
        every_roll_foretold &= prediction["outcome"] == played["round"]["outcome"];
        copies.push(copy);
    }
    assert!(
        !every_roll_foretold,
        "three rolls foretold from copies of the ledger"
    );

    // Rotation reveals the seed: in clear in the ledger from then on (players verify with
    // it), and found in none of the copies taken while it dealt.
    let (status, rotated) = post(
        &node.url("/api/v1/seeds/rotate"),
        Some(&token),
        None,
        &serde_json::json!({}),
    )
    .unwrap();
    assert_eq!(status, 200, "{rotated}");
    let revealed = rotated["revealed"]["server_seed"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        predicted_dice(&revealed, "x", 0)["server_seed_hash"],
        committed
    );
    for copy in &copies {
        if let croupier_ledger::StoreLocation::Sqlite(db) = copy {
            for file in [db.clone(), db.with_extension("db-wal")] {
                let bytes = std::fs::read(&file).unwrap_or_default();
                assert!(
                    !bytes
                        .windows(revealed.len())
                        .any(|w| w == revealed.as_bytes()),
                    "{} holds the server seed before it was revealed",
                    file.display()
                );
            }
        }
    }
    let stored_revealed = stolen_rows(
        &ledger(&data),
        &format!("SELECT server_seed FROM seeds WHERE server_seed_hash = '{committed}'"),
    );
    let stored_revealed = stored_revealed[0][0].clone();
    assert_eq!(
        stored_revealed, revealed,
        "a revealed seed is stored in clear"
    );

    // A backup, restored by someone who holds the backup key as well: the new seed is not in it.
    if !croupier_ledger::test_store::postgres() {
        let (_, active) = get(&node.url("/api/v1/seeds"), Some(&token)).unwrap();
        let key = dir.path().join("backup-key");
        let target = dir.path().join("backups");
        let restored = dir.path().join("restored.db");
        let db = ledger_path(&data);
        for args in [
            vec!["keygen", "--out", key.to_str().unwrap()],
            vec![
                "snapshot",
                "--db",
                db.to_str().unwrap(),
                "--target",
                target.to_str().unwrap(),
                "--key-file",
                key.to_str().unwrap(),
            ],
            vec![
                "restore",
                "--target",
                target.to_str().unwrap(),
                "--key-file",
                key.to_str().unwrap(),
                "--into",
                restored.to_str().unwrap(),
            ],
        ] {
            let output = croupier().arg("backup").args(&args).output().unwrap();
            assert!(
                output.status.success(),
                "backup {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let restored = croupier_ledger::StoreLocation::Sqlite(restored);
        let (server_seed, client_seed, nonce) = stolen_active_seed(&restored, "seer");
        assert_eq!(nonce, 0);
        let prediction = predicted_dice(&server_seed, &client_seed, nonce);
        assert_ne!(prediction["server_seed_hash"], active["server_seed_hash"]);
    }
    drop(node);
    ledger_integrity(&data);
}

#[test]
fn a_player_keeps_only_the_newest_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with(
        dir.path(),
        "node-1",
        &["--demo", "--max-sessions-per-player", "2"],
    );
    let wallet = |token: &str| get(&node.url("/api/v1/wallet"), Some(token)).unwrap();
    let mut tokens: Vec<String> = (0..2).map(|_| sign_in(&node, "many-devices")).collect();
    let other = sign_in(&node, "someone-else");
    // The first token is used (so the node caches it), then a third sign-in revokes it.
    assert_eq!(wallet(&tokens[0]).0, 200);
    tokens.push(sign_in(&node, "many-devices"));
    let (status, reply) = wallet(&tokens[0]);
    assert_eq!(status, 401, "the oldest session outlived the cap: {reply}");
    assert_eq!(reply["error"], "invalid_token", "{reply}");
    for token in tokens[1..].iter().chain([&other]) {
        assert_eq!(wallet(token).0, 200);
    }
    let fourth = sign_in(&node, "many-devices");
    assert_eq!(wallet(&tokens[1]).0, 401);
    assert_eq!((wallet(&tokens[2]).0, wallet(&fourth).0), (200, 200));
    drop(node);
    ledger_integrity(dir.path());
}

#[test]
fn scanning_the_players_port_gets_the_address_blocked_and_operators_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stack = UpStack::start(&data, &["--allow-networks", "127.0.0.3"]);
    let players = address(&stack.players_url(""));
    let token = sign_in_at(&stack.players_url(""), "scanned");
    // Paths and methods probed without a token; the lobby asked for with the player's.
    let probe = |source: &str, method: &str, path: &str| {
        let auth = if path == "/api/v1/lobby" && method == "GET" {
            format!("Authorization: Bearer {token}\r\n")
        } else {
            String::new()
        };
        raw_from(
            source,
            players,
            &format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n"),
        )
    };
    // A scanner: paths that are not there, then methods no client uses. The 100th refusal
    // within a minute blocks it; from then on it gets 429 `blocked`, a lobby request too.
    let mut statuses: Vec<u16> = (0..60)
        .map(|i| probe("127.0.0.2", "GET", &format!("/wp-admin/{i}.php")).0)
        .collect();
    statuses.extend((0..40).map(|_| probe("127.0.0.2", "TRACE", "/api/v1/lobby").0));
    assert!(statuses[..99].iter().all(|s| *s != 429), "{statuses:?}");
    assert_eq!(statuses[99], 429, "{statuses:?}");
    let (status, body) = probe("127.0.0.2", "GET", "/api/v1/lobby");
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("blocked")),
        "{body}"
    );
    // Players elsewhere, and the operators' allow-listed network, are not affected.
    assert_eq!(probe("127.0.0.1", "GET", "/api/v1/lobby").0, 200);
    for i in 0..150 {
        assert_eq!(probe("127.0.0.3", "GET", &format!("/.env{i}")).0, 404);
    }
    assert_eq!(probe("127.0.0.3", "GET", "/api/v1/lobby").0, 200);

    // A metric on the gateway; on the control plane an alert, an audit entry and the block
    // listed with the gateway's own; lifted everywhere at once.
    let admin_metrics = agent()
        .get(&stack.admin_url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        admin_metrics.contains("croupier_security_scan_blocks_total 1")
            && admin_metrics.contains("croupier_security_scan_blocked 1"),
        "{admin_metrics}"
    );
    wait_for("the security alert", || {
        operator_get(&stack, "/api/v1/alerts")
            .1
            .to_string()
            .contains("security_blocks")
    });
    wait_for("the gateway's block in the audit log", || {
        let (_, audit) = operator_get(&stack, "/api/v1/audit");
        audit.to_string().contains("address/127.0.0.2")
    });
    let listed = ctl(&stack, &["blocks"]);
    let block = &listed["blocks"][0];
    assert_eq!(
        (&block["address"], &block["surface"], &block["gateway"]),
        (&"127.0.0.2".into(), &"players".into(), &"gateway".into()),
        "{listed}"
    );
    let lifted = ctl(&stack, &["blocks", "--lift", "127.0.0.2"]);
    assert_eq!(lifted["lifted"], "127.0.0.2");
    assert_eq!(probe("127.0.0.2", "GET", "/api/v1/lobby").0, 200);
    assert_eq!(ctl(&stack, &["blocks"])["blocks"], serde_json::json!([]));

    // Unusual play on a node (a sign-in storm): the control plane lists the flag with the
    // node's name and raises the `unusual_play` alert.
    let node = stack.layout.node_url(0);
    for _ in 0..30 {
        sign_in_at(&node, "farmer");
    }
    wait_for("the unusual-play alert", || {
        operator_get(&stack, "/api/v1/alerts")
            .1
            .to_string()
            .contains("unusual_play")
    });
    let (status, flags) = operator_get(&stack, "/api/v1/flags");
    assert_eq!(status, 200, "{flags}");
    let flag = &flags["flags"][0];
    assert_eq!(
        (&flag["player"], &flag["signal"], &flag["node"]),
        (&"farmer".into(), &"many_sessions".into(), &"node-1".into()),
        "{flags}"
    );
}

#[test]
fn bursts_of_key_conflicts_and_sign_in_storms_are_flagged_for_operators() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "node-1");
    let flags = || get(&node.url("/ops/flags"), Some(OPS_TOKEN)).unwrap();
    let token = sign_in(&node, "replayer");
    let rounds = node.url("/api/v1/rounds");
    let (status, body) = post(&rounds, Some(&token), Some("same-key"), &dice_bet(100)).unwrap();
    assert_eq!(status, 201, "{body}");
    for stake in 101..121 {
        let (status, body) =
            post(&rounds, Some(&token), Some("same-key"), &dice_bet(stake)).unwrap();
        assert_eq!(status, 422, "{body}");
    }
    for _ in 0..30 {
        sign_in(&node, "farmer");
    }
    assert_eq!(get(&node.url("/ops/flags"), None).unwrap().0, 401);
    let (status, listed) = flags();
    assert_eq!(status, 200, "{listed}");
    let mut found: Vec<(String, String)> = listed["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["player"].as_str().unwrap().into(),
                f["signal"].as_str().unwrap().into(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("farmer".to_owned(), "many_sessions".to_owned()),
            ("replayer".to_owned(), "idempotency_conflicts".to_owned()),
        ]
    );
    let metrics = get_text(&node.url("/metrics"));
    assert!(metrics.contains("croupier_play_flags 2"), "{metrics}");
    drop(node);
    ledger_integrity(dir.path());
}

fn get_text(url: &str) -> String {
    agent()
        .get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// A GET from `source` that a proxy forwarded for `client` (`X-Forwarded-For`).
fn forwarded_get(source: &str, client: &str, target: SocketAddr, path: &str, token: &str) -> u16 {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {client}\r\n\
         Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    raw_from(source, target, &request).0
}

/// Behind a reverse proxy (here 127.0.0.9, given to `up --trusted-proxies`) everyone comes
/// from the proxy's address. The gateway and the control plane take the client from the
/// proxy's `X-Forwarded-For`: a guesser of the ops token behind the proxy is blocked, and an
/// operator behind the same proxy is not; the block names the guesser's address. Anyone else
/// who sends the header is its own address: it cannot name another to escape a block.
#[test]
fn behind_a_trusted_proxy_blocks_fall_on_the_client_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stack = UpStack::start(
        &data,
        &["--lockout-failures", "3", "--trusted-proxies", "127.0.0.9"],
    );
    let control = address(&stack.control_url(""));
    let path = "/api/v1/incidents";
    let guesses: Vec<u16> = (0..3)
        .map(|i| forwarded_get("127.0.0.9", "203.0.113.5", control, path, &format!("g{i}")))
        .collect();
    assert_eq!(guesses, [401, 401, 429]);
    let blocked = forwarded_get("127.0.0.9", "203.0.113.5", control, path, OPS_TOKEN);
    assert_eq!(blocked, 429, "the guesser, with the right token");
    let operator = forwarded_get("127.0.0.9", "198.51.100.4", control, path, OPS_TOKEN);
    assert_eq!(operator, 200, "an operator behind the same proxy");
    let listed = ctl(&stack, &["blocks"]);
    assert_eq!(listed["blocks"][0]["address"], "203.0.113.5", "{listed}");

    // Not the proxy: the header is the caller's own claim, and proves nothing.
    let spoofer: Vec<u16> = (0..3)
        .map(|i| forwarded_get("127.0.0.2", "203.0.113.6", control, path, &format!("s{i}")))
        .collect();
    assert_eq!(spoofer, [401, 401, 429]);
    let escape = forwarded_get("127.0.0.2", "203.0.113.7", control, path, OPS_TOKEN);
    assert_eq!(escape, 429, "another claimed address escaped the block");

    // The players' port: a scanner behind the proxy is blocked, its neighbours play on.
    let players = address(&stack.players_url(""));
    let token = sign_in_at(&stack.players_url(""), "behind");
    let lobby = |client: &str| forwarded_get("127.0.0.9", client, players, "/api/v1/lobby", &token);
    let probes: Vec<u16> = (0..100)
        .map(|i| forwarded_get("127.0.0.9", "203.0.113.8", players, &format!("/x{i}"), "-"))
        .collect();
    assert_eq!(probes[99], 429, "{probes:?}");
    assert_eq!(lobby("203.0.113.8"), 429, "the scanner");
    assert_eq!(lobby("203.0.113.9"), 200, "a player behind the same proxy");
}
