//! Incidents, for operators: list them with their timelines, open one by hand (players are
//! told at once), post an update (status, message, ETA) and get a postmortem skeleton.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use croupier_monitor::severity::{SEVERITY_WORDS, Severity};
use serde::Deserialize;
use serde_json::json;

use crate::catalog::is_incident_component;
use crate::operator::{Operator, body_detail};
use crate::refusal::{Refusal, parse, refuse, unavailable};
use crate::state::StateError;
use crate::{Control, now_ms};

pub(super) async fn list(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let list = control.state.incidents(false).map_err(unavailable)?;
    Ok(Json(json!({"incidents": list})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIncident {
    title: String,
    component: String,
    severity: String,
    message: String,
}

/// The severity of the incident asked for, or why it is refused.
fn checked(new: &NewIncident) -> Result<Severity, Refusal> {
    let invalid = |code, message| Err(refuse(StatusCode::UNPROCESSABLE_ENTITY, code, message));
    let Some(severity) = Severity::parse(&new.severity) else {
        return invalid("invalid_severity", SEVERITY_WORDS);
    };
    if !is_incident_component(&new.component) {
        return invalid(
            "invalid_component",
            "component is wallet, dice, roulette, slot, blackjack, lobby or games (all games)",
        );
    }
    if new.title.trim().is_empty() || new.message.trim().is_empty() {
        return invalid("invalid_body", "title and message must not be empty");
    }
    Ok(severity)
}

pub(super) async fn open(
    operator: Operator,
    State(control): State<Arc<Control>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let change = async {
        let new: NewIncident = parse(&body)?;
        let severity = checked(&new)?;
        let (title, component, message) = (&new.title, &new.component, &new.message);
        let id = control
            .state
            .open_incident(title, component, severity, None, message, now_ms())
            .map_err(unavailable)?;
        control.push_to_players(message, "warning").await;
        Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
    };
    let detail = body_detail(&body);
    let action = ("incident.open", "incident");
    operator.audited(&control, action, &detail, change).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentUpdate {
    status: String,
    message: String,
    eta_ms: Option<i64>,
}

/// The statuses an incident moves through, in order.
const STATUSES: [&str; 4] = ["investigating", "identified", "monitoring", "resolved"];

pub(super) async fn update(
    operator: Operator,
    State(control): State<Arc<Control>>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let change = async {
        let update: IncidentUpdate = parse(&body)?;
        if !STATUSES.contains(&update.status.as_str()) {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_status",
                "status is investigating, identified, monitoring or resolved",
            ));
        }
        let (status, message) = (&update.status, &update.message);
        match control
            .state
            .update_incident(id, status, message, update.eta_ms, now_ms())
        {
            Ok(()) => {}
            Err(StateError::NoIncident(id)) => {
                let message = format!("no incident {id}");
                return Err(refuse(StatusCode::NOT_FOUND, "not_found", &message));
            }
            Err(e) => return Err(unavailable(e)),
        }
        control.push_to_players(message, "info").await;
        Ok(Json(json!({"id": id, "status": status})).into_response())
    };
    let detail = body_detail(&body);
    let subject = format!("incident/{id}");
    let action = ("incident.update", subject.as_str());
    operator.audited(&control, action, &detail, change).await
}

pub(super) async fn postmortem(
    _: Operator,
    State(control): State<Arc<Control>>,
    Path(id): Path<i64>,
) -> Result<Response, Refusal> {
    let incident = control
        .state
        .incidents(false)
        .map_err(unavailable)?
        .into_iter()
        .find(|i| i.id == id)
        .ok_or_else(|| {
            refuse(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no incident {id}"),
            )
        })?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        crate::postmortem::skeleton(&incident, now_ms()),
    )
        .into_response())
}
