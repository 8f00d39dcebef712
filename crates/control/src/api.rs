//! The control plane's REST API (described in `openapi.json`, served at
//! `/api/v1/openapi.json`): `/healthz`, `/readyz`; for players, `/api/v1/status`; for
//! operators (ops token as a bearer token, or a dashboard session) targets, recent series,
//! alerts, SLOs, incidents (open by hand, post updates, postmortem skeleton), silences, the
//! nodes as the gateways see them (drain, undrain) and the audit log. Every operator action is
//! written to the audit log with its outcome.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::components::{COMPONENTS, is_incident_component, level};
use crate::operator_sessions;
use crate::{Control, now_ms};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

pub fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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
        .route("/api/v1/replication", get(replication))
        .route("/api/v1/sla", get(crate::sla_api::sla))
        .route("/api/v1/oncall", get(crate::page_api::oncall))
        .route("/api/v1/pages", get(crate::page_api::pages))
        .route(
            "/api/v1/pages/{id}/{action}",
            post(crate::page_api::operator_action),
        )
        .route(
            "/api/v1/subscriptions",
            get(crate::subscription_api::list).post(crate::subscription_api::subscribe),
        )
        .route(
            "/subscriptions/{id}/{action}",
            get(crate::subscription_api::link_form).post(crate::subscription_api::link_action),
        )
        .route(
            "/pages/{id}/{action}",
            get(crate::page_api::link_form).post(crate::page_api::link_action),
        )
        .merge(crate::blocks::router())
        .merge(crate::pages::router())
        .layer(axum::middleware::from_fn_with_state(
            control.lockout.clone(),
            croupier_web::lockout::guard,
        ))
        .fallback(|| async {
            refuse(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
        })
        .layer(axum::middleware::from_fn_with_state(
            control.clone(),
            leader_only_changes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            control.clone(),
            same_site_changes,
        ))
        .layer(croupier_vitals::panics::layer())
        .layer(axum::middleware::map_response(croupier_web::secure_headers))
        .with_state(control)
}

/// A refusal: status plus `{"error": code, "message": …}`.
pub(crate) struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
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

pub(crate) fn refuse(status: StatusCode, code: &'static str, message: &str) -> Refusal {
    Refusal {
        status,
        code,
        message: message.to_owned(),
    }
}

pub(crate) fn unavailable(e: crate::state::StateError) -> Refusal {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "state_unavailable",
        &e.to_string(),
    )
}

/// Who is calling, from the credential: `token:<name>` for the ops token as a bearer token
/// (the name is what the caller says in `X-Croupier-Operator`), `session:<name>` for a
/// dashboard session (the name given at its sign-in); None for anyone else.
pub fn credential_actor(control: &Control, headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = croupier_web::bearer(headers) {
        if !croupier_web::same_token(bearer, &control.config.ops_token) {
            return None;
        }
        let claimed = headers
            .get("x-croupier-operator")
            .and_then(|v| v.to_str().ok())
            .and_then(operator_sessions::plain_name)
            .unwrap_or("operator");
        return Some(format!("token:{claimed}"));
    }
    let (_, session) = control.sessions.of_request(headers, now_ms())?;
    Some(format!("session:{}", session.name))
}

/// Whether the request carries the ops token or a live dashboard session.
pub fn is_operator(control: &Control, headers: &HeaderMap) -> bool {
    credential_actor(control, headers).is_some()
}

/// Admits operators; returns who is calling for the audit log (`credential_actor`).
pub(crate) fn operator(control: &Control, headers: &HeaderMap) -> Result<String, Refusal> {
    credential_actor(control, headers).ok_or_else(|| {
        refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "needs Authorization: Bearer <ops token>",
        )
    })
}

/// Paths that change nothing of an operator's, or check their own credential: no CSRF
/// token is asked there (sign-in and sign-out, players' subscriptions, signed page links).
fn csrf_exempt(path: &str) -> bool {
    matches!(path, "/login" | "/logout" | "/api/v1/subscriptions")
        || path.starts_with("/subscriptions/")
        || path.starts_with("/pages/")
}

/// A change authenticated by a dashboard session's cookie must carry the session's CSRF
/// token and come from this origin (`operator_sessions::forged`): a page elsewhere that
/// makes the browser post with the cookie gets 403 `csrf`, audited. Bearer-token calls
/// carry no ambient credential and pass.
async fn same_site_changes(
    State(control): State<Arc<Control>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe
        || croupier_web::bearer(request.headers()).is_some()
        || csrf_exempt(request.uri().path())
    {
        return next.run(request).await;
    }
    let Some((_, session)) = control.sessions.of_request(request.headers(), now_ms()) else {
        return next.run(request).await;
    };
    let Some(why) = operator_sessions::forged(request.headers(), &session) else {
        return next.run(request).await;
    };
    let refusal = || refuse(StatusCode::FORBIDDEN, "csrf", why);
    let detail = json!({"method": request.method().as_str(), "path": request.uri().path()});
    let actor = format!("session:{}", session.name);
    tracing::warn!(path = %request.uri().path(), why, "refused a cookie-authenticated change");
    audit::<()>(&control, &actor, "change", "csrf", &detail, &Err(refusal()));
    refusal().into_response()
}

/// Writes an operator's action and its outcome to the audit log.
pub(crate) fn audit<T>(
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

/// A follower serves reads; an operator's change (any other method under `/api/`) is
/// refused with 503 `not_leader` and audited, so that no change is made where it would not
/// be acted on. Callers without the ops token get the 401 the leader would give them.
async fn leader_only_changes(
    State(control): State<Arc<Control>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let change = !matches!(*request.method(), Method::GET | Method::HEAD)
        && request.uri().path().starts_with("/api/");
    if !change || control.config.leadership.is_leader() {
        return next.run(request).await;
    }
    let actor = match operator(&control, request.headers()) {
        Ok(actor) => actor,
        Err(refusal) => return refusal.into_response(),
    };
    let refusal = || {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_leader",
            "this control plane follows; send changes to the leader (GET /healthz says which one leads)",
        )
    };
    let detail = json!({"method": request.method().as_str(), "path": request.uri().path()});
    audit::<()>(
        &control,
        &actor,
        "change",
        "leadership",
        &detail,
        &Err(refusal()),
    );
    let mut response = refusal().into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// Whether this control plane leads, and what its last scrape or check of each target
/// found, as Prometheus text (`docs/metrics.md`).
async fn metrics(State(control): State<Arc<Control>>) -> Response {
    let leadership = &control.config.leadership;
    let mut body = format!(
        "# HELP croupier_control_leader 1 while this control plane holds the lease and acts, 0 while it follows.\n\
         # TYPE croupier_control_leader gauge\n\
         croupier_control_leader {}\n\
         # HELP croupier_control_leader_terms_total Times this process took the lease.\n\
         # TYPE croupier_control_leader_terms_total counter\n\
         croupier_control_leader_terms_total {}\n",
        u8::from(leadership.is_leader()),
        leadership.terms()
    );
    body.push_str(
        "# HELP croupier_control_target_up 1 when the target's last scrape or synthetic check passed, 0 when it failed.\n\
         # TYPE croupier_control_target_up gauge\n",
    );
    let series = control.series.lock();
    for (target, series) in control.config.targets.iter().zip(series.iter()) {
        if let Some(point) = series.latest() {
            let kind = serde_json::to_value(target.kind).unwrap_or_default();
            body.push_str(&format!(
                "croupier_control_target_up{{target=\"{}\",kind=\"{}\"}} {}\n",
                label_value(&target.name),
                kind.as_str().unwrap_or(""),
                u8::from(point.up)
            ));
        }
    }
    drop(series);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Alive while the monitor loop finishes rounds: a stuck loop is a restart. Says whether
/// this control plane leads (a follower is alive too).
async fn healthz(State(control): State<Arc<Control>>) -> Response {
    if control.monitor_alive(crate::now_ms()) {
        let leadership = &control.config.leadership;
        let leader = leadership.is_leader();
        Json(json!({
            "status": "ok",
            "leader": leader,
            "role": if leader { "leader" } else { "follower" },
            "leader_since_ms": leader.then(|| leadership.since_ms()),
        }))
        .into_response()
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
    // Incidents of internal components (security) are for operators only.
    let incidents: Vec<Value> = active
        .iter()
        .filter(|i| is_incident_component(&i.component))
        .map(|i| {
            json!({
                "id": i.id, "title": i.title, "component": i.component, "status": i.status,
                "severity": i.severity, "opened_ms": i.opened_ms, "eta_ms": i.eta_ms,
                "updates": i.timeline.iter().filter(|u| u.is_public()).collect::<Vec<_>>(),
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
        .map(|(t, up)| {
            let base = crate::replication::masked(&t.base);
            json!({"name": t.name, "kind": t.kind, "base": base, "up": up})
        })
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
pub(crate) fn query_or_refuse<T>(
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
    /// Nodes that must stay eligible on every gateway while a batch is out (default 1).
    min_eligible: Option<usize>,
}

async fn start_rollout(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let actor = operator(&control, &headers)?;
    let detail: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = async {
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
        // Every refusal comes before the rollout is recorded: a recorded rollout stays
        // `running` until its task finishes it, and blocks every later one.
        let staging = new.staging.unwrap_or(false);
        if staging && control.config.backup.is_none() {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_backups",
                "a staging rehearsal starts from the newest backup; this control plane runs none",
            ));
        }
        let min_eligible = new.min_eligible.unwrap_or(1);
        leaves_enough(&control, batch_size, min_eligible).await?;
        let id = control
            .state
            .start_rollout(&new.binary, batch_size as i64, &actor, now_ms())
            .map_err(unavailable)?;
        let plan = crate::rollout::RolloutPlan {
            binary: new.binary,
            staging,
            batch_size,
            drain_deadline: std::time::Duration::from_secs(drain_deadline_s),
            min_eligible,
            actor: actor.clone(),
        };
        tokio::spawn(crate::rollout::run(control.clone(), id, plan));
        Ok((StatusCode::ACCEPTED, Json(json!({"id": id}))).into_response())
    }
    .await;
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

/// Refuses a rollout whose batches would leave fewer than `min` nodes serving players (or
/// fewer than the current load needs, when a node's capacity is known): too few nodes
/// configured (422), or too few eligible on every gateway now (409). A deployment with no
/// node has no batch to drain.
async fn leaves_enough(control: &Control, batch_size: usize, min: usize) -> Result<(), Refusal> {
    let nodes: Vec<crate::engine::Target> = control
        .config
        .targets
        .iter()
        .filter(|t| t.kind == crate::engine::Kind::Node)
        .cloned()
        .collect();
    if nodes.is_empty() {
        return Ok(());
    }
    let out = batch_size.min(nodes.len());
    let (min, need) = crate::capacity::minimum(control, min);
    if let Some(need) = need
        && nodes.len() - out < min
    {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "load_needs_more_nodes",
            &format!(
                "{}; batches of {out} of the {} nodes would leave {}: wait for a quieter \
                 hour, add nodes, or raise node_capacity_rps if a node serves more",
                need.describe(),
                nodes.len(),
                nodes.len() - out
            ),
        ));
    }
    if nodes.len() - out < min {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_few_nodes",
            &format!(
                "batches of {out} of the {} nodes would leave {} to serve players, fewer than min_eligible {min}",
                nodes.len(),
                nodes.len() - out
            ),
        ));
    }
    let has_gateway = control
        .config
        .targets
        .iter()
        .any(|t| t.kind == crate::engine::Kind::Gateway);
    if has_gateway {
        crate::eligibility::room_now(control, &nodes, &nodes[..out], min)
            .await
            .map_err(|why| refuse(StatusCode::CONFLICT, "too_few_eligible", &why))?;
    }
    Ok(())
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

async fn replication(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    operator(&control, &headers)?;
    let stores = control.replication.lock().clone();
    Ok(Json(json!({"stores": stores})).into_response())
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
        control_leading(dir, crate::lease::Leadership::sole())
    }

    fn control_leading(
        dir: &std::path::Path,
        leadership: Arc<crate::lease::Leadership>,
    ) -> Arc<Control> {
        Control::new(
            crate::ControlConfig {
                reserve: None,
                targets: Vec::new(),
                check_url: None,
                test_players: Default::default(),
                webhooks: Vec::new(),
                ops_token: TOKEN.into(),
                rules: crate::engine::default_rules(),
                slos: crate::slo::default_slos(0.999),
                sla_credits: Vec::new(),
                pager: None,
                subscriptions: None,
                update: Default::default(),
                backup: None,
                leadership,
                shared_alert_log: None,
                lockout: Default::default(),
                client_tls: Default::default(),
                secure_cookies: false,
            },
            crate::state::State::open(&dir.join("control.db")).unwrap(),
        )
        .unwrap()
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
        let (status, bytes) = answer(router, request, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Sends `request` with `body` to the router: the status and the body's bytes.
    async fn answer(
        router: &Router,
        request: axum::http::request::Builder,
        body: &str,
    ) -> (StatusCode, Vec<u8>) {
        let response = router
            .clone()
            .oneshot(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, bytes.to_vec())
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
            let concrete = path
                .replace("{id}", "1")
                .replace("{name}", "node-1")
                .replace("{action}", "ack");
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
    async fn a_follower_serves_reads_and_refuses_changes_with_an_audit_entry() {
        let dir = tempfile::tempdir().unwrap();
        let follower = control_leading(dir.path(), Arc::default());
        let router = router(follower.clone());
        let silence = r#"{"matcher":"down/node-1","duration_s":60,"comment":"x"}"#;
        let (status, answer) =
            call(&router, "POST", "/api/v1/silences", Some(TOKEN), silence).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("not_leader"))
        );
        let (status, _) = call(&router, "POST", "/api/v1/silences", None, silence).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(follower.state.silences(now_ms()).unwrap().is_empty());
        let audit = follower.state.audit_log(10).unwrap();
        assert_eq!(audit.len(), 1, "the operator's refused change only");
        assert_eq!(audit[0].outcome, "refused: not_leader");
        let (status, health) = call(&router, "GET", "/healthz", None, "").await;
        assert_eq!(
            (status, health["role"].as_str()),
            (StatusCode::OK, Some("follower"))
        );
        let (status, _) = call(&router, "GET", "/api/v1/incidents", Some(TOKEN), "").await;
        assert_eq!(status, StatusCode::OK);
        let response = router
            .clone()
            .oneshot(
                axum::http::Request::get("/metrics")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let text = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&text).contains("croupier_control_leader 0\n"));
    }

    #[tokio::test]
    async fn a_new_leader_fails_the_rollout_its_predecessor_left_running() {
        let dir = tempfile::tempdir().unwrap();
        let control = control(dir.path());
        let orphan = control
            .state
            .start_rollout("/opt/croupier/next", 1, "operator", now_ms())
            .unwrap();
        control.tick().await;
        let rollouts = control.state.rollouts(5).unwrap();
        assert_eq!(
            (rollouts[0].id, rollouts[0].status.as_str()),
            (orphan, "failed")
        );
        assert_eq!(rollouts[0].steps.last().unwrap().step, "orphaned");
        let router = router(control);
        let plain = r#"{"binary":"/opt/croupier/next"}"#;
        let (status, answer) = call(&router, "POST", "/api/v1/rollouts", Some(TOKEN), plain).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }

    #[tokio::test]
    async fn a_refused_rollout_records_nothing_and_the_next_one_starts() {
        let dir = tempfile::tempdir().unwrap();
        let router = router(control(dir.path()));
        let staged = r#"{"binary":"/opt/croupier/next","staging":true}"#;
        let (status, answer) = call(&router, "POST", "/api/v1/rollouts", Some(TOKEN), staged).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("no_backups"))
        );
        let (_, listed) = call(&router, "GET", "/api/v1/rollouts", Some(TOKEN), "").await;
        assert_eq!(listed["rollouts"].as_array().unwrap().len(), 0, "{listed}");
        let plain = r#"{"binary":"/opt/croupier/next"}"#;
        let (status, answer) = call(&router, "POST", "/api/v1/rollouts", Some(TOKEN), plain).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
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

    /// A request as a browser with the session `cookie` sends it: a Host, and for changes
    /// the Origin it comes from and (when given) the CSRF token.
    async fn browser(
        router: &Router,
        method: &str,
        path: &str,
        cookie: &str,
        origin: Option<&str>,
        csrf: Option<&str>,
        body: &str,
    ) -> (StatusCode, String) {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "ops.example:8080")
            .header("cookie", cookie)
            .header("content-type", "text/plain");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        let (status, bytes) = answer(router, request, body).await;
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Signs in on the form as alice: the session cookie and the dashboard's CSRF token.
    async fn sign_in(router: &Router) -> (String, String) {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={TOKEN}&name=alice")))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_owned();
        assert!(
            !cookie.contains(TOKEN),
            "the cookie holds no token: {cookie}"
        );
        let (status, page) = browser(router, "GET", "/dashboard", &cookie, None, None, "").await;
        assert_eq!(status, StatusCode::OK);
        let csrf = page
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        (cookie, csrf)
    }

    #[tokio::test]
    async fn dashboard_sessions_refuse_cross_site_changes_and_end_at_sign_out() {
        let dir = tempfile::tempdir().unwrap();
        let control = control(dir.path());
        let router = router(control.clone());
        let (cookie, csrf) = sign_in(&router).await;
        let (status, _) = browser(&router, "GET", "/api/v1/alerts", &cookie, None, None, "").await;
        assert_eq!(status, StatusCode::OK);

        // A page elsewhere posting a text/plain silence with the cookie is refused.
        let silence = r#"{"matcher":"down/node-1","comment":"deploy","duration_s":60}"#;
        let evil = Some("https://evil.example");
        for (origin, token) in [
            (evil, Some(csrf.as_str())),
            (None, None),
            (None, Some("guess")),
        ] {
            let (status, body) = browser(
                &router,
                "POST",
                "/api/v1/silences",
                &cookie,
                origin,
                token,
                silence,
            )
            .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            assert!(body.contains("\"csrf\""), "{body}");
        }
        let (_, listed) = call(&router, "GET", "/api/v1/silences", Some(TOKEN), "").await;
        assert_eq!(
            listed["silences"].as_array().map(Vec::len),
            Some(0),
            "{listed}"
        );

        // The dashboard itself: same origin, the session's token.
        let own = Some("http://ops.example:8080");
        let (status, body) = browser(
            &router,
            "POST",
            "/api/v1/silences",
            &cookie,
            own,
            Some(&csrf),
            silence,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (_, audit) = call(&router, "GET", "/api/v1/audit", Some(TOKEN), "").await;
        let entries = audit["entries"].as_array().unwrap();
        let by = |action: &str, outcome: &str| {
            entries.iter().any(|e| {
                e["actor"] == "session:alice"
                    && e["action"] == action
                    && e["outcome"].as_str().unwrap_or("").starts_with(outcome)
            })
        };
        assert!(by("sign_in", "ok") && by("silence.add", "ok"), "{audit}");
        assert!(by("change", "refused: csrf"), "{audit}");

        // Signing out ends the session on the server.
        let (status, _) = browser(&router, "POST", "/logout", &cookie, own, None, "").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (status, _) = browser(&router, "GET", "/api/v1/alerts", &cookie, None, None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_ops_token_is_no_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let router = router(control(dir.path()));
        let cookie = format!("croupier_ops={TOKEN}");
        let (status, _) = browser(&router, "GET", "/api/v1/alerts", &cookie, None, None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
