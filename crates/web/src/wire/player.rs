//! The player API (`croupier_node::player_api`, `croupier_node::sessions`), the bodies the
//! node takes and answers and the load generator, the control plane's synthetic checks and
//! the tests send and read: a sign-in and the session it opens, a round asked for, a
//! blackjack action, the lobby, and a round's answer.
//!
//! A bet and a round's outcome belong to their game (`croupier_games`: typed, with their
//! stored JSON pinned there), so the types that carry them take them as a parameter: the node
//! fills in the game's types, a client the ones it needs ([`RoundSummary`] reads what every
//! client reads of a round and skips the rest).

use serde::{Deserialize, Serialize};

use crate::launch::Limits;

/// `POST /api/v1/sessions`: a launch token signed by the operator, or (demo mode only) a
/// player name. The node refuses both or neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub player: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_token: Option<String>,
}

impl SignIn {
    /// A demo-mode sign-in by name.
    pub fn demo(player: impl Into<String>) -> SignIn {
        SignIn {
            launch_token: None,
            player: Some(player.into()),
        }
    }

    /// A sign-in with the operator's launch token.
    pub fn launch(token: impl Into<String>) -> SignIn {
        SignIn {
            launch_token: Some(token.into()),
            player: None,
        }
    }
}

/// Who signed in (the result of the sign-in's store operation, kept with a launch token's
/// idempotency record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    pub player: String,
    /// Whether this sign-in created the player.
    pub created: bool,
    pub balance: i64,
    pub currency: String,
    pub expires_ms: i64,
}

/// The answer to a sign-in (201): who signed in, and the bearer token to use from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionCreated {
    #[serde(flatten)]
    pub signed_in: SignedIn,
    pub token: String,
    /// Whether this is a demo casino (play money).
    pub demo: bool,
    /// The operator's limits from the launch token, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// `POST /api/v1/rounds`: a round of `game` for `stake`, with the game's bet `B` (slot and
/// blackjack take none; `null` and no `bet` are the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Play<B> {
    pub game: String,
    pub stake: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bet: Option<B>,
}

/// `POST /api/v1/rounds/{id}/actions`: a blackjack action (`hit`, `stand`, `double`), a word
/// the node reads with the game's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Act {
    pub action: String,
}

/// A round just played or advanced, and the player's balance after it; `R` is the round as
/// the node shows it, or a client's [`RoundSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Played<R> {
    pub round: R,
    pub balance: i64,
}

/// What every client reads of a round (`GET /api/v1/rounds/{id}`, the `round` of a
/// [`Played`]); the node's answer has more (the bet, fairness data), which this skips.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoundSummary {
    pub id: String,
    pub game: String,
    /// `open` while a blackjack hand waits for the player, then `settled`.
    pub status: String,
    /// The total stake (a blackjack double raises it).
    pub stake: i64,
    pub payout: Option<i64>,
    /// The player's total of a blackjack hand; nothing for the other games.
    #[serde(default)]
    pub outcome: Option<HandTotal>,
}

impl RoundSummary {
    pub fn is_settled(&self) -> bool {
        self.status == "settled"
    }

    /// A blackjack hand still waiting for the player.
    pub fn is_open(&self) -> bool {
        self.status == "open"
    }
}

/// The part of a round's outcome a blackjack player decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct HandTotal {
    #[serde(default)]
    pub player_total: Option<u32>,
}

/// `GET /api/v1/lobby`: the games with their status on the node that answered (`G`: the
/// node's game with its catalogue entry, or whatever a client reads of one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lobby<G> {
    pub games: Vec<G>,
    pub node: String,
    /// Demo mode: play money, sign-in by name.
    pub demo: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pinned;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Dice {
        direction: String,
        target: u32,
    }

    #[test]
    fn sign_ins_are_the_bytes_clients_sent() {
        pinned(SignIn::demo("alice"), r#"{"player":"alice"}"#);
        pinned(SignIn::launch("e.y.j"), r#"{"launch_token":"e.y.j"}"#);
        assert!(serde_json::from_str::<SignIn>(r#"{"player":"a","pin":1}"#).is_err());
        pinned(
            SessionCreated {
                signed_in: SignedIn {
                    player: "alice".into(),
                    created: true,
                    balance: 100_000,
                    currency: "EUR".into(),
                    expires_ms: 5,
                },
                token: "t0k".into(),
                demo: true,
                limits: Some(Limits {
                    max_stake: Some(500),
                }),
            },
            r#"{"player":"alice","created":true,"balance":100000,"currency":"EUR","expires_ms":5,"token":"t0k","demo":true,"limits":{"max_stake":500}}"#,
        );
    }

    #[test]
    fn rounds_asked_for_are_the_bytes_clients_sent() {
        pinned(
            Play {
                bet: Some(Dice {
                    direction: "over".into(),
                    target: 5000,
                }),
                game: "dice".into(),
                stake: 10,
            },
            r#"{"game":"dice","stake":10,"bet":{"direction":"over","target":5000}}"#,
        );
        pinned(
            Play::<Dice> {
                bet: None,
                game: "slot".into(),
                stake: 10,
            },
            r#"{"game":"slot","stake":10}"#,
        );
        let null: Play<Dice> =
            serde_json::from_str(r#"{"bet":null,"game":"slot","stake":1}"#).unwrap();
        assert_eq!(null.bet, None);
        pinned(
            Act {
                action: "stand".into(),
            },
            r#"{"action":"stand"}"#,
        );
    }

    #[test]
    fn a_client_reads_the_round_the_node_answered() {
        let answer = r#"{"round":{"id":"r1","game":"blackjack","status":"open","stake":200,"payout":null,
            "bet":null,"outcome":{"actions":[],"allowed_actions":["hit","stand"],"dealer":[],"dealer_total":null,
            "doubled":false,"player":[],"player_total":13,"result":null},"nonce":4,"created_ms":1,"updated_ms":2},
            "balance":99800}"#;
        let played: Played<RoundSummary> = serde_json::from_str(answer).unwrap();
        assert_eq!(played.balance, 99_800);
        assert!(!played.round.is_settled());
        assert_eq!(played.round.outcome.unwrap().player_total, Some(13));
        let dice = r#"{"id":"r2","game":"dice","status":"settled","stake":10,"payout":0,"outcome":{"roll":1234,"win":false}}"#;
        let round: RoundSummary = serde_json::from_str(dice).unwrap();
        assert!(round.is_settled());
        assert_eq!(round.outcome.unwrap().player_total, None);
        let lobby: Lobby<serde::de::IgnoredAny> = serde_json::from_str(
            r#"{"games":[{"id":"dice","status":"open"}],"node":"node-1","demo":true}"#,
        )
        .unwrap();
        assert_eq!(lobby.games.len(), 1);
    }
}
