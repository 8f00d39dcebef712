//! `croupier up` as a newcomer runs it: three nodes, the gateway and the control plane come
//! up, players play through the gateway; a node killed with -9 fires an alert and opens an
//! incident within 5 s (the webhook receiver gets it), the supervisor restarts the node while
//! players see no error, the alert resolves (the receiver gets that too), and SIGTERM stops
//! everything.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A webhook receiver: every alert of every message it got. Each message is one
/// component's group; each alert is checked to be stamped with it.
fn webhook_receiver() -> (String, Received) {
    json_receiver("/hook")
}

fn alerts(received: &Received) -> Vec<Value> {
    let mut alerts = Vec::new();
    for (_, message) in received.lock().iter() {
        for alert in message["alerts"].as_array().into_iter().flatten() {
            assert_eq!(alert["status"], message["status"], "{message}");
            assert_eq!(alert["component"], message["group"], "{message}");
            alerts.push(alert.clone());
        }
    }
    alerts
}

fn got(received: &Received, status: &str, key: &str) -> bool {
    alerts(received)
        .iter()
        .any(|m| m["status"] == status && m["key"] == key)
}

#[test]
fn up_supervises_nodes_and_gateway_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (hook, received) = webhook_receiver();
    std::fs::create_dir_all(&data).unwrap();
    let layout = up_layout(&data);
    let mut up = Up(croupier()
        .args(layout.up_command())
        .envs(layout.environment())
        .args(["--webhook", &hook, "--demo"])
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let players = layout.players_url();
    let admin = layout.admin_url();
    wait_for("the gateway", || {
        get(&format!("{admin}/readyz"), None).map(|r| r.0) == Ok(200)
    });
    for i in 0..3 {
        wait_for("a node", || {
            get(&format!("{}/readyz", layout.node_url(i)), None).map(|r| r.0) == Ok(200)
        });
    }
    wait_eligible(&admin, 3);

    let (status, body, _) = post_via(
        &format!("{players}/api/v1/sessions"),
        None,
        None,
        &serde_json::json!({"player": "newcomer"}),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();

    let control_url = layout.control_url();
    wait_for("the control plane", || {
        get(&format!("{control_url}/readyz"), None).map(|r| r.0) == Ok(200)
    });
    // Let it see every target up first, the synthetic checks included (the test bet runs
    // every 5 s; a first one sent before the gateway saw its nodes rise counts as down).
    let targets = || {
        let (_, targets) = get(&format!("{control_url}/api/v1/targets"), Some(OPS_TOKEN)).unwrap();
        targets["targets"].as_array().unwrap().clone()
    };
    // On PostgreSQL the ledger's server too (`up` hands the control plane its store).
    let expected = if croupier_ledger::test_store::postgres() {
        7
    } else {
        6
    };
    wait_for("every target up", || {
        let all = targets();
        all.len() == expected && all.iter().all(|t| t["up"] == true)
    });
    let targets = targets();
    assert_eq!(
        targets.len(),
        expected,
        "3 nodes, the gateway, 2 checks (and the ledger): {targets:?}"
    );
    assert!(targets.iter().all(|t| t["up"] == true), "{targets:?}");

    let data_text = data.canonicalize().unwrap().display().to_string();
    let victim = find_process(&["--node-id node-2", &data_text]).expect("node-2 runs");
    Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let killed = Instant::now();
    // Players keep playing through the gateway while node-2 is down and restarted.
    let until = Instant::now() + Duration::from_millis(1_500);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let (status, body, _) = post_via(
            &format!("{players}/api/v1/rounds"),
            Some(&token),
            Some(&format!("up-{n}")),
            &dice_bet(10),
        )
        .unwrap();
        assert_eq!(status, 201, "bet {n} failed: {body}");
        // A brisk player, well under the gateway's 200 requests/s per player.
        std::thread::sleep(Duration::from_millis(10));
    }
    let fired_within = loop {
        if got(&received, "firing", "down/node-2") {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "no alert within 5 s: {:?}",
            alerts(&received)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (status, incidents) =
        get(&format!("{control_url}/api/v1/incidents"), Some(OPS_TOKEN)).unwrap();
    assert_eq!(status, 200);
    // The incident the first firing message names.
    let incident_id = alerts(&received)
        .iter()
        .find(|m| m["status"] == "firing" && m["key"] == "down/node-2")
        .map(|m| m["incident_id"].clone())
        .unwrap();
    let incident = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == incident_id && i["alert_key"] == "down/node-2")
        .unwrap_or_else(|| panic!("no incident {incident_id} for node-2: {incidents}"))
        .clone();
    assert!(incident["opened_ms"].as_i64().is_some());
    eprintln!(
        "alert and incident {} s after the kill",
        fired_within.as_secs_f64()
    );
    wait_for("node-2's restart", || {
        find_process(&["--node-id node-2", &data_text]).is_some_and(|pid| pid != victim)
            && get(&format!("{}/readyz", layout.node_url(1)), None).map(|r| r.0) == Ok(200)
    });

    wait_for("the alert to resolve", || {
        alerts(&received).iter().any(|m| {
            m["status"] == "resolved"
                && m["key"] == "down/node-2"
                && m["incident_id"] == incident_id
        })
    });
    let (_, incidents) = get(&format!("{control_url}/api/v1/incidents"), Some(OPS_TOKEN)).unwrap();
    let resolved = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == incident["id"])
        .unwrap()
        .clone();
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert!(resolved["timeline"].as_array().unwrap().len() >= 2);
    let (status, feed) = get(&format!("{control_url}/api/v1/status"), None).unwrap();
    assert_eq!(status, 200, "the status feed is public");
    assert!(
        feed["components"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "operational"),
        "{feed}"
    );
    assert_eq!(
        get(&format!("{control_url}/api/v1/incidents"), None)
            .unwrap()
            .0,
        401
    );

    Command::new("kill")
        .arg(up.0.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Some(status) = up.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "croupier up did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "croupier up exited with {status}");
    for i in 0..3 {
        assert!(
            get(&format!("{}/healthz", layout.node_url(i)), None).is_err(),
            "a node outlived up"
        );
    }
    assert!(
        find_process(&["--node-id", &data_text]).is_none(),
        "a node process is left"
    );
    ledger_integrity(Path::new(&data));
}

/// A node whose first process cannot start (here: its port is taken for a moment) is
/// restarted by the supervisor while the stack is still starting, as it would be later: the
/// stack does not wait out its start deadline (30 s) for a process that has exited.
#[test]
fn a_node_that_fails_while_the_stack_starts_is_restarted_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let layout = up_layout(&data);
    let taken = std::net::TcpListener::bind(("127.0.0.1", layout.first_node_port + 1)).unwrap();
    let started = Instant::now();
    let _up = Up::demo_quiet(&layout);
    std::thread::sleep(Duration::from_secs(2));
    drop(taken);
    let mut ready = vec![format!("{}/readyz", layout.admin_url())];
    ready.extend((0..3).map(|i| format!("{}/readyz", layout.node_url(i))));
    for url in ready {
        let up = || get(&url, None).map(|r| r.0) == Ok(200);
        assert!(
            within(
                Duration::from_secs(20).saturating_sub(started.elapsed()),
                up
            ),
            "{url} not ready 20 s after the start"
        );
    }
    wait_eligible(&layout.admin_url(), 3);
}

/// `up` whose output goes where it cannot be written (here a full disk; a closed terminal
/// or a reader that went away alike) keeps the stack running: printing the addresses used to
/// panic the supervisor once everything had started, and its children went down with it.
#[test]
fn a_banner_that_cannot_be_written_does_not_stop_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let layout = up_layout(&data);
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut up = Up(croupier()
        .args(layout.up_command())
        .envs(layout.environment())
        .arg("--demo")
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .stdout(Stdio::from(full))
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    // The supervisor's API starts once the addresses have been printed.
    let children = format!("{}/supervisor/children", layout.supervisor_url());
    let served = within(Duration::from_secs(40), || {
        get(&children, Some(OPS_TOKEN)).map(|r| r.0) == Ok(200)
            || up.0.try_wait().unwrap().is_some()
    });
    assert!(served, "the supervisor's API never served");
    assert!(
        up.0.try_wait().unwrap().is_none(),
        "croupier up exited after printing its addresses failed"
    );
    wait_eligible(&layout.admin_url(), 3);
    let token = sign_in_at(&layout.players_url(), "unprinted");
    assert!(!token.is_empty());
    assert!(up.0.try_wait().unwrap().is_none(), "croupier up exited");
}

/// Ctrl-C or SIGTERM while the stack is still starting (here: node-2's port stays taken, so
/// `up` would wait out its 30 s start deadline) stops what started and ends `up`. Their
/// default action used to end `up` alone, leaving its nodes running unwatched.
#[test]
fn a_stop_while_the_stack_starts_stops_what_started() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let data_text = data.display().to_string();
        let layout = up_layout(&data);
        let _taken =
            std::net::TcpListener::bind(("127.0.0.1", layout.first_node_port + 1)).unwrap();
        let mut up = Up::demo_quiet(&layout);
        let node_1 = format!("{}/readyz", layout.node_url(0));
        assert!(
            within(Duration::from_secs(20), || get(&node_1, None).is_ok()),
            "node-1 never served"
        );
        let sent = Command::new("kill")
            .args([format!("-{signal}"), up.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let stopped = within(Duration::from_secs(10), || {
            up.0.try_wait().unwrap().is_some()
        });
        assert!(
            stopped,
            "SIG{signal}: croupier up did not stop while starting"
        );
        let status = up.0.wait().unwrap();
        assert!(
            status.success(),
            "SIG{signal}: croupier up exited with {status}"
        );
        assert!(
            find_processes(&["--node-id", &data_text]).is_empty(),
            "SIG{signal}: a node process outlived up"
        );
    }
}

/// `up --store postgres://…` whose server refuses it ends its start with the server's reason
/// and exit status 78 (EX_CONFIG), stopping what started, within seconds: a role the server
/// does not know; a database the server does not have, for a role that may not create it
/// (`up` creates a missing database when the role may); a database whose schema the role may
/// not create tables in (the nodes' migration is refused: they exit 78, and restarting them
/// would meet it again). Before, `up` restarted its nodes forever (back-off to 30 s) and never
/// said the stack was not coming up. Runs in the SQLite pass only: it needs a server, not a
/// ledger, and the PostgreSQL pass would repeat it unchanged.
#[test]
fn a_store_that_refuses_the_configuration_ends_the_start_with_its_reason() {
    if croupier_ledger::test_store::postgres() {
        return;
    }
    let server = croupier_ledger::pg::scratch::test_server();
    let admin = |sql: &str| croupier_ledger::pg::scratch::admin(&server, sql).unwrap();
    let suffix = std::process::id();
    let (role, unknown) = (
        format!("croupier_limited_{suffix}"),
        format!("croupier_unknown_{suffix}"),
    );
    admin(&format!("CREATE ROLE {role} LOGIN"));
    let database = croupier_ledger::pg::scratch::ScratchDb::create(&server, "refused").unwrap();
    let as_role = |user: &str, name: &str| {
        let (base, _) = server.rsplit_once('/').unwrap();
        let (scheme, rest) = base.split_once("://").unwrap();
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{user}@{host}/{name}")
    };
    let cases = [
        (
            as_role(&unknown, "postgres"),
            format!("role \"{unknown}\" does not exist"),
        ),
        (
            as_role(&role, &format!("{}_missing", database.name())),
            "could not be created: 42501: permission denied to create database".to_owned(),
        ),
        (
            as_role(&role, database.name()),
            "node-1 cannot start with this configuration".to_owned(),
        ),
    ];
    for (url, reason) in cases {
        refused_start(&url, &reason);
    }
    drop(database);
    admin(&format!("DROP ROLE {role}"));
}

/// `up` on `url` ends its start within 20 s with status 78, saying `reason`, and leaves no
/// node running.
fn refused_start(url: &str, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let data_text = data.display().to_string();
    let layout = up_layout(&data);
    let output = dir.path().join("output");
    let file = std::fs::File::create(&output).unwrap();
    let started = Instant::now();
    let mut up = Up(croupier()
        .args(layout.up_command())
        .env("CROUPIER_STORE", url)
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap());
    let ended = within(Duration::from_secs(30), || {
        up.0.try_wait().unwrap().is_some()
    });
    assert!(ended, "{url}: croupier up still starting after 30 s");
    let status = up.0.wait().unwrap();
    let said = std::fs::read_to_string(&output).unwrap();
    assert_eq!(status.code(), Some(78), "{url}: {said}");
    assert!(
        said.contains(reason),
        "{url}: {reason:?} is not said: {said}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{url}: ended after {:?}",
        started.elapsed()
    );
    assert!(
        find_processes(&["--node-id", &data_text]).is_empty(),
        "{url}: a node process outlived up"
    );
}

/// `up --store postgres://…/DB` naming a database the server does not have yet creates it
/// (the role may) and serves players on it, as `up` creates its SQLite file.
#[test]
fn up_creates_a_missing_postgres_database_and_serves_on_it() {
    if croupier_ledger::test_store::postgres() {
        return;
    }
    let server = croupier_ledger::pg::scratch::test_server();
    let name = format!("croupier_created_{}", std::process::id());
    let (base, _) = server.rsplit_once('/').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut layout = up_layout(&data);
    layout.store = Some(croupier_ledger::StoreLocation::Postgres(format!(
        "{base}/{name}"
    )));
    let up = Up::demo_quiet(&layout);
    wait_eligible(&layout.admin_url(), 3);
    let token = sign_in_at(&layout.players_url(), "created");
    assert!(!token.is_empty());
    drop(up);
    croupier_ledger::pg::scratch::drop_database(&server, &name).unwrap();
}

#[test]
fn failing_synthetic_checks_alert_on_the_wallet_and_the_lobby() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, received) = webhook_receiver();
    let port = free_ports(1);
    // Nothing listens at the players' address: the lobby and the test bet both fail. A
    // deployment file adds two HTTP checks of the control plane's own /healthz: one passes,
    // one wants a body it never gets and speaks for the dice.
    let dead = format!("http://127.0.0.1:{}", free_ports(1));
    let config = dir.path().join("deploy.toml");
    std::fs::write(
        &config,
        format!(
            "[[check]]\nname = \"healthz\"\nurl = \"http://127.0.0.1:{port}/healthz\"\nbody_contains = \"ok\"\n\n\
             [[check]]\nname = \"dice-page\"\nurl = \"http://127.0.0.1:{port}/healthz\"\n\
             body_contains = \"jackpot\"\ncomponent = \"dice\"\n"
        ),
    )
    .unwrap();
    let _control = Up(croupier()
        .args(["control", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["--check-url", &dead, "--webhook", &hook])
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the control plane", || {
        get(&format!("{base}/readyz"), None).map(|r| r.0) == Ok(200)
    });
    wait_for("the three check alerts", || {
        got(&received, "firing", "down/check-bet")
            && got(&received, "firing", "down/check-lobby")
            && got(&received, "firing", "down/dice-page")
    });
    assert!(!got(&received, "firing", "down/healthz"), "a passing check");
    let bet = alerts(&received)
        .into_iter()
        .find(|m| m["key"] == "down/check-bet")
        .unwrap();
    assert_eq!(
        (bet["component"].as_str(), bet["severity"].as_str()),
        (Some("wallet"), Some("critical"))
    );
    let (_, feed) = get(&format!("{base}/api/v1/status"), None).unwrap();
    let status_of = |name: &str| {
        feed["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == name)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status_of("wallet"), "major_outage", "{feed}");
    assert_eq!(status_of("lobby"), "partial_outage", "{feed}");
    assert_eq!(status_of("dice"), "partial_outage", "{feed}");
    for game in ["roulette", "slot", "blackjack"] {
        assert_eq!(status_of(game), "operational", "{feed}");
    }
    assert_eq!(feed["incidents"].as_array().unwrap().len(), 3);
}

#[test]
fn up_backs_up_and_a_failed_restore_test_pages_the_operators() {
    if sqlite_only(
        "the control plane's own backups ship a SQLite ledger; a PostgreSQL ledger is backed up by pgBackRest",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (hook, received) = webhook_receiver();
    let stack = UpStack::start(&data, &["--backup-verify-every-s", "2", "--webhook", &hook]);
    let backups = || {
        get(&stack.control_url("/api/v1/backups"), Some(OPS_TOKEN))
            .unwrap()
            .1
    };
    // The first restore test runs at start and passes.
    wait_for("a passing restore test", || {
        backups()["status"]["health"]["status"] == "ok"
    });
    let token = sign_in_at(&stack.players_url(""), "backed-up");
    let (status, _, _) = post_via(
        &stack.players_url("/api/v1/rounds"),
        Some(&token),
        Some("backed-up-1"),
        &dice_bet(10),
    )
    .unwrap();
    assert_eq!(status, 201);
    wait_for("the bet shipped", || {
        std::fs::read_dir(data.join("backups/segments")).is_ok_and(|d| d.count() > 0)
    });

    // A flipped byte in the full backup's piece: the next restore test fails and pages.
    let full = std::fs::read_dir(data.join("backups/backups"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("-full"))
        .unwrap()
        .path()
        .join("piece-0000");
    let mut bytes = std::fs::read(&full).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&full, bytes).unwrap();
    wait_for("the backup_failed alert", || {
        got(&received, "firing", "backup_failed/backups")
    });
    let report = backups();
    assert_eq!(report["status"]["health"]["status"], "failed", "{report}");
    let reason = report["verifies"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("piece-0000"),
        "the damaged piece is named: {reason}"
    );
    let (_, feed) = get(&stack.control_url("/api/v1/status"), None).unwrap();
    assert_eq!(feed["components"][0]["id"], "wallet");
    assert_eq!(
        feed["components"][0]["status"], "operational",
        "players lose nothing yet: {feed}"
    );
    let (_, incidents) = get(&stack.control_url("/api/v1/incidents"), Some(OPS_TOKEN)).unwrap();
    let incident = &incidents["incidents"][0];
    assert_eq!(
        (
            incident["component"].as_str(),
            incident["severity"].as_str()
        ),
        (Some("backups"), Some("critical")),
        "{incidents}"
    );
    drop(stack);
    ledger_integrity(&data);
}

/// Issue #13: `kill -9` of the gateway under load refuses no connection. `croupier up` holds
/// the gateway's listening sockets and hands them to each gateway process, so while the
/// crashed one is replaced (at once, the first time) new connections wait in the kernel's
/// backlog. A request in flight at the kill may be cut: the player retries it with its key.
#[test]
fn kill_9_of_the_gateway_refuses_no_connection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stack = UpStack::start(&data, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let players = keyed_players(&stack, "steady", &stop);
    std::thread::sleep(Duration::from_millis(500));
    let port = stack.layout.players_listen();
    let victim = find_process(&["gateway --listen", &port]).expect("the gateway runs");
    Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let killed = Instant::now();
    wait_for("the gateway's restart", || {
        find_process(&["gateway --listen", &port]).is_some_and(|pid| pid != victim)
    });
    let replaced_in = killed.elapsed();
    std::thread::sleep(Duration::from_millis(1_500));
    stop.store(true, Ordering::SeqCst);
    let Seen {
        bets,
        cut,
        refused,
        failed,
    } = all_seen(players);
    eprintln!(
        "gateway killed: replaced in {replaced_in:?}; {bets} bets, {} refused connections, {cut} cut in flight (retried), {} failed",
        refused.len(),
        failed.len()
    );
    assert!(refused.is_empty(), "{refused:?}");
    assert!(failed.is_empty(), "{failed:?}");
    assert!(bets > 50, "the load ran ({bets} bets)");
    drop(stack);
    ledger_integrity(&data);
}

#[derive(Default)]
struct Seen {
    bets: u64,
    cut: u64,
    refused: Vec<String>,
    failed: Vec<String>,
}

/// A player betting every 20 ms, each bet on a new connection with its own key; a bet cut in
/// flight is sent again with the same key, as the API asks of clients.
/// Four players betting through the gateway with keys until `stop`, each on a thread.
fn keyed_players(
    stack: &UpStack,
    prefix: &str,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Seen>> {
    (0..4)
        .map(|p| {
            let token = sign_in_at(&stack.players_url(""), &format!("{prefix}-{p}"));
            let (url, stop) = (stack.players_url("/api/v1/rounds"), stop.clone());
            std::thread::spawn(move || keyed_player(&url, &token, p, &stop))
        })
        .collect()
}

/// What every player saw, once they stopped.
fn all_seen(players: Vec<std::thread::JoinHandle<Seen>>) -> Seen {
    let mut all = Seen::default();
    for player in players {
        let seen = player.join().unwrap();
        all.bets += seen.bets;
        all.cut += seen.cut;
        all.refused.extend(seen.refused);
        all.failed.extend(seen.failed);
    }
    all
}

fn keyed_player(url: &str, token: &str, p: usize, stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let key = format!("steady-{p}-{n}");
        for attempt in 0..3 {
            match post_via(url, Some(token), Some(&key), &dice_bet(10)) {
                Ok((200 | 201, _, _)) => seen.bets += 1,
                Ok(other) => seen.failed.push(format!("{other:?}")),
                Err(e) if e.to_lowercase().contains("refused") => seen.refused.push(e),
                Err(e) if attempt < 2 => {
                    seen.cut += 1;
                    eprintln!("cut in flight, sent again: {e}");
                    continue;
                }
                Err(e) => seen.failed.push(e),
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

/// Issue #13: SIGUSR2 to the gateway under `croupier up` is a graceful restart the supervisor
/// keeps track of. The gateway passes the signal on; the supervisor starts a new gateway on
/// the sockets it holds and stops the old one once the new one serves. Players betting the
/// whole time see no refused, cut or failed request; afterwards exactly one gateway runs, the
/// supervisor's own child, and none is left when `up` stops. (Before, the old gateway started
/// its successor itself and exited; the supervisor, seeing its child exit, started another:
/// two gateways, one of them unsupervised and left running after `up` stopped.)
#[test]
fn sigusr2_restarts_the_gateway_through_the_supervisor_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stack = UpStack::start(&data, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let players = keyed_players(&stack, "usr2", &stop);
    std::thread::sleep(Duration::from_millis(500));
    let listen = format!("gateway --listen {}", stack.layout.players_listen());
    let old = find_process(&[&listen]).expect("the gateway runs");
    Command::new("kill")
        .args(["-USR2", &old.to_string()])
        .status()
        .unwrap();
    let asked = Instant::now();
    wait_for("the old gateway to stop", || {
        let running = find_processes(&[&listen]);
        !running.contains(&old) && !running.is_empty()
    });
    let handed_over_in = asked.elapsed();
    // Long enough for a supervisor that took the old one's exit for a crash to start another.
    std::thread::sleep(Duration::from_millis(1_500));
    stop.store(true, Ordering::SeqCst);
    let Seen {
        bets,
        cut,
        refused,
        failed,
    } = all_seen(players);
    let gateways = find_processes(&[&listen]);
    let supervised = get(
        &format!("{}/supervisor/children", stack.layout.supervisor_url()),
        Some(OPS_TOKEN),
    )
    .unwrap()
    .1;
    let child = supervised["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gateway")
        .unwrap()
        .clone();
    eprintln!(
        "SIGUSR2 under up: handed over in {handed_over_in:?}; {bets} bets, {} refused, {cut} cut, {} failed; gateways now {gateways:?}, supervisor's {child}",
        refused.len(),
        failed.len()
    );
    assert_eq!(gateways.len(), 1, "one gateway runs: {gateways:?}");
    assert_eq!(
        child["pid"].as_u64(),
        Some(u64::from(gateways[0])),
        "{child}"
    );
    assert_eq!(child["retiring_pid"], Value::Null, "{child}");
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(cut, 0, "no bet was cut in flight");
    assert!(failed.is_empty(), "{failed:?}");
    assert!(bets > 50, "the load ran ({bets} bets)");
    drop(stack);
    assert!(
        find_processes(&[&listen]).is_empty(),
        "no gateway outlives up: {:?}",
        find_processes(&[&listen])
    );
    ledger_integrity(&data);
}
