//! Addresses blocked for guessing the ops token (`croupier_web::lockout`) on the control
//! plane's API and dashboard sign-in: each block is written to the audit log (actor
//! `lockout`), and operators list them (`GET /api/v1/blocks`) and lift one
//! (`DELETE /api/v1/blocks/{address}`, audited like every operator action).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use croupier_web::lockout::{Block, Lockout, LockoutConfig};
use serde_json::{Value, json};

use crate::operator::Operator;
use crate::refusal::{Refusal, refuse};
use crate::state::State as ControlState;
use crate::{Control, now_ms};

/// The control plane's lockout: each block becomes an audit entry.
pub fn lockout(config: LockoutConfig, state: Arc<ControlState>) -> Lockout {
    Lockout::new("control", config)
        .sign_in_paths(&["/login"])
        .on_block(move |block: &Block| {
            let detail = json!({
                "seconds": block.seconds_left, "blocks": block.blocks, "until_ms": block.until_ms,
            });
            let subject = format!("address/{}", block.address);
            if let Err(e) = state.audit(
                "lockout",
                "block",
                &subject,
                &detail.to_string(),
                "ok",
                now_ms(),
            ) {
                tracing::error!(error = %e, "cannot write the audit log");
            }
        })
}

pub fn router() -> Router<Arc<Control>> {
    Router::new()
        .route("/api/v1/blocks", get(list))
        .route("/api/v1/blocks/{address}", delete(lift))
}

async fn list(_: Operator, State(control): State<Arc<Control>>) -> Result<Response, Refusal> {
    Ok(Json(json!({"blocks": control.lockout.blocks()})).into_response())
}

async fn lift(
    operator: Operator,
    State(control): State<Arc<Control>>,
    Path(address): Path<String>,
) -> Result<Response, Refusal> {
    let subject = format!("address/{address}");
    let change = async {
        match address.parse::<IpAddr>() {
            Err(_) => Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_address",
                "not an IP address",
            )),
            Ok(ip) if control.lockout.lift(ip) => Ok(Json(json!({"lifted": ip})).into_response()),
            Ok(_) => Err(refuse(
                StatusCode::NOT_FOUND,
                "not_blocked",
                "that address is not blocked",
            )),
        }
    };
    let action = ("block.lift", subject.as_str());
    operator
        .audited(&control, action, &Value::Null, change)
        .await
}
