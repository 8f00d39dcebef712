//! A node's ops API (`croupier_node::ops_api`): what `/healthz`, `/readyz` and `/ops/drain`
//! answer, and what the control plane, `croupier drain` and the drills send to drain a node,
//! tell its players something, or put a game in maintenance. The node answers these and its
//! clients read them back, so neither side picks keys out of a JSON value.

use serde::{Deserialize, Serialize};

/// `GET /healthz`: the node is alive; which build it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub node: String,
    /// Always `ok`.
    pub status: String,
    /// The build's version (`croupier --version`), what a rolling update compares.
    pub version: String,
}

/// `GET /readyz`: whether the node takes work, and why not (200 or 503).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub draining: bool,
    pub node: String,
    pub ready: bool,
    /// Why it is not ready (`draining`, the store's trouble); `null` when ready.
    pub reason: Option<String>,
}

/// `GET`/`POST /ops/drain`: what still runs on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    pub draining: bool,
    /// Requests in flight, the one asking left out.
    pub in_flight_requests: i64,
    pub node: String,
    /// Rounds of this node still open in the store.
    pub open_rounds: i64,
    pub websockets: i64,
}

impl DrainReport {
    /// Nothing in flight and no open round: the node can be stopped.
    pub fn is_idle(&self) -> bool {
        self.in_flight_requests == 0 && self.open_rounds == 0
    }
}

/// `POST /ops/drain`: start (`true`) or stop draining.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetDrain {
    pub draining: bool,
}

/// Longest notice a node sends its players (bytes); the control plane holds what it tells
/// players (incident messages and updates) to the same.
pub const MAX_NOTICE_BYTES: usize = 2_000;

/// `POST /ops/notices`: a message to every player connected to the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub message: String,
    /// `info` (the default), `warning` or `critical`; checked by the node.
    #[serde(default = "info")]
    pub level: String,
}

fn info() -> String {
    "info".to_owned()
}

/// The answer to a notice: the WebSockets it went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeDelivered {
    pub delivered_to: i64,
}

/// Whether players may play a game: as the lobby lists it and as `/ops/games/{game}` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GameStatus {
    Open,
    Maintenance,
}

impl GameStatus {
    /// The word sent and stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            GameStatus::Open => "open",
            GameStatus::Maintenance => "maintenance",
        }
    }

    /// The status `word` names, if any.
    pub fn parse(word: &str) -> Option<GameStatus> {
        [GameStatus::Open, GameStatus::Maintenance]
            .into_iter()
            .find(|s| s.as_str() == word)
    }
}

/// `PUT /ops/games/{game}`: the game's new status. A word, not a [`GameStatus`], so that an
/// unknown one gets the node's own refusal (`invalid_status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetGameStatus {
    pub status: String,
}

impl From<GameStatus> for SetGameStatus {
    fn from(status: GameStatus) -> Self {
        SetGameStatus {
            status: status.as_str().to_owned(),
        }
    }
}

/// The answer to [`SetGameStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameStatusSet {
    pub game: String,
    pub status: GameStatus,
}

/// `GET /ops/integrity`, what a client decides on: whether every invariant held (200) or not
/// (500). The node answers the ledger's whole report; a reader skips the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct IntegrityVerdict {
    pub ok: bool,
}

/// A player flagged for unusual play (`croupier_node::flags`), with the signal's own figures
/// `D` (the node's JSON detail); the control plane's list names each one's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag<D> {
    /// Unix milliseconds when it was last raised.
    pub at_ms: i64,
    pub detail: D,
    /// The node that raised it, in the control plane's list; absent in a node's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub player: String,
    /// `winning_beyond_rtp`, `idempotency_conflicts` or `many_sessions`.
    pub signal: String,
}

/// `GET /ops/flags`: the flags raised within the last day, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flags<D> {
    pub flags: Vec<Flag<D>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pinned;

    #[test]
    fn health_and_readiness_are_the_bytes_the_node_sent() {
        pinned(
            Health {
                node: "node-1".into(),
                status: "ok".into(),
                version: "0.1.0".into(),
            },
            r#"{"node":"node-1","status":"ok","version":"0.1.0"}"#,
        );
        pinned(
            Readiness {
                draining: true,
                node: "node-1".into(),
                ready: false,
                reason: Some("draining".into()),
            },
            r#"{"draining":true,"node":"node-1","ready":false,"reason":"draining"}"#,
        );
        pinned(
            Readiness {
                draining: false,
                node: "n".into(),
                ready: true,
                reason: None,
            },
            r#"{"draining":false,"node":"n","ready":true,"reason":null}"#,
        );
    }

    #[test]
    fn drain_bodies_are_the_bytes_sent() {
        let report = DrainReport {
            draining: true,
            in_flight_requests: 0,
            node: "node-2".into(),
            open_rounds: 3,
            websockets: 1,
        };
        assert!(!report.is_idle());
        pinned(
            report,
            r#"{"draining":true,"in_flight_requests":0,"node":"node-2","open_rounds":3,"websockets":1}"#,
        );
        pinned(SetDrain { draining: false }, r#"{"draining":false}"#);
    }

    #[test]
    fn notices_and_game_status_are_the_bytes_sent() {
        pinned(
            Notice {
                level: "warning".into(),
                message: "slow".into(),
            },
            r#"{"message":"slow","level":"warning"}"#,
        );
        let plain: Notice = serde_json::from_str(r#"{"message":"hi"}"#).unwrap();
        assert_eq!(plain.level, "info");
        assert!(serde_json::from_str::<Notice>(r#"{"message":"m","x":1}"#).is_err());
        pinned(NoticeDelivered { delivered_to: 4 }, r#"{"delivered_to":4}"#);
        pinned(
            SetGameStatus::from(GameStatus::Maintenance),
            r#"{"status":"maintenance"}"#,
        );
        pinned(
            GameStatusSet {
                game: "dice".into(),
                status: GameStatus::Open,
            },
            r#"{"game":"dice","status":"open"}"#,
        );
        assert_eq!(GameStatus::parse("open"), Some(GameStatus::Open));
        assert_eq!(GameStatus::parse("closed"), None);
    }

    #[test]
    fn flags_are_the_bytes_the_node_sent() {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        struct Burst {
            conflicts: u32,
        }
        let flag = Flag {
            at_ms: 7,
            detail: Burst { conflicts: 20 },
            node: None,
            player: "replayer".into(),
            signal: "idempotency_conflicts".into(),
        };
        pinned(
            Flags {
                flags: vec![flag.clone()],
            },
            r#"{"flags":[{"at_ms":7,"detail":{"conflicts":20},"player":"replayer","signal":"idempotency_conflicts"}]}"#,
        );
        pinned(
            Flag {
                node: Some("node-1".into()),
                ..flag
            },
            r#"{"at_ms":7,"detail":{"conflicts":20},"node":"node-1","player":"replayer","signal":"idempotency_conflicts"}"#,
        );
    }

    #[test]
    fn an_integrity_verdict_reads_the_whole_report() {
        let verdict: IntegrityVerdict =
            serde_json::from_str(r#"{"ok":false,"checks":[{"name":"sum_zero","ok":false}]}"#)
                .unwrap();
        assert!(!verdict.ok);
    }
}
