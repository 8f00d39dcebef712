//! What the node's integration tests share: a demo-mode node's state on a given store.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use croupier_ledger::Store;
use croupier_node::abandon::AbandonPolicy;
use croupier_node::cashier::auth::Cashier;
use croupier_node::{AppState, Operator, Players};

/// A demo-mode node (sign-in by name) named `node_id` on `store`, with launch keys read from
/// `keys` (none there), a test ops token and cashier credential. Call inside a runtime.
pub fn demo_state(store: Arc<dyn Store>, keys: &Path, node_id: &str) -> AppState {
    let (launch_keys, _) = croupier_web::launch::LaunchKeys::open(keys);
    let players = Players {
        demo: true,
        launch_keys,
        currency: "EUR".into(),
        max_sessions: 10,
    };
    let operator = Operator {
        cashier: Cashier::new("c".repeat(40), NonZeroU32::new(10).unwrap()),
        abandon: AbandonPolicy::default(),
    };
    AppState::new(
        store,
        node_id.into(),
        "o".repeat(40),
        players,
        croupier_web::lockout::LockoutConfig::default(),
        operator,
    )
}
