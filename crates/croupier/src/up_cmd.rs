//! `croupier up`: everything on one machine, for a first look and for small casinos. Starts
//! three game nodes on one SQLite ledger under the data folder, the gateway in front of them
//! and the control plane watching them all, as supervised child processes: a child that dies
//! is restarted with back-off; Ctrl-C or SIGTERM stops them all gracefully.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use crate::node_cmd::ops_token_file;

#[derive(Args)]
pub struct UpArgs {
    /// Data folder: the ledger, the ops token and the children's logs.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// How many game nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Port of the first node; the others follow.
    #[arg(long, default_value_t = 7001)]
    first_node_port: u16,
    /// Port players connect to (the gateway); the gateway's admin port is the next one.
    #[arg(long, default_value_t = 8000)]
    gateway_port: u16,
    /// Port of the control plane.
    #[arg(long, default_value_t = 8080)]
    control_port: u16,
    /// A webhook for alerts (generic JSON); repeat for each.
    #[arg(long = "webhook")]
    webhooks: Vec<String>,
    /// A Slack-compatible incoming webhook for alerts; repeat for each.
    #[arg(long = "slack-webhook")]
    slack_webhooks: Vec<String>,
}

/// First restart delay; doubled for each crash in a row, up to `MAX_BACKOFF`. Two scrape
/// intervals, so the control plane (which wants two failed scrapes in a row before it calls a
/// target down) always sees a crash before the restart hides it.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child up this long is considered healthy again: its back-off starts over.
const STABLE_AFTER: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(20);

struct Supervised {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    started: Instant,
    crashes_in_a_row: u32,
    restart_at: Option<Instant>,
}

impl Supervised {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut command = Command::new(std::env::current_exe()?);
        // SAFETY: prctl is async-signal-safe; it makes the child stop if the supervisor dies,
        // so no node outlives `croupier up` even when it is killed with -9.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        tracing::info!(child = %self.name, pid = child.id(), "started");
        self.child = Some(child);
        self.started = Instant::now();
        self.restart_at = None;
        Ok(())
    }

    /// Notices an exit and plans the restart; restarts when it is due.
    fn supervise(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait()?
        {
            if self.started.elapsed() > STABLE_AFTER {
                self.crashes_in_a_row = 0;
            }
            let delay = (FIRST_BACKOFF * 2u32.pow(self.crashes_in_a_row.min(8))).min(MAX_BACKOFF);
            self.crashes_in_a_row += 1;
            tracing::warn!(child = %self.name, %status, restart_in_ms = delay.as_millis() as u64, "exited; restarting");
            self.child = None;
            self.restart_at = Some(Instant::now() + delay);
        }
        if self.restart_at.is_some_and(|at| Instant::now() >= at) {
            self.spawn()?;
        }
        Ok(())
    }

    fn terminate(&mut self) {
        if let Some(child) = &self.child {
            // SAFETY: signalling our own child has no memory-safety preconditions.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
    }
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data)?;
    let data = std::fs::canonicalize(&args.data)?;
    let token_path = data.join("ops-token");
    ops_token_file(&token_path)?;
    let data_arg = data.display().to_string();
    let mut children = Vec::new();
    let mut gateway_args = vec![
        "gateway".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{}", args.gateway_port),
        "--admin-listen".to_owned(),
        format!("127.0.0.1:{}", args.gateway_port + 1),
        "--data".to_owned(),
        data_arg.clone(),
    ];
    let mut control_args = vec![
        "control".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{}", args.control_port),
        "--data".to_owned(),
        data_arg.clone(),
        "--gateway".to_owned(),
        format!("gateway=http://127.0.0.1:{}", args.gateway_port + 1),
        "--check-url".to_owned(),
        format!("http://127.0.0.1:{}", args.gateway_port),
    ];
    for url in &args.webhooks {
        control_args.extend(["--webhook".to_owned(), url.clone()]);
    }
    for url in &args.slack_webhooks {
        control_args.extend(["--slack-webhook".to_owned(), url.clone()]);
    }
    for i in 0..args.nodes {
        let port = args.first_node_port + i;
        let name = format!("node-{}", i + 1);
        control_args.extend([
            "--node".to_owned(),
            format!("{name}=http://127.0.0.1:{port}"),
        ]);
        gateway_args.extend([
            "--node".to_owned(),
            format!("{name}=http://127.0.0.1:{port}"),
        ]);
        children.push(Supervised {
            args: vec![
                "node".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--node-id".into(),
                name.clone(),
                "--data".into(),
                data_arg.clone(),
            ],
            log: data.join(format!("{name}.log")),
            name,
            child: None,
            started: Instant::now(),
            crashes_in_a_row: 0,
            restart_at: None,
        });
    }
    for (name, args) in [("gateway", gateway_args), ("control", control_args)] {
        children.push(Supervised {
            name: name.into(),
            args,
            log: data.join(format!("{name}.log")),
            child: None,
            started: Instant::now(),
            crashes_in_a_row: 0,
            restart_at: None,
        });
    }
    for child in &mut children {
        child.spawn()?;
    }
    println!("croupier is up (supervisor pid {})", std::process::id());
    println!(
        "  players:       http://127.0.0.1:{}/api/v1   (sign in: POST /api/v1/sessions {{\"player\": \"alice\"}})",
        args.gateway_port
    );
    println!(
        "  gateway admin: http://127.0.0.1:{}/admin/nodes, /metrics",
        args.gateway_port + 1
    );
    for i in 0..args.nodes {
        println!(
            "  node-{}:        http://127.0.0.1:{}  (/healthz, /readyz, /metrics, /ops/...)",
            i + 1,
            args.first_node_port + i
        );
    }
    println!(
        "  status page:   http://127.0.0.1:{}/status   (feeds: /status/feed.atom, /status/feed.json)",
        args.control_port
    );
    println!(
        "  dashboard:     http://127.0.0.1:{}/dashboard   (sign in with the ops token)",
        args.control_port
    );
    println!(
        "  control API:   http://127.0.0.1:{}/api/v1   (OpenAPI: /api/v1/openapi.json; `croupier ctl`)",
        args.control_port
    );
    println!("  ops token:     {}", token_path.display());
    println!(
        "  ledger:        {}   logs: {}/*.log",
        data.join("ledger.db").display(),
        data.display()
    );
    println!("Ctrl-C stops everything.");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {
                    for child in &mut children {
                        if let Err(e) = child.supervise() {
                            tracing::error!(child = %child.name, error = %e, "cannot restart");
                        }
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;

    println!("stopping: draining nodes and the gateway");
    for child in &mut children {
        child.terminate();
    }
    let deadline = Instant::now() + STOP_GRACE;
    for child in &mut children {
        if let Some(process) = &mut child.child {
            while process.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = process.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = process.wait();
        }
    }
    println!("stopped");
    Ok(())
}
