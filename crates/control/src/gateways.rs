//! The control plane's hands on the gateways' admin API: the nodes as the gateways see them
//! (state, health, outstanding requests, WebSockets), and setting a node active, draining or
//! in maintenance on every gateway at once.

use croupier_web::wire::admin::{Block, Blocks, Lifted, NodeState, Nodes, SetNodeState};
use croupier_web::wire::control::GatewayNodes;

use crate::Control;
use crate::ops_client::{CallError, call, request, request_with};
use croupier_monitor::engine::{Kind, Target};

fn gateways(control: &Control) -> impl Iterator<Item = &Target> {
    control
        .config
        .targets
        .iter()
        .filter(|t| t.kind == Kind::Gateway)
}

/// The nodes as each gateway sees them, or why a gateway did not say.
pub async fn nodes(control: &Control) -> Result<Vec<GatewayNodes>, CallError> {
    let mut views = Vec::new();
    for gateway in gateways(control) {
        let url = format!("{}/admin/nodes", gateway.base);
        let answer = call::<Nodes>(
            control,
            &gateway.name,
            request(control, hyper::Method::GET, url),
        )
        .await;
        let (nodes, error) = match answer {
            Ok(answer) => (Some(answer.nodes), None),
            Err(e) => (None, Some(e.to_string())),
        };
        views.push(GatewayNodes {
            error,
            gateway: gateway.name.clone(),
            nodes,
        });
    }
    if views.is_empty() {
        return Err(CallError::NoGateway);
    }
    Ok(views)
}

/// Sets `node` to `state` on every gateway; fails on the first gateway that refuses.
pub async fn set_node_state(
    control: &Control,
    node: &str,
    state: NodeState,
) -> Result<Nodes, CallError> {
    let mut last = Err(CallError::NoGateway);
    for gateway in gateways(control) {
        let url = format!("{}/admin/nodes/{node}", gateway.base);
        let body = SetNodeState { state };
        let put = request_with(control, hyper::Method::PUT, url, &body);
        last = Ok(call(control, &gateway.name, put).await?);
    }
    last
}

/// The addresses each gateway blocks now (both its ports), each with `gateway` set to its
/// name; a gateway that does not answer is left out (and logged).
pub async fn blocks(control: &Control) -> Vec<Block> {
    let mut all = Vec::new();
    for gateway in gateways(control) {
        let url = format!("{}/admin/blocks", gateway.base);
        let get = request(control, hyper::Method::GET, url);
        match call::<Blocks>(control, &gateway.name, get).await {
            Ok(listed) => all.extend(listed.blocks.into_iter().map(|block| Block {
                gateway: Some(gateway.name.clone()),
                ..block
            })),
            Err(e) => tracing::warn!(error = %e, "cannot list a gateway's blocks"),
        }
    }
    all
}

/// Lifts `address`'s blocks on every gateway; whether any gateway had it blocked.
pub async fn lift_block(control: &Control, address: std::net::IpAddr) -> bool {
    let mut lifted = false;
    for gateway in gateways(control) {
        let url = format!("{}/admin/blocks/{address}", gateway.base);
        let delete = request(control, hyper::Method::DELETE, url);
        match call::<Lifted>(control, &gateway.name, delete).await {
            Ok(_) => lifted = true,
            Err(CallError::Refused { status: 404, .. }) => {}
            Err(e) => tracing::warn!(error = %e, "cannot lift a block on a gateway"),
        }
    }
    lifted
}
