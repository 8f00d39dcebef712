//! Status-page subscriptions, the whole way, with a real SMTP server: aiosmtpd (PyPI) listens
//! on loopback and files every message in a Maildir. Players subscribe by e-mail (one to the
//! dice, one to the wallet) and a partner by webhook, each confirms with the signed link it
//! was sent; a real node is killed, the control plane opens an incident on the games, and the
//! dice subscriber and the webhook get it, the wallet subscriber does not; the operator
//! resolves it with `croupier ctl` and the resolution arrives too. The unsubscribe link in a
//! message removes the subscriber. Addresses never appear on the status page or its feeds,
//! bad requests are refused, and the subscription endpoint is rate limited.

mod common;

use common::*;
use serde_json::{Value, json};

/// The first link in `text` that goes to `/subscriptions/…/{action}`.
fn link(text: &str, action: &str) -> String {
    text.split_whitespace()
        .find(|w| w.contains("/subscriptions/") && w.contains(&format!("/{action}?")))
        .unwrap_or_else(|| panic!("no {action} link in:\n{text}"))
        .to_owned()
}

fn confirm(url: &str) {
    let (status, form) = get(url, None).unwrap();
    assert_eq!(status, 200, "{form}");
    let (status, done) = post_raw(url, None, None, "").unwrap();
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        post_raw(url, None, None, "").unwrap().0,
        410,
        "a confirm link works once"
    );
}

#[test]
fn subscribers_confirm_by_signed_links_and_get_the_incident_and_its_resolution_by_email() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let sink = SmtpSink::start(data);
    let (hook_url, hook) = json_receiver("/status-news");
    std::fs::write(
        data.join("deploy.toml"),
        format!(
            "[subscriptions]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"Croupier status <status@casino.test>\"\nallow_http_webhooks = true\n",
            sink.port
        ),
    )
    .unwrap();
    let mut node = Node::start(data, "node-1");
    let (_control, base) = control_watching(data, &node);

    let subscribe =
        |body: Value| post(&format!("{base}/api/v1/subscriptions"), None, None, &body).unwrap();
    for bad in [
        json!({"email": "not an address"}),
        json!({"email": "a@example.com", "webhook": "https://x.test"}),
        json!({"email": "a@example.com", "components": ["poker"]}),
        json!({"phone": "123"}),
    ] {
        let (status, refusal) = subscribe(bad.clone());
        assert_eq!(status, 422, "{bad} → {refusal}");
    }
    assert_eq!(
        subscribe(json!({"email": "dice.fan@example.com", "components": ["dice"]})).0,
        202
    );
    assert_eq!(
        subscribe(json!({"email": "wallet.watcher@example.com", "components": ["wallet"]})).0,
        202
    );
    assert_eq!(subscribe(json!({"webhook": hook_url})).0, 202);
    wait_for("two confirmation e-mails", || sink.messages().len() == 2);
    wait_for("the webhook's confirmation", || !hook.lock().is_empty());
    for address in ["dice.fan@example.com", "wallet.watcher@example.com"] {
        confirm(&link(&sink.to(address)[0], "confirm"));
    }
    confirm(&link(hook.lock()[0].1["text"].as_str().unwrap(), "confirm"));
    let forged =
        link(&sink.to("dice.fan@example.com")[0], "confirm").replace("/confirm?", "/unsubscribe?");
    assert_eq!(post_raw(&forged, None, None, "").unwrap().0, 403);

    // The node dies: an incident on the games. The dice subscriber and the webhook hear of it.
    node.kill_9();
    wait_for("the incident by e-mail", || {
        sink.to("dice.fan@example.com").len() >= 2
    });
    let opened = sink.to("dice.fan@example.com")[1].clone();
    assert!(
        opened.contains("investigating") && opened.contains("down on node-1"),
        "{opened}"
    );
    let (_, incidents) = get(&format!("{base}/api/v1/incidents"), Some(OPS_TOKEN)).unwrap();
    let id = incidents["incidents"][0]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let resolved = croupier()
        .args(["ctl", "--url", &base, "update", &id, "--status", "resolved"])
        .args(["--message", "node-1 is back; every bet is safe."])
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .output()
        .unwrap();
    assert!(
        resolved.status.success(),
        "{}",
        String::from_utf8_lossy(&resolved.stderr)
    );
    wait_for("the resolution by e-mail", || {
        sink.to("dice.fan@example.com")
            .iter()
            .any(|m| m.contains("node-1 is back; every bet is safe."))
    });
    wait_for("the resolution by webhook", || {
        hook.lock().iter().any(|(_, m)| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("every bet is safe"))
        })
    });
    assert_eq!(
        sink.to("wallet.watcher@example.com").len(),
        1,
        "only its confirmation: it chose the wallet"
    );

    // No address on the public page or its feeds; operators see them.
    for page in [
        "/status",
        "/api/v1/status",
        "/status/feed.json",
        "/status/feed.atom",
    ] {
        let (_, body) = get(&format!("{base}{page}"), None).unwrap();
        assert!(
            !body.to_string().contains("example.com"),
            "{page} shows an address"
        );
    }
    let (status, _) = get(&format!("{base}/api/v1/subscriptions"), None).unwrap();
    assert_eq!(status, 401);
    let (_, listed) = get(&format!("{base}/api/v1/subscriptions"), Some(OPS_TOKEN)).unwrap();
    assert_eq!(
        listed["subscribers"].as_array().unwrap().len(),
        3,
        "{listed}"
    );

    // Unsubscribing forgets the address.
    let unsubscribe = link(&sink.to("dice.fan@example.com")[1], "unsubscribe");
    assert_eq!(post_raw(&unsubscribe, None, None, "").unwrap().0, 200);
    let (_, listed) = get(&format!("{base}/api/v1/subscriptions"), Some(OPS_TOKEN)).unwrap();
    assert!(!listed.to_string().contains("dice.fan"), "{listed}");
    assert_eq!(
        post_raw(&unsubscribe, None, None, "").unwrap().0,
        403,
        "the link is spent"
    );

    // A flood of requests is cut off (5 a minute from one address).
    let statuses: Vec<u16> = (0..30)
        .map(|n| subscribe(json!({"email": format!("flood{n}@example.com")})).0)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
}
