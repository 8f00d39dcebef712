//! The control plane's hands on the gateways' admin API: the nodes as the gateways see them
//! (state, health, outstanding requests, WebSockets), and setting a node active, draining or
//! in maintenance on every gateway at once.

use serde_json::{Value, json};

use crate::Control;
use crate::ops_client::{CallError, call, request};
use croupier_monitor::engine::Kind;

/// The nodes as each gateway sees them: `[{"gateway": name, "nodes": [...]}]`.
pub async fn nodes(control: &Control) -> Result<Value, CallError> {
    let gateways: Vec<_> = control
        .config
        .targets
        .iter()
        .filter(|t| t.kind == Kind::Gateway)
        .collect();
    if gateways.is_empty() {
        return Err(CallError::NoGateway);
    }
    let mut views = Vec::new();
    for gateway in gateways {
        let url = format!("{}/admin/nodes", gateway.base);
        let view = match call(
            control,
            &gateway.name,
            request(control, hyper::Method::GET, url, None),
        )
        .await
        {
            Ok(body) => json!({"gateway": gateway.name, "nodes": body["nodes"]}),
            Err(e) => json!({"gateway": gateway.name, "error": e.to_string()}),
        };
        views.push(view);
    }
    Ok(Value::Array(views))
}

/// Sets `node` to `state` on every gateway; fails on the first gateway that refuses.
pub async fn set_node_state(
    control: &Control,
    node: &str,
    state: &str,
) -> Result<Value, CallError> {
    let mut last = Err(CallError::NoGateway);
    for gateway in control
        .config
        .targets
        .iter()
        .filter(|t| t.kind == Kind::Gateway)
    {
        let url = format!("{}/admin/nodes/{node}", gateway.base);
        last = Ok(call(
            control,
            &gateway.name,
            request(
                control,
                hyper::Method::PUT,
                url,
                Some(json!({"state": state})),
            ),
        )
        .await?);
    }
    last
}

/// The addresses each gateway blocks now (both its ports), each with `gateway` set to its
/// name; a gateway that does not answer is left out (and logged).
pub async fn blocks(control: &Control) -> Vec<Value> {
    let mut all = Vec::new();
    for gateway in control
        .config
        .targets
        .iter()
        .filter(|t| t.kind == Kind::Gateway)
    {
        let url = format!("{}/admin/blocks", gateway.base);
        match call(
            control,
            &gateway.name,
            request(control, hyper::Method::GET, url, None),
        )
        .await
        {
            Ok(body) => {
                let listed = body["blocks"].as_array().cloned().unwrap_or_default();
                all.extend(listed.into_iter().map(|mut block| {
                    block["gateway"] = json!(gateway.name);
                    block
                }));
            }
            Err(e) => tracing::warn!(error = %e, "cannot list a gateway's blocks"),
        }
    }
    all
}

/// Lifts `address`'s blocks on every gateway; whether any gateway had it blocked.
pub async fn lift_block(control: &Control, address: std::net::IpAddr) -> bool {
    let mut lifted = false;
    for gateway in control
        .config
        .targets
        .iter()
        .filter(|t| t.kind == Kind::Gateway)
    {
        let url = format!("{}/admin/blocks/{address}", gateway.base);
        let answer = call(
            control,
            &gateway.name,
            request(control, hyper::Method::DELETE, url, None),
        )
        .await;
        match answer {
            Ok(_) => lifted = true,
            Err(CallError::Refused { status: 404, .. }) => {}
            Err(e) => tracing::warn!(error = %e, "cannot lift a block on a gateway"),
        }
    }
    lifted
}
