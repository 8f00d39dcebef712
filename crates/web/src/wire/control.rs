//! The control plane's operator API (`croupier_control::api`), the bodies `croupier ctl` and
//! `croupier maintenance` send and read: incidents opened and updated, silences, a node's
//! state on every gateway, rolling updates and maintenance windows, and the statuses an
//! incident and a rolling update move through.
//!
//! A request's words the control plane checks itself (a severity, an incident status, a
//! node state) are `String`s here, so an unknown word gets its own named refusal rather than
//! a parse error.

use serde::{Deserialize, Serialize};

use super::admin::Node;

/// `GET /healthz` of a control plane: its monitor loop runs; whether it leads (of several
/// control planes only the lease holder acts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub leader: bool,
    /// Since when it leads; `null` for a follower.
    pub leader_since_ms: Option<i64>,
    /// `leader` or `follower`.
    pub role: String,
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz` of a control plane: its records answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub ready: bool,
}

/// Longest title of an incident or a maintenance window (bytes): a title goes into mail
/// subjects and into the maintenance announcement players get, which must stay a notice
/// (`ops::MAX_NOTICE_BYTES`).
pub const MAX_TITLE_BYTES: usize = 200;

/// `POST /api/v1/incidents`: an incident opened by hand (players are told at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIncident {
    pub title: String,
    /// A player-facing component: wallet, dice, roulette, slot, blackjack, lobby or games.
    pub component: String,
    /// `critical`, `major` or `minor`.
    pub severity: String,
    pub message: String,
}

/// Where an incident is, in order; `Resolved` closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 4] = [
        IncidentStatus::Investigating,
        IncidentStatus::Identified,
        IncidentStatus::Monitoring,
        IncidentStatus::Resolved,
    ];

    /// The word sent and stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }

    /// The status `word` names, if any.
    pub fn parse(word: &str) -> Option<IncidentStatus> {
        IncidentStatus::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

/// `POST /api/v1/incidents/{id}/updates`: a line on the incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentUpdate {
    /// An [`IncidentStatus`] word.
    pub status: String,
    pub message: String,
    /// The expected fix, Unix milliseconds (`null`: unchanged).
    pub eta_ms: Option<i64>,
}

/// The answer to an [`IncidentUpdate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentUpdated {
    pub id: i64,
    pub status: IncidentStatus,
}

/// The answer to whatever creates a record: an incident, a silence, a rolling update, a
/// drill report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub id: i64,
}

/// `POST /api/v1/silences`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// An alert key (`rule/target`), a key prefix ending in `*`, or `component:<name>`.
    pub matcher: String,
    pub comment: String,
    /// How long it lasts, from now (at most 30 days).
    pub duration_s: i64,
}

/// `PUT /api/v1/nodes/{name}`: the node's state on every gateway, a
/// [`NodeState`](super::admin::NodeState) word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStateChange {
    pub state: String,
}

/// One gateway's view of the nodes in `GET /api/v1/nodes`: its nodes, or why it did not say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayNodes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub gateway: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<Node>>,
}

/// `GET /api/v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateways {
    pub gateways: Vec<GatewayNodes>,
}

/// `POST /api/v1/rollouts`: a rolling update of every node to `binary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    /// The new build's path (on the nodes' machine).
    pub binary: String,
    pub batch_size: Option<usize>,
    pub drain_deadline_s: Option<u64>,
    /// Rehearse on a staging node started from the newest backup first.
    pub staging: Option<bool>,
    /// Nodes that must stay eligible on every gateway while a batch is out (default 1).
    pub min_eligible: Option<usize>,
}

/// Where a rolling update is: only `Running` blocks the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    Running,
    Succeeded,
    /// A node failed and went back to its previous build (an incident says which).
    RolledBack,
    Failed,
}

impl RolloutStatus {
    /// The word stored and sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::Running => "running",
            RolloutStatus::Succeeded => "succeeded",
            RolloutStatus::RolledBack => "rolled_back",
            RolloutStatus::Failed => "failed",
        }
    }

    /// The status a stored word names, if any.
    pub fn parse(word: &str) -> Option<RolloutStatus> {
        use RolloutStatus::{Failed, RolledBack, Running, Succeeded};
        [Running, Succeeded, RolledBack, Failed]
            .into_iter()
            .find(|s| s.as_str() == word)
    }
}

/// One step of a rolling update on one node (`drain`, `update`, `ready`, `smoke_test`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStep {
    pub message: String,
    pub node: String,
    pub ok: bool,
    pub step: String,
    pub ts_ms: i64,
}

/// A rolling update with its steps: `GET /api/v1/rollouts/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub batch_size: i64,
    pub binary: String,
    pub created_by: String,
    pub finished_ms: Option<i64>,
    pub id: i64,
    /// The incident a failed rolling update opened.
    pub incident_id: Option<i64>,
    pub started_ms: i64,
    pub status: RolloutStatus,
    pub steps: Vec<RolloutStep>,
}

/// `GET /api/v1/rollouts`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollouts {
    pub rollouts: Vec<Rollout>,
}

/// `POST /api/v1/maintenance`: a window, one-off (`starts_ms`) or recurring (`cron`, in
/// `timezone`, UTC by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWindow {
    pub title: String,
    /// `component:<name>` or `node:<name>`.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub duration_s: i64,
    /// Lead times in seconds at which players are told; default a day and 15 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce_s: Option<Vec<i64>>,
}

/// The answer to a [`NewWindow`]: its id and when it first starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCreated {
    pub id: i64,
    pub next_start_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::super::admin::NodeState;
    use super::*;
    use crate::wire::pinned;

    #[test]
    fn health_is_the_bytes_the_control_plane_sent() {
        pinned(
            Health {
                leader: true,
                leader_since_ms: Some(12),
                role: "leader".into(),
                status: "ok".into(),
            },
            r#"{"leader":true,"leader_since_ms":12,"role":"leader","status":"ok"}"#,
        );
        pinned(Ready { ready: true }, r#"{"ready":true}"#);
    }

    #[test]
    fn incident_bodies_are_the_bytes_ctl_and_the_api_sent() {
        pinned(
            NewIncident {
                component: "dice".into(),
                message: "rolls fail".into(),
                severity: "major".into(),
                title: "Dice down".into(),
            },
            r#"{"title":"Dice down","component":"dice","severity":"major","message":"rolls fail"}"#,
        );
        pinned(
            IncidentUpdate {
                eta_ms: None,
                message: "found it".into(),
                status: "identified".into(),
            },
            r#"{"status":"identified","message":"found it","eta_ms":null}"#,
        );
        pinned(
            IncidentUpdated {
                id: 3,
                status: IncidentStatus::Resolved,
            },
            r#"{"id":3,"status":"resolved"}"#,
        );
        pinned(Created { id: 9 }, r#"{"id":9}"#);
        for status in IncidentStatus::ALL {
            assert_eq!(IncidentStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{}\"", status.as_str())
            );
        }
    }

    #[test]
    fn silences_and_node_states_are_the_bytes_sent() {
        pinned(
            NewSilence {
                comment: "known".into(),
                duration_s: 3_600,
                matcher: "component:dice".into(),
            },
            r#"{"matcher":"component:dice","comment":"known","duration_s":3600}"#,
        );
        pinned(
            NodeStateChange {
                state: "draining".into(),
            },
            r#"{"state":"draining"}"#,
        );
        let node = Node {
            answered: 0,
            eligible: true,
            ejected: false,
            healthy: true,
            name: "node-1".into(),
            outstanding_requests: 0,
            state: NodeState::Active,
            url: "http://n1".into(),
            websockets: 0,
        };
        pinned(
            Gateways {
                gateways: vec![
                    GatewayNodes {
                        error: None,
                        gateway: "gateway".into(),
                        nodes: Some(vec![node]),
                    },
                    GatewayNodes {
                        error: Some("gateway-2: timed out".into()),
                        gateway: "gateway-2".into(),
                        nodes: None,
                    },
                ],
            },
            r#"{"gateways":[{"gateway":"gateway","nodes":[{"answered":0,"eligible":true,"ejected":false,"healthy":true,"name":"node-1","outstanding_requests":0,"state":"active","url":"http://n1","websockets":0}]},{"error":"gateway-2: timed out","gateway":"gateway-2"}]}"#,
        );
    }

    #[test]
    fn rollout_bodies_are_the_bytes_sent() {
        pinned(
            NewRollout {
                batch_size: Some(1),
                binary: "/opt/croupier".into(),
                drain_deadline_s: Some(30),
                min_eligible: Some(1),
                staging: Some(false),
            },
            r#"{"binary":"/opt/croupier","batch_size":1,"drain_deadline_s":30,"staging":false,"min_eligible":1}"#,
        );
        let rollout = Rollout {
            batch_size: 1,
            binary: "/opt/croupier".into(),
            created_by: "ops".into(),
            finished_ms: None,
            id: 2,
            incident_id: None,
            started_ms: 1_000,
            status: RolloutStatus::RolledBack,
            steps: vec![RolloutStep {
                message: "drained".into(),
                node: "node-1".into(),
                ok: true,
                step: "drain".into(),
                ts_ms: 1_001,
            }],
        };
        pinned(
            Rollouts {
                rollouts: vec![rollout],
            },
            r#"{"rollouts":[{"batch_size":1,"binary":"/opt/croupier","created_by":"ops","finished_ms":null,"id":2,"incident_id":null,"started_ms":1000,"status":"rolled_back","steps":[{"message":"drained","node":"node-1","ok":true,"step":"drain","ts_ms":1001}]}]}"#,
        );
        assert_eq!(
            RolloutStatus::parse("rolled_back"),
            Some(RolloutStatus::RolledBack)
        );
    }

    #[test]
    fn window_bodies_are_the_bytes_sent() {
        pinned(
            NewWindow {
                announce_s: Some(vec![86_400, 900]),
                cron: Some("0 3 * * SUN".into()),
                duration_s: 1_800,
                scope: "component:dice".into(),
                starts_ms: None,
                timezone: Some("UTC".into()),
                title: "Dice upgrade".into(),
            },
            r#"{"title":"Dice upgrade","scope":"component:dice","cron":"0 3 * * SUN","timezone":"UTC","duration_s":1800,"announce_s":[86400,900]}"#,
        );
        pinned(
            NewWindow {
                announce_s: Some(vec![]),
                cron: None,
                duration_s: 60,
                scope: "node:node-1".into(),
                starts_ms: Some(5),
                timezone: None,
                title: "t".into(),
            },
            r#"{"title":"t","scope":"node:node-1","starts_ms":5,"duration_s":60,"announce_s":[]}"#,
        );
        pinned(
            WindowCreated {
                id: 1,
                next_start_ms: Some(5),
            },
            r#"{"id":1,"next_start_ms":5}"#,
        );
    }
}
