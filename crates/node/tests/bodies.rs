//! Property tests of the player API's request bodies, through the node's real router on a
//! real SQLite ledger: any body (bytes, JSON of any shape, bets of any game) to sign-in, a
//! round, a blackjack action or a seed rotation is answered without a panic, a refusal is a
//! 4xx with a JSON `error` and `message`, and the ledger's invariants hold afterwards.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use croupier_ledger::Store;
use croupier_ledger::sqlite::{SqliteConfig, SqliteStore};
use croupier_web::wire;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Harness {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    store: Arc<dyn Store>,
    token: String,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path().join("ledger.db"))).unwrap());
    let router = {
        let _inside = runtime.enter();
        let state = common::demo_state(store.clone(), &dir.path().join("keys"), "fuzz");
        croupier_node::router(state)
    };
    let mut harness = Harness {
        _dir: dir,
        runtime,
        router,
        store,
        token: String::new(),
    };
    let sign_in = json!({"player": "fuzz"}).to_string().into_bytes();
    let (status, signed_in) = harness.call("/api/v1/sessions", sign_in, None);
    assert_eq!(status, StatusCode::CREATED, "{signed_in}");
    harness.token = signed_in["token"].as_str().unwrap().to_owned();
    harness
}

impl Harness {
    fn call(&self, path: &str, body: Vec<u8>, key: Option<&str>) -> (StatusCode, Value) {
        let mut request = Request::post(path).header("content-type", "application/json");
        if !self.token.is_empty() {
            request = request.header("authorization", format!("Bearer {}", self.token));
        }
        if let Some(key) = key {
            request = request.header(wire::IDEMPOTENCY_KEY, key);
        }
        let request = request.body(Body::from(body)).unwrap();
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        })
    }

    fn report(&self) -> croupier_ledger::IntegrityReport {
        let store = self.store.clone();
        self.runtime
            .block_on(async move { store.integrity().await })
            .unwrap()
    }

    fn sound(&self) -> bool {
        self.report().ok
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (1i64..5_000).prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body: raw bytes, any JSON, or a round request of a real game with any stake and bet.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (
            prop_oneof![
                Just("dice"),
                Just("roulette"),
                Just("slot"),
                Just("blackjack"),
                Just("poker")
            ],
            prop_oneof![
                any::<i64>().prop_map(|n| json!(n)),
                (1i64..2_000).prop_map(|n| json!(n)),
                json_value()
            ],
            json_value(),
        )
            .prop_map(|(game, stake, bet)| {
                json!({"game": game, "stake": stake, "bet": bet})
                    .to_string()
                    .into_bytes()
            }),
    ]
}

fn refused_well(status: StatusCode, reply: &Value) -> bool {
    status.is_success()
        || (status.is_client_error()
            && reply["error"].as_str().is_some_and(|e| !e.is_empty())
            && reply["message"].as_str().is_some_and(|m| !m.is_empty()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_body_is_answered_with_json_and_the_ledger_stays_sound(
        bodies in proptest::collection::vec(body(), 1..6),
    ) {
        let harness = harness();
        for (n, body) in bodies.into_iter().enumerate() {
            let key = format!("k{n}");
            for path in ["/api/v1/rounds", "/api/v1/rounds/r_nope/actions", "/api/v1/seeds/rotate", "/api/v1/sessions"] {
                let (status, reply) = harness.call(path, body.clone(), Some(&key));
                prop_assert!(refused_well(status, &reply), "{path}: {status} {reply}");
            }
        }
        prop_assert!(harness.sound());
    }
}

/// Serde reads a struct from an array of its fields in order: `["array-player"]` signed a
/// player in, and `["dice", 100, {...}]` played a round. Every body sent as an array is
/// refused, and moves nothing.
#[test]
fn a_body_sent_as_a_json_array_is_refused() {
    let harness = harness();
    let before = harness.report();
    let bet = json!({"target": 5000, "direction": "over"});
    let bodies = [
        ("/api/v1/sessions", json!(["array-player"])),
        ("/api/v1/rounds", json!(["dice", 100, bet])),
        ("/api/v1/rounds/r_nope/actions", json!(["stand"])),
        ("/api/v1/seeds/rotate", json!([])),
    ];
    for (n, (path, body)) in bodies.into_iter().enumerate() {
        let bytes = format!(" \n{body}").into_bytes();
        let (status, reply) = harness.call(path, bytes, Some(&format!("array-{n}")));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {reply}");
        assert_eq!(reply["error"], "invalid_field", "{path}: {reply}");
    }
    let after = harness.report();
    assert!(after.ok, "{after:?}");
    assert_eq!(
        (after.entries, after.accounts, after.rounds),
        (before.entries, before.accounts, before.rounds)
    );
}

/// An Idempotency-Key the node cannot use is refused wherever the key is optional too (seed
/// rotation): before, a non-ASCII key was silently ignored (the gateway still retried the
/// request as safe to repeat: two rotations), and an empty or 200-character key was stored.
#[test]
fn an_unusable_idempotency_key_is_refused_not_ignored() {
    let harness = harness();
    let long = "k".repeat(200);
    for key in ["café", "", "   ", long.as_str()] {
        let (status, reply) = harness.call("/api/v1/seeds/rotate", b"{}".to_vec(), Some(key));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key:?}: {reply}");
        assert_eq!(
            reply["error"], "invalid_idempotency_key",
            "{key:?}: {reply}"
        );
    }
    let (status, reply) = harness.call("/api/v1/seeds/rotate", b"{}".to_vec(), Some("rotate-1"));
    assert!(status.is_success(), "{reply}");
    let (status, reply) = harness.call("/api/v1/seeds/rotate", b"{}".to_vec(), None);
    assert!(status.is_success(), "{reply}");
    assert!(harness.sound());
}
