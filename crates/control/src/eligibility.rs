//! Whether players can be served while a rolling update takes nodes away, as the gateways see
//! it: a node counts as back only when every gateway routes to it again (active, health check
//! up, not ejected) and it answered player traffic, and a batch is drained only if enough
//! other nodes stay eligible. Issue #13: moving on as soon as the node's own `/readyz`
//! answered drained the next node while the gateways still held the restarted one out of
//! rotation, and for about two seconds no node could serve.

use std::time::{Duration, Instant};

use croupier_web::wire::admin::Nodes;

use crate::Control;
use crate::ops_client::{CallError, call, request};
use croupier_monitor::engine::{Kind, Target};

/// Longest wait for a node to be eligible on every gateway (after its restart, or for enough
/// other nodes before a drain).
pub const BACK_DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait, once eligible everywhere, for a player request to reach the node: players
/// keep their node while it serves, so with steady players and no newcomer none may come;
/// and a gateway balancing `first` sends a spare nothing while the first node has room.
pub const TRAFFIC_WAIT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(100);

/// One node on one gateway's `/admin/nodes`.
pub use croupier_web::wire::admin::Node as NodeView;

/// Every gateway's view of the nodes; an error when one cannot be asked (nothing can then be
/// promised about the players it serves).
pub async fn views(control: &Control) -> Result<Vec<Vec<NodeView>>, CallError> {
    let mut all = Vec::new();
    for gateway in gateways(control) {
        let url = format!("{}/admin/nodes", gateway.base);
        let get = request(control, hyper::Method::GET, url);
        let answer: Nodes = call(control, &gateway.name, get).await?;
        all.push(answer.nodes);
    }
    if all.is_empty() {
        return Err(CallError::NoGateway);
    }
    Ok(all)
}

fn gateways(control: &Control) -> impl Iterator<Item = &Target> {
    control
        .config
        .targets
        .iter()
        .filter(|t| t.kind == Kind::Gateway)
}

/// Whether every gateway routes new work to `node`.
pub fn eligible_everywhere(views: &[Vec<NodeView>], node: &str) -> bool {
    views
        .iter()
        .all(|nodes| nodes.iter().any(|n| n.name == node && n.eligible))
}

/// Player requests `node` answered, summed over the gateways.
pub fn answered(views: &[Vec<NodeView>], node: &str) -> u64 {
    views
        .iter()
        .flatten()
        .filter(|n| n.name == node)
        .map(|n| n.answered)
        .sum()
}

/// The nodes outside `batch` that every gateway routes to.
pub fn eligible_outside<'a>(
    views: &[Vec<NodeView>],
    nodes: &'a [Target],
    batch: &[Target],
) -> Vec<&'a str> {
    nodes
        .iter()
        .filter(|n| !batch.iter().any(|b| b.name == n.name))
        .filter(|n| eligible_everywhere(views, &n.name))
        .map(|n| n.name.as_str())
        .collect()
}

/// Whether draining `batch` now leaves at least `min` eligible nodes; the refusal says why.
pub async fn room_now(
    control: &Control,
    nodes: &[Target],
    batch: &[Target],
    min: usize,
) -> Result<(), String> {
    let views = views(control).await.map_err(|e| e.to_string())?;
    let left = eligible_outside(&views, nodes, batch);
    if left.len() >= min {
        return Ok(());
    }
    let drained: Vec<&str> = batch.iter().map(|b| b.name.as_str()).collect();
    Err(format!(
        "draining {} would leave {} node(s) eligible on every gateway ({}), fewer than the minimum of {min}",
        drained.join(", "),
        left.len(),
        if left.is_empty() {
            "none".to_owned()
        } else {
            left.join(", ")
        }
    ))
}

/// Waits up to `BACK_DEADLINE` until draining `batch` leaves at least `min` eligible nodes.
pub async fn wait_room(
    control: &Control,
    nodes: &[Target],
    batch: &[Target],
    min: usize,
) -> Result<String, String> {
    let started = Instant::now();
    loop {
        match room_now(control, nodes, batch, min).await {
            Ok(()) => {
                return Ok(format!(
                    "at least {min} other node(s) eligible on every gateway (waited {} ms)",
                    started.elapsed().as_millis()
                ));
            }
            Err(why) if started.elapsed() >= BACK_DEADLINE => return Err(why),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Waits until `node`, just put back in service, is eligible on every gateway and answered a
/// player request since it had answered `before` (when known), or `TRAFFIC_WAIT` passed with
/// it eligible and no player routed to it. An error when it is not eligible everywhere within
/// `BACK_DEADLINE`.
pub async fn wait_back(
    control: &Control,
    node: &str,
    before: Option<u64>,
) -> Result<String, String> {
    let started = Instant::now();
    let mut eligible_since: Option<Instant> = None;
    let mut last_error = String::from("not eligible on every gateway");
    loop {
        match views(control).await {
            Ok(views) if eligible_everywhere(&views, node) => {
                let since = *eligible_since.get_or_insert_with(Instant::now);
                let served = before.map(|b| answered(&views, node).saturating_sub(b));
                let eligible_ms = (since - started).as_millis();
                if let Some(served @ 1..) = served {
                    return Ok(format!(
                        "eligible on every gateway after {eligible_ms} ms; answered {served} player request(s)"
                    ));
                }
                if since.elapsed() >= TRAFFIC_WAIT {
                    return Ok(format!(
                        "eligible on every gateway after {eligible_ms} ms; no player was routed to it within {} s (players keep their node while it serves; under the gateway's --balance first, a spare takes work only when the first node cannot)",
                        TRAFFIC_WAIT.as_secs()
                    ));
                }
            }
            Ok(_) => eligible_since = None,
            Err(e) => last_error = e.to_string(),
        }
        if started.elapsed() >= BACK_DEADLINE {
            return Err(format!(
                "{node} not back within {} s: {last_error}",
                BACK_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What `node` has answered so far, summed over the gateways; `None` when a gateway cannot
/// be asked.
pub async fn answered_now(control: &Control, node: &str) -> Option<u64> {
    views(control).await.ok().map(|v| answered(&v, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(nodes: &[(&str, bool, u64)]) -> Vec<NodeView> {
        nodes
            .iter()
            .map(|&(name, eligible, answered)| NodeView {
                answered,
                eligible,
                ejected: false,
                healthy: eligible,
                name: name.to_owned(),
                outstanding_requests: 0,
                state: croupier_web::wire::admin::NodeState::Active,
                url: format!("http://{name}"),
                websockets: 0,
            })
            .collect()
    }

    fn target(name: &str) -> Target {
        Target {
            name: name.to_owned(),
            kind: Kind::Node,
            base: format!("http://{name}"),
            component: None,
            http_check: None,
        }
    }

    #[test]
    fn a_node_is_eligible_only_if_every_gateway_says_so() {
        let one = view(&[("a", true, 5), ("b", true, 1)]);
        let other = view(&[("a", false, 2), ("b", true, 0)]);
        let views = vec![one, other];
        assert!(!eligible_everywhere(&views, "a"));
        assert!(eligible_everywhere(&views, "b"));
        assert!(!eligible_everywhere(&views, "unknown"));
        assert_eq!(answered(&views, "a"), 7);
        let nodes = [target("a"), target("b"), target("c")];
        assert_eq!(
            eligible_outside(&views, &nodes, &nodes[1..2]),
            Vec::<&str>::new()
        );
        assert_eq!(eligible_outside(&views, &nodes, &nodes[..1]), vec!["b"]);
    }
}
