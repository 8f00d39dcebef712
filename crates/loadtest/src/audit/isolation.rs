//! One player against another: another's round is not found, cannot be acted on, is not
//! listed, and the owner's balance does not move.

use serde_json::json;

use super::{Auditor, Status};
use crate::http::Call;

impl Auditor {
    pub(super) async fn isolation(&mut self, alice: &str, mallory: &str) {
        let rounds = format!("{}/api/v1/rounds", self.targets.gateway);
        // Alice plays blackjack until she has a round still open (a natural settles at once).
        let mut round = None;
        for i in 0..20 {
            let call = Call::post(&rounds, &json!({"game": "blackjack", "stake": 10})).token(alice);
            let key = format!("audit-bj-{i}");
            if let Ok(a) = self.send(call.key(&key)).await
                && a.is_success()
            {
                let open = a.json()["round"]["status"] == "open";
                round = a.json()["round"]["id"].as_str().map(str::to_owned);
                if open {
                    break;
                }
            }
        }
        let Some(round) = round else {
            self.note(
                "player_isolation",
                &rounds,
                Status::Fail,
                "could not play a round to test with",
            );
            return;
        };
        let alice_before = self.balance(alice).await;
        let mut leaks = Vec::new();
        for path in [
            format!("{rounds}/{round}"),
            format!("{rounds}/{round}/verify"),
        ] {
            if let Ok(a) = self.send(Call::get(&path).token(mallory)).await
                && a.status != 404
            {
                leaks.push(format!(
                    "GET {path} as another player answered {}",
                    a.status
                ));
            }
        }
        for action in ["double", "hit", "stand"] {
            let call = Call::post(
                format!("{rounds}/{round}/actions"),
                &json!({"action": action}),
            )
            .token(mallory);
            let key = format!("audit-steal-{action}");
            if let Ok(a) = self.send(call.key(&key)).await
                && a.status != 404
            {
                leaks.push(format!(
                    "{action} on another player's round answered {}",
                    a.status
                ));
            }
        }
        let spoof = json!({"game": "dice", "stake": 10, "bet": {"target": 5000, "direction": "over"}, "player": "someone-else"});
        if let Ok(a) = self
            .send(
                Call::post(&rounds, &spoof)
                    .token(mallory)
                    .key("audit-spoof"),
            )
            .await
            && a.is_success()
        {
            leaks.push("a bet naming another player in its body was accepted".into());
        }
        if let Ok(a) = self
            .send(Call::get(format!("{rounds}?limit=200")).token(mallory))
            .await
            && a.json().to_string().contains(&round)
        {
            leaks.push("another player's round is listed".into());
        }
        let alice_after = self.balance(alice).await;
        if alice_before.is_none() || alice_before != alice_after {
            leaks.push(format!(
                "the owner's balance moved from {alice_before:?} to {alice_after:?}"
            ));
        }
        if leaks.is_empty() {
            self.note("player_isolation", &rounds, Status::Pass, "another player's round is not found, cannot be acted on, and the owner's balance did not move");
        } else {
            self.note("player_isolation", &rounds, Status::Fail, leaks.join("; "));
        }
        // Leave no round open.
        for i in 0..12 {
            let call = Call::post(
                format!("{rounds}/{round}/actions"),
                &json!({"action": "stand"}),
            )
            .token(alice);
            let key = format!("audit-finish-{i}");
            match self.send(call.key(&key)).await {
                Ok(a) if a.is_success() && a.json()["round"]["status"] == "open" => continue,
                _ => break,
            }
        }
    }
}
