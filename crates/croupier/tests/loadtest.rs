//! `croupier loadtest` against a real gateway in front of two nodes: reports are written,
//! every game is played (blackjack to the end), WebSockets stay open, the bank checks pass,
//! thresholds fail the run when they do not hold, and bad settings get a clear error.

mod common;

use common::{GatewayProcess, Node, croupier, ledger, ledger_integrity};
use serde_json::Value;

fn loadtest(target: &str, extra: &[&str]) -> (bool, String) {
    let output = croupier()
        .args(["loadtest", "--target", target, "--quiet"])
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn a_run_plays_every_game_writes_reports_and_passes_the_bank_checks() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = [
        Node::start(dir.path(), "node-1"),
        Node::start(dir.path(), "node-2"),
    ];
    let gateway = GatewayProcess::start(dir.path(), &[&nodes[0], &nodes[1]], &[]);
    let (json, html) = (
        dir.path().join("summary.json"),
        dir.path().join("report.html"),
    );
    let db = ledger(dir.path()).as_arg();
    let (ok, text) = loadtest(
        &gateway.base,
        &[
            "--rate",
            "40",
            "--players",
            "8",
            "--ramp-up-secs",
            "1",
            "--duration-secs",
            "3",
            "--replay-every",
            "5",
            "--abandon-every",
            "3",
            "--threshold",
            "errors<1%",
            "--threshold",
            "p99<5s",
            "--summary-json",
            json.to_str().unwrap(),
            "--report-html",
            html.to_str().unwrap(),
            "--check-ledger",
            &db,
        ],
    );
    assert!(ok, "{text}");
    // Every third blackjack hand was abandoned; the bank checks finished them.
    let resumed: u32 = text
        .split(" open rounds resumed")
        .next()
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(resumed > 0, "{text}");
    assert!(
        text.contains("bank check incomplete_rounds_resumable: ok"),
        "{text}"
    );
    let summary: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // 40/s after a 1 s ramp for 3 s: 20 + 120 arrivals, each a round.
    let bets = summary["bets"].as_u64().unwrap();
    assert!((100..=140).contains(&bets), "{summary:#}");
    assert_eq!(summary["errors"], 0, "{summary:#}");
    for op in ["bet", "action", "replay"] {
        assert!(
            summary["ops"][op]["ok"].as_u64().unwrap() > 0,
            "{op}: {summary:#}"
        );
    }
    // The players signed in and opened the lobby before measuring began.
    for op in ["sign_in", "lobby"] {
        assert_eq!(summary["setup"][op]["ok"], 8, "{op}: {summary:#}");
    }
    assert_eq!(
        summary["websockets"]["opened"].as_u64().unwrap(),
        8,
        "{summary:#}"
    );
    assert!(summary["websockets"]["messages"].as_u64().unwrap() > 0);
    assert_eq!(summary["pass"], true);
    assert!(summary["timeline"].as_array().unwrap().len() >= 4);
    // The bank checks' report is in the summary: blackjack's steps are requests of their
    // own, so the requests outnumber the rounds they named, all of which are in the ledger.
    let bank = &summary["bank"];
    assert_eq!(bank["ok"], true, "{bank:#}");
    assert_eq!(bank["checks"].as_array().unwrap().len(), 5, "{bank:#}");
    let requests = bank["acknowledged_requests"].as_u64().unwrap();
    let rounds = bank["acknowledged_rounds"].as_u64().unwrap();
    assert!(requests > rounds && rounds > 0, "{bank:#}");
    assert!(
        bank["ledger_rounds"].as_u64().unwrap() >= rounds,
        "{bank:#}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("p99") && !page.contains("<script"));
    ledger_integrity(dir.path());

    // A closed model with an impossible threshold fails the run.
    let (ok, text) = loadtest(
        &gateway.base,
        &[
            "--model",
            "closed",
            "--players",
            "4",
            "--think-ms",
            "20",
            "--duration-secs",
            "1",
            "--games",
            "dice,slot",
            "--threshold",
            "p99<1us",
        ],
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL p99<1us") && text.contains("thresholds failed"),
        "{text}"
    );
    ledger_integrity(dir.path());
}

#[test]
fn bad_settings_get_a_clear_error() {
    for (args, message) in [
        (&["--threshold", "p99<50"][..], "latency needs a unit"),
        (&["--games", "poker"][..], "unknown game 'poker'"),
        (&["--stake", "15"][..], "multiple of 10"),
        (&["--rate", "0"][..], "above zero"),
        (
            &["--duration-secs", "1"][..],
            "no player could sign in at http://127.0.0.1:9",
        ),
    ] {
        let (ok, text) = loadtest("http://127.0.0.1:9", args);
        assert!(!ok && text.contains(message), "{args:?}: {text}");
    }
}
