//! Incidents, for operators: list them with their timelines, open one by hand (players are
//! told at once), post an update (status, message, ETA) and get a postmortem skeleton.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use croupier_monitor::severity::{SEVERITY_WORDS, Severity};
use croupier_web::wire::control::{
    Created, IncidentStatus, IncidentUpdate, IncidentUpdated, NewIncident,
};
use serde::Serialize;

use crate::catalog::is_incident_component;
use crate::operator::{Operator, body_detail};
use crate::refusal::{Refusal, parse, players_text, refuse, unavailable};
use crate::state::{Incident, StateError};
use crate::{Control, now_ms};
use croupier_web::extract::PathParam;

/// `GET /api/v1/incidents`, newest first.
#[derive(Serialize)]
struct Incidents {
    incidents: Vec<Incident>,
}

pub(super) async fn list(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let incidents = control.state.incidents(false).map_err(unavailable)?;
    Ok(Json(Incidents { incidents }).into_response())
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
    players_text(Some(&new.title), Some(&new.message))?;
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
        Ok((StatusCode::CREATED, Json(Created { id })).into_response())
    };
    let detail = body_detail(&body);
    let action = ("incident.open", "incident");
    operator.audited(&control, action, &detail, change).await
}

pub(super) async fn update(
    operator: Operator,
    State(control): State<Arc<Control>>,
    PathParam(id): PathParam<i64>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let change = async {
        let update: IncidentUpdate = parse(&body)?;
        players_text(None, Some(&update.message))?;
        let Some(status) = IncidentStatus::parse(&update.status) else {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_status",
                "status is investigating, identified, monitoring or resolved",
            ));
        };
        let message = &update.message;
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
        let incidents = control.state.incidents(false).map_err(unavailable)?;
        if let Some(incident) = incidents.iter().find(|i| i.id == id) {
            control
                .tell_players_about(&incident.component, message, "info")
                .await;
        }
        Ok(Json(IncidentUpdated { id, status }).into_response())
    };
    let detail = body_detail(&body);
    let subject = format!("incident/{id}");
    let action = ("incident.update", subject.as_str());
    operator.audited(&control, action, &detail, change).await
}

pub(super) async fn postmortem(
    _: Operator,
    State(control): State<Arc<Control>>,
    PathParam(id): PathParam<i64>,
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
