//! `croupier audit` against real deployments: a fresh `croupier up` stack passes every check
//! (TLS skipped: not implemented; the cashier closed to players included), and a deployment
//! run with a weak ops token is caught.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{
    GatewayProcess, Node, croupier, free_port, free_ports, get, ledger, ledger_integrity,
};
use serde_json::Value;

/// A `croupier up` stack on free ports, stopped (SIGTERM, then SIGKILL) when dropped.
struct Up {
    child: Child,
    nodes: u16,
    gateway: u16,
    control: u16,
}

impl Up {
    fn start(data: &std::path::Path) -> Up {
        Up::start_with(data, &[])
    }

    /// With more arguments for `croupier up`.
    fn start_with(data: &std::path::Path, more: &[&str]) -> Up {
        let (nodes, gateway, control) = (free_ports(3), free_ports(2), free_ports(2));
        std::fs::create_dir_all(data).unwrap();
        let child = croupier()
            .arg("up")
            .arg("--data")
            .arg(data)
            .args(["--store", &ledger(data).as_arg()])
            .args(["--first-node-port", &nodes.to_string()])
            .args(["--gateway-port", &gateway.to_string()])
            .args(["--control-port", &control.to_string()])
            .arg("--demo")
            .args(more)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let up = Up {
            child,
            nodes,
            gateway,
            control,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&format!("http://127.0.0.1:{}/readyz", gateway + 1), None).map(|r| r.0) != Ok(200)
            || get(&format!("http://127.0.0.1:{control}/readyz"), None).map(|r| r.0) != Ok(200)
            || (0..3).any(|i| {
                get(&format!("http://127.0.0.1:{}/readyz", nodes + i), None).map(|r| r.0) != Ok(200)
            })
        {
            assert!(Instant::now() < deadline, "croupier up did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        up
    }
}

impl Drop for Up {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: signalling our own child; SIGTERM so `croupier up` stops its children too.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(25);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn audit(args: &[String], json: &std::path::Path) -> (bool, String, Value) {
    let output = croupier()
        .arg("audit")
        .args(args)
        .arg("--json")
        .arg(json)
        .env_remove("CROUPIER_OPS_TOKEN")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    let report = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    (output.status.success(), table, report)
}

/// The audit's arguments for one node behind `gateway` and no control plane; `data` its
/// folder on this host.
fn one_node_args(gateway: &GatewayProcess, node: &Node, data: &std::path::Path) -> Vec<String> {
    vec![
        "--gateway".to_owned(),
        gateway.base.clone(),
        "--admin".to_owned(),
        gateway.admin.clone(),
        "--node".to_owned(),
        node.base.clone(),
        "--control".to_owned(),
        String::new(),
        "--data".to_owned(),
        data.display().to_string(),
    ]
}

fn statuses<'a>(report: &'a Value, check: &str) -> Vec<&'a str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .map(|f| f["status"].as_str().unwrap())
        .collect()
}

/// The audit's arguments for `up`'s stack, its data folder `data`.
fn audit_args(up: &Up, data: &std::path::Path) -> Vec<String> {
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let mut args = vec![
        "--gateway".to_owned(),
        url(up.gateway),
        "--admin".to_owned(),
        url(up.gateway + 1),
        "--control".to_owned(),
        url(up.control),
        "--data".to_owned(),
        data.display().to_string(),
    ];
    for i in 0..3 {
        args.extend(["--node".to_owned(), url(up.nodes + i)]);
    }
    args
}

#[test]
fn a_fresh_stack_passes_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let args = audit_args(&up, dir.path());
    let (ok, table, report) = audit(&args, &dir.path().join("audit.json"));
    assert!(ok, "{table}");
    assert_eq!(report["ok"], true);
    for check in [
        "ops_api_needs_token",
        "no_default_tokens",
        "ops_token_strength",
        "security_headers",
        "oversized_rejected",
        "malformed_rejected",
        "player_isolation",
        "rate_limit_enforced",
        "forged_launch_tokens",
        "signed_launch_tokens",
        "credential_lockout",
        "players_port_only_player_api",
        "slow_clients_cut",
        "websockets_per_player",
        "data_folder_private",
        "dashboard_sessions",
        "cashier_not_on_players_port",
        "cashier_needs_credential",
        "cashier_moved_nothing",
        "seeds_sealed",
        "sessions_per_player",
        "scanning_blocked",
        "forwarded_for_spoof",
    ] {
        let found = statuses(&report, check);
        assert!(!found.is_empty(), "{check} missing:\n{table}");
        // The audit reads seeds only from a SQLite ledger on its host; a PostgreSQL ledger's
        // sealing is proven by the security test on that backend (the audit is given no
        // database credentials).
        let skipped_here = check == "seeds_sealed" && croupier_ledger::test_store::postgres();
        assert!(
            found
                .iter()
                .all(|s| *s == "pass" || *s == "warn" || (skipped_here && *s == "skip")),
            "{check}: {found:?}\n{table}"
        );
    }
    // Five ops surfaces (three nodes, the gateway's admin API, the control plane).
    assert_eq!(statuses(&report, "ops_api_needs_token").len(), 5);
    assert_eq!(statuses(&report, "credential_lockout").len(), 5);
    // Those five and the players' port.
    assert_eq!(statuses(&report, "forwarded_for_spoof").len(), 6);
    assert_eq!(statuses(&report, "cashier_needs_credential").len(), 3);
    // The gateway's two ports, three nodes, the control plane.
    assert_eq!(statuses(&report, "slow_clients_cut").len(), 6);
    // Every address is plain HTTP on loopback: TLS is not required there, and said so.
    assert_eq!(statuses(&report, "tls_on"), ["skip"; 6], "{table}");
    // This stack runs in demo mode, which the audit says.
    assert_eq!(
        statuses(&report, "launch_token_required"),
        ["warn"],
        "{table}"
    );
    assert!(table.contains("plain HTTP on loopback only"), "{table}");
    drop(up);
    ledger_integrity(dir.path());
}

#[test]
fn a_weak_ops_token_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let weak = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let port = free_port();
    let node = Node {
        child: croupier()
            .args([
                "node",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--node-id",
                "weak-1",
            ])
            .arg("--data")
            .arg(dir.path())
            .args(["--store", &ledger(dir.path()).as_arg()])
            .arg("--demo")
            .env("CROUPIER_OPS_TOKEN", weak)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
        id: "weak-1".into(),
    };
    node.wait_ready();
    let gateway = GatewayProcess::start(dir.path(), &[&node], &[]);
    let mut args = one_node_args(&gateway, &node, &dir.path().join("none"));
    args.extend(["--ops-token".to_owned(), weak.to_owned()]);
    let (ok, table, report) = audit(&args, &dir.path().join("audit.json"));
    assert!(!ok, "the audit must fail:\n{table}");
    // The node takes the weak token; the gateway (started by the test helpers) takes the
    // test suite's own token, which is public and therefore on the well-known list too.
    assert_eq!(
        statuses(&report, "no_default_tokens"),
        ["fail", "fail"],
        "{table}"
    );
    assert!(table.contains(&format!("[\"{weak}\"]")), "{table}");
    assert!(table.contains(common::OPS_TOKEN), "{table}");
    assert_eq!(statuses(&report, "ops_token_strength"), ["fail"], "{table}");
    assert!(table.contains("FAIL"));
    drop(gateway);
    drop(node);
    ledger_integrity(dir.path());
}

/// A deployment with the old behaviour (seeds in clear, sessions without a cap, scanning
/// never blocked), configured so: the audit fails each of those checks.
#[test]
fn the_old_behaviour_fails_the_new_checks() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = !croupier_ledger::test_store::postgres();
    let node = Node::start_with(
        dir.path(),
        "old-1",
        &["--demo", "--max-sessions-per-player", "1000"],
    );
    let gateway = GatewayProcess::start(dir.path(), &[&node], &["--scan-failures", "0"]);
    // A seed of an older build, in clear (a node opening the ledger would seal it).
    common::sign_in(&node, "old-player");
    if sqlite {
        rusqlite::Connection::open(common::ledger_path(dir.path()))
            .unwrap()
            .execute(
                "UPDATE seeds SET server_seed = 'clear-seed' WHERE player = 'old-player'",
                [],
            )
            .unwrap();
    }
    let args = one_node_args(&gateway, &node, dir.path());
    let (ok, table, report) = audit(&args, &dir.path().join("audit.json"));
    assert!(!ok, "the audit must fail:\n{table}");
    assert_eq!(
        statuses(&report, "sessions_per_player"),
        ["fail"],
        "{table}"
    );
    assert_eq!(statuses(&report, "scanning_blocked"), ["fail"], "{table}");
    // Nothing was blocked, so there is no block to escape.
    assert_eq!(
        statuses(&report, "forwarded_for_spoof"),
        ["skip"],
        "{table}"
    );
    let seeds = if sqlite { ["fail"] } else { ["skip"] };
    assert_eq!(statuses(&report, "seeds_sealed"), seeds, "{table}");
    drop(gateway);
    drop(node);
}

/// A gateway that believes `X-Forwarded-For` from the audit's scanning probe (its address
/// listed in `--trusted-proxies`, as a careless `0.0.0.0/0` or a too-wide range would): the
/// scanner is blocked, then escapes the block by naming another client, and the audit says so.
#[test]
fn a_gateway_believing_a_spoofed_forwarded_for_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with(dir.path(), "spoof-1", &["--demo"]);
    let gateway = GatewayProcess::start(dir.path(), &[&node], &["--trusted-proxies", "127.0.0.99"]);
    let mut args = one_node_args(&gateway, &node, &dir.path().join("none"));
    args.extend(["--burst".to_owned(), "100".to_owned()]);
    let (ok, table, report) = audit(&args, &dir.path().join("audit.json"));
    assert!(!ok, "the audit must fail:\n{table}");
    assert_eq!(statuses(&report, "scanning_blocked"), ["pass"], "{table}");
    assert_eq!(
        statuses(&report, "forwarded_for_spoof"),
        ["fail"],
        "{table}"
    );
    assert!(table.contains("--trusted-proxies"), "{table}");
    drop(gateway);
    drop(node);
    ledger_integrity(dir.path());
}

/// `croupier up --trusted-proxies 127.0.0.1`, the audit's own address: the control plane (which
/// reads `X-Forwarded-For` from trusted proxies) lets the blocked guesser in when it names
/// another client, and the audit fails that surface alone. The nodes and the gateway's admin
/// API never read the header; the players' port's scanning probe comes from 127.0.0.99.
#[test]
fn a_control_plane_trusting_the_auditor_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start_with(dir.path(), &["--trusted-proxies", "127.0.0.1"]);
    let args = audit_args(&up, dir.path());
    let (ok, table, report) = audit(&args, &dir.path().join("audit.json"));
    assert!(!ok, "the audit must fail:\n{table}");
    let failed: Vec<(&str, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "fail")
        .map(|f| (f["check"].as_str().unwrap(), f["target"].as_str().unwrap()))
        .collect();
    let control_api = format!("http://127.0.0.1:{}/api/v1/incidents", up.control);
    assert_eq!(
        failed,
        [("forwarded_for_spoof", control_api.as_str())],
        "{table}"
    );
    assert_eq!(statuses(&report, "forwarded_for_spoof").len(), 6, "{table}");
    drop(up);
    ledger_integrity(dir.path());
}
