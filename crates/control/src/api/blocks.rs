//! Addresses blocked for guessing the ops token (`croupier_web::lockout`) on the control
//! plane's API and dashboard sign-in, and on the gateways (their admin port, and scanning or
//! floods on the players' port: `croupier_web::scanning`): each block is written to the
//! audit log (actor `lockout`; a gateway's when a monitor round sees its block count rise),
//! and operators list them all (`GET /api/v1/blocks`) and lift one everywhere
//! (`DELETE /api/v1/blocks/{address}`, audited like every operator action).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use croupier_web::lockout::{Block, Lockout, LockoutConfig};
use croupier_web::wire::admin::{self, Blocks, Lifted};
use serde_json::{Value, json};

use crate::operator::Operator;
use crate::refusal::{Refusal, refuse};
use crate::state::State as ControlState;
use crate::{Control, now_ms};
use croupier_monitor::engine::{Kind, Target};
use croupier_monitor::promtext::Sample;
use croupier_web::extract::PathParam;

/// The control plane's lockout: each block becomes an audit entry.
pub fn lockout(config: LockoutConfig, state: Arc<ControlState>) -> Lockout {
    Lockout::new("control", config)
        .sign_in_paths(&["/login"])
        .on_block(move |block: &Block| {
            let detail = json!({
                "seconds": block.seconds_left, "blocks": block.blocks, "until_ms": block.until_ms,
                "surface": block.surface,
            });
            audit_block(&state, &block.address.to_string(), &detail.to_string());
        })
}

fn audit_block(state: &ControlState, address: &str, detail: &str) {
    let subject = format!("address/{address}");
    if let Err(e) = state.audit("lockout", "block", &subject, detail, "ok", now_ms()) {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

/// What the gateways' blocks looked like at the last leading round: each gateway's block
/// count (both ports), and the blocks already written to the audit log.
#[derive(Default)]
pub struct SeenBlocks {
    counts: std::collections::HashMap<String, f64>,
    audited: std::collections::HashSet<String>,
}

/// Blocks a gateway made so far, from its metrics (both ports).
fn block_count(samples: &[Sample]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == "croupier_security_blocks_total"
                || s.name == "croupier_security_scan_blocks_total"
        })
        .map(|s| s.value)
        .sum()
}

/// Writes an audit entry for each new block of a gateway: a gateway's block list is read
/// only in a round where its block count rose.
pub async fn audit_gateway_blocks<'a>(
    control: &Control,
    scrapes: impl Iterator<Item = (&'a Target, &'a Option<Vec<Sample>>)>,
) {
    let mut risen = Vec::new();
    {
        let mut seen = control.gateway_blocks.lock();
        for (target, scrape) in scrapes {
            let Some(samples) = scrape.as_ref().filter(|_| target.kind == Kind::Gateway) else {
                continue;
            };
            let count = block_count(samples);
            let before = seen
                .counts
                .insert(target.name.clone(), count)
                .unwrap_or(0.0);
            if count > before {
                risen.push(target.name.clone());
            }
        }
    }
    if risen.is_empty() {
        return;
    }
    for block in crate::gateways::blocks(control).await {
        let gateway = block.gateway.as_deref().unwrap_or_default();
        let address = block.address.to_string();
        let key = format!("{gateway}|{address}|{}", block.blocks);
        if !risen.iter().any(|name| name == gateway)
            || !control.gateway_blocks.lock().audited.insert(key)
        {
            continue;
        }
        let detail = serde_json::to_string(&block).unwrap_or_default();
        audit_block(&control.state, &address, &detail);
    }
}

pub fn router() -> Router<Arc<Control>> {
    Router::new()
        .route("/api/v1/blocks", get(list))
        .route("/api/v1/blocks/{address}", delete(lift))
}

async fn list(_: Operator, State(control): State<Arc<Control>>) -> Result<Response, Refusal> {
    let mut blocks: Vec<admin::Block> = control.lockout.blocks().iter().map(Into::into).collect();
    blocks.extend(crate::gateways::blocks(&control).await);
    Ok(Json(Blocks { blocks }).into_response())
}

async fn lift(
    operator: Operator,
    State(control): State<Arc<Control>>,
    PathParam(address): PathParam<String>,
) -> Result<Response, Refusal> {
    let subject = format!("address/{address}");
    let change = async {
        match address.parse::<IpAddr>() {
            Err(_) => Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_address",
                "not an IP address",
            )),
            Ok(ip) => {
                // Everywhere, not the first that had it: `|` does not short-circuit.
                if control.lockout.lift(ip) | crate::gateways::lift_block(&control, ip).await {
                    Ok(Json(Lifted { lifted: ip }).into_response())
                } else {
                    Err(refuse(
                        StatusCode::NOT_FOUND,
                        "not_blocked",
                        "that address is not blocked",
                    ))
                }
            }
        }
    };
    let action = ("block.lift", subject.as_str());
    operator
        .audited(&control, action, &Value::Null, change)
        .await
}
