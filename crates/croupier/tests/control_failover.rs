//! Two control planes of one deployment: one leads, the other follows (read-only API) and
//! takes over when the leader is killed with SIGKILL in the middle of an incident. A webhook
//! receiver on loopback counts the notifications: an alert sent before the failover is not
//! sent again, one that fires during it is sent once, and each resolution once. The lease is
//! the file lock of a shared data folder; or, when the suite runs on PostgreSQL, an advisory
//! lock on the test's database, with a data folder (and `control.db`) for each control plane,
//! as on two machines: what the leader sent is then shared through the database alone.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use croupier_ledger::StoreLocation;
use serde_json::{Value, json};

/// A node on a fixed port, so that the control planes find it again after a restart.
fn node_on(data: &Path, id: &str, port: u16) -> Node {
    let log = std::fs::File::create(data.join(format!("{id}-{port}.log"))).unwrap();
    let child = croupier()
        .args(["node", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--node-id", id])
        .arg("--data")
        .arg(data)
        .args(["--store", &ledger(data).as_arg()])
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let node = Node {
        child,
        base: format!("http://127.0.0.1:{port}"),
        id: id.to_owned(),
    };
    node.wait_ready();
    node
}

fn control(data: &Path, name: &str, port: u16, nodes: &[&Node], hook: &str) -> Up {
    let log = std::fs::File::create(data.join(format!("{name}.log"))).unwrap();
    let lease = match ledger(data) {
        StoreLocation::Postgres(url) => Some(url),
        StoreLocation::Sqlite(_) => None,
    };
    let folder = match lease {
        Some(_) => data.join(name),
        None => data.to_owned(),
    };
    let mut command = croupier();
    command
        .args(["control", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(folder)
        .args(["--webhook", hook])
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .stdout(Stdio::null())
        .stderr(log);
    for node in nodes {
        command.args(["--node", &format!("{}={}", node.id, node.base)]);
    }
    if let Some(url) = lease {
        command.args(["--lease", &url]);
    }
    Up(command.spawn().unwrap())
}

fn role(port: u16) -> Option<String> {
    let (status, body) = get(&format!("http://127.0.0.1:{port}/healthz"), None).ok()?;
    (status == 200).then(|| body["role"].as_str().unwrap_or("").to_owned())
}

/// Each alert's notified transitions in the order received: `key` → ["firing", "resolved", …].
fn notified(received: &Received) -> BTreeMap<String, Vec<String>> {
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, body) in received.lock().iter() {
        for alert in body["alerts"].as_array().into_iter().flatten() {
            by_key
                .entry(alert["key"].as_str().unwrap_or("").to_owned())
                .or_default()
                .push(alert["status"].as_str().unwrap_or("").to_owned());
        }
    }
    by_key
}

fn sent(received: &Received, key: &str, status: &str) -> bool {
    notified(received)
        .get(key)
        .is_some_and(|s| s.iter().any(|s| s == status))
}

#[test]
fn the_follower_takes_over_and_every_alert_is_notified_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (port_1, port_2) = (free_port(), free_port());
    let mut node_1 = node_on(data, "node-1", port_1);
    let mut node_2 = node_on(data, "node-2", port_2);
    let (hook, received) = json_receiver("/hook");
    let (port_a, port_b) = (free_port(), free_port());
    let mut leader = control(data, "control-a", port_a, &[&node_1, &node_2], &hook);
    wait_for("control-a leads", || {
        role(port_a).as_deref() == Some("leader")
    });
    let _follower = control(data, "control-b", port_b, &[&node_1, &node_2], &hook);
    wait_for("control-b follows", || {
        role(port_b).as_deref() == Some("follower")
    });

    // A follower serves reads and refuses changes.
    let follower_url = |path: &str| format!("http://127.0.0.1:{port_b}{path}");
    let silence = json!({"matcher": "down/node-1", "duration_s": 60, "comment": "test"});
    let (status, body) = post(
        &follower_url("/api/v1/silences"),
        Some(OPS_TOKEN),
        None,
        &silence,
    )
    .unwrap();
    assert_eq!((status, body["error"].as_str()), (503, Some("not_leader")));
    let (status, _) = post(&follower_url("/api/v1/silences"), None, None, &silence).unwrap();
    assert_eq!(status, 401, "no token: the leader's answer, no hint");
    assert_eq!(
        get(&follower_url("/api/v1/incidents"), Some(OPS_TOKEN))
            .unwrap()
            .0,
        200
    );

    // An incident before the failover: its alert is sent once, by the leader.
    node_1.kill_9();
    wait_for("down/node-1 is notified", || {
        sent(&received, "down/node-1", "firing")
    });

    // The leader dies with SIGKILL as a second alert is about to fire.
    node_2.kill_9();
    let killed = Instant::now();
    leader.0.kill().unwrap();
    leader.0.wait().unwrap();
    wait_for("control-b takes over", || {
        role(port_b).as_deref() == Some("leader")
    });
    let takeover = killed.elapsed();
    eprintln!("control-b took over {takeover:?} after the SIGKILL");
    assert!(
        takeover < Duration::from_secs(5),
        "took over after {takeover:?}"
    );
    let metrics = common::agent()
        .get(follower_url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(metrics.contains("croupier_control_leader 1"), "{metrics}");
    wait_for("down/node-2 is notified", || {
        sent(&received, "down/node-2", "firing")
    });

    // Both nodes come back: each resolution is sent once, by the new leader.
    let _node_1 = node_on(data, "node-1", port_1);
    let _node_2 = node_on(data, "node-2", port_2);
    wait_for("both resolutions are notified", || {
        sent(&received, "down/node-1", "resolved") && sent(&received, "down/node-2", "resolved")
    });
    std::thread::sleep(Duration::from_secs(3)); // room for a duplicate to show up
    let notified = notified(&received);
    let once = vec!["firing".to_owned(), "resolved".to_owned()];
    assert_eq!(notified.get("down/node-1"), Some(&once), "{notified:?}");
    assert_eq!(notified.get("down/node-2"), Some(&once), "{notified:?}");
    for (key, statuses) in &notified {
        assert!(
            statuses.windows(2).all(|w| w[0] != w[1]),
            "{key} notified twice in a row: {statuses:?}"
        );
    }
    let (_, incidents) = get(&follower_url("/api/v1/incidents"), Some(OPS_TOKEN)).unwrap();
    let open: Vec<&Value> = incidents["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["status"] != "resolved")
        .collect();
    assert!(open.is_empty(), "incidents left open: {open:?}");
}
