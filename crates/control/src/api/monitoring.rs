//! What the control plane sees now: for players, `/api/v1/status` (components, incidents,
//! maintenance); for operators, the targets and whether each answered, the recent series
//! the dashboard draws, the SLOs with their budgets, and the ledger's replication.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use croupier_monitor::engine::Kind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::operator::Operator;
use crate::public_status::public_status;
use crate::refusal::{Refusal, query_or_refuse, unavailable};
use crate::{Control, now_ms};

pub(super) async fn status(State(control): State<Arc<Control>>) -> Result<Response, Refusal> {
    Ok(Json(public_status(&control).map_err(unavailable)?).into_response())
}

/// A scraped target, its address with any password masked, and whether it answered.
#[derive(Serialize)]
struct TargetView {
    base: String,
    kind: Kind,
    name: String,
    up: bool,
}

#[derive(Serialize)]
struct Targets {
    targets: Vec<TargetView>,
}

pub(super) async fn targets(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let up = control.up();
    let targets = control
        .config
        .targets
        .iter()
        .zip(up)
        .map(|(t, up)| TargetView {
            base: croupier_pgconn::shown(&t.base),
            kind: t.kind,
            name: t.name.clone(),
            up,
        })
        .collect();
    Ok(Json(Targets { targets }).into_response())
}

/// The last replication state read from each `postgres://` store target.
pub(super) async fn replication(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let stores = control.replication.lock().clone();
    Ok(Json(json!({"stores": stores})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SeriesQuery {
    /// Only points newer than this (Unix seconds).
    since_s: Option<u64>,
}

pub(super) async fn series(
    _: Operator,
    State(control): State<Arc<Control>>,
    query: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    let query = query_or_refuse(query)?;
    let since = query.since_s.unwrap_or(0);
    let series = control.series.lock();
    let list: Vec<Value> = control
        .config
        .targets
        .iter()
        .zip(series.iter())
        .map(|(t, s)| {
            let points: Vec<&croupier_monitor::series::Point> =
                s.points.iter().filter(|p| p.ts_s > since).collect();
            json!({"target": t.name, "kind": t.kind, "points": points})
        })
        .collect();
    Ok(Json(json!({"targets": list})).into_response())
}

pub(super) async fn slos(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let now_s = (now_ms() / 1000) as u64;
    let slos = control.slos.lock();
    let list: Vec<Value> = slos
        .iter()
        .map(|t| {
            json!({"name": t.slo.name, "component": t.def.component, "objective": t.slo.objective,
                   "status": t.status(now_s)})
        })
        .collect();
    Ok(Json(json!({"slos": list})).into_response())
}
