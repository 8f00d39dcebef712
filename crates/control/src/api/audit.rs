//! `GET /api/v1/audit`: the newest entries of the audit log (who did what, on what, with
//! which outcome), for operators.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::Control;
use crate::operator::Operator;
use crate::refusal::{Refusal, query_or_refuse, refuse, unavailable};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    limit: Option<i64>,
}

/// Most entries one `GET /api/v1/audit` returns.
const MAX_ENTRIES: i64 = 1_000;

/// `GET /api/v1/audit`, newest first.
#[derive(Serialize)]
struct Entries {
    entries: Vec<crate::state::AuditEntry>,
}

pub(super) async fn log(
    _: Operator,
    State(control): State<Arc<Control>>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    let query = query_or_refuse(query)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_ENTRIES).contains(&limit) {
        let message = format!("limit is 1 to {MAX_ENTRIES}");
        return Err(refuse(StatusCode::BAD_REQUEST, "invalid_query", &message));
    }
    let entries = control.state.audit_log(limit).map_err(unavailable)?;
    Ok(Json(Entries { entries }).into_response())
}
