//! Maintenance windows, for operators: list them (with when each is active or starts next),
//! schedule one (one-off or cron in a time zone, a scope, lead times at which players are
//! told) and cancel one.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ended;
use crate::maintenance::{Schedule, Scope, Window, WindowError};
use crate::operator::{Operator, body_detail};
use crate::refusal::{Refusal, parse, refuse, unavailable};
use crate::{Control, now_ms};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWindow {
    title: String,
    /// `component:<name>` or `node:<name>`.
    scope: String,
    starts_ms: Option<i64>,
    cron: Option<String>,
    timezone: Option<String>,
    duration_s: i64,
    /// Lead times in seconds at which players are told; default a day and 15 minutes.
    announce_s: Option<Vec<i64>>,
}

pub(super) async fn list(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let now = now_ms();
    let list: Vec<Value> = control
        .state
        .windows()
        .map_err(unavailable)?
        .into_iter()
        .map(|w| {
            json!({"id": w.id, "title": w.title, "scope": w.scope.text(), "schedule": w.schedule,
                   "duration_s": w.duration_s, "announce_s": w.announce_s, "created_by": w.created_by,
                   "active_since_ms": w.active_at(now), "next_start_ms": w.next_start(now)})
        })
        .collect();
    Ok(Json(json!({"windows": list})).into_response())
}

/// The window asked for, checked; nothing is stored here.
fn window(new: NewWindow, created_by: &str) -> Result<Window, Refusal> {
    let invalid = |e: WindowError| {
        refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_window",
            &e.to_string(),
        )
    };
    let schedule = match (new.starts_ms, new.cron, new.timezone) {
        (Some(starts_ms), None, None) => Schedule::Once { starts_ms },
        (None, Some(cron), timezone) => Schedule::Recurring {
            cron,
            timezone: timezone.unwrap_or_else(|| "UTC".into()),
        },
        _ => return Err(invalid(WindowError::Schedule)),
    };
    if new.title.trim().is_empty() {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "title must not be empty",
        ));
    }
    let window = Window {
        id: 0,
        title: new.title,
        scope: Scope::parse(&new.scope).map_err(invalid)?,
        schedule,
        duration_s: new.duration_s,
        announce_s: new.announce_s.unwrap_or_else(|| vec![86_400, 900]),
        created_by: created_by.to_owned(),
    };
    window.validate().map_err(invalid)?;
    Ok(window)
}

pub(super) async fn schedule(
    operator: Operator,
    State(control): State<Arc<Control>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let change = async {
        let window = window(parse(&body)?, &operator.actor)?;
        let id = control
            .state
            .add_window(&window, now_ms())
            .map_err(unavailable)?;
        let next_start_ms = window.next_start(now_ms());
        Ok((
            StatusCode::CREATED,
            Json(json!({"id": id, "next_start_ms": next_start_ms})),
        )
            .into_response())
    };
    let detail = body_detail(&body);
    let action = ("maintenance.schedule", "maintenance");
    operator.audited(&control, action, &detail, change).await
}

pub(super) async fn cancel(
    operator: Operator,
    State(control): State<Arc<Control>>,
    Path(id): Path<i64>,
) -> Result<Response, Refusal> {
    let subject = format!("maintenance/{id}");
    let change = async {
        let outcome = control.state.cancel_window(id, now_ms());
        ended(outcome, "window", id, "cancelled")
    };
    let action = ("maintenance.cancel", subject.as_str());
    operator
        .audited(&control, action, &Value::Null, change)
        .await
}
