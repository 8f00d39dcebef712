//! The failover drills at small scale, each against a real `croupier up` stack started by
//! `croupier drill`: every drill passes (bank checks included) on a sound build, and a build
//! whose idempotency check is switched off fails the bank check.

mod common;

use std::path::Path;

use common::{croupier, free_port, free_ports, json_receiver, ledger_integrity};
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
    let nodes = free_ports(3);
    let gateway = free_ports(2);
    // The control plane's port and its supervisor's, next to it.
    let control = free_ports(2);
    let report = data.join("reports.json");
    let output = croupier()
        .args(["drill", which, "--data"])
        .arg(data.join("stack"))
        .args(["--first-node-port", &nodes.to_string()])
        .args(["--gateway-port", &gateway.to_string()])
        .args(["--control-port", &control.to_string()])
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
            "drain-cycle"
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
        // Every third blackjack hand was left open and finished by the bank checks.
        assert!(
            report["bank"]["resumed_rounds"].as_u64().unwrap() > 0,
            "{report:#}"
        );
    }
    assert!(ok, "a passing run exits 0");
    let by_name = |n: &str| reports.iter().find(|r| r["drill"] == n).unwrap();
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
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 4);
    for ((auth, body), report) in received.iter().zip(&reports) {
        assert_eq!(auth, &format!("Bearer {}", token.trim()));
        assert_eq!(body, report);
    }
    drop(received);
    integrity_after(dir.path());
}

#[test]
fn a_build_that_skips_the_idempotency_check_fails_the_bank_check() {
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
