//! A `croupier up` stack of real processes for the drills: started as a child (the drill
//! stops it at the end) or attached to when already running. Knows its addresses, its ops
//! token and ledger, finds the pid of each node and of the gateway (from
//! /proc/<pid>/cmdline), and tells when every part is serving again.
// libc calls for signals, process groups or descriptors; each block says why it is sound.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use croupier_ledger::StoreLocation;
use serde_json::Value;

use crate::error::LoadError;
use crate::http::{Call, HttpClient};
use crate::pgcluster::{PgCluster, Replication};

#[derive(Debug, Clone)]
pub struct StackSpec {
    /// The croupier binary (for `up`).
    pub bin: PathBuf,
    pub data: PathBuf,
    pub nodes: u16,
    pub first_node_port: u16,
    pub gateway_port: u16,
    pub control_port: u16,
    /// The ledger `up` runs on; `None`: the SQLite file in the data folder.
    pub store: Option<StoreLocation>,
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

fn read_token(data: &Path, wait: Duration) -> Result<String, LoadError> {
    let path = data.join("ops-token");
    let deadline = Instant::now() + wait;
    loop {
        match std::fs::read_to_string(&path) {
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
    /// Starts `croupier up` on `spec.data` and waits until everything serves.
    pub async fn start(spec: StackSpec, ready_within: Duration) -> Result<Stack, LoadError> {
        std::fs::create_dir_all(&spec.data)
            .map_err(|e| LoadError::io(format!("creating {}", spec.data.display()), e))?;
        let log_path = spec.data.join("up.log");
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
            .arg("up")
            // Simulated players sign in by name and play with play money.
            .arg("--demo")
            .arg("--data")
            .arg(&spec.data)
            .args(["--nodes", &spec.nodes.to_string()])
            .args(["--first-node-port", &spec.first_node_port.to_string()])
            .args(["--gateway-port", &spec.gateway_port.to_string()])
            .args(["--control-port", &spec.control_port.to_string()])
            .args(
                spec.store
                    .iter()
                    .flat_map(|s| ["--store".to_owned(), s.as_arg()]),
            )
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
        let ops_token = read_token(&spec.data, Duration::from_secs(20))?;
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
        let ops_token = read_token(&spec.data, Duration::ZERO)?;
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

    pub fn gateway(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.gateway_port)
    }

    pub fn admin(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.gateway_port + 1)
    }

    pub fn control(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.control_port)
    }

    pub fn node_names(&self) -> Vec<String> {
        (1..=self.spec.nodes).map(|i| format!("node-{i}")).collect()
    }

    pub fn node_url(&self, index: usize) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.spec.first_node_port as usize + index
        )
    }

    /// The ledger the stack's nodes share.
    pub fn store(&self) -> StoreLocation {
        self.spec
            .store
            .clone()
            .unwrap_or_else(|| StoreLocation::Sqlite(self.spec.data.join("ledger.db")))
    }

    pub fn node_pid(&self, index: usize) -> Option<i32> {
        find_pid(
            "node",
            &format!("127.0.0.1:{}", self.spec.first_node_port as usize + index),
        )
    }

    pub fn gateway_pid(&self) -> Option<i32> {
        find_pid("gateway", &format!("127.0.0.1:{}", self.spec.gateway_port))
    }

    /// The gateway's view of its nodes (ops token), or `None` when it does not answer.
    pub async fn gateway_nodes(&self) -> Option<Vec<Value>> {
        let call = Call::get(format!("{}/admin/nodes", self.admin())).token(&self.ops_token);
        let answer = self.http.send(0, call).await.ok()?;
        answer.json()["nodes"].as_array().cloned()
    }

    /// Every node ready and eligible at the gateway, and the players' address answering.
    pub async fn whole(&self) -> bool {
        for i in 0..self.spec.nodes as usize {
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
        nodes.len() == self.spec.nodes as usize && nodes.iter().all(|n| n["eligible"] == true)
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
                    self.spec.data.display()
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
