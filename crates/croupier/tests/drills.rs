//! The failover drills at small scale, each against a real `croupier up` stack started by
//! `croupier drill`: every drill passes (bank checks included) on a sound build, counting
//! refused and reset connections apart from non-2xx answers, and a build
//! whose idempotency check is switched off fails the bank check.

mod common;

use std::path::Path;

use common::{
    croupier, free_layout, free_port, free_ports, json_receiver, ledger_integrity, one_at_a_time,
};
use croupier_ledger::test_store;
use serde_json::Value;

/// The drill's backend: on PostgreSQL the drill runs its own cluster (so it can restart it).
fn backend_args() -> Vec<String> {
    if test_store::postgres() {
        [
            "--backend",
            "postgres",
            "--pg-port",
            &free_port().to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    } else {
        Vec::new()
    }
}

/// The ledger invariants once the drill is over. On PostgreSQL the drill's cluster is gone
/// with the drill: its own bank checks ran every invariant on it (`money_conserved`).
fn integrity_after(data: &Path) {
    if !test_store::postgres() {
        ledger_integrity(&data.join("stack"));
    }
}

/// Runs `croupier drill <which>` with a small load on a fresh stack; exit status and reports.
fn drill(data: &Path, which: &str, env: &[(&str, &str)], extra: &[&str]) -> (bool, Vec<Value>) {
    let report = data.join("reports.json");
    let output = croupier()
        .args(["drill", which])
        .args(free_layout(&data.join("stack")).stack_args())
        .args([
            "--rate",
            "25",
            "--players",
            "8",
            "--load-secs",
            "5",
            "--fault-after-secs",
            "1.5",
        ])
        .args(["--outage-ms", "2000", "--replay-every", "5"])
        .arg("--report-json")
        .arg(&report)
        .args(backend_args())
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .expect("croupier drill runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reports: Vec<Value> = serde_json::from_slice(
        &std::fs::read(&report).unwrap_or_else(|e| panic!("no report ({e}): {stderr}")),
    )
    .unwrap();
    (output.status.success(), reports)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["bank"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
}

#[test]
fn every_drill_passes_with_its_bank_checks_on_a_sound_build() {
    let _one_at_a_time = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (url, received) = json_receiver("/api/v1/drills");
    let (ok, reports) = drill(dir.path(), "all", &[], &["--report-to", &url]);
    let names: Vec<&str> = reports
        .iter()
        .map(|r| r["drill"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "kill-node",
            "restart-gateway",
            "store-outage",
            "drain-cycle",
            "freeze-node"
        ]
    );
    for report in &reports {
        assert_eq!(report["verdict"], "pass", "{report:#}");
        assert_eq!(report["bank"]["ok"], true, "{report:#}");
        for name in [
            "money_conserved",
            "no_bet_settled_twice",
            "acknowledged_bets_present",
            "no_unexplained_money",
            "incomplete_rounds_resumable",
        ] {
            assert_eq!(check(report, name)["ok"], true, "{name}: {report:#}");
        }
        assert!(report["load"]["bets"].as_u64().unwrap() > 20, "{report:#}");
        assert!(report["time_to_recover_ms"].is_u64(), "{report:#}");
        // Issue #13: what players saw is told apart, and adds up to the errors.
        let seen = |what: &str| {
            report["load"][what]
                .as_u64()
                .unwrap_or_else(|| panic!("{what}: {report:#}"))
        };
        assert_eq!(
            seen("non_2xx_answers")
                + seen("refused_connections")
                + seen("reset_connections")
                + seen("other_transport"),
            report["load"]["errors"].as_u64().unwrap(),
            "{report:#}"
        );
        // Issue #13: players reconnect their WebSocket at once after a 1012 (with back-off
        // while it fails), and no drill leaves one without a socket for over a second.
        assert_eq!(
            report["load"]["players_without_socket_over_1s"], 0,
            "{report:#}"
        );
        // Every third blackjack hand was left open and finished by the bank checks.
        assert!(
            report["bank"]["resumed_rounds"].as_u64().unwrap() > 0,
            "{report:#}"
        );
    }
    assert!(ok, "a passing run exits 0");
    let by_name = |n: &str| reports.iter().find(|r| r["drill"] == n).unwrap();
    // Issue #13: the supervisor holds the gateway's sockets, so its restart costs players
    // nothing (before: ~300 refused connections in this drill): no refused or reset
    // connection, no non-2xx answer, no bet left unacknowledged.
    let restart = &by_name("restart-gateway")["load"];
    for what in [
        "refused_connections",
        "reset_connections",
        "non_2xx_answers",
        "bets_never_acknowledged",
    ] {
        assert_eq!(restart[what], 0, "{what}: {restart:#}");
    }
    assert_eq!(
        by_name("restart-gateway")["player_visible_errors"],
        0,
        "{:#}",
        by_name("restart-gateway")
    );
    // Issue #13, gray failure: node-1 stopped 4 s under load cost no player over a second,
    // and settled no bet twice (the bank check above); its requests went to other nodes.
    let frozen = by_name("freeze-node");
    assert!(
        frozen["fault"]["detail"]
            .as_str()
            .unwrap()
            .contains("SIGSTOP"),
        "{frozen:#}"
    );
    assert!(
        frozen["fault"]["lasted_ms"].as_u64().unwrap() >= 4_000,
        "{frozen:#}"
    );
    assert!(
        frozen["load"]["max_ms"].as_f64().unwrap() <= 1_000.0,
        "slowest player request: {frozen:#}"
    );
    assert_eq!(frozen["load"]["bets_never_acknowledged"], 0, "{frozen:#}");
    // The faults were real: the supervisor saw node-1 killed and the gateway stop.
    let up_log = std::fs::read_to_string(dir.path().join("stack/up.log")).unwrap();
    assert!(up_log.contains("SIGKILL"), "{up_log}");
    assert!(
        by_name("kill-node")["fault"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("kill -9")
    );
    // Writers waited for the held ledger lock: some bet took about as long as the outage.
    assert!(by_name("store-outage")["load"]["max_ms"].as_f64().unwrap() > 1_000.0);
    // The gateway retries a dead node's and a draining node's requests: players see nothing.
    assert_eq!(
        by_name("kill-node")["player_visible_errors"],
        0,
        "{:#}",
        by_name("kill-node")
    );
    assert_eq!(
        by_name("drain-cycle")["player_visible_errors"],
        0,
        "{:#}",
        by_name("drain-cycle")
    );
    // Each report also went to the (stand-in) control plane, with the stack's ops token.
    let token = std::fs::read_to_string(dir.path().join("stack/ops-token")).unwrap();
    let received = received.lock();
    assert_eq!(received.len(), 5);
    for ((auth, body), report) in received.iter().zip(&reports) {
        assert_eq!(auth, &format!("Bearer {}", token.trim()));
        assert_eq!(body, report);
    }
    drop(received);
    integrity_after(dir.path());
}

#[test]
fn a_build_that_skips_the_idempotency_check_fails_the_bank_check() {
    let _one_at_a_time = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let broken = [
        ("CROUPIER_FAULT", "skip-idempotency"),
        ("CROUPIER_I_KNOW_THIS_BREAKS_MONEY", "1"),
    ];
    let (ok, reports) = drill(dir.path(), "drain-cycle", &broken, &[]);
    assert!(!ok, "a failing drill exits non-zero");
    let report = &reports[0];
    assert_eq!(report["verdict"], "fail", "{report:#}");
    // Replayed bets were charged again: one key, two rounds.
    let twice = check(report, "no_bet_settled_twice");
    assert_eq!(twice["ok"], false, "{report:#}");
    assert!(
        twice["failures"][0]
            .as_str()
            .unwrap()
            .contains("2 different rounds")
    );
    // The ledger's own invariants cannot see it: each round is consistent in itself. Only
    // the client's history of acknowledged bets shows the double charge.
    assert_eq!(check(report, "money_conserved")["ok"], true, "{report:#}");
    integrity_after(dir.path());
}

/// `croupier drill store-failover`: the ledger on the drill's own PostgreSQL primary and
/// synchronous standby; the primary is SIGKILLed, the standby promoted 2 s later (an HA
/// manager noticing), and the players through the gateway lose no acknowledged bet and see
/// no error but 503s. Its own clusters: the SQLite pass of the suite runs it once.
#[test]
fn the_store_failover_drill_loses_no_acknowledged_bet_with_a_synchronous_standby() {
    if test_store::postgres() {
        eprintln!("runs on its own clusters: the SQLite pass of the suite covers it");
        return;
    }
    let _one_at_a_time = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let pg_port = free_ports(2).to_string();
    let (ok, reports) = drill(dir.path(), "store-failover", &[], &["--pg-port", &pg_port]);
    let report = &reports[0];
    assert!(ok, "{report:#}");
    assert_eq!(report["verdict"], "pass", "{report:#}");
    let failover = &report["failover"];
    assert_eq!(failover["replication"], "sync");
    assert_eq!(failover["non_503_errors"], 0, "{report:#}");
    assert_eq!(failover["acknowledged_bets_lost"], 0, "{report:#}");
    let outage = failover["write_outage_ms"].as_u64().unwrap();
    // From the kill to the first write on the promoted standby: the 2 s before promotion,
    // then the nodes' retries (at most 200 ms apart); the rest is a loaded machine's slack.
    assert!((2_000..10_000).contains(&outage), "{report:#}");
    assert!(
        report["fault"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("SIGKILL of the PostgreSQL primary")
    );
    for name in [
        "money_conserved",
        "acknowledged_bets_present",
        "no_bet_settled_twice",
    ] {
        assert_eq!(check(report, name)["ok"], true, "{name}: {report:#}");
    }
}
