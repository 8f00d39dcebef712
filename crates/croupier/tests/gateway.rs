//! Whole-process tests of the gateway in front of three real nodes on one SQLite ledger:
//! `kill -9` of a node under load, drain with WebSockets, all nodes down, limits, and a
//! graceful restart of the gateway itself. The ledger invariants are checked after each.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

/// These tests each run three nodes, a gateway and a load on a 2-core machine, and assert on
/// timing (rerouting within a second): they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The load below plays far faster than a person: rate limits would (rightly) refuse it.
const NO_RATE_LIMITS: [&str; 4] = ["--rate-per-player", "0", "--rate-per-ip", "0"];

fn three_nodes(dir: &std::path::Path) -> Vec<Node> {
    ["a", "b", "c"]
        .iter()
        .map(|id| Node::start(dir, id))
        .collect()
}

/// When something happened, and what (the failure, or the node that served).
type Event = (Instant, String);

/// Players hitting the gateway until stopped: wallet reads and keyed dice bets, each on a new
/// connection, `pause` apart. Returns every failure seen (status or transport error, with the
/// time it was seen) and which node served each success (with the time it was sent).
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<Event>>>,
    served: Arc<Mutex<Vec<Event>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(gateway: &GatewayProcess, players: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..players)
            .map(|p| {
                let token = sign_in_via(gateway, &format!("load{p}"));
                let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
                let (wallet, rounds) =
                    (gateway.url("/api/v1/wallet"), gateway.url("/api/v1/rounds"));
                thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let began = Instant::now();
                        let result = if n % 2 == 0 {
                            get_via(&wallet, Some(&token))
                        } else {
                            post_via(
                                &rounds,
                                Some(&token),
                                Some(&format!("load-{p}-{n}")),
                                &dice_bet(10),
                            )
                        };
                        let ok = matches!(&result, Ok((200 | 201, _, _)));
                        if ok {
                            served.lock().unwrap().push((began, result.unwrap().2));
                        } else {
                            failures
                                .lock()
                                .unwrap()
                                .push((Instant::now(), format!("{result:?}")));
                        }
                        thread::sleep(pause);
                    }
                })
            })
            .collect();
        Load {
            stop,
            failures,
            served,
            threads,
        }
    }

    fn finish(self) -> (Vec<Event>, Vec<Event>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        let served = self.served.lock().unwrap().clone();
        (failures, served)
    }
}

fn sign_in_via(gateway: &GatewayProcess, player: &str) -> String {
    sign_in_at(&gateway.base, player)
}

#[test]
fn kill_9_of_a_node_under_load_is_invisible_to_players() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(dir.path());
    let gateway = GatewayProcess::start(
        dir.path(),
        &nodes.iter().collect::<Vec<_>>(),
        &NO_RATE_LIMITS,
    );
    let load = Load::start(&gateway, 6, Duration::ZERO);
    thread::sleep(Duration::from_millis(1_000));
    nodes[1].kill_9();
    // Reaped: from here on, b cannot answer anything.
    let killed_at = Instant::now();
    thread::sleep(Duration::from_millis(1_000));
    let errors_one_second_after = gateway
        .metric("croupier_gateway_upstream_errors_total{kind=\"connect\",node=\"b\"}")
        + gateway.metric("croupier_gateway_upstream_errors_total{kind=\"reset\",node=\"b\"}");
    thread::sleep(Duration::from_millis(1_500));
    let (failures, served) = load.finish();

    assert!(failures.is_empty(), "players saw errors: {failures:#?}");
    assert!(
        served.iter().any(|(_, node)| node == "b"),
        "b served before the kill"
    );
    assert!(
        !served
            .iter()
            .any(|(at, node)| node == "b" && *at > killed_at),
        "b answered a request sent after it was killed"
    );
    let errors_at_end = gateway
        .metric("croupier_gateway_upstream_errors_total{kind=\"connect\",node=\"b\"}")
        + gateway.metric("croupier_gateway_upstream_errors_total{kind=\"reset\",node=\"b\"}");
    assert_eq!(
        errors_one_second_after, errors_at_end,
        "traffic still went to b more than 1 s after the kill"
    );
    let served_after = served.iter().filter(|(at, _)| *at > killed_at).count();
    assert!(
        served_after > 100,
        "only {served_after} requests served after the kill"
    );
    integrity(&nodes[0]);
}

fn ws_via(gateway: &GatewayProcess, token: &str) -> Socket {
    ws_connect(&gateway.base, token)
}

fn hello_node(socket: &mut Socket) -> String {
    match socket.read().unwrap() {
        Message::Text(text) => serde_json::from_str::<Value>(&text).unwrap()["node"]
            .as_str()
            .unwrap()
            .to_owned(),
        other => panic!("expected hello, got {other:?}"),
    }
}

#[test]
fn drain_closes_websockets_with_1012_moves_players_and_cuts_no_round() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path());
    let gateway = GatewayProcess::start(dir.path(), &nodes.iter().collect::<Vec<_>>(), &[]);
    let token = sign_in_via(&gateway, "dora");
    let mut socket = ws_via(&gateway, &token);
    let home = hello_node(&mut socket);

    // An open blackjack round, played on the player's node.
    let mut open = None;
    for i in 0..50 {
        let (status, body, node) = post_via(
            &gateway.url("/api/v1/rounds"),
            Some(&token),
            Some(&format!("bj{i}")),
            &json!({"game": "blackjack", "stake": 100}),
        )
        .unwrap();
        assert_eq!(
            (status, node.as_str()),
            (201, home.as_str()),
            "affinity keeps the player on one node"
        );
        let _ = socket.read().unwrap(); // the balance update
        if body["round"]["status"] == "open" {
            open = Some(body["round"]["id"].as_str().unwrap().to_owned());
            break;
        }
    }
    let open = open.expect("an open round");

    gateway.set_state(&home, "draining");
    match socket.read().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1012),
        other => panic!("expected close 1012, got {other:?}"),
    }
    let mut again = ws_via(&gateway, &token);
    let new_home = hello_node(&mut again);
    assert_ne!(new_home, home, "the reconnect went to another node");

    // The round goes on, on another node.
    let (status, body, node) = post_via(
        &gateway.url(&format!("/api/v1/rounds/{open}/actions")),
        Some(&token),
        Some("finish"),
        &json!({"action": "stand"}),
    )
    .unwrap();
    assert_eq!(
        (status, body["round"]["status"].as_str()),
        (200, Some("settled")),
        "{body}"
    );
    assert_ne!(node, home);
    // No new session lands on the draining node.
    for i in 0..12 {
        let (status, _, node) = post_via(
            &gateway.url("/api/v1/sessions"),
            None,
            None,
            &json!({"player": format!("new{i}")}),
        )
        .unwrap();
        assert_eq!(status, 201);
        assert_ne!(node, home, "a new session went to the draining node");
    }
    gateway.set_state(&home, "active");
    integrity(&nodes[0]);
}

#[test]
fn all_nodes_down_gives_503_with_retry_after_then_recovers() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(dir.path());
    let gateway = GatewayProcess::start(dir.path(), &nodes.iter().collect::<Vec<_>>(), &[]);
    let token = sign_in_via(&gateway, "eli");
    for node in &mut nodes {
        node.kill_9();
    }
    let mut response = agent()
        .get(&gateway.url("/api/v1/wallet"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers().get("retry-after").unwrap(), "5");
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"], "maintenance");
    assert!(body["message"].as_str().unwrap().contains("retry"));
    thread::sleep(Duration::from_millis(600));
    assert_eq!(
        get(&format!("{}/readyz", gateway.admin), None).unwrap().0,
        503
    );

    // One node back, on the same ledger: nothing was lost.
    // The restarted node listens on a new port, so a gateway configured with it serves again.
    let back = Node::start(dir.path(), "a");
    let recovered = GatewayProcess::start(dir.path(), &[&back], &[]);
    let (status, body, _) = get_via(&recovered.url("/api/v1/wallet"), Some(&token)).unwrap();
    assert_eq!((status, body["balance"].as_i64()), (200, Some(100_000)));
    integrity(&back);
}

#[test]
fn limits_refuse_with_json_and_the_admin_api_needs_the_token() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "a");
    let gateway = GatewayProcess::start(dir.path(), &[&node], &["--rate-per-player", "5"]);
    let token = sign_in_via(&gateway, "flo");
    let statuses: Vec<u16> = (0..40)
        .map(|_| {
            get_via(&gateway.url("/api/v1/wallet"), Some(&token))
                .unwrap()
                .0
        })
        .collect();
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    let (status, body, _) = get_via(&gateway.url("/api/v1/wallet"), Some(&token)).unwrap();
    if status == 429 {
        assert_eq!(body["error"], "rate_limited");
    }
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(70_000));
    let (status, body) = post_raw(&gateway.url("/api/v1/rounds"), None, None, &big).unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("body_too_large"))
    );
    let (status, _) = get(&format!("{}/admin/nodes", gateway.admin), Some(&token)).unwrap();
    assert_eq!(status, 401, "a player token must not reach the admin API");
    let (status, _) = get(&format!("{}/admin/nodes", gateway.admin), Some(OPS_TOKEN)).unwrap();
    assert_eq!(status, 200);
    integrity(&node);
}

#[test]
fn graceful_restart_of_the_gateway_drops_no_request() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path());
    let mut gateway = GatewayProcess::start(
        dir.path(),
        &nodes.iter().collect::<Vec<_>>(),
        &NO_RATE_LIMITS,
    );
    let (_, health) = get(&format!("{}/healthz", gateway.admin), None).unwrap();
    let old_pid = health["pid"].as_u64().unwrap();
    let load = Load::start(&gateway, 4, Duration::from_millis(2));
    thread::sleep(Duration::from_millis(500));
    let status = std::process::Command::new("kill")
        .args(["-USR2", &old_pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The old process exits once the new one serves and its own requests are done.
    let deadline = Instant::now() + Duration::from_secs(20);
    while gateway.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the old gateway did not stop");
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(500));
    let (failures, served) = load.finish();
    let (_, health) = get(&format!("{}/healthz", gateway.admin), None).unwrap();
    let new_pid = health["pid"].as_u64().unwrap();
    let _ = std::process::Command::new("kill")
        .arg(new_pid.to_string())
        .status();
    assert_ne!(new_pid, old_pid);
    assert!(
        failures.is_empty(),
        "requests failed during the restart: {failures:#?}"
    );
    assert!(served.len() > 100, "only {} requests served", served.len());
    integrity(&nodes[0]);
}
