//! The control plane's HTTP surface (described in `openapi.json`, served at
//! `/api/v1/openapi.json`): the router, one module per resource, and the layers every
//! request crosses (the lockout, CSRF and leadership `guards`, panics, security headers).
//! `/healthz`, `/readyz` and `/metrics` (`health`); for players `/api/v1/status`
//! (`monitoring`) and the status pages (`crate::pages`); for operators (`Operator`: the ops
//! token as a bearer token, or a dashboard session) targets, series and SLOs
//! (`monitoring`), alerts and silences (`alerts`), incidents, nodes, the audit log,
//! maintenance windows, rolling updates, backups, drills, blocked addresses, SLA reports,
//! on-call pages and subscriptions. Every operator change goes through
//! `Operator::audited`, so it is in the audit log with its outcome, refusals included.

mod alerts;
mod audit;
mod backups;
pub mod blocks;
mod drills;
mod flags;
mod guards;
mod health;
mod incidents;
mod maintenance;
mod monitoring;
mod nodes;
mod oncall;
mod rollouts;
mod sla;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};

use axum::Json;
use axum::response::Response;
use serde_json::json;

use crate::Control;
use crate::refusal::{Refusal, refuse, unavailable};
use crate::state::StateError;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn router(control: Arc<Control>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/api/v1/status", get(monitoring::status))
        .route("/api/v1/targets", get(monitoring::targets))
        .route("/api/v1/series", get(monitoring::series))
        .route("/api/v1/alerts", get(alerts::alerts))
        .route("/api/v1/slos", get(monitoring::slos))
        .route(
            "/api/v1/incidents",
            get(incidents::list).post(incidents::open),
        )
        .route("/api/v1/incidents/{id}/updates", post(incidents::update))
        .route(
            "/api/v1/incidents/{id}/postmortem",
            get(incidents::postmortem),
        )
        .route(
            "/api/v1/silences",
            get(alerts::silences).post(alerts::add_silence),
        )
        .route("/api/v1/silences/{id}", delete(alerts::expire_silence))
        .route("/api/v1/nodes", get(nodes::list))
        .route("/api/v1/nodes/{name}", put(nodes::set_state))
        .route("/api/v1/audit", get(audit::log))
        .route(
            "/api/v1/maintenance",
            get(maintenance::list).post(maintenance::schedule),
        )
        .route("/api/v1/maintenance/{id}", delete(maintenance::cancel))
        .route(
            "/api/v1/rollouts",
            get(rollouts::list).post(rollouts::start),
        )
        .route("/api/v1/rollouts/{id}", get(rollouts::one))
        .route("/api/v1/drills", get(drills::list).post(drills::report))
        .route("/api/v1/backups", get(backups::status))
        .route("/api/v1/replication", get(monitoring::replication))
        .route("/api/v1/flags", get(flags::list))
        .route("/api/v1/sla", get(sla::sla))
        .route("/api/v1/oncall", get(oncall::oncall))
        .route("/api/v1/pages", get(oncall::pages))
        .route("/api/v1/pages/{id}/{action}", post(oncall::operator_action))
        .route(
            "/api/v1/subscriptions",
            get(subscriptions::list).post(subscriptions::subscribe),
        )
        .route(
            "/subscriptions/{id}/{action}",
            get(subscriptions::link_form).post(subscriptions::link_action),
        )
        .route(
            "/pages/{id}/{action}",
            get(oncall::link_form).post(oncall::link_action),
        )
        .merge(blocks::router())
        .merge(crate::pages::router())
        .layer(axum::middleware::from_fn_with_state(
            control.lockout.clone(),
            croupier_web::lockout::guard,
        ));
    croupier_web::extract::json_fallbacks(routes)
        .layer(axum::middleware::from_fn_with_state(
            control.clone(),
            guards::leader_only_changes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            control.clone(),
            guards::same_site_changes,
        ))
        .layer(croupier_vitals::panics::layer())
        .layer(axum::middleware::map_response(croupier_web::secure_headers))
        .with_state(control)
}

/// The answer to ending something by id: `{"id", <done>: true}`, or 404 when there was none.
pub(super) fn ended(
    outcome: Result<bool, StateError>,
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
