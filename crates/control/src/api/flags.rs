//! `GET /api/v1/flags`: the players every node flags for unusual play
//! (`croupier_node::flags`: winning far beyond a game's RTP, bursts of idempotency conflicts,
//! many sign-ins), gathered from each node's `/ops/flags`, each with its `node`. A node that
//! does not answer is listed under `unreachable`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Control;
use crate::operator::Operator;
use crate::ops_client::{call, request};
use crate::refusal::Refusal;

pub(super) async fn list(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let (mut flags, mut unreachable) = (Vec::new(), Vec::new());
    for node in control.config.nodes() {
        let url = format!("{}/ops/flags", node.base);
        match call(
            &control,
            &node.name,
            request(&control, hyper::Method::GET, url, None),
        )
        .await
        {
            Ok(body) => {
                let listed = body["flags"].as_array().cloned().unwrap_or_default();
                flags.extend(listed.into_iter().map(|mut flag| {
                    flag["node"] = json!(node.name);
                    flag
                }));
            }
            Err(e) => unreachable.push(json!({"node": node.name, "error": e.to_string()})),
        }
    }
    flags.sort_by_key(|f: &Value| std::cmp::Reverse(f["at_ms"].as_i64().unwrap_or(0)));
    Ok(Json(json!({ "flags": flags, "unreachable": unreachable })).into_response())
}
