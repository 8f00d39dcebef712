//! The nodes as every gateway sees them, for operators, and a node's state set on every
//! gateway at once: `active`, `draining` (players move off, WebSockets get 1012) or
//! `maintenance`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use croupier_web::wire::admin::NodeState;
use croupier_web::wire::control::{Gateways, NodeStateChange};

use crate::Control;
use crate::operator::{Operator, body_detail};
use crate::ops_client::CallError as GatewayError;
use crate::refusal::{Refusal, parse, refuse};
use croupier_web::extract::PathParam;

/// A gateway's answer as the operator's: its 404 and 422 passed on, anything else a 502.
fn gateway_refusal(e: GatewayError) -> Refusal {
    match e {
        GatewayError::Refused { status: 404, .. } => {
            refuse(StatusCode::NOT_FOUND, "unknown_node", &e.to_string())
        }
        GatewayError::Refused { status: 422, .. } => refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_state",
            &e.to_string(),
        ),
        _ => refuse(
            StatusCode::BAD_GATEWAY,
            "gateway_unavailable",
            &e.to_string(),
        ),
    }
}

pub(super) async fn list(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let gateways = crate::gateways::nodes(&control)
        .await
        .map_err(gateway_refusal)?;
    Ok(Json(Gateways { gateways }).into_response())
}

/// Whether `name` may be a node's name (it goes into the gateways' URLs).
fn plain_node_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) async fn set_state(
    operator: Operator,
    State(control): State<Arc<Control>>,
    PathParam(name): PathParam<String>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let change = async {
        let wanted: NodeStateChange = parse(&body)?;
        let Some(state) = NodeState::parse(&wanted.state) else {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_state",
                "state is active, draining or maintenance",
            ));
        };
        if !plain_node_name(&name) {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_node",
                "node names are letters, digits, - and _",
            ));
        }
        let view = crate::gateways::set_node_state(&control, &name, state)
            .await
            .map_err(gateway_refusal)?;
        Ok(Json(view).into_response())
    };
    let detail = body_detail(&body);
    let subject = format!("node/{name}");
    let action = ("node.set_state", subject.as_str());
    operator.audited(&control, action, &detail, change).await
}
