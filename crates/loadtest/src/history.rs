//! The client's own record of every acknowledged bet, like the history of a Jepsen test: for
//! each simulated player, the token, the balance at sign-in, each idempotency key and the
//! round(s) the server acknowledged for it, the last known state of each round (stake,
//! payout, settled or open), and the keys whose requests never got a definitive answer.
//! The bank checks compare this with the ledger.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct AckedRound {
    pub game: String,
    /// Total stake as last acknowledged (a blackjack double raises it).
    pub stake: i64,
    pub payout: Option<i64>,
    pub settled: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PlayerHistory {
    pub token: String,
    pub start_balance: i64,
    /// Idempotency key -> every round id acknowledged for it (exactly one when sound).
    pub keys: BTreeMap<String, BTreeSet<String>>,
    pub rounds: BTreeMap<String, AckedRound>,
    /// Keys of bets or actions sent but never answered definitively: they may or may not
    /// have moved money.
    pub unresolved: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
pub struct History {
    pub players: BTreeMap<String, PlayerHistory>,
}

/// The round a bet or action answer acknowledges: (id, round).
pub fn round_of(answer: &Value) -> Option<(String, AckedRound)> {
    let round = &answer["round"];
    let id = round["id"].as_str()?.to_owned();
    Some((
        id,
        AckedRound {
            game: round["game"].as_str().unwrap_or_default().to_owned(),
            stake: round["stake"].as_i64()?,
            payout: round["payout"].as_i64(),
            settled: round["status"] == "settled",
        },
    ))
}

impl History {
    pub fn signed_in(&mut self, player: &str, token: &str, balance: i64) {
        let entry = self.players.entry(player.to_owned()).or_default();
        entry.token = token.to_owned();
        entry.start_balance = balance;
    }

    /// A bet or action under `key` was acknowledged with `answer`.
    pub fn acknowledged(&mut self, player: &str, key: &str, answer: &Value) {
        let Some((id, round)) = round_of(answer) else {
            return;
        };
        let entry = self.players.entry(player.to_owned()).or_default();
        entry.unresolved.remove(key);
        entry
            .keys
            .entry(key.to_owned())
            .or_default()
            .insert(id.clone());
        entry.rounds.insert(id, round);
    }

    /// A round's state as seen later (e.g. when it was resumed), without a key of its own.
    pub fn observed(&mut self, player: &str, answer: &Value) {
        if let (Some((id, round)), Some(entry)) = (round_of(answer), self.players.get_mut(player)) {
            entry.rounds.insert(id, round);
        }
    }

    pub fn unanswered(&mut self, player: &str, key: &str) {
        self.players
            .entry(player.to_owned())
            .or_default()
            .unresolved
            .insert(key.to_owned());
    }

    pub fn acknowledged_bets(&self) -> usize {
        self.players.values().map(|p| p.keys.len()).sum()
    }

    pub fn merge(&mut self, other: History) {
        for (name, theirs) in other.players {
            let mine = self.players.entry(name).or_default();
            if mine.token.is_empty() {
                mine.token = theirs.token;
                mine.start_balance = theirs.start_balance;
            }
            for (key, rounds) in theirs.keys {
                mine.keys.entry(key).or_default().extend(rounds);
            }
            mine.rounds.extend(theirs.rounds);
            mine.unresolved.extend(theirs.unresolved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_resolves_its_key_and_updates_the_round() {
        let mut history = History::default();
        history.signed_in("p1", "tok", 1000);
        history.unanswered("p1", "k1");
        let open = json!({"round": {"id": "r1", "game": "blackjack", "stake": 100, "payout": null, "status": "open"}});
        history.acknowledged("p1", "k1", &open);
        let settled = json!({"round": {"id": "r1", "game": "blackjack", "stake": 200, "payout": 400, "status": "settled"}});
        history.acknowledged("p1", "k1-a0", &settled);
        let p = &history.players["p1"];
        assert!(p.unresolved.is_empty());
        assert_eq!(
            p.rounds["r1"],
            AckedRound {
                game: "blackjack".into(),
                stake: 200,
                payout: Some(400),
                settled: true
            }
        );
        assert_eq!(history.acknowledged_bets(), 2);
    }
}
