//! Whether this control plane is alive, ready and leading: `/healthz` (the monitor loop
//! still finishes rounds; leader or follower), `/readyz` (its records answer) and `/metrics`
//! (leadership and each target's last scrape, as Prometheus text). Open to anyone.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use croupier_web::wire::control::{Health, Ready};

use crate::refusal::{Refusal, refuse, unavailable};
use crate::{Control, now_ms};

/// Whether this control plane leads, and what its last scrape or check of each target
/// found, as Prometheus text (`docs/metrics.md`).
pub(super) async fn metrics(State(control): State<Arc<Control>>) -> Response {
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
pub(super) async fn healthz(State(control): State<Arc<Control>>) -> Response {
    if control.monitor_alive(now_ms()) {
        let leadership = &control.config.leadership;
        let leader = leadership.is_leader();
        Json(Health {
            leader,
            leader_since_ms: leader.then(|| leadership.since_ms()),
            role: if leader { "leader" } else { "follower" }.to_owned(),
            status: "ok".to_owned(),
        })
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

pub(super) async fn readyz(State(control): State<Arc<Control>>) -> Result<Response, Refusal> {
    control.state.incidents(true).map_err(unavailable)?;
    Ok(Json(Ready { ready: true }).into_response())
}
