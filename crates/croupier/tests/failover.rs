//! Two node processes on one SQLite file: play on both, `kill -9` one in the middle of a
//! blackjack round and of a burst of bets, finish the round on the other, and check that no
//! acknowledged bet was lost and every ledger invariant holds.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::thread;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Starts blackjack rounds until one is left open (no natural blackjack on the deal).
fn open_blackjack_round(node: &Node, token: &str) -> Value {
    for attempt in 0..50 {
        let (status, body) = post(
            &node.url("/api/v1/rounds"),
            Some(token),
            Some(&format!("bj-{attempt}")),
            &json!({"game": "blackjack", "stake": 200}),
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
        if body["round"]["status"] == "open" {
            return body["round"].clone();
        }
    }
    panic!("50 blackjack deals in a row were naturals");
}

#[test]
fn blackjack_round_survives_kill_9_of_its_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Node::start(dir.path(), "node-a");
    let b = Node::start(dir.path(), "node-b");

    let alice = sign_in(&a, "alice");
    let bob = sign_in(&b, "bob");
    // Sessions live in the store: alice's token works on b too.
    assert_eq!(balance(&b, &alice), 100_000);

    let round = open_blackjack_round(&a, &alice);
    let round_id = round["id"].as_str().unwrap().to_owned();
    // Deals that settled at once (a natural on either side) came before: count from here.
    let with_the_round_open = balance(&a, &alice);
    assert_eq!(
        round["outcome"]["dealer"][1], "??",
        "hole card must stay hidden"
    );

    // Bob bets on both nodes until told to stop; a is killed in the middle of it.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed_on_a = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let bettors: Vec<_> = [a.base.clone(), b.base.clone()]
        .into_iter()
        .enumerate()
        .map(|(n, base)| {
            let (acknowledged, failed_on_a, stop) =
                (acknowledged.clone(), failed_on_a.clone(), stop.clone());
            let bob = bob.clone();
            thread::spawn(move || {
                for i in 0..5_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let key = format!("burst-{n}-{i}");
                    match post(
                        &format!("{base}/api/v1/rounds"),
                        Some(&bob),
                        Some(&key),
                        &dice_bet(10),
                    ) {
                        Ok((201, body)) => acknowledged
                            .lock()
                            .push(body["round"]["id"].as_str().unwrap().to_owned()),
                        Ok((status, body)) => panic!("refused bet {status}: {body}"),
                        // The killed node: not acknowledged, so the player may not count on it.
                        Err(_) => {
                            failed_on_a.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    while acknowledged.lock().len() < 100 {
        thread::sleep(Duration::from_millis(5));
    }
    a.kill_9();
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for bettor in bettors {
        bettor.join().unwrap();
    }
    assert!(
        failed_on_a.load(Ordering::SeqCst) > 0,
        "the kill did not land during the burst"
    );

    // The round started on a is finished on b.
    let (status, body) = post(
        &b.url(&format!("/api/v1/rounds/{round_id}/actions")),
        Some(&alice),
        Some("finish-on-b"),
        &json!({"action": "stand"}),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["round"]["status"], "settled");
    let payout = body["round"]["payout"].as_i64().unwrap();
    assert_eq!(balance(&b, &alice), with_the_round_open + payout);

    // Every acknowledged bet is in the ledger.
    let acknowledged = acknowledged.lock().clone();
    assert!(
        acknowledged.len() >= 100,
        "only {} bets acknowledged",
        acknowledged.len()
    );
    for id in &acknowledged {
        let (status, body) = get(&b.url(&format!("/api/v1/rounds/{id}")), Some(&bob)).unwrap();
        assert_eq!(status, 200, "acknowledged round {id} is missing: {body}");
    }

    let report = integrity(&b);
    assert!(report["rounds"].as_u64().unwrap() > acknowledged.len() as u64);
    drop(b);
    ledger_integrity(dir.path());
}

/// The rounds of `player` as a newly opened connection of this process (not the node's)
/// sees them in the ledger file.
fn rounds_seen_afresh(data: &std::path::Path, player: &str) -> i64 {
    let conn = rusqlite::Connection::open(ledger_path(data)).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM rounds WHERE player = ?1",
        [player],
        |r| r.get(0),
    )
    .unwrap()
}

/// Housekeeping used to open the ledger's database file to sync it and close it again, and
/// closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
/// included. The node kept playing without the shared lock that tells SQLite it is on the
/// file, so the next other process to open the file read-write and close it (an operator's
/// `sqlite3` shell, a drill's bank check; here the test itself) believed itself the last
/// user, checkpointed and deleted the WAL under the node: the bets acknowledged after that
/// went to the deleted file, and every connection opened later (a restarted node, a backup,
/// the next check) saw the ledger without them.
#[test]
fn a_bet_acknowledged_after_housekeeping_and_another_reader_is_seen_by_the_next_reader() {
    if sqlite_only("SQLite's WAL and its file locks") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with(
        dir.path(),
        "node-1",
        &["--demo", "--housekeep-every-s", "1"],
    );
    let token = sign_in(&node, "alice");
    let bet = |key: &str| played(&node, &token, key, 100);
    bet("before");
    // Housekeeping runs as the node starts and each second after.
    thread::sleep(Duration::from_millis(2_500));
    assert_eq!(rounds_seen_afresh(dir.path(), "alice"), 1);
    bet("after");
    assert_eq!(
        rounds_seen_afresh(dir.path(), "alice"),
        2,
        "a reader opened after the bet must see it"
    );
    integrity(&node);
    integrity_cli(&ledger_path(dir.path()));
}
