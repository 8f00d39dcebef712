//! The control plane's HTTP API: `/healthz`, `/readyz`; for operators (ops token) targets,
//! alerts and incidents, opening an incident by hand and posting updates (each pushed to
//! connected players); for players, `/api/v1/status`: components, their state and the
//! active incidents with their updates.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::{Control, now_ms};

/// What players see on the status page.
pub const COMPONENTS: [&str; 3] = ["wallet", "games", "lobby"];

pub fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/slos", get(slos))
        .route("/api/v1/incidents", get(incidents).post(open_incident))
        .route("/api/v1/incidents/{id}/updates", post(update_incident))
        .fallback(|| async {
            refuse(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
        })
        .with_state(control)
}

/// A refusal: status plus `{"error": code, "message": …}`.
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

fn refuse(status: StatusCode, code: &'static str, message: &str) -> Refusal {
    Refusal {
        status,
        code,
        message: message.to_owned(),
    }
}

fn unavailable(e: crate::state::StateError) -> Refusal {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "state_unavailable",
        &e.to_string(),
    )
}

fn operator(control: &Control, headers: &HeaderMap) -> Result<(), Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(token.as_bytes().ct_eq(control.config.ops_token.as_bytes())) {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "needs Authorization: Bearer <ops token>",
        ))
    }
}

async fn readyz(State(control): State<Arc<Control>>) -> Result<Response, Refusal> {
    control.state.incidents(true).map_err(unavailable)?;
    Ok(Json(json!({"ready": true})).into_response())
}

fn component_status(active: &[crate::state::Incident], component: &str) -> &'static str {
    let worst = active
        .iter()
        .filter(|i| i.component == component)
        .map(|i| match i.severity.as_str() {
            "critical" => 3,
            "major" => 2,
            _ => 1,
        })
        .max();
    match worst {
        None => "operational",
        Some(3) => "major_outage",
        Some(2) => "partial_outage",
        Some(_) => "degraded",
    }
}

async fn status(State(control): State<Arc<Control>>) -> Result<Response, Refusal> {
    let active = control.state.incidents(true).map_err(unavailable)?;
    let components: Vec<Value> = COMPONENTS
        .iter()
        .map(|c| json!({"name": c, "status": component_status(&active, c)}))
        .collect();
    let incidents: Vec<Value> = active
        .iter()
        .map(|i| {
            json!({
                "title": i.title, "component": i.component, "status": i.status,
                "opened_ms": i.opened_ms, "eta_ms": i.eta_ms, "updates": i.timeline,
            })
        })
        .collect();
    Ok(Json(json!({"components": components, "incidents": incidents})).into_response())
}

async fn targets(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let up = control.up.lock().expect("up lock").clone();
    let list: Vec<Value> = control
        .config
        .targets
        .iter()
        .zip(up)
        .map(|(t, up)| json!({"name": t.name, "kind": t.kind, "base": t.base, "up": up}))
        .collect();
    Ok(Json(json!({"targets": list})).into_response())
}

async fn alerts(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let active = control.engine.lock().expect("engine lock").active();
    Ok(Json(json!({"alerts": active})).into_response())
}

async fn slos(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let slo = control.slo.lock().expect("slo lock");
    let status = slo.status((now_ms() / 1000) as u64);
    Ok(Json(
        json!({"slos": [{"name": slo.slo.name, "objective": slo.slo.objective, "status": status}]}),
    )
    .into_response())
}

async fn incidents(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
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

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            &e.to_string(),
        )
    })
}

async fn open_incident(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let new: NewIncident = parse(&body)?;
    if !["critical", "major", "minor"].contains(&new.severity.as_str()) {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_severity",
            "severity is critical, major or minor",
        ));
    }
    if !COMPONENTS.contains(&new.component.as_str()) {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_component",
            "component is wallet, games or lobby",
        ));
    }
    let id = control
        .state
        .open_incident(
            &new.title,
            &new.component,
            &new.severity,
            None,
            &new.message,
            now_ms(),
        )
        .map_err(unavailable)?;
    control.push_to_players(&new.message, "warning").await;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentUpdate {
    status: String,
    message: String,
    eta_ms: Option<i64>,
}

async fn update_incident(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let update: IncidentUpdate = parse(&body)?;
    if !["investigating", "identified", "monitoring", "resolved"].contains(&update.status.as_str())
    {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_status",
            "status is investigating, identified, monitoring or resolved",
        ));
    }
    match control.state.update_incident(
        id,
        &update.status,
        &update.message,
        update.eta_ms,
        now_ms(),
    ) {
        Ok(()) => {}
        Err(crate::state::StateError::NoIncident(id)) => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no incident {id}"),
            ));
        }
        Err(e) => return Err(unavailable(e)),
    }
    control.push_to_players(&update.message, "info").await;
    Ok(Json(json!({"id": id, "status": update.status})).into_response())
}
