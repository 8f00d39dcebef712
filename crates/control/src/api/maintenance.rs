//! Maintenance windows, for operators: list them (with when each is active or starts next),
//! schedule one (one-off or cron in a time zone, a scope, lead times at which players are
//! told) and cancel one.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use croupier_web::wire::control::{NewWindow, WindowCreated};
use serde::Serialize;
use serde_json::Value;

use super::ended;
use crate::maintenance::{Schedule, Scope, Window, WindowError};
use crate::operator::{Operator, body_detail};
use crate::refusal::{Refusal, parse, players_text, refuse, unavailable};
use crate::{Control, now_ms};
use croupier_web::extract::PathParam;

/// A window with when it is active or starts next (fields in alphabetical order, the order
/// the API has always sent them in).
#[derive(Serialize)]
struct WindowView {
    active_since_ms: Option<i64>,
    announce_s: Vec<i64>,
    created_by: String,
    duration_s: i64,
    id: i64,
    next_start_ms: Option<i64>,
    schedule: Schedule,
    scope: String,
    title: String,
}

/// `GET /api/v1/maintenance`.
#[derive(Serialize)]
struct Windows {
    windows: Vec<WindowView>,
}

pub(super) async fn list(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let now = now_ms();
    let windows = control
        .state
        .windows()
        .map_err(unavailable)?
        .into_iter()
        .map(|w| WindowView {
            active_since_ms: w.active_at(now),
            next_start_ms: w.next_start(now),
            scope: w.scope.text(),
            announce_s: w.announce_s,
            created_by: w.created_by,
            duration_s: w.duration_s,
            id: w.id,
            schedule: w.schedule,
            title: w.title,
        })
        .collect();
    Ok(Json(Windows { windows }).into_response())
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
    players_text(Some(&new.title), None)?;
    let window = Window {
        id: 0,
        title: new.title,
        scope: Scope::parse(&new.scope).map_err(invalid)?,
        schedule,
        duration_s: new.duration_s,
        announce_s: new.announce_s.unwrap_or_else(|| vec![86_400, 900]),
        created_by: created_by.to_owned(),
    };
    window.validate_new(now_ms()).map_err(invalid)?;
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
        let created = WindowCreated { id, next_start_ms };
        Ok((StatusCode::CREATED, Json(created)).into_response())
    };
    let detail = body_detail(&body);
    let action = ("maintenance.schedule", "maintenance");
    operator.audited(&control, action, &detail, change).await
}

pub(super) async fn cancel(
    operator: Operator,
    State(control): State<Arc<Control>>,
    PathParam(id): PathParam<i64>,
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
