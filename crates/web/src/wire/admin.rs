//! A gateway's admin API (`croupier_gateway::admin`): its health, the nodes as it sees them,
//! a node's state as an operator sets it, and the addresses it blocks. The gateway answers
//! these; the control plane (dashboard, rolling updates, blocks), the drills and the stack
//! helpers of the tests read them back.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::lockout;

/// `GET /healthz` of a gateway: alive, and which process (a graceful restart changes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub pid: u32,
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz` of a gateway: whether at least one node can serve (200 or 503).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A node's state as operators set it on a gateway: only an `active` node gets new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Active,
    /// No new work; requests in flight finish, WebSockets get 1012.
    Draining,
    Maintenance,
}

impl NodeState {
    pub const ALL: [NodeState; 3] = [
        NodeState::Active,
        NodeState::Draining,
        NodeState::Maintenance,
    ];

    /// The word sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Maintenance => "maintenance",
        }
    }

    /// The state `word` names, if any.
    pub fn parse(word: &str) -> Option<NodeState> {
        NodeState::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

/// One node on a gateway's `/admin/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Player requests it answered through this gateway (absent on older gateways).
    #[serde(default)]
    pub answered: u64,
    /// Active, healthy and not ejected: it gets new work.
    pub eligible: bool,
    pub ejected: bool,
    pub healthy: bool,
    pub name: String,
    pub outstanding_requests: i64,
    pub state: NodeState,
    pub url: String,
    pub websockets: i64,
}

/// `GET /admin/nodes`, and the answer to `PUT /admin/nodes/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nodes {
    pub nodes: Vec<Node>,
}

/// `PUT /admin/nodes/{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetNodeState {
    pub state: NodeState,
}

/// An address blocked on a gateway's port or on the control plane (`crate::lockout`,
/// `crate::scanning`); the control plane's list names the gateway of each of theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub address: IpAddr,
    /// Blocks of this address so far (the length doubles with each).
    pub blocks: u32,
    /// The gateway that blocks it, in the control plane's list; absent in a gateway's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub seconds_left: u64,
    /// Which surface counted it (`admin`, `players`, `control`, …).
    pub surface: String,
    /// Unix milliseconds when it ends.
    pub until_ms: i64,
}

impl From<&lockout::Block> for Block {
    fn from(block: &lockout::Block) -> Self {
        Block {
            address: block.address,
            blocks: block.blocks,
            gateway: None,
            seconds_left: block.seconds_left,
            surface: block.surface.to_owned(),
            until_ms: block.until_ms,
        }
    }
}

/// `GET /admin/blocks` (and the control plane's `GET /api/v1/blocks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocks {
    pub blocks: Vec<Block>,
}

/// The answer to `DELETE /admin/blocks/{address}` (and the control plane's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifted {
    pub lifted: IpAddr,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pinned;

    #[test]
    fn health_and_readiness_are_the_bytes_the_gateway_sent() {
        pinned(
            Health {
                pid: 42,
                status: "ok".into(),
            },
            r#"{"pid":42,"status":"ok"}"#,
        );
        pinned(
            Readiness {
                ready: true,
                reason: None,
            },
            r#"{"ready":true}"#,
        );
        pinned(
            Readiness {
                ready: false,
                reason: Some("no node can serve".into()),
            },
            r#"{"ready":false,"reason":"no node can serve"}"#,
        );
    }

    #[test]
    fn the_nodes_are_the_bytes_the_gateway_sent() {
        let nodes = Nodes {
            nodes: vec![Node {
                answered: 7,
                eligible: false,
                ejected: false,
                healthy: true,
                name: "node-1".into(),
                outstanding_requests: 2,
                state: NodeState::Draining,
                url: "http://127.0.0.1:9001".into(),
                websockets: 1,
            }],
        };
        pinned(
            nodes,
            r#"{"nodes":[{"answered":7,"eligible":false,"ejected":false,"healthy":true,"name":"node-1","outstanding_requests":2,"state":"draining","url":"http://127.0.0.1:9001","websockets":1}]}"#,
        );
        pinned(
            SetNodeState {
                state: NodeState::Maintenance,
            },
            r#"{"state":"maintenance"}"#,
        );
        assert!(serde_json::from_str::<SetNodeState>(r#"{"state":"gone"}"#).is_err());
        assert_eq!(NodeState::parse("active"), Some(NodeState::Active));
        let old: Node = serde_json::from_str(
            r#"{"eligible":true,"ejected":false,"healthy":true,"name":"a","outstanding_requests":0,"state":"active","url":"u","websockets":0}"#,
        )
        .unwrap();
        assert_eq!(old.answered, 0);
    }

    #[test]
    fn blocks_are_the_bytes_sent() {
        let block = Block {
            address: "10.0.0.9".parse().unwrap(),
            blocks: 2,
            gateway: None,
            seconds_left: 59,
            surface: "admin".into(),
            until_ms: 1_700_000_000_000,
        };
        pinned(
            Blocks {
                blocks: vec![block.clone()],
            },
            r#"{"blocks":[{"address":"10.0.0.9","blocks":2,"seconds_left":59,"surface":"admin","until_ms":1700000000000}]}"#,
        );
        pinned(
            Block {
                gateway: Some("gateway-1".into()),
                ..block
            },
            r#"{"address":"10.0.0.9","blocks":2,"gateway":"gateway-1","seconds_left":59,"surface":"admin","until_ms":1700000000000}"#,
        );
        pinned(
            Lifted {
                lifted: "::1".parse().unwrap(),
            },
            r#"{"lifted":"::1"}"#,
        );
    }
}
