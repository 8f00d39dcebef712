//! Rolling updates across the nodes, a batch at a time: drain the node on every gateway, wait
//! for its requests and rounds in flight to end (up to a deadline; rounds live in the store,
//! so one still open is resumed on another node), stop it and start the new build (through
//! `croupier up`'s supervisor, or the deployment's update command), wait until it is ready
//! and reports the new version, run the smoke test (lobby, a real test bet with a test
//! account, integrity), undrain, and wait until every gateway routes to it again and it
//! answered players (`eligibility`) before the next batch; a batch that would leave fewer
//! than the minimum of eligible nodes waits for them, or fails. On any failure the rollout stops, the node goes back to the
//! previous build and an incident is opened. Every step is written to the rollout's timeline
//! and to the audit log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier_web::wire::admin::NodeState;
use croupier_web::wire::ops::{DrainReport, Health};
use croupier_web::wire::supervisor::{Children, Restart, Restarted};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::node_probe::{smoke_test, until_ready};
use crate::ops_client::{CallError, call, call_within, request, request_with};
use crate::state::RolloutStatus;
use crate::{Control, now_ms};
use croupier_monitor::engine::Target;
use croupier_monitor::severity::Severity;

/// How the control plane replaces a node's build.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// `croupier up`'s supervisor API (set by `up`).
    pub supervisor: Option<String>,
    /// Otherwise a shell command run with `NODE` and `BINARY` in its environment, which stops
    /// the node, installs the build and starts it (e.g. through systemd).
    pub update_command: Option<String>,
    /// Player requests per second one node serves (measured with `croupier loadtest`): a
    /// rolling update then never leaves fewer nodes eligible than the current load needs
    /// (`capacity`).
    pub node_capacity_rps: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct RolloutPlan {
    pub binary: String,
    /// Rehearse first on a staging node started from the newest backup.
    pub staging: bool,
    pub batch_size: usize,
    pub drain_deadline: Duration,
    /// Nodes that stay eligible on every gateway while a batch is out.
    pub min_eligible: usize,
    pub actor: String,
}

/// A node's graceful stop plus its start.
const RESTART_DEADLINE: Duration = Duration::from_secs(60);

struct Run {
    control: Arc<Control>,
    id: i64,
    actor: String,
}

impl Run {
    fn step(&self, node: &str, step: &str, ok: bool, message: &str) {
        let now = now_ms();
        if let Err(e) = self
            .control
            .state
            .rollout_step(self.id, node, step, ok, message, now)
        {
            tracing::error!(error = %e, "cannot record a rollout step");
        }
        let outcome = if ok { "ok" } else { "failed" };
        let detail = json!({"rollout": self.id, "step": step, "message": message}).to_string();
        let _ = self.control.state.audit(
            &self.actor,
            "maintenance.step",
            &format!("node/{node}"),
            &detail,
            outcome,
            now,
        );
        tracing::info!(rollout = self.id, node, step, ok, message, "rollout step");
    }

    async fn ops<T: DeserializeOwned>(&self, node: &Target, path: &str) -> Result<T, CallError> {
        let url = format!("{}{path}", node.base);
        let get = request(&self.control, hyper::Method::GET, url);
        call(&self.control, &node.name, get).await
    }

    async fn wait_drained(&self, node: &Target, deadline: Duration) -> String {
        let started = Instant::now();
        loop {
            let report = self.ops::<DrainReport>(node, "/ops/drain").await;
            if report.as_ref().is_ok_and(DrainReport::is_idle) {
                return format!(
                    "nothing in flight after {} ms",
                    started.elapsed().as_millis()
                );
            }
            if started.elapsed() >= deadline {
                let open = report.map_or("null".to_owned(), |r| r.open_rounds.to_string());
                return format!(
                    "deadline of {} s reached with {open} open rounds; they stay in the store and resume on another node",
                    deadline.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Puts `binary` on `node`; the version it should then report, when known.
    async fn install(&self, node: &Target, binary: &str) -> Result<Option<String>, String> {
        let update = &self.control.config.update;
        if let Some(supervisor) = &update.supervisor {
            let url = format!("{supervisor}/supervisor/children/{}/restart", node.name);
            let body = Restart {
                binary: binary.into(),
            };
            let post = request_with(&self.control, hyper::Method::POST, url, &body);
            let answer: Restarted =
                call_within(&self.control, "supervisor", post, RESTART_DEADLINE)
                    .await
                    .map_err(|e| e.to_string())?;
            return Ok(answer.version);
        }
        let Some(command) = &update.update_command else {
            return Err("no supervisor and no update_command: cannot replace a build".into());
        };
        let output = tokio::time::timeout(
            RESTART_DEADLINE,
            tokio::process::Command::new("sh")
                .args(["-c", command])
                .env("NODE", &node.name)
                .env("BINARY", binary)
                .output(),
        )
        .await
        .map_err(|_| "the update command timed out".to_owned())?
        .map_err(|e| format!("cannot run the update command: {e}"))?;
        if output.status.success() {
            Ok(None)
        } else {
            Err(format!(
                "the update command failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Waits for the node's `/readyz`; the version its `/healthz` then reports.
    async fn wait_ready(&self, node: &Target) -> Result<String, String> {
        until_ready(&self.control, node, || None).await?;
        let health: Health = self
            .ops(node, "/healthz")
            .await
            .map_err(|e| e.to_string())?;
        Ok(health.version)
    }

    /// Updates one node; on failure, says what failed (the node is then rolled back).
    async fn update_node(&self, node: &Target, binary: &str) -> Result<(), String> {
        let expected = self.install(node, binary).await?;
        self.step(&node.name, "update", true, &format!("started {binary}"));
        let version = self.wait_ready(node).await?;
        self.step(
            &node.name,
            "ready",
            true,
            &format!("ready, version {version}"),
        );
        match expected {
            Some(expected) if expected != version => {
                return Err(format!("reports version {version}, expected {expected}"));
            }
            Some(_) => self.step(&node.name, "version", true, &format!("runs {version}")),
            None => self.step(
                &node.name,
                "version",
                true,
                &format!("reports {version}; the build is a script, so not compared"),
            ),
        }
        let smoke = smoke_test(&self.control, node).await?;
        self.step(&node.name, "smoke_test", true, &smoke);
        Ok(())
    }

    async fn set_state(&self, node: &Target, state: NodeState) -> Result<(), String> {
        crate::gateways::set_node_state(&self.control, &node.name, state)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The build a node runs now, from the supervisor (to roll back to).
    async fn current_binary(&self, node: &Target) -> Option<String> {
        let supervisor = self.control.config.update.supervisor.as_ref()?;
        let url = format!("{supervisor}/supervisor/children");
        let get = request(&self.control, hyper::Method::GET, url);
        let answer: Children = call(&self.control, "supervisor", get).await.ok()?;
        answer
            .children
            .into_iter()
            .find(|c| c.name == node.name)
            .map(|c| c.binary)
    }

    async fn roll_back(&self, node: &Target, previous: Option<String>, why: &str) -> Option<i64> {
        self.step(&node.name, "failed", false, why);
        let restored = match &previous {
            Some(previous) => match self.install(node, previous).await {
                Ok(_) => self
                    .wait_ready(node)
                    .await
                    .map(|v| format!("back on {previous}, version {v}")),
                Err(e) => Err(e),
            },
            None => Err("the previous build is unknown: left drained".into()),
        };
        match &restored {
            Ok(message) => {
                self.step(&node.name, "rollback", true, message);
                if let Err(e) = self.set_state(node, NodeState::Active).await {
                    self.step(&node.name, "undrain", false, &e);
                } else {
                    self.step(
                        &node.name,
                        "undrain",
                        true,
                        "back in service on the previous build",
                    );
                }
            }
            Err(e) => self.step(&node.name, "rollback", false, e),
        }
        let message = format!(
            "The rolling update stopped on {}: {why}. {}",
            node.name,
            match &restored {
                Ok(m) => format!("The node is {m}."),
                Err(e) => format!("Rollback failed: {e}; the node stays out of service."),
            }
        );
        self.control
            .state
            .open_incident(
                &format!("Rolling update failed on {}", node.name),
                "games",
                Severity::Major,
                None,
                &message,
                now_ms(),
            )
            .ok()
    }
}

/// How a rollout ended early: its status and the incident it opened.
type Stopped = (RolloutStatus, Option<i64>);

impl Run {
    /// Drains, updates and brings back one batch; the rollout stops on an error.
    async fn batch(
        &self,
        nodes: &[Target],
        batch: &[Target],
        plan: &RolloutPlan,
    ) -> Result<(), Stopped> {
        let first = &batch[0].name;
        let (min, need) = crate::capacity::minimum(&self.control, plan.min_eligible);
        let why = need
            .map(|n| format!(" ({})", n.describe()))
            .unwrap_or_default();
        match crate::eligibility::wait_room(&self.control, nodes, batch, min).await {
            Ok(room) => self.step(first, "room", true, &format!("{room}{why}")),
            Err(refused) => {
                self.step(first, "room", false, &format!("{refused}{why}"));
                return Err((RolloutStatus::Failed, None));
            }
        }
        for node in batch {
            match self.set_state(node, NodeState::Draining).await {
                Ok(()) => self.step(&node.name, "drain", true, "draining on every gateway"),
                Err(e) => {
                    self.step(&node.name, "drain", false, &e);
                    return Err((RolloutStatus::Failed, None));
                }
            }
        }
        for node in batch {
            let waited = self.wait_drained(node, plan.drain_deadline).await;
            self.step(&node.name, "wait", true, &waited);
        }
        let mut previous_builds = Vec::new();
        for node in batch {
            let previous = self.current_binary(node).await;
            previous_builds.push(previous.clone());
            if let Err(why) = self.update_node(node, &plan.binary).await {
                let incident = self.roll_back(node, previous, &why).await;
                // The rest of the batch goes back in service on the build it has.
                for other in batch.iter().filter(|o| o.name != node.name) {
                    let _ = self.set_state(other, NodeState::Active).await;
                }
                return Err((RolloutStatus::RolledBack, incident));
            }
        }
        self.bring_back(batch, previous_builds).await
    }

    /// Undrains the batch, then waits until each node is back on every gateway and answered
    /// players; a node that does not come back goes back to its `previous` build.
    async fn bring_back(
        &self,
        batch: &[Target],
        previous: Vec<Option<String>>,
    ) -> Result<(), Stopped> {
        let mut before = Vec::new();
        for node in batch {
            before.push(crate::eligibility::answered_now(&self.control, &node.name).await);
            match self.set_state(node, NodeState::Active).await {
                Ok(()) => self.step(&node.name, "undrain", true, "active on every gateway"),
                Err(e) => {
                    self.step(&node.name, "undrain", false, &e);
                    return Err((RolloutStatus::Failed, None));
                }
            }
        }
        for ((node, before), previous) in batch.iter().zip(before).zip(previous) {
            match crate::eligibility::wait_back(&self.control, &node.name, before).await {
                Ok(back) => self.step(&node.name, "back", true, &back),
                Err(why) => {
                    let incident = self.roll_back(node, previous, &why).await;
                    return Err((RolloutStatus::RolledBack, incident));
                }
            }
        }
        Ok(())
    }
}

/// Runs a rollout to the end (a task of its own); its progress is in the state.
pub async fn run(control: Arc<Control>, id: i64, plan: RolloutPlan) {
    let actor = plan.actor.clone();
    fail_if_panicked(control.clone(), id, actor, run_steps(control, id, plan)).await;
}

/// Runs `rollout`; a panic on the way (a bug) fails the rollout at once. Left `running`, it
/// would block every later rollout until another control plane took the lead.
pub(crate) async fn fail_if_panicked(
    control: Arc<Control>,
    id: i64,
    actor: String,
    rollout: impl std::future::Future<Output = ()>,
) {
    if croupier_vitals::background::survive("rolling update", rollout)
        .await
        .is_none()
    {
        let why = "the rolling update stopped on an internal error (logged); a node it drained \
                   stays drained: check the nodes' state, then start the update again";
        let run = Run {
            control: control.clone(),
            id,
            actor,
        };
        run.step("", "panicked", false, why);
        let _ = control
            .state
            .finish_rollout(id, RolloutStatus::Failed, None, now_ms());
    }
}

async fn run_steps(control: Arc<Control>, id: i64, plan: RolloutPlan) {
    let run = Run {
        control: control.clone(),
        id,
        actor: plan.actor.clone(),
    };
    let nodes: Vec<Target> = control.config.nodes().cloned().collect();
    if plan.staging {
        match crate::staging::rehearse(&control, &plan.binary).await {
            Ok(steps) => {
                for step in steps {
                    run.step("staging", "rehearsal", true, &step);
                }
            }
            Err(why) => {
                run.step("staging", "rehearsal", false, &why);
                let _ = control
                    .state
                    .finish_rollout(id, RolloutStatus::Failed, None, now_ms());
                return;
            }
        }
    }
    for batch in nodes.chunks(plan.batch_size.max(1)) {
        if let Err((status, incident)) = run.batch(&nodes, batch, &plan).await {
            let _ = control.state.finish_rollout(id, status, incident, now_ms());
            return;
        }
    }
    let _ = control
        .state
        .finish_rollout(id, RolloutStatus::Succeeded, None, now_ms());
}
