//! Drill reports (`croupier drill --report-to`): kept with their verdict and listed for
//! operators; the audit log keeps each one's drill and verdict.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::operator::Operator;
use crate::refusal::{Refusal, parse, refuse, unavailable};
use crate::{Control, now_ms};

pub(super) async fn list(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let reports = control.state.drill_reports(50).map_err(unavailable)?;
    Ok(Json(json!({"drills": reports})).into_response())
}

/// A drill's report, as `croupier drill --report-to` sends it.
pub(super) async fn report(
    operator: Operator,
    State(control): State<Arc<Control>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let change = async {
        let report: Value = parse(&body)?;
        let (Some(drill), Some(verdict)) = (report["drill"].as_str(), report["verdict"].as_str())
        else {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "a drill report has \"drill\" and \"verdict\"",
            ));
        };
        if !["pass", "fail"].contains(&verdict) {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "verdict is pass or fail",
            ));
        }
        let id = control
            .state
            .add_drill_report(drill, verdict, &report, now_ms())
            .map_err(unavailable)?;
        Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
    };
    let summary = serde_json::from_slice::<Value>(&body)
        .map(|r| json!({"drill": r["drill"], "verdict": r["verdict"]}))
        .unwrap_or(Value::Null);
    let action = ("drill.report", "drill");
    operator.audited(&control, action, &summary, change).await
}
