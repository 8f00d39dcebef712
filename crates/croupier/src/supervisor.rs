//! `croupier up`'s supervisor: the child processes (nodes, gateway, control plane), restarted
//! with back-off when they die, and a small HTTP API on the loopback (ops token) through which
//! the control plane's rolling update replaces a node's binary: `GET /supervisor/children`,
//! `POST /supervisor/children/{name}/restart` `{"binary": path}` (stop gracefully, start the
//! given build, answer with its pid and version).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// First restart delay; doubled for each crash in a row, up to `MAX_BACKOFF`. Two scrape
/// intervals, so the control plane (which wants two failed scrapes in a row before it calls a
/// target down) always sees a crash before the restart hides it.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child up this long is considered healthy again: its back-off starts over.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a child gets to stop after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

pub struct Supervised {
    pub name: String,
    /// The executable: this binary, or a build a rolling update put in.
    pub binary: PathBuf,
    pub args: Vec<String>,
    /// A file that takes the child's stdout and stderr; `None`: this process's own (the
    /// child logs to a rotated file of its own, or to the journal).
    pub log: Option<PathBuf>,
    child: Option<Child>,
    started: Instant,
    crashes_in_a_row: u32,
    restart_at: Option<Instant>,
    restarts: u32,
}

impl Supervised {
    pub fn new(name: &str, binary: PathBuf, args: Vec<String>, log: Option<PathBuf>) -> Supervised {
        Supervised {
            name: name.to_owned(),
            binary,
            args,
            log,
            child: None,
            started: Instant::now(),
            crashes_in_a_row: 0,
            restart_at: None,
            restarts: 0,
        }
    }

    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let (stdout, stderr) = match &self.log {
            Some(path) => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                (Stdio::from(log.try_clone()?), Stdio::from(log))
            }
            None => (Stdio::inherit(), Stdio::inherit()),
        };
        let mut command = Command::new(&self.binary);
        // SAFETY: prctl is async-signal-safe; the child dies with the supervisor.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} ({})", self.name, self.binary.display()))?;
        tracing::info!(child = %self.name, pid = child.id(), binary = %self.binary.display(), "started");
        self.child = Some(child);
        self.started = Instant::now();
        self.restart_at = None;
        Ok(())
    }

    /// Restarts a child that exited, after its back-off.
    pub fn supervise(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait()?
        {
            if self.started.elapsed() > STABLE_AFTER {
                self.crashes_in_a_row = 0;
            }
            let delay = (FIRST_BACKOFF * 2u32.pow(self.crashes_in_a_row.min(8))).min(MAX_BACKOFF);
            self.crashes_in_a_row += 1;
            self.restarts += 1;
            tracing::warn!(child = %self.name, %status, restart_in_ms = delay.as_millis() as u64, "exited; restarting");
            self.child = None;
            self.restart_at = Some(Instant::now() + delay);
        }
        if self.restart_at.is_some_and(|at| Instant::now() >= at) {
            self.spawn()?;
        }
        Ok(())
    }

    pub fn terminate(&mut self) {
        if let Some(child) = &self.child {
            // SAFETY: plain kill(2) on our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
    }

    /// Waits for the child to exit until `deadline`, then kills it.
    pub fn wait_stopped(&mut self, deadline: Instant) {
        if let Some(process) = &mut self.child {
            while process.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = process.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = process.wait();
        }
        self.child = None;
    }

    fn describe(&self) -> Value {
        json!({
            "name": self.name, "binary": self.binary, "pid": self.child.as_ref().map(Child::id),
            "running": self.child.is_some(), "restarts": self.restarts,
        })
    }
}

/// The children, shared by the supervision loop and the API.
#[derive(Clone)]
pub struct Supervisor {
    pub children: Arc<Mutex<Vec<Supervised>>>,
    ops_token: String,
}

impl Supervisor {
    pub fn new(children: Vec<Supervised>, ops_token: String) -> Supervisor {
        Supervisor {
            children: Arc::new(Mutex::new(children)),
            ops_token,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Supervised>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One pass of the supervision loop; skipped while a restart through the API holds the
    /// children.
    pub fn supervise_all(&self) {
        let Ok(mut children) = self.children.try_lock() else {
            return;
        };
        for child in children.iter_mut() {
            if let Err(e) = child.supervise() {
                tracing::error!(child = %child.name, error = %e, "cannot restart");
            }
        }
    }

    /// SIGTERM to all, then wait for each until the grace period is over.
    pub fn stop_all(&self) {
        let mut children = self.lock();
        for child in children.iter_mut() {
            child.terminate();
        }
        let deadline = Instant::now() + STOP_GRACE;
        for child in children.iter_mut() {
            child.wait_stopped(deadline);
        }
    }

    /// Stops `name` gracefully and starts `binary` in its place (blocking).
    fn restart_with(&self, name: &str, binary: PathBuf) -> Result<Value, (StatusCode, String)> {
        let unreadable = |e: std::io::Error| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("cannot read {}: {e}", binary.display()),
            )
        };
        // A wrapper script runs another executable, whose version the node reports: only an
        // executable's own version can be checked.
        let is_script = std::fs::read(&binary)
            .map_err(unreadable)?
            .starts_with(b"#!");
        let version = if is_script {
            None
        } else {
            Some(croupier_node::build::version_of(&binary).map_err(unreadable)?)
        };
        let mut children = self.lock();
        let child = children
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or((StatusCode::NOT_FOUND, format!("no child named {name}")))?;
        let previous = std::mem::replace(&mut child.binary, binary);
        child.terminate();
        child.wait_stopped(Instant::now() + STOP_GRACE);
        if let Err(e) = child.spawn() {
            child.binary = previous;
            let _ = child.spawn();
            return Err((StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")));
        }
        let mut answer = child.describe();
        answer["version"] = json!(version);
        answer["previous_binary"] = json!(previous);
        Ok(answer)
    }
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

fn authorized(supervisor: &Supervisor, headers: &HeaderMap) -> bool {
    croupier_web::is_ops(headers, &supervisor.ops_token)
}

pub fn router(supervisor: Supervisor) -> Router {
    Router::new()
        .route("/supervisor/children", get(list))
        .route("/supervisor/children/{name}/restart", post(restart))
        .layer(croupier_vitals::panics::layer())
        .with_state(supervisor)
}

async fn list(State(supervisor): State<Supervisor>, headers: HeaderMap) -> Response {
    if !authorized(&supervisor, &headers) {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "needs the ops token",
        );
    }
    let children: Vec<Value> = supervisor.lock().iter().map(Supervised::describe).collect();
    Json(json!({"children": children})).into_response()
}

async fn restart(
    State(supervisor): State<Supervisor>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&supervisor, &headers) {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "needs the ops token",
        );
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Restart {
        binary: PathBuf,
    }
    let wanted: Restart = match serde_json::from_slice(&body) {
        Ok(wanted) => wanted,
        Err(e) => {
            return refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                &format!("expected {{\"binary\": path}}: {e}"),
            );
        }
    };
    let outcome =
        tokio::task::spawn_blocking(move || supervisor.restart_with(&name, wanted.binary)).await;
    match outcome {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err((status, message))) => refusal(status, "restart_failed", &message),
        Err(e) => refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "restart_failed",
            &e.to_string(),
        ),
    }
}
