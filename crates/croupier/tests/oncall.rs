//! On-call, the whole way: a real node is killed → the control plane opens an incident →
//! level 1's person on call is paged on their webhook (a loopback receiver) → nobody
//! acknowledges within the level's 3 s → level 2's person is paged → they acknowledge with
//! the signed link in the page (a GET only shows the button; the POST acts, once; a bent link
//! is refused) → `croupier ctl page resolve` resolves the page and the incident. The
//! incident's timeline and the audit log hold every page, the escalation, the
//! acknowledgement, the resolution and the refused links.
//!
//! And by e-mail, on a real SMTP server (aiosmtpd): the only level's person is mailed the page
//! with its signed links, then mailed again every `ack_within_s` as long as nobody
//! acknowledges, `repeat` times and no more; an operator acknowledges with the dashboard's
//! button in a real browser (chromium), and the person resolves with the mail's link.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// A one-person schedule and the escalation level paging it.
fn level(schedule: &str, person: &str, ack_within_s: u64) -> String {
    format!(
        r#"
[[oncall.schedule]]
name = "{schedule}"
timezone = "Europe/Malta"
handoff = "09:00"
start = "2026-01-05"
people = ["{person}"]

[[oncall.escalation]]
schedule = "{schedule}"
ack_within_s = {ack_within_s}
"#
    )
}

fn deployment(ana: &str, ben: &str) -> String {
    format!(
        r#"
[oncall]
link_ttl_s = 600

[[oncall.person]]
name = "ana"
webhook = "{ana}"

[[oncall.person]]
name = "ben"
webhook = "{ben}"
{}{}"#,
        level("primary", "ana", 3),
        level("backup", "ben", 600)
    )
}

/// The first page a receiver got.
fn first_page(received: &Received) -> Value {
    wait_for("a page", || !received.lock().is_empty());
    received.lock()[0].1.clone()
}

/// Each audit-log entry as (actor, action, outcome).
fn audit_entries(base: &str) -> Vec<(String, String, String)> {
    let (_, audit) = get(&format!("{base}/api/v1/audit?limit=100"), Some(OPS_TOKEN)).unwrap();
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (field("actor"), field("action"), field("outcome"))
        })
        .collect()
}

fn assert_audited(entries: &[(String, String, String)], wanted: &[(&str, &str, &str)]) {
    for wanted in wanted {
        let found = entries
            .iter()
            .any(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()) == *wanted);
        assert!(found, "{wanted:?} not in the audit log: {entries:?}");
    }
}

/// Incident `id` and the messages of its timeline.
fn incident_timeline(base: &str, id: &Value) -> (Value, Vec<String>) {
    let (_, incidents) = get(&format!("{base}/api/v1/incidents"), Some(OPS_TOKEN)).unwrap();
    let incident = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| &i["id"] == id)
        .unwrap()
        .clone();
    let lines = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["message"].as_str().unwrap().to_owned())
        .collect();
    (incident, lines)
}

fn page_status(base: &str, id: i64) -> Value {
    let (_, pages) = get(&format!("{base}/api/v1/pages"), Some(OPS_TOKEN)).unwrap();
    pages["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap()
        .clone()
}

#[test]
fn a_killed_node_pages_level_one_then_level_two_who_acknowledges_by_the_signed_link() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut node = Node::start(data, "node-1");
    let (ana_url, ana) = json_receiver("/pages/ana");
    let (ben_url, ben) = json_receiver("/pages/ben");
    std::fs::write(data.join("deploy.toml"), deployment(&ana_url, &ben_url)).unwrap();
    let (_control, base) = control_watching(data, &node);
    let (_, oncall) = get(&format!("{base}/api/v1/oncall"), Some(OPS_TOKEN)).unwrap();
    assert_eq!(oncall["schedules"][0]["now"], "ana", "{oncall}");

    node.kill_9();
    let to_ana = first_page(&ana);
    assert_eq!(
        (to_ana["level"].as_i64(), to_ana["person"].as_str()),
        (Some(1), Some("ana")),
        "{to_ana}"
    );
    assert!(
        ben.lock().is_empty(),
        "level 2 waits for level 1's time to acknowledge"
    );
    let to_ben = first_page(&ben);
    assert_eq!(
        (to_ben["level"].as_i64(), to_ben["page_id"].clone()),
        (Some(2), to_ana["page_id"].clone())
    );
    let waited = to_ben["sent_ms"].as_i64().unwrap() - to_ana["sent_ms"].as_i64().unwrap();
    assert!(
        (3_000..10_000).contains(&waited),
        "escalated after {waited} ms"
    );
    let id = to_ben["page_id"].as_i64().unwrap();
    let ack_url = to_ben["ack_url"].as_str().unwrap().to_owned();
    assert!(
        ack_url.starts_with(&format!("{base}/pages/{id}/ack?person=ben&")),
        "{ack_url}"
    );

    // A link bent to another person, or with a signature of its own, is refused.
    let bent = ack_url.replace("person=ben", "person=ana");
    assert_eq!(post_raw(&bent, None, None, "").unwrap().0, 403);
    let mut forged = ack_url.clone();
    let tail = forged.split_off(forged.len() - 4);
    forged.push_str(if tail == "0000" { "1111" } else { "0000" });
    assert_eq!(post_raw(&forged, None, None, "").unwrap().0, 403);
    // Opening the link (or a chat app's preview of it) only shows the button.
    let (status, form) = get(&ack_url, None).unwrap();
    assert_eq!(status, 200);
    assert!(
        form.as_str().unwrap().contains("Acknowledge page"),
        "{form}"
    );
    assert_eq!(page_status(&base, id)["status"], "open");
    let (status, done) = post_raw(&ack_url, None, None, "").unwrap();
    assert_eq!(status, 200, "{done}");
    let page = page_status(&base, id);
    assert_eq!(
        (page["status"].as_str(), page["acked_by"].as_str()),
        (Some("acknowledged"), Some("ben"))
    );
    let (status, again) = post_raw(&ack_url, None, None, "").unwrap();
    assert_eq!((status, again["error"].as_str()), (410, Some("used_link")));
    let ana_ack = to_ana["ack_url"].as_str().unwrap();
    let (status, late) = post_raw(ana_ack, None, None, "").unwrap();
    assert_eq!((status, late["error"].as_str()), (409, Some("page_closed")));

    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        ana.lock().len() + ben.lock().len(),
        2,
        "an acknowledged page pages nobody else"
    );
    let resolved = croupier()
        .args([
            "ctl",
            "--url",
            &base,
            "--as",
            "oncall-test",
            "page",
            "resolve",
            &id.to_string(),
        ])
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .output()
        .unwrap();
    assert!(
        resolved.status.success(),
        "{}",
        String::from_utf8_lossy(&resolved.stderr)
    );
    assert_eq!(page_status(&base, id)["status"], "resolved");

    let (incident, timeline) = incident_timeline(&base, &to_ana["incident_id"]);
    assert_eq!(incident["status"], "resolved", "{incident}");
    for step in [
        "Paged ana (level 1).",
        "Not acknowledged within 3 s: escalated to level 2, paged ben.",
        "Page acknowledged by ben (signed link).",
        "Page resolved by token:oncall-test (API).",
    ] {
        assert!(
            timeline.iter().any(|l| l == step),
            "{step} not in {timeline:?}"
        );
    }
    // Players never learn who was paged: the on-call lines stay off the status feeds.
    let (_, feed) = get(&format!("{base}/status/feed.json"), None).unwrap();
    let feed = feed.to_string();
    assert!(feed.contains("The problem is resolved."), "{feed}");
    assert!(!feed.contains("Paged") && !feed.contains("ben"), "{feed}");
    assert_audited(
        &audit_entries(&base),
        &[
            ("control-plane", "page.notify", "ok"),
            ("control-plane", "page.escalate", "ok"),
            ("ben", "page.ack", "ok"),
            ("token:oncall-test", "page.resolve", "ok"),
            ("link:ben", "page.ack", "refused: forged_link"),
            ("link:ana", "page.ack", "refused: forged_link"),
            ("link:ben", "page.ack", "refused: used_link"),
            ("ana", "page.ack", "refused: page_closed"),
        ],
    );
}

/// The first link in a page's mail that `action`s it.
fn mailed_link(text: &str, action: &str) -> String {
    text.split_whitespace()
        .find(|w| w.contains("/pages/") && w.contains(&format!("/{action}?")))
        .unwrap_or_else(|| panic!("no {action} link in:\n{text}"))
        .to_owned()
}

fn mailing_deployment(smtp_port: u16) -> String {
    format!(
        r#"
[oncall]
link_ttl_s = 600
repeat = 2
smtp_url = "smtp://127.0.0.1:{smtp_port}"
from = "Croupier on-call <oncall@casino.test>"

[[oncall.person]]
name = "ana"
email = "ana@casino.test"
{}"#,
        level("primary", "ana", 2)
    )
}

#[test]
fn the_last_level_pages_again_by_email_until_the_dashboard_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let sink = SmtpSink::start(data);
    let mut node = Node::start(data, "node-1");
    std::fs::write(data.join("deploy.toml"), mailing_deployment(sink.port)).unwrap();
    let (_control, base) = control_watching(data, &node);

    node.kill_9();
    wait_for("the page and two repeats by e-mail", || {
        sink.to("ana@casino.test").len() >= 3
    });
    let mails = sink.to("ana@casino.test");
    assert!(
        mails[0].contains("[Croupier page]") && mails[0].contains("escalation level 1."),
        "{}",
        mails[0]
    );
    let ack = mailed_link(&mails[0], "ack");
    let resolve = mailed_link(&mails[0], "resolve");
    let prefix = format!("{base}/pages/");
    assert!(
        ack.starts_with(&prefix) && ack.contains("/ack?person=ana&level=0&"),
        "{ack}"
    );
    let id: i64 = ack[prefix.len()..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Bounded: after the second repeat nobody is mailed again, however long it stays open.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(sink.to("ana@casino.test").len(), 3, "two repeats, no more");
    let page = page_status(&base, id);
    assert_eq!(
        (page["status"].as_str(), page["repeats"].as_i64()),
        (Some("open"), Some(2)),
        "{page}"
    );
    // The mailed link is the real signed one: opening it shows the button.
    let (status, form) = get(&ack, None).unwrap();
    assert_eq!(status, 200, "{form}");

    let id_text = id.to_string();
    let seen = run_browser(
        "oncall.mjs",
        &[
            "--control",
            &base,
            "--token",
            OPS_TOKEN,
            "--name",
            "night-op",
            "--page",
            &id_text,
            "--schedule",
            "primary",
        ],
    );
    assert_eq!(seen["on_call"], "ana", "{seen}");
    let page = page_status(&base, id);
    assert_eq!(
        (page["status"].as_str(), page["acked_by"].as_str()),
        (Some("acknowledged"), Some("session:night-op")),
        "{page}"
    );
    let (status, late) = post_raw(&ack, None, None, "").unwrap();
    assert_eq!((status, late["error"].as_str()), (409, Some("page_closed")));
    let (status, done) = post_raw(&resolve, None, None, "").unwrap();
    assert_eq!(status, 200, "{done}");

    let (incident, timeline) = incident_timeline(&base, &page["incident_id"]);
    assert_eq!(incident["status"], "resolved", "{incident}");
    for step in [
        "Paged ana (level 1).",
        "Not acknowledged within 2 s: paged ana again (repeat 1 of 2).",
        "Not acknowledged within 2 s: paged ana again (repeat 2 of 2, the last).",
        "Page acknowledged by session:night-op (API).",
        "Page resolved by ana (signed link).",
    ] {
        assert!(
            timeline.iter().any(|l| l == step),
            "{step} not in {timeline:?}"
        );
    }
    let entries = audit_entries(&base);
    let repeats = entries
        .iter()
        .filter(|(_, a, _)| a == "page.repeat")
        .count();
    assert_eq!(repeats, 2, "{entries:?}");
    assert_audited(
        &entries,
        &[
            ("control-plane", "page.notify", "ok"),
            ("session:night-op", "page.ack", "ok"),
            ("ana", "page.ack", "refused: page_closed"),
            ("ana", "page.resolve", "ok"),
        ],
    );
}
