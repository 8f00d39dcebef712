//! The gateway's operator listener: `/healthz`, `/readyz` (at least one node can serve),
//! `/metrics`, and, with the ops token, `/admin/nodes` to see and set each node's state and
//! `/admin/blocks` to list and lift the addresses blocked on either port (wrong tokens
//! counted per address: `croupier_web::lockout`; scanning: `croupier_web::scanning`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use croupier_web::extract::path_value;
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
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(admin);
    croupier_web::extract::json_fallbacks(routes)
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
    name: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&gateway, &headers) {
        return unauthorized();
    }
    let name = match path_value(name) {
        Ok(name) => name,
        Err(refused) => return refused.into_response(),
    };
    let Some(backend) = gateway.pool.find(&name) else {
        return refusal(
            StatusCode::NOT_FOUND,
            "unknown_node",
            &format!("no node named {name}"),
        );
    };
    let wanted: SetNodeState = match croupier_web::extract::json_object(&body) {
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
    address: Result<Path<String>, PathRejection>,
) -> Response {
    if !authorized(&gateway, &headers) {
        return unauthorized();
    }
    let address = match path_value(address) {
        Ok(address) => address,
        Err(refused) => return refused.into_response(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// What a caller gets: its status and the body's `error`.
    async fn refused(
        router: &Router,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (u16, String) {
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Body::from("{}")).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        (
            status,
            body["error"].as_str().unwrap_or("(not JSON)").to_owned(),
        )
    }

    /// Before: a name that does not decode got axum's text/plain 400 before the token was
    /// looked at, and a wrong method an empty 405.
    #[tokio::test]
    async fn the_token_comes_first_and_every_refusal_is_json() {
        let token = "t".repeat(32);
        let nodes = vec![("n0".to_owned(), "http://127.0.0.1:9".to_owned())];
        let router = router(Gateway::new(crate::GatewayConfig::new(nodes, token.clone())).unwrap());
        let with = Some(token.as_str());
        let cases = [
            ("PUT", "/admin/nodes/%FF", None, (401, "unauthorized")),
            ("PUT", "/admin/nodes/%FF", with, (400, "invalid_path")),
            ("DELETE", "/admin/blocks/%FF", with, (400, "invalid_path")),
            ("POST", "/admin/nodes", with, (405, "method_not_allowed")),
            ("GET", "/admin/nothing", with, (404, "not_found")),
        ];
        for (method, path, token, (status, code)) in cases {
            let got = refused(&router, method, path, token).await;
            assert_eq!(got, (status, code.to_owned()), "{method} {path}");
        }
    }

    /// Serde reads a struct from an array of its fields: before, `["maintenance"]` took a node
    /// out of rotation. Refused now, the node left as it was; the object still works.
    #[tokio::test]
    async fn a_node_state_sent_as_an_array_is_refused() {
        let token = "t".repeat(32);
        let nodes = vec![("n0".to_owned(), "http://127.0.0.1:9".to_owned())];
        let gateway = Gateway::new(crate::GatewayConfig::new(nodes, token.clone())).unwrap();
        let router = router(gateway.clone());
        let put = |body: &'static str| {
            axum::http::Request::builder()
                .method("PUT")
                .uri("/admin/nodes/n0")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from(body))
                .unwrap()
        };
        let backend = gateway.pool.find("n0").unwrap();
        let response = router.clone().oneshot(put(r#"["maintenance"]"#)).await;
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "invalid_state", "{body}");
        assert_eq!(backend.admin_state(), NodeState::Active);

        let response = router.oneshot(put(r#"{"state": "maintenance"}"#)).await;
        assert_eq!(response.unwrap().status(), StatusCode::OK);
        assert_eq!(backend.admin_state(), NodeState::Maintenance);
    }
}
