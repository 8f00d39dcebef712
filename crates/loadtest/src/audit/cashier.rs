//! The operator's cashier API is closed to players (issue 16): the players' port does not
//! forward `/cashier/v1/` at all, and on every node a deposit without a credential, with a
//! player's session token or with the ops token is refused and moves no money (the probe
//! player tries to fund itself; its balance is read before and after).

use serde_json::json;

use super::{Auditor, Status};
use crate::http::Call;

/// Cashier routes probed on the players' port.
const CASHIER_PATHS: [&str; 3] = [
    "/cashier/v1/deposits",
    "/cashier/v1/journal",
    "/cashier/v1/transactions/audit",
];

impl Auditor {
    /// `player`/`token`: a probe player and its session.
    pub(super) async fn cashier_closed(&mut self, player: &str, token: &str, stamp: &str) {
        self.cashier_not_on_players_port(player, token).await;
        let before = self.balance(token).await;
        let deposit = json!({
            "transaction_id": format!("audit-{stamp}"),
            "player": player,
            "amount": 100_000,
        });
        let ops_token = self.targets.ops_token.clone();
        for node in self.targets.nodes.clone() {
            let url = format!("{node}/cashier/v1/deposits");
            let mut attempts = vec![("no credential", None), ("a player's token", Some(token))];
            attempts.extend(ops_token.as_deref().map(|t| ("the ops token", Some(t))));
            let mut let_in = Vec::new();
            for (what, credential) in attempts {
                let mut call = Call::post(&url, &deposit);
                call.token = credential;
                match self.send(call).await {
                    Ok(a) if a.is_success() => let_in.push(format!("{what} got {}", a.status)),
                    Ok(a) if [401, 429].contains(&a.status) => {}
                    Ok(a) => let_in.push(format!("{what} got {} instead of 401", a.status)),
                    Err(e) => let_in.push(format!("{what}: {e}")),
                }
            }
            let (status, detail) = if let_in.is_empty() {
                (Status::Pass, "refused (401) without a credential, with a player's token and with the ops token".to_owned())
            } else {
                (Status::Fail, let_in.join("; "))
            };
            self.note("cashier_needs_credential", &url, status, detail);
        }
        let after = self.balance(token).await;
        let (status, detail) = match (before, after) {
            (Some(b), Some(a)) if a == b => (Status::Pass, format!("balance {b} before and after")),
            (b, a) => (
                Status::Fail,
                format!("the probe player's balance went from {b:?} to {a:?}"),
            ),
        };
        self.note("cashier_moved_nothing", player, status, detail);
    }

    async fn cashier_not_on_players_port(&mut self, player: &str, token: &str) {
        let gateway = self.targets.gateway.clone();
        let mut forwarded = Vec::new();
        for path in CASHIER_PATHS {
            let url = format!("{gateway}{path}");
            let body = json!({"transaction_id": "audit", "player": player, "amount": 1});
            let call = Call::post(&url, &body).token(token);
            match self.send(call).await {
                Ok(a) if a.status == 404 && a.json()["error"] == "not_found" => {}
                Ok(a) => forwarded.push(format!("{path} answered {}", a.status)),
                Err(e) => forwarded.push(format!("{path}: {e}")),
            }
        }
        let (status, detail) = if forwarded.is_empty() {
            (
                Status::Pass,
                "the cashier API is not forwarded to players (404)".to_owned(),
            )
        } else {
            (
                Status::Fail,
                format!(
                    "cashier routes reachable on the players' port: {}",
                    forwarded.join("; ")
                ),
            )
        };
        self.note("cashier_not_on_players_port", &gateway, status, detail);
    }
}
