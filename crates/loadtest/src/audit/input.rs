//! Limits and bad input: the per-player rate limit answers 429 under a burst; oversized and
//! malformed requests get a 4xx with a JSON error and move no money.

use serde_json::{Value, json};

use super::{Auditor, Status};
use crate::http::Call;

impl Auditor {
    pub(super) async fn rate_limit(&mut self, token: &str) {
        let url = format!("{}/api/v1/lobby", self.targets.gateway);
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = self.targets.burst.div_ceil(32);
        for _ in 0..32 {
            let (http, url, token) = (self.http.clone(), url.clone(), token.to_owned());
            tasks.spawn(async move {
                let mut limited = 0usize;
                for _ in 0..per_task {
                    if let Ok(a) = http.send(0, Call::get(&url).token(&token)).await
                        && a.status == 429
                    {
                        limited += 1;
                    }
                }
                limited
            });
        }
        let limited: usize = tasks.join_all().await.into_iter().sum();
        let sent = per_task * 32;
        if limited > 0 {
            self.note(
                "rate_limit_enforced",
                &url,
                Status::Pass,
                format!("{limited} of {sent} requests from one player in a burst got 429"),
            );
        } else {
            self.note(
                "rate_limit_enforced",
                &url,
                Status::Fail,
                format!("none of {sent} requests from one player in a burst was limited"),
            );
        }
    }

    async fn expect_refusal(
        &mut self,
        check: &'static str,
        what: &str,
        call: Call<'_>,
        statuses: &[u16],
    ) {
        let url = call.url.clone();
        match self.send(call).await {
            Ok(a)
                if statuses.contains(&a.status)
                    && a.json()["error"].is_string()
                    && a.json()["message"].is_string() =>
            {
                self.note(
                    check,
                    &url,
                    Status::Pass,
                    format!("{what}: {} {}", a.status, a.json()["error"]),
                )
            }
            Ok(a) => self.note(
                check,
                &url,
                Status::Fail,
                format!(
                    "{what}: expected {statuses:?} with a JSON error, got {} {}",
                    a.status,
                    a.json()
                ),
            ),
            Err(e) => self.note(check, &url, Status::Fail, format!("{what}: {e}")),
        }
    }

    pub(super) async fn bad_input(&mut self, token: &str) {
        let before = self.balance(token).await;
        let rounds = format!("{}/api/v1/rounds", self.targets.gateway);
        let big = vec![b'x'; 100 * 1024];
        let mut call = Call::post(&rounds, &Value::Null)
            .token(token)
            .key("audit-big");
        call.body = Some(big.clone());
        self.expect_refusal(
            "oversized_rejected",
            "100 KiB body through the gateway",
            call,
            &[413],
        )
        .await;
        let mut call = Call::get(format!("{}/api/v1/lobby", self.targets.gateway)).token(token);
        call.extra_headers
            .push(("x-padding", "y".repeat(20 * 1024)));
        self.expect_refusal(
            "oversized_rejected",
            "20 KiB of headers through the gateway",
            call,
            &[431],
        )
        .await;
        for node in self.targets.nodes.clone() {
            let mut call = Call::post(format!("{node}/api/v1/rounds"), &Value::Null)
                .token(token)
                .key("audit-big-node");
            call.body = Some(big[..20 * 1024].to_vec());
            self.expect_refusal(
                "oversized_rejected",
                "20 KiB body straight to a node",
                call,
                &[413],
            )
            .await;
        }
        let dice =
            json!({"game": "dice", "stake": 10, "bet": {"target": 5000, "direction": "over"}});
        let mut call = Call::post(&rounds, &Value::Null)
            .token(token)
            .key("audit-bad-json");
        call.body = Some(b"{\"game\": \"dice\", \"stake\": ".to_vec());
        self.expect_refusal("malformed_rejected", "truncated JSON", call, &[400])
            .await;
        let call = Call::post(&rounds, &json!({"game": "dice", "stake": "ten"}))
            .token(token)
            .key("audit-type");
        self.expect_refusal(
            "malformed_rejected",
            "a stake that is not a number",
            call,
            &[422],
        )
        .await;
        let call = Call::post(
            &rounds,
            &json!({"game": "dice", "stake": -10, "bet": dice["bet"]}),
        )
        .token(token)
        .key("audit-neg");
        self.expect_refusal("malformed_rejected", "a negative stake", call, &[422])
            .await;
        let call = Call::post(&rounds, &dice).token(token);
        self.expect_refusal(
            "malformed_rejected",
            "a bet without an Idempotency-Key",
            call,
            &[400],
        )
        .await;
        let call = Call::post(&rounds, &dice)
            .token("not-a-token")
            .key("audit-auth");
        self.expect_refusal(
            "malformed_rejected",
            "a bet with an unknown token",
            call,
            &[401],
        )
        .await;
        let after = self.balance(token).await;
        if before.is_some() && before == after {
            self.note(
                "malformed_rejected",
                &rounds,
                Status::Pass,
                format!("the balance is unchanged ({})", after.unwrap_or(0)),
            );
        } else {
            self.note(
                "malformed_rejected",
                &rounds,
                Status::Fail,
                format!("the balance moved from {before:?} to {after:?}"),
            );
        }
    }
}
