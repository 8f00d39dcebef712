//! A `croupier up` stack of real processes for the drills: started as a child (the drill
//! stops it at the end) or attached to when already running. Its addresses and files come
//! from its `Layout`; it holds its ops token, finds the pid of each node and of the gateway
//! (from /proc/<pid>/cmdline), and tells when every part is serving again.
// libc calls for signals, process groups or descriptors; each block says why it is sound.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use croupier_ledger::StoreLocation;
use croupier_web::wire::admin::{Node, Nodes};

use crate::error::LoadError;
use crate::http::{Call, HttpClient};
use crate::layout::Layout;
use crate::pgcluster::{PgCluster, Replication};

#[derive(Debug, Clone)]
pub struct StackSpec {
    /// The croupier binary (for `up`).
    pub bin: PathBuf,
    /// Its data folder, ports and ledger (`None`: the SQLite file in the data folder).
    pub layout: Layout,
}

pub struct Stack {
    pub spec: StackSpec,
    child: Option<Child>,
    pub ops_token: String,
    http: HttpClient,
    /// The PostgreSQL server the ledger is on, when the drill runs it (it outlives the stack).
    pub store_server: Option<PgCluster>,
    /// Its streaming standby and how it replicates (the store-failover drill).
    pub store_standby: Option<(PgCluster, Replication)>,
}

const STOP_GRACE: Duration = Duration::from_secs(30);

fn read_token(path: &Path, wait: Duration) -> Result<String, LoadError> {
    let deadline = Instant::now() + wait;
    loop {
        match std::fs::read_to_string(path) {
            Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(_) => return Err(LoadError::Stack(format!("{} is empty", path.display()))),
            Err(e) => return Err(LoadError::io(format!("reading {}", path.display()), e)),
        }
    }
}

/// The pid of a live process whose arguments are `croupier <subcommand> … --listen <addr> …`.
pub fn find_pid(subcommand: &str, listen: &str) -> Option<i32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.flatten().find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let matches = args.get(1) == Some(&subcommand.as_bytes())
            && args
                .windows(2)
                .any(|w| w[0] == b"--listen" && w[1] == listen.as_bytes());
        matches.then_some(pid)
    })
}

/// Whether process `pid` still runs (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

impl Stack {
    /// Starts `croupier up` on `spec.layout` and waits until everything serves.
    pub async fn start(spec: StackSpec, ready_within: Duration) -> Result<Stack, LoadError> {
        let data = &spec.layout.data;
        std::fs::create_dir_all(data)
            .map_err(|e| LoadError::io(format!("creating {}", data.display()), e))?;
        let log_path = data.join("up.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| LoadError::io(format!("opening {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| LoadError::io("cloning the log handle", e))?;
        let mut command = Command::new(&spec.bin);
        command
            .args(spec.layout.up_command())
            .envs(spec.layout.environment())
            // Simulated players sign in by name and play with play money.
            .arg("--demo")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: prctl is async-signal-safe; the stack stops if the drill dies.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| LoadError::io(format!("starting {} up", spec.bin.display()), e))?;
        let ops_token = read_token(&spec.layout.ops_token_file(), Duration::from_secs(20))?;
        let stack = Stack {
            spec,
            child: Some(child),
            ops_token,
            http: HttpClient::new(1, Duration::from_secs(2))?,
            store_server: None,
            store_standby: None,
        };
        stack.wait_whole(ready_within).await?;
        Ok(stack)
    }

    /// A stack already running with these addresses and data folder.
    pub async fn attach(spec: StackSpec, ready_within: Duration) -> Result<Stack, LoadError> {
        let ops_token = read_token(&spec.layout.ops_token_file(), Duration::ZERO)?;
        let stack = Stack {
            spec,
            child: None,
            ops_token,
            http: HttpClient::new(1, Duration::from_secs(2))?,
            store_server: None,
            store_standby: None,
        };
        stack.wait_whole(ready_within).await?;
        Ok(stack)
    }

    pub fn layout(&self) -> &Layout {
        &self.spec.layout
    }

    /// The players' address.
    pub fn gateway(&self) -> String {
        self.layout().players_url()
    }

    /// The gateway's admin API.
    pub fn admin(&self) -> String {
        self.layout().admin_url()
    }

    pub fn control(&self) -> String {
        self.layout().control_url()
    }

    pub fn node_names(&self) -> Vec<String> {
        self.layout().node_names()
    }

    pub fn node_url(&self, index: u16) -> String {
        self.layout().node_url(index)
    }

    /// The ledger the stack's nodes share.
    pub fn store(&self) -> StoreLocation {
        self.layout().store()
    }

    pub fn node_pid(&self, index: u16) -> Option<i32> {
        find_pid("node", &self.layout().node_listen(index))
    }

    pub fn gateway_pid(&self) -> Option<i32> {
        find_pid(crate::layout::GATEWAY, &self.layout().players_listen())
    }

    /// The gateway's view of its nodes (ops token), or `None` when it does not answer.
    pub async fn gateway_nodes(&self) -> Option<Vec<Node>> {
        let call = Call::get(format!("{}/admin/nodes", self.admin())).token(&self.ops_token);
        let answer = self.http.send(0, call).await.ok()?;
        answer.read::<Nodes>().map(|n| n.nodes)
    }

    /// Every node ready and eligible at the gateway, and the players' address answering.
    pub async fn whole(&self) -> bool {
        for i in 0..self.layout().nodes {
            let ready = self
                .http
                .send(0, Call::get(format!("{}/readyz", self.node_url(i))))
                .await;
            if !matches!(ready, Ok(a) if a.status == 200) {
                return false;
            }
        }
        let Some(nodes) = self.gateway_nodes().await else {
            return false;
        };
        nodes.len() == usize::from(self.layout().nodes) && nodes.iter().all(|n| n.eligible)
    }

    /// Waits until the stack is whole; the moment it was.
    pub async fn wait_whole(&self, within: Duration) -> Result<Instant, LoadError> {
        let deadline = Instant::now() + within;
        loop {
            if self.whole().await {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                return Err(LoadError::Stack(format!(
                    "not every node and the gateway served within {within:?} (see {}/logs/*.log)",
                    self.layout().data.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops a stack this drill started (SIGTERM, then SIGKILL after the grace period).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child has no memory-safety preconditions.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}
