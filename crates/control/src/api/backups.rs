//! `GET /api/v1/backups`: whether the control plane runs backups, their health, how old
//! the newest shipped state is now (the RPO), and the last restore tests.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::operator::Operator;
use crate::refusal::Refusal;
use crate::{Control, now_ms};

pub(super) async fn status(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let Some(status) = &control.backup_status else {
        return Ok(Json(json!({"enabled": false})).into_response());
    };
    let status = status.lock().clone();
    let rpo_s = status
        .last_cut_ms
        .map(|cut| (now_ms() - cut) as f64 / 1000.0);
    Ok(Json(json!({
        "enabled": true, "status": status, "rpo_seconds_now": rpo_s,
        "verifies": control.state.backup_verifies(20).unwrap_or_default(),
    }))
    .into_response())
}
