//! Alerts and silences, for operators: the alerts pending or firing now (and the silence
//! holding each back, if any); the silences, added with a reason and a duration (an alert
//! key, a key prefix ending in `*`, or `component:<name>`) and expired by id.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use croupier_web::wire::control::{Created, NewSilence};
use serde::Serialize;
use serde_json::{Value, json};

use super::ended;
use crate::catalog::is_incident_component;
use crate::operator::{Operator, body_detail};
use crate::refusal::{Refusal, parse, refuse, unavailable};
use crate::{Control, now_ms};
use croupier_web::extract::PathParam;

#[derive(Serialize)]
struct Silences {
    silences: Vec<crate::state::Silence>,
}

pub(super) async fn alerts(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let active = control.engine.lock().active();
    let now = now_ms();
    let silences = control.state.silences(now).map_err(unavailable)?;
    // `state` is an internally tagged enum: built as a JSON value, its keys come sorted,
    // as they always have.
    let list: Vec<Value> = active
        .iter()
        .map(|a| {
            let silenced_by = silences
                .iter()
                .find(|s| s.matches(&a.key, &a.component, now))
                .map(|s| s.id);
            json!({"key": a.key, "component": a.component, "severity": a.severity,
                   "state": a.state, "silenced_by": silenced_by})
        })
        .collect();
    Ok(Json(json!({"alerts": list})).into_response())
}

pub(super) async fn silences(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let silences = control.state.silences(now_ms()).map_err(unavailable)?;
    Ok(Json(Silences { silences }).into_response())
}

/// The longest silence: a month.
const MAX_SILENCE_S: i64 = 30 * 86_400;

/// The silence asked for, or why it is refused (nothing is changed on a refusal).
fn checked(new: &NewSilence) -> Result<&str, Refusal> {
    let matcher = new.matcher.trim();
    let valid_matcher = match matcher.strip_prefix("component:") {
        Some(component) => is_incident_component(component),
        None => matcher.len() > 1 && matcher.len() <= 200 && !matcher.contains(char::is_whitespace),
    };
    if !valid_matcher {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_matcher",
            "matcher is an alert key (rule/target), a prefix ending in *, or component:<name>",
        ));
    }
    if !(1..=MAX_SILENCE_S).contains(&new.duration_s) {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_duration",
            "duration_s is between 1 and 2592000 (30 days)",
        ));
    }
    if new.comment.trim().is_empty() {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "say why in comment",
        ));
    }
    Ok(matcher)
}

pub(super) async fn add_silence(
    operator: Operator,
    State(control): State<Arc<Control>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let change = async {
        let new: NewSilence = parse(&body)?;
        let matcher = checked(&new)?;
        let now = now_ms();
        let until = now + new.duration_s * 1000;
        let id = control
            .state
            .add_silence(matcher, &new.comment, &operator.actor, now, until)
            .map_err(unavailable)?;
        Ok((StatusCode::CREATED, Json(Created { id })).into_response())
    };
    let detail = body_detail(&body);
    operator
        .audited(&control, ("silence.add", "silence"), &detail, change)
        .await
}

pub(super) async fn expire_silence(
    operator: Operator,
    State(control): State<Arc<Control>>,
    PathParam(id): PathParam<i64>,
) -> Result<Response, Refusal> {
    let subject = format!("silence/{id}");
    let change = async {
        let outcome = control.state.expire_silence(id, now_ms());
        ended(outcome, "silence", id, "expired")
    };
    operator
        .audited(&control, ("silence.expire", &subject), &Value::Null, change)
        .await
}
