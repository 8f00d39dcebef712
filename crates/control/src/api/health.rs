//! Whether this control plane is alive, ready and leading: `/healthz` (the monitor loop
//! still finishes rounds; leader or follower), `/readyz` (its records answer) and `/metrics`
//! (leadership, each target's last scrape, and what it read of each PostgreSQL store, as
//! Prometheus text). Open to anyone, as a node's `/metrics` and postgres_exporter are: keep
//! the control plane's port on the operators' network.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use croupier_web::wire::control::{Health, Ready};

use croupier_monitor::engine::Target;

use crate::refusal::{Refusal, refuse, unavailable};
use crate::{Control, now_ms, replication};

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
    let mut store_lines = Vec::new();
    for (target, series) in control.config.targets.iter().zip(series.iter()) {
        if let Some(point) = series.latest() {
            store_lines.extend(store_samples(&control, target, point.up));
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
    // One metric's samples together, as the text format wants them.
    store_lines.sort();
    body.extend(store_lines.into_iter().map(|(_, line)| line));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A `postgres://` store target's last read (`replication::samples`: the replication, and
/// the database's activity under postgres_exporter's names), each sample labelled with the
/// store's name; only `pg_up 0` while its last read failed. Keyed by the metric's name.
fn store_samples(control: &Control, target: &Target, up: bool) -> Vec<(String, String)> {
    if !control.store_servers.contains_key(&target.name) {
        return Vec::new();
    }
    let store = label_value(&target.name);
    let read = control.replication.lock().get(&target.name).cloned();
    let samples = match read {
        Some(read) if up => replication::samples(&read),
        _ => {
            let down = format!("pg_up{{store=\"{store}\"}} 0\n");
            return vec![("pg_up".to_owned(), down)];
        }
    };
    samples
        .into_iter()
        .map(|sample| {
            let labels: String = sample
                .labels
                .iter()
                .map(|(k, v)| format!(",{k}=\"{}\"", label_value(v)))
                .collect();
            let line = format!(
                "{}{{store=\"{store}\"{labels}}} {}\n",
                sample.name, sample.value
            );
            (sample.name, line)
        })
        .collect()
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
