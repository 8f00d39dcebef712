//! Signing players in without demo mode: only a launch token signed with an operator key
//! (made by `croupier launch-token`, as the operator's platform would) opens a session; a
//! name alone, a replayed token (on the same node or another), an expired one, one for
//! another currency or one signed with an unknown or wrong key gets a 401 with a JSON error,
//! and creates nothing. A key added to the folder works at once, without a restart. Demo
//! mode is said in the lobby answer. `croupier up` without `--demo` makes the operator's first
//! key, and its control plane's test player signs in with it.

mod common;

use common::*;
use croupier_ledger::test_store;
use serde_json::{Value, json};

const SECRET: &str = "an-operator-secret-of-at-least-32-bytes-0000";

fn open_session(node: &Node, body: &Value) -> (u16, Value) {
    post(&node.url("/api/v1/sessions"), None, None, body).unwrap()
}

fn refused(node: &Node, body: &Value, code: &str) {
    let (status, answer) = open_session(node, body);
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some(code)),
        "{answer}"
    );
    assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[test]
fn only_valid_launch_tokens_sign_players_in() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("launch-keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("op1.hs256"), SECRET).unwrap();
    let a = Node::start_with(dir.path(), "a", &[]);
    let b = Node::start_with(dir.path(), "b", &[]);

    refused(&a, &json!({"player": "alice"}), "launch_token_required");
    let token = launch_token(dir.path(), &["--player", "alice", "--max-stake", "500"]);
    let (status, session) = open_session(&a, &json!({"launch_token": token}));
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["player"], "alice");
    assert_eq!(session["demo"], false);
    assert_eq!(session["balance"], 0, "no play money outside demo mode");
    assert_eq!(session["limits"]["max_stake"], 500);
    let player = session["token"].as_str().unwrap();
    let (status, lobby) = get(&a.url("/api/v1/lobby"), Some(player)).unwrap();
    assert_eq!((status, &lobby["demo"]), (200, &json!(false)), "{lobby}");

    // The same token again, on this node or another: refused, no second session.
    refused(&a, &json!({"launch_token": token}), "token_replayed");
    refused(&b, &json!({"launch_token": token}), "token_replayed");

    let expired = launch_token(dir.path(), &["--player", "bob", "--ttl-s=-5"]);
    refused(&b, &json!({"launch_token": expired}), "token_expired");
    let dollars = launch_token(dir.path(), &["--player", "bob", "--currency", "USD"]);
    refused(&b, &json!({"launch_token": dollars}), "wrong_currency");

    // A key the casino does not know, then the same key once added: no restart needed.
    let other = dir.path().join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    let next_key = other.join("op2.hs256");
    std::fs::write(&next_key, format!("{SECRET}-next")).unwrap();
    let next = launch_token(
        dir.path(),
        &["--player", "bob", "--key", next_key.to_str().unwrap()],
    );
    refused(&b, &json!({"launch_token": next}), "unknown_key");
    // A token signed with another secret under a known kid.
    let forged_key = other.join("op1.hs256");
    std::fs::write(&forged_key, format!("{SECRET}-forged")).unwrap();
    let forged = launch_token(
        dir.path(),
        &["--player", "bob", "--key", forged_key.to_str().unwrap()],
    );
    refused(&b, &json!({"launch_token": forged}), "bad_signature");
    std::fs::copy(&next_key, keys.join("op2.hs256")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    let (status, session) = open_session(&b, &json!({"launch_token": next}));
    assert_eq!(
        status, 201,
        "the new key works without a restart: {session}"
    );

    let (status, answer) = open_session(&b, &json!({"launch_token": token, "player": "x"}));
    assert_eq!(
        (status, answer["error"].as_str()),
        (422, Some("invalid_sign_in"))
    );
    assert_eq!(balance(&b, session["token"].as_str().unwrap()), 0);
    ledger_integrity(dir.path());
}

#[test]
fn demo_mode_signs_in_by_name_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "demo");
    let (status, session) = open_session(&node, &json!({"player": "alice"}));
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["demo"], true);
    assert_eq!(session["balance"], 100_000);
    let (_, lobby) = get(&node.url("/api/v1/lobby"), session["token"].as_str()).unwrap();
    assert_eq!(lobby["demo"], true, "{lobby}");
    ledger_integrity(dir.path());
}

#[test]
fn up_without_demo_signs_players_in_with_its_key_and_its_checks_pass() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stack = UpStack::start_with(&data, false, &[]);
    let sessions = stack.players_url("/api/v1/sessions");
    let (status, answer) = post(&sessions, None, None, &json!({"player": "alice"})).unwrap();
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("launch_token_required"))
    );
    let token = launch_token(&data, &["--player", "alice"]);
    let (status, session) = post(&sessions, None, None, &json!({"launch_token": token})).unwrap();
    assert_eq!(
        (status, &session["demo"]),
        (201, &json!(false)),
        "{session}"
    );
    // The synthetic checks' test player signs in with the key `up` made, and its unfunded
    // test bet is a wallet that answered: every target is up.
    let targets = || {
        let url = stack.control_url("/api/v1/targets");
        get(&url, Some(OPS_TOKEN)).unwrap().1["targets"]
            .as_array()
            .unwrap()
            .clone()
    };
    // Three nodes, the gateway, two checks; and the ledger's server on PostgreSQL.
    let expected = if test_store::postgres() { 7 } else { 6 };
    wait_for("every target up, the checks included", || {
        let all = targets();
        all.len() == expected && all.iter().all(|t| t["up"] == true)
    });
    ledger_integrity(&data);
}
