//! The client's own record of every acknowledged bet, like the history of a Jepsen test: for
//! each simulated player, the token, the balance at sign-in, each idempotency key and the
//! round(s) the server acknowledged for it, the last known state of each round (stake,
//! payout, settled or open), and the keys whose requests never got a definitive answer.
//! The bank checks compare this with the ledger.

use std::collections::{BTreeMap, BTreeSet};

use croupier_web::wire::player::RoundSummary;

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

impl AckedRound {
    /// The round as an answer showed it.
    pub fn of(round: &RoundSummary) -> AckedRound {
        AckedRound {
            game: round.game.clone(),
            stake: round.stake,
            payout: round.payout,
            settled: round.is_settled(),
        }
    }
}

impl History {
    pub fn signed_in(&mut self, player: &str, token: &str, balance: i64) {
        let entry = self.players.entry(player.to_owned()).or_default();
        entry.token = token.to_owned();
        entry.start_balance = balance;
    }

    /// A bet or action under `key` was acknowledged with `round`.
    pub fn acknowledged(&mut self, player: &str, key: &str, round: &RoundSummary) {
        let (id, round) = (round.id.clone(), AckedRound::of(round));
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
    pub fn observed(&mut self, player: &str, round: &RoundSummary) {
        if let Some(entry) = self.players.get_mut(player) {
            entry.rounds.insert(round.id.clone(), AckedRound::of(round));
        }
    }

    pub fn unanswered(&mut self, player: &str, key: &str) {
        self.players
            .entry(player.to_owned())
            .or_default()
            .unresolved
            .insert(key.to_owned());
    }

    /// Keyed requests answered: a round's bet, and each of a blackjack round's steps.
    pub fn acknowledged_requests(&self) -> usize {
        self.players.values().map(|p| p.keys.len()).sum()
    }

    /// Rounds some acknowledged request answered with (a replay's round counted once).
    pub fn acknowledged_rounds(&self) -> usize {
        self.players
            .values()
            .map(|p| p.keys.values().flatten().collect::<BTreeSet<_>>().len())
            .sum()
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

    /// A blackjack round as an answer shows it.
    fn hand(stake: i64, payout: Option<i64>, status: &str) -> RoundSummary {
        RoundSummary {
            id: "r1".into(),
            game: "blackjack".into(),
            status: status.into(),
            stake,
            payout,
            outcome: None,
        }
    }

    #[test]
    fn an_answer_resolves_its_key_and_updates_the_round() {
        let mut history = History::default();
        history.signed_in("p1", "tok", 1000);
        history.unanswered("p1", "k1");
        history.acknowledged("p1", "k1", &hand(100, None, "open"));
        history.acknowledged("p1", "k1-a0", &hand(200, Some(400), "settled"));
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
        assert_eq!(history.acknowledged_requests(), 2);
        assert_eq!(history.acknowledged_rounds(), 1);
    }
}
