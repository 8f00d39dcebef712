//! A node on a PostgreSQL primary with a synchronous streaming standby (two real clusters made
//! with initdb and pg_basebackup), through a multi-host URL that names the standby first:
//! writes go to the primary; when the primary is SIGKILLed, bets get 503 + Retry-After (never
//! a 500), players get a notice on their WebSocket, wallets are still read (from the
//! standby); once the standby is promoted, a bet in flight goes through, a retried key is
//! replayed (no second settlement), and the ledger on the new primary keeps every
//! acknowledged bet and its invariants.
//!
//! The clusters are the test's own whatever `CROUPIER_TEST_STORE` says, so the test runs in
//! the SQLite pass of the suite only (the PostgreSQL pass would repeat it unchanged).

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{OPS_TOKEN, Socket, croupier, dice_bet, free_port, get, ws_connect};
use croupier_ledger::test_store;
use croupier_loadtest::pgcluster::{PgCluster, Replication};
use croupier_web::wire;
use serde_json::Value;

struct NodeProcess(Child, String);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(data: &std::path::Path, store: &str) -> NodeProcess {
    let port = free_port();
    let log = std::fs::File::create(data.join("node.log")).unwrap();
    let child = croupier()
        .args(["node", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--node-id", "node-1", "--store", store])
        .arg("--data")
        .arg(data)
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let node = NodeProcess(child, format!("http://127.0.0.1:{port}"));
    common::wait_for("the node to be ready", || {
        matches!(get(&format!("{}/readyz", node.1), None), Ok((200, _)))
    });
    node
}

/// A bet under `key`: status, Retry-After, Idempotent-Replayed, body.
fn bet(base: &str, token: &str, key: &str) -> (u16, Option<String>, bool, Value) {
    let mut response = common::agent()
        .post(&format!("{base}/api/v1/rounds"))
        .header("Authorization", &format!("Bearer {token}"))
        .header(wire::IDEMPOTENCY_KEY, key)
        .header("Content-Type", "application/json")
        .send(dice_bet(100).to_string())
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let retry_after = header("retry-after");
    let replayed = header(wire::IDEMPOTENT_REPLAYED.as_str()).as_deref() == Some("true");
    let text = response.body_mut().read_to_string().unwrap();
    let status = response.status().as_u16();
    (
        status,
        retry_after,
        replayed,
        serde_json::from_str(&text).unwrap(),
    )
}

/// Reads the socket until a notice of `level` comes.
fn wait_notice(socket: &mut Socket, level: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let frame = socket.read().unwrap();
        if let tungstenite::Message::Text(text) = frame {
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["type"] == "notice" && message["level"] == level {
                return message;
            }
        }
    }
    panic!("no {level} notice");
}

#[test]
fn a_node_rides_the_promotion_of_its_synchronous_standby() {
    if test_store::postgres() {
        eprintln!("runs on its own clusters: the SQLite pass of the suite covers it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (primary, standby) =
        PgCluster::primary_and_standby(dir.path(), free_port(), free_port(), Replication::Sync)
            .unwrap();
    // The standby first: a read-only host is skipped for the one that accepts writes.
    let url = PgCluster::read_write_url(&[&standby, &primary]);
    // The node's data folder apart from the clusters: the node makes it private to root.
    let data = dir.path().join("node");
    std::fs::create_dir(&data).unwrap();
    let node = start_node(&data, &url);
    let base = node.1.as_str();
    let token = common::sign_in_at(base, "alice");
    let (status, _, _, first) = bet(base, &token, "k1");
    assert_eq!(status, 201, "{first}");
    let after_first = first["balance"].as_i64().unwrap();
    let mut socket = ws_connect(base, &token);

    primary.kill().unwrap();
    // No host accepts writes: refused as unavailable with a retry hint, never a 500.
    let (status, retry_after, _, refused) = bet(base, &token, "k2");
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"], "store_unavailable", "{refused}");
    assert!(retry_after.is_some());
    assert!(wait_notice(&mut socket, "warning")["message"].is_string());
    // Reads go on, from the standby; it has the acknowledged bet (synchronous replication).
    let (status, wallet) = get(&format!("{base}/api/v1/wallet"), Some(&token)).unwrap();
    assert_eq!(
        (status, wallet["balance"].as_i64()),
        (200, Some(after_first))
    );

    // A bet sent before the promotion is retried by the writer until the new primary takes it.
    let in_flight = {
        let (base, token) = (base.to_owned(), token.clone());
        std::thread::spawn(move || bet(&base, &token, "k3"))
    };
    std::thread::sleep(Duration::from_millis(300));
    standby.promote().unwrap();
    let (status, _, _, third) = in_flight.join().unwrap();
    assert_eq!(status, 201, "{third}");
    let (status, _, replayed, second) = bet(base, &token, "k2");
    assert_eq!((status, replayed), (201, false), "{second}");
    let (status, _, replayed, again) = bet(base, &token, "k2");
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again["round"]["id"], second["round"]["id"]);
    assert!(wait_notice(&mut socket, "info")["message"].is_string());

    // On the new primary: both rounds once each, and every invariant.
    let (status, wallet) = get(&format!("{base}/api/v1/wallet"), Some(&token)).unwrap();
    assert_eq!((status, &wallet["balance"]), (200, &second["balance"]));
    let (status, report) = get(&format!("{base}/ops/integrity"), Some(OPS_TOKEN)).unwrap();
    assert_eq!(
        (status, &report["ok"]),
        (200, &Value::Bool(true)),
        "{report:#}"
    );
    let rounds = standby
        .sql("SELECT count(*) FROM rounds WHERE player = 'alice'")
        .unwrap();
    assert_eq!(rounds, "3", "k1, k2 and k3, each once");
}
