//! Rolling updates, for operators: list them with their steps, start one (a task of its
//! own, `crate::rollout`) after every check that could refuse it — so a refused rollout
//! records nothing and never blocks the next one.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use croupier_monitor::engine::{Kind, Target};
use croupier_web::wire::control::{Created, NewRollout, Rollouts};

use crate::operator::{Operator, body_detail};
use crate::refusal::{Refusal, parse, refuse, unavailable};
use crate::rollout::RolloutPlan;
use crate::state::RolloutStatus;
use crate::{Control, now_ms};
use croupier_web::extract::PathParam;

pub(super) async fn list(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let rollouts = control.state.rollouts(20).map_err(unavailable)?;
    Ok(Json(Rollouts { rollouts }).into_response())
}

pub(super) async fn one(
    _: Operator,
    State(control): State<Arc<Control>>,
    PathParam(id): PathParam<i64>,
) -> Result<Response, Refusal> {
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
    Ok(Json(found).into_response())
}

/// The plan of the rollout asked for, once every check passed; nothing is recorded here.
async fn plan(control: &Control, new: NewRollout, actor: &str) -> Result<RolloutPlan, Refusal> {
    let invalid =
        |code, message: &str| Err(refuse(StatusCode::UNPROCESSABLE_ENTITY, code, message));
    let batch_size = new.batch_size.unwrap_or(1);
    let drain_deadline_s = new.drain_deadline_s.unwrap_or(30);
    if batch_size == 0 || !(1..=3_600).contains(&drain_deadline_s) {
        return invalid(
            "invalid_body",
            "batch_size is at least 1 and drain_deadline_s between 1 and 3600",
        );
    }
    if control.config.update.supervisor.is_some() && !std::path::Path::new(&new.binary).is_file() {
        return invalid("invalid_binary", &format!("{} is not a file", new.binary));
    }
    let running = control.state.rollouts(1).map_err(unavailable)?;
    if running
        .first()
        .is_some_and(|r| r.status == RolloutStatus::Running)
    {
        return Err(refuse(
            StatusCode::CONFLICT,
            "rollout_running",
            "a rolling update is already running",
        ));
    }
    let staging = new.staging.unwrap_or(false);
    if staging && control.config.backup.is_none() {
        return invalid(
            "no_backups",
            "a staging rehearsal starts from the newest backup; this control plane runs none",
        );
    }
    let min_eligible = new.min_eligible.unwrap_or(1);
    leaves_enough(control, batch_size, min_eligible).await?;
    Ok(RolloutPlan {
        binary: new.binary,
        staging,
        batch_size,
        drain_deadline: Duration::from_secs(drain_deadline_s),
        min_eligible,
        actor: actor.to_owned(),
    })
}

pub(super) async fn start(
    operator: Operator,
    State(control): State<Arc<Control>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let change = async {
        // Every refusal comes before the rollout is recorded: a recorded rollout stays
        // `running` until its task finishes it, and blocks every later one.
        let plan = plan(&control, parse(&body)?, &operator.actor).await?;
        let id = control
            .state
            .start_rollout(&plan.binary, plan.batch_size as i64, &plan.actor, now_ms())
            .map_err(unavailable)?;
        tokio::spawn(crate::rollout::run(control.clone(), id, plan));
        Ok((StatusCode::ACCEPTED, Json(Created { id })).into_response())
    };
    let detail = body_detail(&body);
    let action = ("maintenance.run", "rollout");
    operator.audited(&control, action, &detail, change).await
}

/// Refuses a rollout whose batches would leave fewer than `min` nodes serving players (or
/// fewer than the current load needs, when a node's capacity is known): too few nodes
/// configured (422), or too few eligible on every gateway now (409). A deployment with no
/// node has no batch to drain.
async fn leaves_enough(control: &Control, batch_size: usize, min: usize) -> Result<(), Refusal> {
    let nodes: Vec<Target> = control.config.nodes().cloned().collect();
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
        .any(|t| t.kind == Kind::Gateway);
    if has_gateway {
        crate::eligibility::room_now(control, &nodes, &nodes[..out], min)
            .await
            .map_err(|why| refuse(StatusCode::CONFLICT, "too_few_eligible", &why))?;
    }
    Ok(())
}
