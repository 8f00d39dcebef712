//! `GET /api/v1/flags`: the players every node flags for unusual play
//! (`croupier_node::flags`: winning far beyond a game's RTP, bursts of idempotency conflicts,
//! many sign-ins), gathered from each node's `/ops/flags`, each with its `node`. A node that
//! does not answer is listed under `unreachable`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use croupier_web::wire::ops::{Flag, Flags};
use serde::Serialize;
use serde_json::Value;

use crate::Control;
use crate::operator::Operator;
use crate::ops_client::{call, request};
use crate::refusal::Refusal;

/// A node that did not answer, and why.
#[derive(Serialize)]
struct Unreachable {
    error: String,
    node: String,
}

/// `GET /api/v1/flags`: every node's flags, newest first.
#[derive(Serialize)]
struct Listed {
    flags: Vec<Flag<Value>>,
    unreachable: Vec<Unreachable>,
}

pub(super) async fn list(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let (mut flags, mut unreachable) = (Vec::new(), Vec::new());
    for node in control.config.nodes() {
        let url = format!("{}/ops/flags", node.base);
        let get = request(&control, hyper::Method::GET, url);
        match call::<Flags<Value>>(&control, &node.name, get).await {
            Ok(listed) => flags.extend(listed.flags.into_iter().map(|flag| Flag {
                node: Some(node.name.clone()),
                ..flag
            })),
            Err(e) => unreachable.push(Unreachable {
                error: e.to_string(),
                node: node.name.clone(),
            }),
        }
    }
    flags.sort_by_key(|f| std::cmp::Reverse(f.at_ms));
    Ok(Json(Listed { flags, unreachable }).into_response())
}
