//! The loopback API of `croupier up`'s supervisor (`croupier::supervisor`): the children it
//! runs, and a child restarted on another build, which the control plane's rolling update
//! asks for and reads back.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One supervised process: `GET /supervisor/children`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    /// The build it runs (or runs next, once restarted).
    pub binary: String,
    pub name: String,
    /// `null` while it is not running.
    pub pid: Option<u32>,
    pub restarts: u32,
    /// The old gateway process still serving during a graceful restart.
    pub retiring_pid: Option<u32>,
    pub running: bool,
}

/// `GET /supervisor/children`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Children {
    pub children: Vec<Child>,
}

/// `POST /supervisor/children/{name}/restart`: stop the child gracefully, start `binary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    pub binary: PathBuf,
}

/// The answer to a [`Restart`]: the child as it runs now, the build it ran before, and the
/// version the new build reports (`null` for a script, whose version cannot be read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restarted {
    pub binary: String,
    pub name: String,
    pub pid: Option<u32>,
    pub previous_binary: String,
    pub restarts: u32,
    pub retiring_pid: Option<u32>,
    pub running: bool,
    pub version: Option<String>,
}

impl Restarted {
    /// `child` after its restart from `previous_binary`.
    pub fn of(child: Child, previous_binary: String, version: Option<String>) -> Restarted {
        Restarted {
            binary: child.binary,
            name: child.name,
            pid: child.pid,
            previous_binary,
            restarts: child.restarts,
            retiring_pid: child.retiring_pid,
            running: child.running,
            version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pinned;

    #[test]
    fn children_and_restarts_are_the_bytes_the_supervisor_sent() {
        let child = Child {
            binary: "/opt/croupier".into(),
            name: "node-1".into(),
            pid: Some(4242),
            restarts: 1,
            retiring_pid: None,
            running: true,
        };
        pinned(
            Children {
                children: vec![child.clone()],
            },
            r#"{"children":[{"binary":"/opt/croupier","name":"node-1","pid":4242,"restarts":1,"retiring_pid":null,"running":true}]}"#,
        );
        pinned(
            Restart {
                binary: "/opt/new".into(),
            },
            r#"{"binary":"/opt/new"}"#,
        );
        pinned(
            Restarted::of(child, "/opt/old".into(), Some("0.2.0".into())),
            r#"{"binary":"/opt/croupier","name":"node-1","pid":4242,"previous_binary":"/opt/old","restarts":1,"retiring_pid":null,"running":true,"version":"0.2.0"}"#,
        );
    }
}
