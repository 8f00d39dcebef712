//! The status page and the dashboard in a real browser: `croupier up` runs, players bet,
//! an operator opens an incident with `croupier ctl`; then Debian's chromium (headless,
//! driven by playwright-core from tests/browser/pages.mjs) checks the status page (six
//! components, 90-day bars, the incident), both feeds, the dashboard's sign-in, live charts
//! and a drain button, and the backups panel with a passed restore test. The drain is
//! checked on the gateway itself and in the audit log; screenshots land in
//! target/screenshots/ (copies are in docs/).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use croupier_ledger::test_store;
use serde_json::json;

fn ctl(stack: &UpStack, args: &[&str]) -> serde_json::Value {
    let output = croupier()
        .args([
            "ctl",
            "--url",
            &stack.control_url(""),
            "--as",
            "browser-test",
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

#[test]
fn status_page_and_dashboard_render_live_data_and_a_drain_button_drains() {
    require_browser();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stack = UpStack::start(&data, &[]);

    // Players bet through the gateway, so the charts have money moving.
    let token = sign_in_at(&stack.players_url(""), "browser-player");
    for n in 0..40 {
        let (status, body, _) = post_via(
            &stack.players_url("/api/v1/rounds"),
            Some(&token),
            Some(&format!("browser-{n}")),
            &dice_bet(10),
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let title = "Slot reels slow to load";
    let opened = ctl(
        &stack,
        &[
            "open",
            "--title",
            title,
            "--component",
            "slot",
            "--severity",
            "minor",
            "--message",
            "Some players see the slot load slowly; bets are safe.",
        ],
    );
    let id = opened["id"].as_i64().unwrap().to_string();
    ctl(
        &stack,
        &[
            "update",
            &id,
            "--status",
            "identified",
            "--message",
            "A slow asset server; switching to the spare.",
            "--eta-minutes",
            "20",
        ],
    );
    // A window the day after tomorrow: on the status page under scheduled maintenance.
    let planned = croupier()
        .args([
            "maintenance",
            "--url",
            &stack.control_url(""),
            "--as",
            "browser-test",
        ])
        .args([
            "schedule",
            "--title",
            "Roulette wheel upgrade",
            "--scope",
            "component:roulette",
        ])
        .args([
            "--cron",
            "0 4 * * *",
            "--timezone",
            "Europe/Malta",
            "--duration",
            "30m",
        ])
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .output()
        .unwrap();
    assert!(
        planned.status.success(),
        "{}",
        String::from_utf8_lossy(&planned.stderr)
    );
    // Today's uptime bar is written every ten seconds.
    wait_for("today's uptime", || {
        let (_, status) = get(&stack.control_url("/api/v1/status"), None).unwrap();
        status["components"][0]["days"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    });

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&out).unwrap();
    // On PostgreSQL the dashboard also draws the database's connections.
    let (backups, charts) = if test_store::postgres() {
        ("none", "10")
    } else {
        ("local", "9")
    };
    let seen = run_browser(
        "pages.mjs",
        &[
            "--control",
            &stack.control_url(""),
            "--token",
            OPS_TOKEN,
            "--drain",
            "node-2",
            "--incident",
            title,
            "--out",
            out.to_str().unwrap(),
            "--backups",
            backups,
            "--charts",
            charts,
        ],
    );
    assert_eq!(seen["slot"], "Degraded performance", "{seen}");
    assert_eq!(seen["refused"], "That is not the ops token.", "{seen}");
    for shot in ["status-page.png", "dashboard.png"] {
        assert!(std::fs::metadata(out.join(shot)).unwrap().len() > 10_000);
    }

    // The button drained node-2 on the gateway itself, and the audit log has it.
    let (_, nodes) = get(&stack.admin_url("/admin/nodes"), Some(OPS_TOKEN)).unwrap();
    let node_2 = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "node-2")
        .unwrap()
        .clone();
    assert_eq!(node_2["state"], "draining", "{nodes}");
    let audit = ctl(&stack, &["audit"]);
    let actions: Vec<(String, String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions[0],
        (
            "session:operator".into(),
            "node.set_state".into(),
            "node/node-2".into()
        ),
        "the dashboard's drain comes first: {actions:?}"
    );
    assert!(actions.contains(&(
        "token:browser-test".into(),
        "incident.open".into(),
        "incident".into()
    )));
    assert_eq!(
        ctl(&stack, &["undrain", "node-2"])["nodes"][1]["state"],
        json!("active")
    );
    drop(stack);
    ledger_integrity(&data);
}
