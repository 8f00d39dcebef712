//! The gateway's operator listener: `/healthz`, `/readyz` (at least one node can serve),
//! `/metrics`, and, with the ops token, `/admin/nodes` to see and set each node's state and
//! `/admin/blocks` to list and lift the addresses blocked on either port (wrong tokens
//! counted per address: `croupier_web::lockout`; scanning: `croupier_web::scanning`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use croupier_web::wire::admin::{
    Block, Blocks, Health, Lifted, Node, NodeState, Nodes, Readiness, SetNodeState,
};

use crate::Gateway;
use crate::proxy::refusal;

pub fn router(gateway: Arc<Gateway>) -> Router {
    // Wrong tokens on the admin routes are counted per address; guessing gets it blocked.
    let admin = Router::new()
        .route("/admin/nodes", get(list_nodes))
        .route("/admin/nodes/{name}", put(set_node))
        .route("/admin/blocks", get(list_blocks))
        .route("/admin/blocks/{address}", delete(lift_block))
        .route_layer(axum::middleware::from_fn_with_state(
            gateway.lockout.clone(),
            croupier_web::lockout::guard,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(admin)
        .fallback(|| async { refusal(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(croupier_vitals::panics::layer())
        .layer(axum::middleware::map_response(croupier_web::secure_headers))
        .with_state(gateway)
}

async fn healthz() -> Json<Health> {
    Json(Health {
        pid: std::process::id(),
        status: "ok".to_owned(),
    })
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    if gateway.pool.any_eligible() {
        let ready = Readiness {
            ready: true,
            reason: None,
        };
        (StatusCode::OK, Json(ready)).into_response()
    } else {
        let not_ready = Readiness {
            ready: false,
            reason: Some("no node can serve".to_owned()),
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(not_ready)).into_response()
    }
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gateway.metrics.render(&gateway.pool),
    )
        .into_response()
}

/// Whether the request carries the ops token.
fn authorized(gateway: &Gateway, headers: &HeaderMap) -> bool {
    croupier_web::is_ops(headers, &gateway.config.admin_token)
}

fn unauthorized() -> Response {
    refusal(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the admin API needs Authorization: Bearer <ops token>",
    )
}

fn nodes(gateway: &Gateway) -> Nodes {
    let nodes = gateway
        .pool
        .backends
        .iter()
        .map(|b| Node {
            answered: b.answered(),
            eligible: b.eligible(),
            ejected: b.is_ejected(),
            healthy: b.is_healthy(),
            name: b.name.clone(),
            outstanding_requests: b.outstanding.load(Ordering::Relaxed),
            state: b.admin_state(),
            url: b.base.clone(),
            websockets: b.websockets.load(Ordering::Relaxed),
        })
        .collect();
    Nodes { nodes }
}

async fn list_nodes(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if !authorized(&gateway, &headers) {
        return unauthorized();
    }
    Json(nodes(&gateway)).into_response()
}

async fn set_node(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&gateway, &headers) {
        return unauthorized();
    }
    let Some(backend) = gateway.pool.find(&name) else {
        return refusal(
            StatusCode::NOT_FOUND,
            "unknown_node",
            &format!("no node named {name}"),
        );
    };
    let wanted: SetNodeState = match serde_json::from_slice(&body) {
        Ok(wanted) => wanted,
        Err(e) => {
            return refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_state",
                &format!("expected {{\"state\": \"active\"|\"draining\"|\"maintenance\"}}: {e}"),
            );
        }
    };
    backend.set_admin_state(wanted.state);
    if wanted.state == NodeState::Active {
        backend.clear_ejection();
    }
    tracing::info!(node = %name, state = wanted.state.as_str(), "node state set by operator");
    Json(nodes(&gateway)).into_response()
}

/// The addresses blocked now on both ports.
async fn list_blocks(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if !authorized(&gateway, &headers) {
        return unauthorized();
    }
    let blocks = gateway.lockout.blocks().into_iter();
    let blocks = blocks.chain(gateway.scanning.blocks());
    let blocks = blocks.map(|block| Block::from(&block)).collect();
    Json(Blocks { blocks }).into_response()
}

/// Lifts `address`'s blocks on both ports.
async fn lift_block(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Response {
    if !authorized(&gateway, &headers) {
        return unauthorized();
    }
    let Ok(ip) = address.parse::<std::net::IpAddr>() else {
        return refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_address",
            "not an IP address",
        );
    };
    // Both, not the first that had it: `|` does not short-circuit.
    if gateway.lockout.lift(ip) | gateway.scanning.lift(ip) {
        tracing::info!(client = %ip, "block lifted by operator");
        Json(Lifted { lifted: ip }).into_response()
    } else {
        refusal(
            StatusCode::NOT_FOUND,
            "not_blocked",
            "that address is not blocked",
        )
    }
}
