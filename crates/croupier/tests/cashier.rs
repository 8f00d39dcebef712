//! The operator's cashier API and rounds that never hang (issue 16), on real node processes
//! sharing one ledger (SQLite, or PostgreSQL with CROUPIER_TEST_STORE=postgres):
//! deposits and withdrawals sent many times at once through two nodes under one transaction
//! id move money exactly once and all get the same answer; the same id with another request,
//! a withdrawal past the balance or during an open round, and bad input are refused with a
//! JSON error and change nothing; lookups and the reconciliation export show what moved; the
//! players' port does not forward the cashier. An abandoned blackjack hand is settled by the
//! nodes' policy and shows in the player's rounds and in game recall. The ledger invariants
//! hold at the end of each test.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "an-operator-secret-of-at-least-32-bytes-0000";

/// Two nodes without demo mode on one ledger, with an operator launch key; the cashier token
/// the first one made in the data folder.
fn two_nodes(data: &Path) -> (Node, Node, String) {
    let keys = data.join("launch-keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("op1.hs256"), SECRET).unwrap();
    let a = Node::start_with(data, "a", &[]);
    let b = Node::start_with(data, "b", &[]);
    let token = std::fs::read_to_string(data.join("cashier-token")).unwrap();
    (a, b, token.trim().to_owned())
}

/// The same cashier call sent by 8 threads at once, alternately to `a` and `b`.
fn concurrently(a: &Node, b: &Node, path: &str, token: &str, body: &Value) -> Vec<(u16, Value)> {
    let urls: Vec<String> = (0..8)
        .map(|i| if i % 2 == 0 { a.url(path) } else { b.url(path) })
        .collect();
    std::thread::scope(|s| {
        let calls: Vec<_> = urls
            .iter()
            .map(|url| s.spawn(move || post(url, Some(token), None, body).unwrap()))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    })
}

/// Every answer is the one first answer.
fn all_the_same(answers: &[(u16, Value)]) -> Value {
    let first = answers[0].clone();
    assert_eq!(first.0, 201, "{}", first.1);
    for answer in answers {
        assert_eq!(answer, &first, "a replay answered differently");
    }
    first.1
}

fn cashier_balance(node: &Node, token: &str, player: &str) -> Value {
    let url = node.url(&format!("/cashier/v1/players/{player}/balance"));
    let (status, body) = get(&url, Some(token)).unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn export(node: &Node, token: &str) -> Vec<Value> {
    let url = node.url("/cashier/v1/journal?from_ms=0&to_ms=99999999999999");
    let (status, body) = get(&url, Some(token)).unwrap();
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

fn refused(answer: (u16, Value), status: u16, code: &str) -> Value {
    assert_eq!(
        (answer.0, answer.1["error"].as_str()),
        (status, Some(code)),
        "{}",
        answer.1
    );
    assert!(answer.1["message"].as_str().is_some_and(|m| !m.is_empty()));
    answer.1
}

/// A blackjack hand left open (a dealt natural settles at once: deal again).
fn open_hand(base: &str, token: &str) -> Value {
    for i in 0..50 {
        let body = json!({"game": "blackjack", "stake": 100});
        let key = format!("bj-{i}");
        let (status, played) = post(
            &format!("{base}/api/v1/rounds"),
            Some(token),
            Some(&key),
            &body,
        )
        .unwrap();
        assert_eq!(status, 201, "{played}");
        if played["round"]["status"] == "open" {
            return played;
        }
    }
    panic!("50 naturals in a row");
}

#[test]
fn cashier_moves_money_once_per_transaction_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, cashier) = two_nodes(dir.path());
    let cashier = cashier.as_str();
    let deposit = json!({"transaction_id": "op-dep-1", "player": "alice", "amount": 5_000});
    let answers = concurrently(&a, &b, "/cashier/v1/deposits", cashier, &deposit);
    let first = all_the_same(&answers);
    assert_eq!(
        (first["kind"].as_str(), first["balance"].as_i64()),
        (Some("deposit"), Some(5_000))
    );
    assert_eq!(cashier_balance(&b, cashier, "alice")["balance"], 5_000);

    // The same id with another request: 409, nothing moved.
    let other = json!({"transaction_id": "op-dep-1", "player": "alice", "amount": 6_000});
    refused(
        post(&a.url("/cashier/v1/deposits"), Some(cashier), None, &other).unwrap(),
        409,
        "transaction_id_reused",
    );
    let as_withdrawal = post(
        &b.url("/cashier/v1/withdrawals"),
        Some(cashier),
        None,
        &deposit,
    )
    .unwrap();
    refused(as_withdrawal, 409, "transaction_id_reused");

    let withdrawal = json!({"transaction_id": "op-wd-1", "player": "alice", "amount": 2_000});
    let answers = concurrently(&a, &b, "/cashier/v1/withdrawals", cashier, &withdrawal);
    assert_eq!(all_the_same(&answers)["balance"], 3_000);

    let too_much = json!({"transaction_id": "op-wd-2", "player": "alice", "amount": 3_001});
    let answer = refused(
        post(
            &a.url("/cashier/v1/withdrawals"),
            Some(cashier),
            None,
            &too_much,
        )
        .unwrap(),
        409,
        "insufficient_funds",
    );
    assert_eq!(answer["balance"], 3_000);

    // While alice's blackjack hand is open, no withdrawal; the answer says so, with the balance.
    let launch = launch_token(dir.path(), &["--player", "alice"]);
    let (status, session) = post(
        &a.url("/api/v1/sessions"),
        None,
        None,
        &json!({"launch_token": launch}),
    )
    .unwrap();
    assert_eq!(status, 201, "{session}");
    let player = session["token"].as_str().unwrap();
    let hand = open_hand(&a.base, player);
    let during = json!({"transaction_id": "op-wd-3", "player": "alice", "amount": 100});
    let answer = refused(
        post(
            &b.url("/cashier/v1/withdrawals"),
            Some(cashier),
            None,
            &during,
        )
        .unwrap(),
        409,
        "open_round",
    );
    assert_eq!(
        (answer["balance"].clone(), answer["open_rounds"].clone()),
        (hand["balance"].clone(), json!(1))
    );
    let act = a.url(&format!(
        "/api/v1/rounds/{}/actions",
        hand["round"]["id"].as_str().unwrap()
    ));
    let (status, done) = post(
        &act,
        Some(player),
        Some("stand"),
        &json!({"action": "stand"}),
    )
    .unwrap();
    assert_eq!(
        (status, &done["round"]["status"]),
        (200, &json!("settled")),
        "{done}"
    );
    let (status, _) = post(
        &b.url("/cashier/v1/withdrawals"),
        Some(cashier),
        None,
        &during,
    )
    .unwrap();
    assert_eq!(
        status, 201,
        "once the hand is settled the withdrawal goes through"
    );

    // Lookups answer what the movement answered; a refused one left nothing to find.
    let (status, found) = get(&b.url("/cashier/v1/transactions/op-dep-1"), Some(cashier)).unwrap();
    assert_eq!((status, &found), (200, &first));
    refused(
        get(&a.url("/cashier/v1/transactions/op-wd-2"), Some(cashier)).unwrap(),
        404,
        "not_found",
    );

    let entries = export(&a, cashier);
    let ids: Vec<(&str, &str, i64)> = entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["transaction_id"].as_str().unwrap(),
                e["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("deposit", "op-dep-1", 5_000),
            ("withdraw", "op-wd-1", 2_000),
            ("withdraw", "op-wd-3", 100)
        ]
    );
    let csv = agent()
        .get(&a.url("/cashier/v1/journal?from_ms=0&to_ms=99999999999999&format=csv"))
        .header("Authorization", &format!("Bearer {cashier}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "seq,ts_ms,kind,transaction_id,player,amount,currency,hash"
    );
    assert!(
        lines[1].contains(",deposit,op-dep-1,alice,5000,EUR,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    let report = integrity(&a);
    assert!(report["entries"].as_u64().unwrap() >= 3, "{report}");
    ledger_integrity(dir.path());
}

#[test]
fn cashier_refuses_bad_input_and_strangers_changing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, cashier) = two_nodes(dir.path());
    let cashier = cashier.as_str();
    let seed = json!({"transaction_id": "seed-1", "player": "bob", "amount": 1_000});
    assert_eq!(
        post(&a.url("/cashier/v1/deposits"), Some(cashier), None, &seed)
            .unwrap()
            .0,
        201
    );
    let launch = launch_token(dir.path(), &["--player", "bob"]);
    let (_, session) = post(
        &a.url("/api/v1/sessions"),
        None,
        None,
        &json!({"launch_token": launch}),
    )
    .unwrap();
    let player = session["token"].as_str().unwrap();
    let deposits = a.url("/cashier/v1/deposits");
    let fine = json!({"transaction_id": "t-1", "player": "bob", "amount": 500});

    // Who may call: the cashier token alone, never a player's session nor the ops token.
    refused(
        post(&deposits, None, None, &fine).unwrap(),
        401,
        "missing_token",
    );
    refused(
        post(&deposits, Some(player), None, &fine).unwrap(),
        401,
        "invalid_token",
    );
    refused(
        post(&deposits, Some(OPS_TOKEN), None, &fine).unwrap(),
        401,
        "invalid_token",
    );
    refused(
        get(
            &b.url("/cashier/v1/journal?from_ms=0&to_ms=1"),
            Some(player),
        )
        .unwrap(),
        401,
        "invalid_token",
    );

    for (body, status, code) in [
        (
            json!({"transaction_id": "t-2", "player": "bob", "amount": 0}),
            422,
            "invalid_amount",
        ),
        (
            json!({"transaction_id": "t-2", "player": "bob", "amount": -5}),
            422,
            "invalid_amount",
        ),
        (
            json!({"transaction_id": "t 2", "player": "bob", "amount": 5}),
            422,
            "invalid_transaction_id",
        ),
        (
            json!({"transaction_id": "", "player": "bob", "amount": 5}),
            422,
            "invalid_transaction_id",
        ),
        (
            json!({"transaction_id": "t-2", "player": "b/o/b", "amount": 5}),
            422,
            "invalid_player",
        ),
        (
            json!({"transaction_id": "t-2", "player": "bob", "amount": 5, "x": 1}),
            422,
            "invalid_field",
        ),
        (
            json!({"transaction_id": "t-2", "player": "bob", "amount": "5"}),
            422,
            "invalid_field",
        ),
    ] {
        refused(
            post(&deposits, Some(cashier), None, &body).unwrap(),
            status,
            code,
        );
    }
    refused(
        post_raw(&deposits, Some(cashier), None, "{not json").unwrap(),
        400,
        "malformed_json",
    );
    let nobody = json!({"transaction_id": "t-3", "player": "nobody", "amount": 5});
    refused(
        post(
            &b.url("/cashier/v1/withdrawals"),
            Some(cashier),
            None,
            &nobody,
        )
        .unwrap(),
        404,
        "not_found",
    );
    refused(
        get(
            &a.url("/cashier/v1/journal?from_ms=5&to_ms=5"),
            Some(cashier),
        )
        .unwrap(),
        422,
        "invalid_range",
    );
    refused(
        get(
            &a.url("/cashier/v1/journal?from_ms=x&to_ms=5"),
            Some(cashier),
        )
        .unwrap(),
        400,
        "invalid_query",
    );
    refused(
        get(&a.url("/cashier/v1/players/nobody/balance"), Some(cashier)).unwrap(),
        404,
        "not_found",
    );

    // The players' port does not forward the cashier, even with the right token.
    let gateway = GatewayProcess::start(dir.path(), &[&a, &b], &[]);
    let through = post(
        &gateway.url("/cashier/v1/deposits"),
        Some(cashier),
        None,
        &fine,
    )
    .unwrap();
    refused(through, 404, "not_found");

    assert_eq!(balance(&a, player), 1_000, "nothing moved");
    assert_eq!(
        export(&b, cashier).len(),
        1,
        "only the first deposit is in the journal"
    );
    integrity(&b);
    ledger_integrity(dir.path());
}

fn wait_settled(node: &Node, token: &str, round: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, view) =
            get(&node.url(&format!("/api/v1/rounds/{round}")), Some(token)).unwrap();
        assert_eq!(status, 200, "{view}");
        if view["status"] == "settled" {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned round was never settled: {view}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_abandoned_blackjack_hand_is_settled_and_recalled() {
    let dir = tempfile::tempdir().unwrap();
    let policy = ["--demo", "--abandon-after-game", "blackjack=2s"];
    let a = Node::start_with(dir.path(), "a", &policy);
    let b = Node::start_with(dir.path(), "b", &policy);
    let token = sign_in(&a, "carol");
    let token = token.as_str();
    let (status, _) = post(
        &a.url("/api/v1/rounds"),
        Some(token),
        Some("dice-1"),
        &dice_bet(100),
    )
    .unwrap();
    assert_eq!(status, 201);
    let hand = open_hand(&b.base, token);
    let round = hand["round"]["id"].as_str().unwrap();
    let view = wait_settled(&a, token, round);
    let closed = &view["closed_by"];
    assert_eq!(closed["reason"], "abandoned", "{view}");
    let payout = view["payout"].as_i64().unwrap();
    assert_eq!(closed["payout"], payout, "{view}");
    assert!(
        payout >= view["stake"].as_i64().unwrap(),
        "the better of stand and refund never loses: {view}"
    );
    match closed["settled_as"].as_str() {
        Some("refund") => assert_eq!(payout, 100, "{view}"),
        Some("stand") => assert!(
            view["outcome"]["actions"]
                .as_array()
                .unwrap()
                .contains(&json!("stand")),
            "{view}"
        ),
        other => panic!("settled as {other:?}"),
    }
    assert_eq!(
        balance(&a, token),
        hand["balance"].as_i64().unwrap() + payout
    );
    let (_, listed) = get(&b.url("/api/v1/rounds"), Some(token)).unwrap();
    let listed = listed["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == round)
        .cloned();
    assert_eq!(
        listed.map(|r| r["closed_by"].clone()),
        Some(closed.clone()),
        "the player's rounds show why"
    );

    // Game recall: the rounds newest first, each step with the balance before and after.
    let (status, recall) = get(&b.url("/api/v1/recall"), Some(token)).unwrap();
    assert_eq!(status, 200, "{recall}");
    let rounds = recall["rounds"].as_array().unwrap();
    assert_eq!(rounds[0]["id"], round, "{recall}");
    assert_eq!(rounds[0]["closed_by"], *closed);
    let mut steps: Vec<&Value> = rounds
        .iter()
        .flat_map(|r| r["steps"].as_array().unwrap())
        .collect();
    steps.sort_by_key(|s| s["seq"].as_i64());
    for pair in steps.windows(2) {
        assert_eq!(
            pair[0]["balance_after"], pair[1]["balance_before"],
            "{recall}"
        );
    }
    for step in &steps {
        let moved =
            step["balance_after"].as_i64().unwrap() - step["balance_before"].as_i64().unwrap();
        assert_eq!(moved, step["amount"].as_i64().unwrap(), "{step}");
    }
    assert_eq!(steps.last().unwrap()["balance_after"], recall["balance"]);
    let kinds: Vec<&str> = rounds[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["stake", "payout"], "{recall}");

    // Operators read any player's recall; a player cannot use that route.
    let ops = a.url("/ops/players/carol/recall");
    let (status, theirs) = get(&ops, Some(OPS_TOKEN)).unwrap();
    assert_eq!((status, &theirs["rounds"]), (200, &recall["rounds"]));
    refused(get(&ops, Some(token)).unwrap(), 403, "forbidden");
    integrity(&a);
    ledger_integrity(dir.path());
}
