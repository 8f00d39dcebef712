//! `croupier up`'s supervisor: the child processes (nodes, gateway, control plane), restarted
//! with back-off when they die, and a small HTTP API on the loopback (ops token) through which
//! the control plane's rolling update replaces a node's binary: `GET /supervisor/children`,
//! `POST /supervisor/children/{name}/restart` `{"binary": path}` (stop gracefully, start the
//! given build, answer with its pid and version). The gateway's listening sockets are held
//! here and handed to each gateway process (systemd's `LISTEN_FDS`), so while a crashed
//! gateway is replaced, players' connections wait in the kernel's backlog instead of being
//! refused; such a child is restarted at once after its first crash. A graceful restart of
//! such a child (SIGUSR2 to the gateway, which passes it on to this process) starts the new
//! process on the same sockets first and stops the old one only once the new one signals that
//! it serves (SIGUSR1), so the supervisor keeps track of the one gateway that runs.
// libc calls for signals, process groups or descriptors; each block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use croupier_web::wire::Refusal;
use croupier_web::wire::supervisor as wire;

use crate::executable::Executable;
use crate::exit_status::EX_CONFIG;

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
    /// Listening sockets handed to every process of this child at descriptors 3, 4, …
    sockets: Vec<OwnedFd>,
    /// Variables set in every process of this child: what must not be on its command line,
    /// which every local user reads (`ps`).
    environment: Vec<(&'static str, String)>,
    /// The process being replaced by a graceful restart, until it exits.
    retiring: Option<Retiring>,
    /// A restart through the API is stopping this child (outside the children lock):
    /// supervision leaves it alone until the new build is started.
    restarting: bool,
    /// How the last process of this child ended, once one has.
    last_exit: Option<ExitStatus>,
}

/// The old process of a graceful restart: serving until the new one is ready, then stopping.
struct Retiring {
    process: Child,
    since: Instant,
    /// SIGTERM sent: the new process serves.
    stopping: bool,
}

/// How long a graceful restart waits for the new process to serve before giving up on it.
const HANDOVER_WITHIN: Duration = Duration::from_secs(15);

/// Most sockets handed to a child (no allocation between fork and exec).
const MAX_SOCKETS: usize = 4;
const FIRST_SOCKET_FD: RawFd = 3;

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
            sockets: Vec::new(),
            environment: Vec::new(),
            retiring: None,
            restarting: false,
            last_exit: None,
        }
    }

    /// Hands `sockets` to each process of this child (systemd's socket activation protocol:
    /// `LISTEN_FDS`, descriptors from 3); the supervisor keeps them open between processes.
    pub fn with_sockets(mut self, sockets: Vec<OwnedFd>) -> Supervised {
        assert!(
            sockets.len() <= MAX_SOCKETS,
            "at most {MAX_SOCKETS} sockets"
        );
        self.sockets = sockets;
        self
    }

    /// Sets `environment` in every process of this child.
    pub fn with_environment(mut self, environment: Vec<(&'static str, String)>) -> Supervised {
        self.environment = environment;
        self
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
        // A child's TLS is what `up` passes (its own files, or none), never files meant
        // for a component of another deployment that happen to be in the environment.
        for name in crate::tls_args::ENVIRONMENT {
            command.env_remove(name);
        }
        command.envs(self.environment.iter().map(|(name, value)| (name, value)));
        let mut fds = [-1 as RawFd; MAX_SOCKETS];
        for (slot, socket) in fds.iter_mut().zip(&self.sockets) {
            *slot = socket.as_raw_fd();
        }
        let count = self.sockets.len();
        if count > 0 {
            let me = std::process::id().to_string();
            command
                .env("LISTEN_FDS", count.to_string())
                .env_remove("LISTEN_PID")
                .env(croupier_gateway::restart::SUPERVISOR_ENV, &me)
                .env(croupier_gateway::restart::PARENT_ENV, &me);
        }
        // SAFETY: prctl, fcntl and dup2 are async-signal-safe, and nothing is allocated; the
        // child dies with the supervisor.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                place_sockets(&fds[..count])
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

    /// A graceful restart of a child whose sockets are held here: the new process starts on
    /// the same sockets while the old one still serves (`ready` then stops the old one).
    pub fn replace(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.sockets.is_empty(),
            "{} holds no sockets here: it cannot run twice",
            self.name
        );
        anyhow::ensure!(
            self.retiring.is_none(),
            "a restart of {} is under way",
            self.name
        );
        let Some(old) = self.child.take() else {
            anyhow::bail!("{} is not running", self.name);
        };
        if let Err(e) = self.spawn() {
            self.child = Some(old);
            return Err(e);
        }
        tracing::info!(child = %self.name, old = old.id(), "graceful restart: the new process starts");
        self.retiring = Some(Retiring {
            process: old,
            since: Instant::now(),
            stopping: false,
        });
        Ok(())
    }

    /// The new process of a graceful restart serves: the old one stops (gracefully).
    pub fn ready(&mut self) {
        if let Some(old) = self.retiring.as_mut().filter(|r| !r.stopping) {
            // SAFETY: plain kill(2) on our own child, not yet reaped.
            unsafe {
                libc::kill(old.process.id() as i32, libc::SIGTERM);
            }
            old.stopping = true;
            tracing::info!(child = %self.name, old = old.process.id(), "graceful restart: the new process serves; the old one stops");
        }
    }

    /// Reaps the old process of a graceful restart; one whose successor never served within
    /// `HANDOVER_WITHIN` stays, and the successor is stopped.
    fn retire(&mut self) -> anyhow::Result<()> {
        let Some(old) = &mut self.retiring else {
            return Ok(());
        };
        if old.process.try_wait()?.is_some() {
            self.retiring = None;
            return Ok(());
        }
        if !old.stopping && old.since.elapsed() > HANDOVER_WITHIN {
            tracing::error!(child = %self.name, "graceful restart: the new process did not serve; keeping the old one");
            if let Some(mut new) = self.child.take() {
                let _ = new.kill();
                let _ = new.wait();
            }
            self.child = self.retiring.take().map(|r| r.process);
        }
        Ok(())
    }

    /// Restarts a child that exited, after its back-off.
    pub fn supervise(&mut self) -> anyhow::Result<()> {
        if self.restarting {
            return Ok(());
        }
        self.retire()?;
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait()?
        {
            if self.started.elapsed() > STABLE_AFTER {
                self.crashes_in_a_row = 0;
            }
            // A child whose sockets are held here loses no connection while it is down, so
            // its first crash is repaired at once.
            let delay = if !self.sockets.is_empty() && self.crashes_in_a_row == 0 {
                Duration::ZERO
            } else {
                (FIRST_BACKOFF * 2u32.pow(self.crashes_in_a_row.min(8))).min(MAX_BACKOFF)
            };
            self.crashes_in_a_row += 1;
            self.restarts += 1;
            tracing::warn!(child = %self.name, %status, restart_in_ms = delay.as_millis() as u64, "exited; restarting");
            self.child = None;
            self.last_exit = Some(status);
            self.restart_at = Some(Instant::now() + delay);
        }
        if self.restart_at.is_some_and(|at| Instant::now() >= at) {
            self.spawn()?;
        }
        Ok(())
    }

    /// Whether its last process exited saying its configuration cannot work
    /// (`exit_status::EX_CONFIG`): starting it again would fail the same way.
    pub fn refused_its_configuration(&self) -> bool {
        self.last_exit.and_then(|status| status.code()) == Some(i32::from(EX_CONFIG))
    }

    pub fn terminate(&mut self) {
        let old = self.retiring.as_ref().map(|r| &r.process);
        for child in self.child.iter().chain(old) {
            // SAFETY: plain kill(2) on our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
    }

    /// Waits for the child to exit until `deadline`, then kills it.
    pub fn wait_stopped(&mut self, deadline: Instant) {
        let old = self.retiring.take().map(|r| r.process);
        reap(self.child.take().into_iter().chain(old), deadline);
    }

    /// Asks the child's processes to stop and hands them over, to be reaped without the
    /// children lock (`reap`); supervision leaves the child alone until `restarted`.
    fn take_to_stop(&mut self) -> Vec<Child> {
        self.terminate();
        self.restarting = true;
        self.restart_at = None;
        let old = self.retiring.take().map(|r| r.process);
        self.child.take().into_iter().chain(old).collect()
    }

    /// After `take_to_stop`: starts the child again, on `previous` when the new build does
    /// not start (and, should that fail too, through supervision after a back-off).
    fn restarted(&mut self, previous: PathBuf) -> anyhow::Result<()> {
        self.restarting = false;
        let Err(e) = self.spawn() else {
            return Ok(());
        };
        self.binary = previous;
        if let Err(again) = self.spawn() {
            tracing::error!(child = %self.name, error = %again, "the previous build does not start either; supervision retries");
            self.restart_at = Some(Instant::now() + FIRST_BACKOFF);
        }
        Err(e)
    }

    fn describe(&self) -> wire::Child {
        wire::Child {
            binary: self.binary.to_string_lossy().into_owned(),
            name: self.name.clone(),
            pid: self.child.as_ref().map(Child::id),
            restarts: self.restarts,
            retiring_pid: self.retiring.as_ref().map(|r| r.process.id()),
            running: self.child.is_some(),
        }
    }
}

/// Waits for each process to exit until `deadline`, then kills it.
fn reap(processes: impl IntoIterator<Item = Child>, deadline: Instant) {
    for mut process in processes {
        while process.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = process.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = process.wait();
    }
}

/// In a forked child: puts `fds` at descriptors 3, 4, … (first moved above 100 so placing
/// one cannot overwrite another; dup2 makes new descriptors, without close-on-exec).
fn place_sockets(fds: &[RawFd]) -> std::io::Result<()> {
    let mut high = [-1 as RawFd; MAX_SOCKETS];
    for (slot, &fd) in high.iter_mut().zip(fds) {
        // SAFETY: fcntl on a descriptor this process owns; async-signal-safe.
        *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD, 100) };
        if *slot < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for (offset, &fd) in high[..fds.len()].iter().enumerate() {
        // SAFETY: dup2 onto the low descriptors the child expects; async-signal-safe.
        if unsafe { libc::dup2(fd, FIRST_SOCKET_FD + offset as RawFd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
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

    fn lock(&self) -> parking_lot::MutexGuard<'_, Vec<Supervised>> {
        self.children.lock()
    }

    /// One pass of the supervision loop; skipped while a restart through the API holds the
    /// children.
    pub fn supervise_all(&self) {
        let Some(mut children) = self.children.try_lock() else {
            return;
        };
        for child in children.iter_mut() {
            if let Err(e) = child.supervise() {
                tracing::error!(child = %child.name, error = %e, "cannot restart");
            }
        }
    }

    /// A graceful restart of every child whose sockets are held here (the gateway).
    pub fn replace_socket_holders(&self) {
        for child in self.lock().iter_mut().filter(|c| !c.sockets.is_empty()) {
            if let Err(e) = child.replace() {
                tracing::error!(child = %child.name, error = %e, "graceful restart refused");
            }
        }
    }

    /// A new process of a graceful restart serves (SIGUSR1): its predecessor stops.
    pub fn replacement_ready(&self) {
        for child in self.lock().iter_mut() {
            child.ready();
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
    fn restart_with(
        &self,
        name: &str,
        binary: PathBuf,
    ) -> Result<wire::Restarted, (StatusCode, String)> {
        // Checked before the running child is touched: a file that cannot start must not
        // stop a serving node.
        let refused = |message: String| (StatusCode::UNPROCESSABLE_ENTITY, message);
        let version = match crate::executable::check(&binary).map_err(refused)? {
            // A wrapper script runs another executable, whose version the node reports: only
            // an executable's own version can be checked.
            Executable::Script => None,
            Executable::Binary => Some(
                croupier_node::build::version_of(&binary)
                    .map_err(|e| refused(format!("cannot read {}: {e}", binary.display())))?,
            ),
        };
        // The old process is waited for without the children lock: a child slow to stop
        // must not hold up the supervision of the others (a crash meanwhile is repaired on
        // time) nor the gateway's hand-over.
        let (previous, stopping) = {
            let mut children = self.lock();
            let child = children
                .iter_mut()
                .find(|c| c.name == name)
                .ok_or((StatusCode::NOT_FOUND, format!("no child named {name}")))?;
            if child.restarting {
                let message = format!("a restart of {name} is under way");
                return Err((StatusCode::CONFLICT, message));
            }
            let previous = std::mem::replace(&mut child.binary, binary);
            (previous, child.take_to_stop())
        };
        reap(stopping, Instant::now() + STOP_GRACE);
        let mut children = self.lock();
        let child = children
            .iter_mut()
            .find(|c| c.name == name)
            .expect("children are never removed");
        let previous_text = previous.to_string_lossy().into_owned();
        child
            .restarted(previous)
            .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")))?;
        Ok(wire::Restarted::of(
            child.describe(),
            previous_text,
            version,
        ))
    }
}

fn refusal(status: StatusCode, code: &'static str, message: &str) -> Response {
    Refusal::new(status, code, message).into_response()
}

fn authorized(supervisor: &Supervisor, headers: &HeaderMap) -> bool {
    croupier_web::is_ops(headers, &supervisor.ops_token)
}

/// The API; wrong tokens are counted per address and guessing gets the address blocked.
pub fn router(supervisor: Supervisor, lockout: croupier_web::lockout::LockoutConfig) -> Router {
    let lockout = Arc::new(croupier_web::lockout::Lockout::new("supervisor", lockout));
    let routes = Router::new()
        .route("/supervisor/children", get(list))
        .route("/supervisor/children/{name}/restart", post(restart))
        .layer(axum::middleware::from_fn_with_state(
            lockout,
            croupier_web::lockout::guard,
        ));
    croupier_web::extract::json_fallbacks(routes)
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
    let children = supervisor.lock().iter().map(Supervised::describe).collect();
    Json(wire::Children { children }).into_response()
}

async fn restart(
    State(supervisor): State<Supervisor>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&supervisor, &headers) {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "needs the ops token",
        );
    }
    let name = match croupier_web::extract::path_value(name) {
        Ok(name) => name,
        Err(refused) => return refused.into_response(),
    };
    let wanted: wire::Restart = match croupier_web::extract::json_object(&body) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A child slow to stop (it ignores SIGTERM for 4 s) while a restart replaces it: the
    /// crash of another child meanwhile is seen at once. Before, the restart held the children
    /// for the whole stop (up to 20 s), and supervision skipped every round of it.
    #[test]
    fn a_slow_restart_holds_up_no_other_childs_supervision() {
        let dir = tempfile::tempdir().unwrap();
        let stubborn = script(dir.path(), "stubborn", "#!/bin/sh\ntrap '' TERM\nsleep 4\n");
        let quick = script(dir.path(), "quick", "#!/bin/sh\nexec sleep 30\n");
        let mut children = vec![
            Supervised::new("node-1", stubborn, Vec::new(), None),
            Supervised::new("node-2", quick.clone(), Vec::new(), None),
        ];
        for child in &mut children {
            child.spawn().unwrap();
        }
        let supervisor = Supervisor::new(children, "t".repeat(32));
        // Time for the stubborn one's shell to set its trap.
        std::thread::sleep(Duration::from_millis(300));
        let victim = supervisor.lock()[1].describe().pid.unwrap();
        let started = Instant::now();
        let restarting = std::thread::spawn({
            let supervisor = supervisor.clone();
            move || supervisor.restart_with("node-1", quick)
        });
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: plain kill(2) on a child of this test.
        unsafe {
            libc::kill(victim as i32, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            supervisor.supervise_all();
            let seen = supervisor
                .children
                .try_lock()
                .is_some_and(|children| children[1].describe().restarts == 1);
            if seen {
                break;
            }
            assert!(Instant::now() < deadline, "the crash was not seen in 2 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let restarted = restarting.join().unwrap().unwrap();
        assert!(restarted.running && restarted.pid.is_some());
        assert!(
            started.elapsed() > Duration::from_secs(3),
            "it stopped at once"
        );
        supervisor.stop_all();
    }

    /// A restart to a file that cannot start is refused before the child is stopped: before,
    /// the serving child was stopped first, and then started again on its old binary.
    #[test]
    fn a_restart_to_a_file_that_cannot_start_leaves_the_child_running() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("serve");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        std::fs::write(&data, "not a program").unwrap();
        let mut child = Supervised::new("node-1", script, Vec::new(), None);
        child.spawn().unwrap();
        let pid = child.describe().pid;
        let supervisor = Supervisor::new(vec![child], "t".repeat(32));
        for wrong in [data, PathBuf::from("/dev/zero"), dir.path().to_path_buf()] {
            let (status, _) = supervisor
                .restart_with("node-1", wrong.clone())
                .unwrap_err();
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{}",
                wrong.display()
            );
            assert_eq!(
                supervisor.lock()[0].describe().pid,
                pid,
                "{}",
                wrong.display()
            );
        }
        supervisor.stop_all();
    }

    /// Serde reads a struct from an array of its fields: before, `["/path"]` swapped a child's
    /// build like `{"binary": "/path"}`. Refused now, the child left on its build.
    #[tokio::test]
    async fn a_restart_sent_as_an_array_is_refused() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let serving = script(
            dir.path(),
            "serving",
            "#!/bin/sh
exec sleep 30
",
        );
        let other = script(
            dir.path(),
            "other",
            "#!/bin/sh
exec sleep 30
",
        );
        let token = "t".repeat(32);
        let child = Supervised::new("node-1", serving.clone(), Vec::new(), None);
        let supervisor = Supervisor::new(vec![child], token.clone());
        let app = router(supervisor.clone(), Default::default());
        let body = serde_json::to_string(&[other.display().to_string()]).unwrap();
        let request = axum::http::Request::builder()
            .method("POST")
            .uri("/supervisor/children/node-1/restart")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await;
        let body: serde_json::Value = serde_json::from_slice(&body.unwrap()).unwrap();
        assert_eq!(body["error"], "invalid_body", "{body}");
        let described = supervisor.lock()[0].describe();
        assert_eq!(described.binary, serving.display().to_string());
        supervisor.stop_all();
    }
}
