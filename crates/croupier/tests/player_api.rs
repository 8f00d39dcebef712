//! Whole-process tests of one node: bad input is refused with JSON and moves nothing, the ops
//! API needs the ops token, drain closes WebSockets with 1012 and refuses new rounds, seeds
//! rotate and every game verifies, metrics are exposed.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

fn entries(node: &Node) -> u64 {
    integrity(node)["entries"].as_u64().unwrap()
}

#[test]
fn bad_input_gets_a_json_4xx_and_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "node-1");
    let token = sign_in(&node, "mallory");
    let rounds = node.url("/api/v1/rounds");
    let before = (balance(&node, &token), entries(&node));

    let oversized = format!(
        r#"{{"game":"dice","stake":100,"bet":{{"pad":"{}"}}}}"#,
        "x".repeat(20_000)
    );
    // (case, token, idempotency key, body, expected status, expected error code)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        String,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("malformed JSON", Some(&token), Some("k1"), r#"{"game": "dice", "#.into(), 400, "malformed_json"),
        ("unknown game", Some(&token), Some("k2"), json!({"game": "poker", "stake": 100}).to_string(), 404, "unknown_game"),
        ("stake below min", Some(&token), Some("k3"), dice_bet(1).to_string(), 422, "stake_below_min"),
        ("stake above max", Some(&token), Some("k4"), dice_bet(100_001).to_string(), 422, "stake_above_max"),
        ("negative stake", Some(&token), Some("k6"), dice_bet(-100).to_string(), 422, "invalid_stake"),
        ("overflowing stake", Some(&token), Some("k7"), r#"{"game":"dice","stake":99999999999999999999,"bet":{"target":5000,"direction":"over"}}"#.into(), 422, "invalid_field"),
        ("oversized body", Some(&token), Some("k8"), oversized, 413, "body_too_large"),
        ("bad token", Some("not-a-token"), Some("k9"), dice_bet(100).to_string(), 401, "invalid_token"),
        ("no token", None, Some("k10"), dice_bet(100).to_string(), 401, "missing_token"),
        ("no idempotency key", Some(&token), None, dice_bet(100).to_string(), 400, "missing_idempotency_key"),
        ("bad dice target", Some(&token), Some("k11"), json!({"game": "dice", "stake": 100, "bet": {"target": 20000, "direction": "over"}}).to_string(), 422, "invalid_bet"),
        ("roulette amounts do not add up", Some(&token), Some("k12"), json!({"game": "roulette", "stake": 100, "bet": {"bets": [{"type": "red", "amount": 50}]}}).to_string(), 422, "invalid_bet"),
        ("slot stake not spread on lines", Some(&token), Some("k13"), json!({"game": "slot", "stake": 15}).to_string(), 422, "invalid_bet"),
        ("unknown field", Some(&token), Some("k14"), json!({"game": "dice", "stake": 100, "bet": {"target": 5000, "direction": "over"}, "cheat": true}).to_string(), 422, "invalid_field"),
    ];
    for (name, tok, key, body, status, code) in &cases {
        let (got, reply) = post_raw(&rounds, *tok, *key, body).unwrap();
        assert_eq!(got, *status, "{name}: {reply}");
        assert_eq!(reply["error"], *code, "{name}: {reply}");
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}: {reply}"
        );
        assert_eq!(
            (balance(&node, &token), entries(&node)),
            before,
            "{name} moved money"
        );
    }

    // Over the balance: first spend most of it, then ask for more than is left.
    let (status, body) = post(&rounds, Some(&token), Some("big"), &json!({"game": "roulette", "stake": 99_990, "bet": {"bets": [{"type": "straight", "numbers": [0], "amount": 99_990}]}})).unwrap();
    assert_eq!(status, 201, "{body}");
    let left = balance(&node, &token);
    let after_big = entries(&node);
    if left < 100_000 {
        let (status, reply) =
            post(&rounds, Some(&token), Some("over"), &dice_bet(left + 10)).unwrap();
        assert_eq!(
            (status, reply["error"].as_str()),
            (422, Some("insufficient_funds")),
            "{reply}"
        );
        assert_eq!((balance(&node, &token), entries(&node)), (left, after_big));
    }

    // The same key with a different body is refused; with the same body it replays.
    let (status, first) = post(&rounds, Some(&token), Some("same"), &dice_bet(10)).unwrap();
    assert_eq!(status, 201, "{first}");
    let settled = (balance(&node, &token), entries(&node));
    let (status, replay) = post(&rounds, Some(&token), Some("same"), &dice_bet(10)).unwrap();
    assert_eq!(
        (status, &replay),
        (201, &first),
        "a replay answers as the first try"
    );
    let (status, reused) = post(&rounds, Some(&token), Some("same"), &dice_bet(20)).unwrap();
    assert_eq!(
        (status, reused["error"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!((balance(&node, &token), entries(&node)), settled);

    // Other refusals.
    let (status, body) = get(&node.url("/api/v1/rounds/r_nope"), Some(&token)).unwrap();
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = get(&node.url("/api/v1/nowhere"), Some(&token)).unwrap();
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = post(&node.url("/api/v1/lobby"), Some(&token), None, &json!({})).unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, body) = get(&node.url("/api/v1/wallet/history?limit=5000"), Some(&token)).unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, body) = post(
        &node.url("/api/v1/sessions"),
        None,
        None,
        &json!({"player": "bad name!"}),
    )
    .unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("invalid_player"))
    );
    integrity(&node);
}

#[test]
fn ops_api_needs_the_ops_token_not_a_player_token() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "node-1");
    let player = sign_in(&node, "pat");
    for path in ["/ops/drain", "/ops/integrity"] {
        assert_eq!(get(&node.url(path), None).unwrap().0, 401, "{path}");
        assert_eq!(
            get(&node.url(path), Some("guess")).unwrap().0,
            401,
            "{path}"
        );
        let (status, body) = get(&node.url(path), Some(&player)).unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
        assert_eq!(
            get(&node.url(path), Some(OPS_TOKEN)).unwrap().0,
            200,
            "{path}"
        );
    }
    let (status, _) = post(
        &node.url("/ops/drain"),
        Some(&player),
        None,
        &json!({"draining": true}),
    )
    .unwrap();
    assert_eq!(status, 403);
    assert_eq!(
        get(&node.url("/readyz"), None).unwrap().0,
        200,
        "a player must not drain a node"
    );
}

fn next_json(socket: &mut Socket) -> Value {
    loop {
        match socket.read().unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

#[test]
fn drain_closes_websockets_with_1012_refuses_new_rounds_and_finishes_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "node-1");
    let token = sign_in(&node, "wendy");
    let mut socket = ws_connect(&node.base, &token);
    let hello = next_json(&mut socket);
    assert_eq!(
        (hello["type"].as_str(), hello["balance"].as_i64()),
        (Some("hello"), Some(100_000))
    );

    let (status, body) = post(
        &node.url("/api/v1/rounds"),
        Some(&token),
        Some("b1"),
        &dice_bet(100),
    )
    .unwrap();
    assert_eq!(status, 201);
    let update = next_json(&mut socket);
    assert_eq!(update["type"], "balance");
    assert_eq!(update["balance"], body["balance"]);

    let (status, _) = post(
        &node.url("/ops/notices"),
        Some(OPS_TOKEN),
        None,
        &json!({"message": "maintenance at 03:00 UTC", "level": "warning"}),
    )
    .unwrap();
    assert_eq!(status, 200);
    let notice = next_json(&mut socket);
    assert_eq!(
        (notice["type"].as_str(), notice["message"].as_str()),
        (Some("notice"), Some("maintenance at 03:00 UTC"))
    );

    // An open blackjack round before the drain.
    let mut open = None;
    for i in 0..50 {
        let (_, body) = post(
            &node.url("/api/v1/rounds"),
            Some(&token),
            Some(&format!("bj{i}")),
            &json!({"game": "blackjack", "stake": 100}),
        )
        .unwrap();
        let _ = next_json(&mut socket); // its balance update
        if body["round"]["status"] == "open" {
            open = Some(body["round"]["id"].as_str().unwrap().to_owned());
            break;
        }
    }
    let open = open.expect("an open blackjack round");

    let (status, report) = post(
        &node.url("/ops/drain"),
        Some(OPS_TOKEN),
        None,
        &json!({"draining": true}),
    )
    .unwrap();
    assert_eq!(
        (
            status,
            report["draining"].as_bool(),
            report["open_rounds"].as_i64()
        ),
        (200, Some(true), Some(1))
    );
    match socket.read().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1012),
        other => panic!("expected close 1012, got {other:?}"),
    }
    let (status, body) = get(&node.url("/readyz"), None).unwrap();
    assert_eq!((status, body["reason"].as_str()), (503, Some("draining")));
    let (status, body) = post(
        &node.url("/api/v1/rounds"),
        Some(&token),
        Some("late"),
        &dice_bet(100),
    )
    .unwrap();
    assert_eq!((status, body["error"].as_str()), (503, Some("draining")));
    // Work in flight is finished, not cut.
    let (status, body) = post(
        &node.url(&format!("/api/v1/rounds/{open}/actions")),
        Some(&token),
        Some("stand"),
        &json!({"action": "stand"}),
    )
    .unwrap();
    assert_eq!(
        (status, body["round"]["status"].as_str()),
        (200, Some("settled")),
        "{body}"
    );
    let (_, report) = get(&node.url("/ops/drain"), Some(OPS_TOKEN)).unwrap();
    assert_eq!(report["open_rounds"], 0);

    post(
        &node.url("/ops/drain"),
        Some(OPS_TOKEN),
        None,
        &json!({"draining": false}),
    )
    .unwrap();
    assert_eq!(get(&node.url("/readyz"), None).unwrap().0, 200);
    integrity(&node);
}

#[test]
fn rotated_seeds_verify_every_game_and_the_cli_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "node-1");
    let token = sign_in(&node, "vera");
    let (_, seeds) = get(&node.url("/api/v1/seeds"), Some(&token)).unwrap();
    let committed_hash = seeds["server_seed_hash"].as_str().unwrap().to_owned();

    let bets = [
        json!({"game": "dice", "stake": 100, "bet": {"target": 3000, "direction": "under"}}),
        json!({"game": "roulette", "stake": 300, "bet": {"bets": [{"type": "red", "amount": 100}, {"type": "dozen", "which": 2, "amount": 100}, {"type": "corner", "numbers": [1, 2, 4, 5], "amount": 100}]}}),
        json!({"game": "slot", "stake": 100}),
        json!({"game": "blackjack", "stake": 100}),
    ];
    let mut played = Vec::new();
    for (i, bet) in bets.iter().enumerate() {
        let (status, body) = post(
            &node.url("/api/v1/rounds"),
            Some(&token),
            Some(&format!("v{i}")),
            bet,
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            body["round"]["fair"]["server_seed_hash"],
            committed_hash.as_str()
        );
        played.push(body["round"].clone());
    }
    let blackjack = played[3]["id"].as_str().unwrap().to_owned();
    if played[3]["status"] == "open" {
        let (status, body) = post(
            &node.url("/api/v1/seeds/rotate"),
            Some(&token),
            None,
            &json!({}),
        )
        .unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (409, Some("open_rounds")),
            "rotation must wait for open rounds"
        );
        let (status, _) = post(
            &node.url(&format!("/api/v1/rounds/{blackjack}/actions")),
            Some(&token),
            Some("h"),
            &json!({"action": "hit"}),
        )
        .unwrap();
        assert_eq!(status, 200);
        let (_, round) = get(
            &node.url(&format!("/api/v1/rounds/{blackjack}")),
            Some(&token),
        )
        .unwrap();
        if round["status"] == "open" {
            post(
                &node.url(&format!("/api/v1/rounds/{blackjack}/actions")),
                Some(&token),
                Some("s"),
                &json!({"action": "stand"}),
            )
            .unwrap();
        }
    }
    let (_, before_rotation) = get(
        &node.url(&format!(
            "/api/v1/rounds/{}/verify",
            played[0]["id"].as_str().unwrap()
        )),
        Some(&token),
    )
    .unwrap();
    assert_eq!(before_rotation["revealed"], false);
    assert!(
        before_rotation.get("server_seed").is_none(),
        "the secret must not leak before rotation"
    );

    let (status, rotated) = post(
        &node.url("/api/v1/seeds/rotate"),
        Some(&token),
        None,
        &json!({"client_seed": "my-lucky-seed"}),
    )
    .unwrap();
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(
        rotated["revealed"]["server_seed_hash"],
        committed_hash.as_str()
    );
    assert_eq!(rotated["active"]["client_seed"], "my-lucky-seed");
    let server_seed = rotated["revealed"]["server_seed"]
        .as_str()
        .unwrap()
        .to_owned();

    for round in &played {
        let id = round["id"].as_str().unwrap();
        let (status, report) = get(
            &node.url(&format!("/api/v1/rounds/{id}/verify")),
            Some(&token),
        )
        .unwrap();
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["matches"], true, "{report:#}");
        assert_eq!(report["hash_matches"], true);
    }
    // The dice round, recomputed offline by anyone holding the revealed seed.
    let dice = &played[0];
    let output = croupier()
        .args(["verify", "--game", "dice", "--server-seed", &server_seed])
        .args([
            "--client-seed",
            dice["fair"]["client_seed"].as_str().unwrap(),
        ])
        .args(["--nonce", &dice["nonce"].to_string(), "--stake", "100"])
        .args(["--bet", &dice["bet"].to_string()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let offline: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(offline["outcome"], dice["outcome"]);
    assert_eq!(offline["payout"], dice["payout"]);
    assert_eq!(offline["server_seed_hash"], committed_hash.as_str());
    integrity(&node);
}

#[test]
fn metrics_expose_requests_bets_rounds_and_host() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "node-1");
    let token = sign_in(&node, "mia");
    for i in 0..3 {
        post(
            &node.url("/api/v1/rounds"),
            Some(&token),
            Some(&format!("m{i}")),
            &dice_bet(100),
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(1_200)); // one host sample
    let text = agent()
        .get(&node.url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for needle in [
        "croupier_bets_total{game=\"dice\"} 3",
        "croupier_http_requests_total{method=\"POST\",route=\"/api/v1/rounds\",status=\"201\"} 3",
        "croupier_http_request_duration_seconds_bucket",
        "croupier_staked_minor_units_total{game=\"dice\"} 300",
        "croupier_rounds_in_flight 0",
        "croupier_draining 0",
        "croupier_host_cpu_usage_ratio",
        "croupier_host_memory_total_bytes",
        "croupier_host_network_receive_bytes_total{interface=\"lo\"}",
        "croupier_host_disk_available_bytes",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    // A real memory figure, not a placeholder.
    let total: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("croupier_host_memory_total_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(total > 100e6, "{total}");
    // The store's stages: the sign-in and three bets went through at least one batch each
    // way (queued, built, committed), on the backend the suite runs on.
    let backend = if croupier_ledger::test_store::postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    assert!(
        text.contains(&format!("croupier_store_info{{backend=\"{backend}\"}} 1")),
        "{text}"
    );
    let count = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("croupier_store_{name}_count ")))
            .unwrap_or_else(|| panic!("no {name}: {text}"))
            .parse()
            .unwrap()
    };
    for stage in [
        "queue_wait_seconds",
        "batch_build_seconds",
        "commit_seconds",
    ] {
        assert!(count(stage) >= 2.0, "{stage}: {text}");
    }
    assert!(
        text.contains("croupier_store_batches_total{outcome=\"committed\"}"),
        "{text}"
    );
    // A node alone on its database: both writers of a PostgreSQL store take turns.
    let writers = if backend == "postgres" { 2 } else { 1 };
    assert!(
        text.contains(&format!("croupier_store_writers_in_turn {writers}\n")),
        "{text}"
    );
    // Its connection pools, sampled with the host: PostgreSQL's (SQLite keeps fixed
    // connections, and shows none).
    for line in [
        "croupier_store_pool_max_connections{pool=\"writers\"} 2\n",
        "croupier_store_pool_connections{pool=\"writers\",state=\"idle\"}",
        "croupier_store_pool_connections{pool=\"readers\",state=\"busy\"}",
        "croupier_store_pool_waiting{pool=\"readers\"} 0\n",
    ] {
        assert_eq!(text.contains(line), backend == "postgres", "{line}: {text}");
    }
    integrity(&node);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A player's WebSocket costs the node a few KiB, not the 128 KiB read buffer (zero-filled on
/// every poll) that the WebSocket library allocates by default: with that default, profiling
/// a stack under load found a third of each node's CPU in that memset.
#[test]
fn a_websocket_costs_the_node_kilobytes_not_a_large_zeroed_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "node-1");
    let tokens: Vec<String> = (0..100)
        .map(|i| sign_in(&node, &format!("socket-{i}")))
        .collect();
    // A store opens connections as reads come at once (up to four readers on PostgreSQL):
    // open them before measuring, so the growth is the sockets' own.
    std::thread::scope(|scope| {
        for token in tokens.iter().take(16) {
            scope.spawn(|| balance(&node, token));
        }
    });
    let before = rss_kib(node.child.id());
    let mut sockets: Vec<Socket> = tokens.iter().map(|t| ws_connect(&node.base, t)).collect();
    for socket in &mut sockets {
        assert_eq!(next_json(socket)["type"], "hello");
    }
    let (status, _) = post(
        &node.url("/ops/notices"),
        Some(OPS_TOKEN),
        None,
        &json!({"message": "all sockets polled", "level": "info"}),
    )
    .unwrap();
    assert_eq!(status, 200);
    for socket in &mut sockets {
        assert_eq!(next_json(socket)["type"], "notice");
    }
    let grown = rss_kib(node.child.id()).saturating_sub(before);
    assert!(
        grown < 6 * 1024,
        "100 WebSockets took {grown} KiB of the node's memory"
    );
}
