//! The control plane's REST API (described in `openapi.json`, served at
//! `/api/v1/openapi.json`): `/healthz`, `/readyz`; for players, `/api/v1/status`; for
//! operators (ops token as a bearer token, or the dashboard's cookie) targets, recent series,
//! alerts, SLOs, incidents (open by hand, post updates, postmortem skeleton), silences, the
//! nodes as the gateways see them (drain, undrain) and the audit log. Every operator action is
//! written to the audit log with its outcome.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::components::{COMPONENTS, is_incident_component, level};
use crate::{Control, now_ms};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The cookie the dashboard's sign-in sets (the ops token, HttpOnly, SameSite=Strict).
pub const OPS_COOKIE: &str = "croupier_ops";

pub fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/api/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/api/v1/status", get(status))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/series", get(series))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/slos", get(slos))
        .route("/api/v1/incidents", get(incidents).post(open_incident))
        .route("/api/v1/incidents/{id}/updates", post(update_incident))
        .route("/api/v1/incidents/{id}/postmortem", get(postmortem))
        .route("/api/v1/silences", get(silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/nodes/{name}", put(set_node))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/maintenance", get(windows).post(add_window))
        .route("/api/v1/maintenance/{id}", delete(cancel_window))
        .route("/api/v1/rollouts", get(rollouts).post(start_rollout))
        .route("/api/v1/rollouts/{id}", get(rollout))
        .route("/api/v1/drills", get(drills).post(add_drill))
        .route("/api/v1/backups", get(backups))
        .merge(crate::pages::router())
        .fallback(|| async {
            refuse(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
        })
        .layer(croupier_vitals::panics::layer())
        .layer(axum::middleware::map_response(croupier_web::secure_headers))
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

/// The ops token a request carries: a bearer token, or the dashboard's cookie.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(bearer) = croupier_web::bearer(headers) {
        return Some(bearer);
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(OPS_COOKIE)?.strip_prefix('='))
}

/// Whether the request carries the ops token.
pub fn is_operator(control: &Control, headers: &HeaderMap) -> bool {
    croupier_web::same_token(
        presented_token(headers).unwrap_or(""),
        &control.config.ops_token,
    )
}

/// Admits operators; returns who they say they are (`X-Croupier-Operator`, for the audit log).
fn operator(control: &Control, headers: &HeaderMap) -> Result<String, Refusal> {
    if !is_operator(control, headers) {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "needs Authorization: Bearer <ops token>",
        ));
    }
    Ok(headers
        .get("x-croupier-operator")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .unwrap_or("operator")
        .to_owned())
}

/// Writes an operator's action and its outcome to the audit log.
fn audit<T>(
    control: &Control,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &Value,
    result: &Result<T, Refusal>,
) {
    let outcome = match result {
        Ok(_) => "ok".to_owned(),
        Err(refusal) => format!("refused: {}", refusal.code),
    };
    if let Err(e) = control.state.audit(
        actor,
        action,
        subject,
        &detail.to_string(),
        &outcome,
        now_ms(),
    ) {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

/// Alive while the monitor loop finishes rounds: a stuck loop is a restart.
async fn healthz(State(control): State<Arc<Control>>) -> Response {
    if control.monitor_alive(crate::now_ms()) {
        Json(json!({"status": "ok"})).into_response()
    } else {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "monitor_stuck",
            "the monitor loop finished no round lately; restart this process",
        )
        .into_response()
    }
}

async fn readyz(State(control): State<Arc<Control>>) -> Result<Response, Refusal> {
    control.state.incidents(true).map_err(unavailable)?;
    Ok(Json(json!({"ready": true})).into_response())
}

/// Days of uptime bars on the status page.
pub const UPTIME_DAYS: i64 = 90;
/// Scheduled maintenance shows on the status page this long ahead.
const UPCOMING_MS: i64 = 7 * 86_400_000;

/// The players' view: each component's state and 90-day uptime, and the active incidents.
pub fn public_status(control: &Control) -> Result<Value, crate::state::StateError> {
    let active = control.state.incidents(true)?;
    let now_s = now_ms() / 1000;
    let from_s = now_s - now_s.rem_euclid(86_400) - (UPTIME_DAYS - 1) * 86_400;
    let mut components = Vec::new();
    for (id, name) in COMPONENTS {
        let days = control.state.uptime(id, 86_400, from_s)?;
        let (up, total) = days
            .iter()
            .fold((0, 0), |(u, t), d| (u + d.up_s, t + d.total_s));
        let level = level(&active, id);
        components.push(json!({
            "id": id, "name": name, "status": level, "status_label": level.label(),
            "uptime_90d": (total > 0).then(|| up as f64 / total as f64),
            "days": days,
        }));
    }
    let incidents: Vec<Value> = active
        .iter()
        .map(|i| {
            json!({
                "id": i.id, "title": i.title, "component": i.component, "status": i.status,
                "severity": i.severity, "opened_ms": i.opened_ms, "eta_ms": i.eta_ms,
                "updates": i.timeline,
            })
        })
        .collect();
    let now = now_ms();
    let mut maintenance = Vec::new();
    for window in control.state.windows()? {
        let active_since = window.active_at(now);
        let next = window.next_start(now).filter(|n| *n - now < UPCOMING_MS);
        let Some(start) = active_since.or(next) else {
            continue;
        };
        let in_progress = active_since.is_some();
        if in_progress {
            for component in components.iter_mut() {
                if window
                    .scope
                    .components()
                    .contains(&component["id"].as_str().unwrap_or(""))
                {
                    component["status"] = json!("under_maintenance");
                    component["status_label"] = json!("Under maintenance");
                }
            }
        }
        maintenance.push(json!({
            "title": window.title, "scope": window.scope.text(), "starts_ms": start,
            "ends_ms": start + window.duration_s * 1000, "in_progress": in_progress,
        }));
    }
    Ok(
        json!({"components": components, "incidents": incidents, "maintenance": maintenance,
              "generated_ms": now}),
    )
}

async fn status(State(control): State<Arc<Control>>) -> Result<Response, Refusal> {
    Ok(Json(public_status(&control).map_err(unavailable)?).into_response())
}

async fn targets(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let up = control.up();
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
    let active = control.engine.lock().active();
    let now = now_ms();
    let silences = control.state.silences(now).map_err(unavailable)?;
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

async fn slos(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
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
    let actor = operator(&control, &headers)?;
    let detail: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = open_incident_checked(&control, &body).await;
    audit(
        &control,
        &actor,
        "incident.open",
        "incident",
        &detail,
        &result,
    );
    result
}

async fn open_incident_checked(control: &Control, body: &[u8]) -> Result<Response, Refusal> {
    let new: NewIncident = parse(body)?;
    if !["critical", "major", "minor"].contains(&new.severity.as_str()) {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_severity",
            "severity is critical, major or minor",
        ));
    }
    if !is_incident_component(&new.component) {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_component",
            "component is wallet, dice, roulette, slot, blackjack, lobby or games (all games)",
        ));
    }
    if new.title.trim().is_empty() || new.message.trim().is_empty() {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "title and message must not be empty",
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
    let actor = operator(&control, &headers)?;
    let detail: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = update_incident_checked(&control, id, &body).await;
    audit(
        &control,
        &actor,
        "incident.update",
        &format!("incident/{id}"),
        &detail,
        &result,
    );
    result
}

async fn update_incident_checked(
    control: &Control,
    id: i64,
    body: &[u8],
) -> Result<Response, Refusal> {
    let update: IncidentUpdate = parse(body)?;
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

/// A query string, or a 400 naming what is wrong with it.
fn query_or_refuse<T>(
    query: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Refusal> {
    query
        .map(|Query(q)| q)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "invalid_query", &e.body_text()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesQuery {
    /// Only points newer than this (Unix seconds).
    since_s: Option<u64>,
}

async fn series(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let query = query_or_refuse(query)?;
    let since = query.since_s.unwrap_or(0);
    let series = control.series.lock();
    let list: Vec<Value> = control
        .config
        .targets
        .iter()
        .zip(series.iter())
        .map(|(t, s)| {
            let points: Vec<&crate::series::Point> =
                s.points.iter().filter(|p| p.ts_s > since).collect();
            json!({"target": t.name, "kind": t.kind, "points": points})
        })
        .collect();
    Ok(Json(json!({"targets": list})).into_response())
}

async fn postmortem(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
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

async fn silences(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let list = control.state.silences(now_ms()).map_err(unavailable)?;
    Ok(Json(json!({"silences": list})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    /// An alert key (`rule/target`), a key prefix ending in `*`, or `component:<name>`.
    matcher: String,
    comment: String,
    /// How long it lasts, from now (at most 30 days).
    duration_s: i64,
}

/// The longest silence: a month.
const MAX_SILENCE_S: i64 = 30 * 86_400;

async fn add_silence(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let actor = operator(&control, &headers)?;
    let detail: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = (|| {
        let new: NewSilence = parse(&body)?;
        let matcher = new.matcher.trim();
        let valid_matcher = match matcher.strip_prefix("component:") {
            Some(component) => is_incident_component(component),
            None => {
                matcher.len() > 1 && matcher.len() <= 200 && !matcher.contains(char::is_whitespace)
            }
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
        let now = now_ms();
        let id = control
            .state
            .add_silence(
                matcher,
                &new.comment,
                &actor,
                now,
                now + new.duration_s * 1000,
            )
            .map_err(unavailable)?;
        Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
    })();
    audit(&control, &actor, "silence.add", "silence", &detail, &result);
    result
}

/// The answer to ending something by id: `{"id", <done>: true}`, or 404 when there was none.
fn ended(
    outcome: Result<bool, crate::state::StateError>,
    what: &str,
    id: i64,
    done: &str,
) -> Result<Response, Refusal> {
    match outcome {
        Ok(true) => Ok(Json(json!({"id": id, done: true})).into_response()),
        Ok(false) => Err(refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no {what} {id}"),
        )),
        Err(e) => Err(unavailable(e)),
    }
}

async fn expire_silence(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, Refusal> {
    let actor = operator(&control, &headers)?;
    let result = ended(
        control.state.expire_silence(id, now_ms()),
        "silence",
        id,
        "expired",
    );
    audit(
        &control,
        &actor,
        "silence.expire",
        &format!("silence/{id}"),
        &Value::Null,
        &result,
    );
    result
}

fn gateway_refusal(e: crate::ops_client::CallError) -> Refusal {
    use crate::ops_client::CallError as GatewayError;
    match e {
        GatewayError::Refused { status: 404, .. } => {
            refuse(StatusCode::NOT_FOUND, "unknown_node", &e.to_string())
        }
        GatewayError::Refused { status: 422, .. } => refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_state",
            &e.to_string(),
        ),
        _ => refuse(
            StatusCode::BAD_GATEWAY,
            "gateway_unavailable",
            &e.to_string(),
        ),
    }
}

async fn nodes(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let views = crate::gateways::nodes(&control)
        .await
        .map_err(gateway_refusal)?;
    Ok(Json(json!({"gateways": views})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeState {
    state: String,
}

async fn set_node(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let actor = operator(&control, &headers)?;
    let detail: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = async {
        let wanted: NodeState = parse(&body)?;
        if !["active", "draining", "maintenance"].contains(&wanted.state.as_str()) {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_state",
                "state is active, draining or maintenance",
            ));
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_node",
                "node names are letters, digits, - and _",
            ));
        }
        let view = crate::gateways::set_node_state(&control, &name, &wanted.state)
            .await
            .map_err(gateway_refusal)?;
        Ok(Json(view).into_response())
    }
    .await;
    audit(
        &control,
        &actor,
        "node.set_state",
        &format!("node/{name}"),
        &detail,
        &result,
    );
    result
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<i64>,
}

async fn audit_log(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let query = query_or_refuse(query)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let entries = control.state.audit_log(limit).map_err(unavailable)?;
    Ok(Json(json!({"entries": entries})).into_response())
}

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

async fn windows(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
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

async fn add_window(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    use crate::maintenance::{Schedule, Scope, Window};
    let actor = operator(&control, &headers)?;
    let detail: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = (|| {
        let new: NewWindow = parse(&body)?;
        let invalid = |e: crate::maintenance::WindowError| {
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
            _ => return Err(invalid(crate::maintenance::WindowError::Schedule)),
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
            created_by: actor.clone(),
        };
        window.validate().map_err(invalid)?;
        let id = control
            .state
            .add_window(&window, now_ms())
            .map_err(unavailable)?;
        Ok((
            StatusCode::CREATED,
            Json(json!({"id": id, "next_start_ms": window.next_start(now_ms())})),
        )
            .into_response())
    })();
    audit(
        &control,
        &actor,
        "maintenance.schedule",
        "maintenance",
        &detail,
        &result,
    );
    result
}

async fn cancel_window(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, Refusal> {
    let actor = operator(&control, &headers)?;
    let result = ended(
        control.state.cancel_window(id, now_ms()),
        "window",
        id,
        "cancelled",
    );
    audit(
        &control,
        &actor,
        "maintenance.cancel",
        &format!("maintenance/{id}"),
        &Value::Null,
        &result,
    );
    result
}

async fn rollouts(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let list = control.state.rollouts(20).map_err(unavailable)?;
    Ok(Json(json!({"rollouts": list})).into_response())
}

async fn rollout(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let found = control
        .state
        .rollouts(1_000)
        .map_err(unavailable)?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| {
            refuse(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no rollout {id}"),
            )
        })?;
    Ok(Json(json!(found)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRollout {
    /// The new build's path (on the nodes' machine).
    binary: String,
    batch_size: Option<usize>,
    drain_deadline_s: Option<u64>,
    /// Rehearse on a staging node started from the newest backup first.
    staging: Option<bool>,
}

async fn start_rollout(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let actor = operator(&control, &headers)?;
    let detail: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = (|| {
        let new: NewRollout = parse(&body)?;
        let batch_size = new.batch_size.unwrap_or(1);
        let drain_deadline_s = new.drain_deadline_s.unwrap_or(30);
        if batch_size == 0 || !(1..=3_600).contains(&drain_deadline_s) {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "batch_size is at least 1 and drain_deadline_s between 1 and 3600",
            ));
        }
        if control.config.update.supervisor.is_some()
            && !std::path::Path::new(&new.binary).is_file()
        {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_binary",
                &format!("{} is not a file", new.binary),
            ));
        }
        let running = control.state.rollouts(1).map_err(unavailable)?;
        if running.first().is_some_and(|r| r.status == "running") {
            return Err(refuse(
                StatusCode::CONFLICT,
                "rollout_running",
                "a rolling update is already running",
            ));
        }
        let id = control
            .state
            .start_rollout(&new.binary, batch_size as i64, &actor, now_ms())
            .map_err(unavailable)?;
        let staging = new.staging.unwrap_or(false);
        if staging && control.config.backup.is_none() {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_backups",
                "a staging rehearsal starts from the newest backup; this control plane runs none",
            ));
        }
        let plan = crate::rollout::RolloutPlan {
            binary: new.binary,
            staging,
            batch_size,
            drain_deadline: std::time::Duration::from_secs(drain_deadline_s),
            actor: actor.clone(),
        };
        tokio::spawn(crate::rollout::run(control.clone(), id, plan));
        Ok((StatusCode::ACCEPTED, Json(json!({"id": id}))).into_response())
    })();
    audit(
        &control,
        &actor,
        "maintenance.run",
        "rollout",
        &detail,
        &result,
    );
    result
}

async fn backups(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
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

async fn drills(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let reports = control.state.drill_reports(50).map_err(unavailable)?;
    Ok(Json(json!({"drills": reports})).into_response())
}

/// A drill's report, as `croupier drill --report-to` sends it.
async fn add_drill(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let actor = operator(&control, &headers)?;
    let result = (|| {
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
    })();
    let summary = serde_json::from_slice::<Value>(&body)
        .map(|r| json!({"drill": r["drill"], "verdict": r["verdict"]}))
        .unwrap_or(Value::Null);
    audit(&control, &actor, "drill.report", "drill", &summary, &result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    const TOKEN: &str = "a-test-token-that-is-long-enough-000000";

    fn control(dir: &std::path::Path) -> Arc<Control> {
        Control::new(
            crate::ControlConfig {
                reserve: None,
                targets: Vec::new(),
                check_url: None,
                webhooks: Vec::new(),
                ops_token: TOKEN.into(),
                rules: crate::engine::default_rules(),
                slos: crate::slo::default_slos(0.999),
                update: Default::default(),
                backup: None,
            },
            crate::state::State::open(&dir.join("control.db")).unwrap(),
        )
    }

    async fn call(
        router: &Router,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn every_documented_operation_is_routed_and_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let router = router(control(dir.path()));
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 20);
        for (path, operations) in paths {
            let concrete = path.replace("{id}", "1").replace("{name}", "node-1");
            for (method, operation) in operations.as_object().unwrap() {
                let (status, body) =
                    call(&router, &method.to_uppercase(), &concrete, None, "{}").await;
                assert!(
                    body["message"] != "no such route" && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but not routed"
                );
                if operation.get("security").is_some() {
                    assert_eq!(
                        status,
                        StatusCode::UNAUTHORIZED,
                        "{method} {path} needs the token"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn drill_reports_are_kept_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let router = router(control(dir.path()));
        let (status, answer) = call(
            &router,
            "POST",
            "/api/v1/drills",
            Some(TOKEN),
            r#"{"drill":"kill-node"}"#,
        )
        .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body"))
        );
        let report = r#"{"drill":"kill-node","verdict":"pass","player_visible_errors":0}"#;
        let (status, _) = call(&router, "POST", "/api/v1/drills", Some(TOKEN), report).await;
        assert_eq!(status, StatusCode::CREATED);
        let (_, listed) = call(&router, "GET", "/api/v1/drills", Some(TOKEN), "").await;
        let drills = listed["drills"].as_array().unwrap();
        assert_eq!(drills.len(), 1);
        assert_eq!(drills[0]["report"]["player_visible_errors"], 0);
    }

    #[tokio::test]
    async fn bad_silences_are_refused_named_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let router = router(control(dir.path()));
        for (body, code) in [
            (
                r#"{"matcher":"down/node-1","comment":"deploy","duration_s":0}"#,
                "invalid_duration",
            ),
            (
                r#"{"matcher":"component:casino","comment":"x","duration_s":60}"#,
                "invalid_matcher",
            ),
            (
                r#"{"matcher":"down/node-1","comment":" ","duration_s":60}"#,
                "invalid_body",
            ),
            (
                r#"{"matcher":"down/node-1","comment":"x","duration_s":60,"extra":1}"#,
                "invalid_body",
            ),
        ] {
            let (status, answer) =
                call(&router, "POST", "/api/v1/silences", Some(TOKEN), body).await;
            assert_eq!(
                (status, answer["error"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
                "{body}"
            );
        }
        let (_, listed) = call(&router, "GET", "/api/v1/silences", Some(TOKEN), "").await;
        assert_eq!(
            listed["silences"].as_array().unwrap().len(),
            0,
            "nothing was created"
        );
        let (status, created) = call(
            &router,
            "POST",
            "/api/v1/silences",
            Some(TOKEN),
            r#"{"matcher":"cpu_*","comment":"load test","duration_s":600}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let id = created["id"].as_i64().unwrap();
        let (status, _) = call(
            &router,
            "DELETE",
            &format!("/api/v1/silences/{id}"),
            Some(TOKEN),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(&router, "DELETE", "/api/v1/silences/999", Some(TOKEN), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, audit) = call(&router, "GET", "/api/v1/audit?limit=10", Some(TOKEN), "").await;
        let outcomes: Vec<(&str, &str)> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap(),
                    e["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(outcomes.len(), 7, "{outcomes:?}");
        assert_eq!(outcomes[0], ("silence.expire", "refused: not_found"));
        assert_eq!(outcomes[1], ("silence.expire", "ok"));
        assert_eq!(outcomes[2], ("silence.add", "ok"));
        assert_eq!(outcomes[6], ("silence.add", "refused: invalid_duration"));
        let (status, answer) = call(&router, "GET", "/api/v1/audit?limit=x", Some(TOKEN), "").await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_query"))
        );
    }
}
