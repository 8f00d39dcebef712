//! Real processes for the benchmarks: `croupier node` and `croupier gateway` from the same
//! release build, HAProxy and wrk from the system; each killed when dropped.
// libc calls for signals, process groups or descriptors; each block says why it is sound.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub const OPS_TOKEN: &str = "bench-ops-token-0123456789abcdef0123456789";

pub struct Process(pub Child);

impl Process {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL, and wait for it.
    pub fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_9();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `croupier` binary of this build (next to this one), or the one given.
pub fn croupier_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let binary = match given {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has a folder")?
            .join("croupier"),
    };
    anyhow::ensure!(
        binary.exists(),
        "{} not found: cargo build --release first",
        binary.display()
    );
    Ok(binary)
}

pub fn wait_ok(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = agent().get(url).call()
            && r.status() == 200
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("{url} did not answer 200")
}

pub fn start_node(binary: &Path, data: &Path, port: u16, id: &str) -> anyhow::Result<Process> {
    start_node_on(binary, data, port, id, None)
}

/// A demo node with its data in `data`, its ledger there (SQLite) or at `store`.
pub fn start_node_on(
    binary: &Path,
    data: &Path,
    port: u16,
    id: &str,
    store: Option<&str>,
) -> anyhow::Result<Process> {
    let mut command = Command::new(binary);
    command
        .args(["node", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--node-id", id, "--demo"])
        .arg("--data")
        .arg(data);
    if let Some(store) = store {
        command.args(["--store", store]);
    }
    let node = Process(
        command
            .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_ok(&format!("http://127.0.0.1:{port}/readyz"))?;
    Ok(node)
}

/// Per-process CPU time (user + system) in seconds, from /proc.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let (_, ticks) = stat_ticks(&format!("/proc/{pid}/stat"))?;
    Ok(ticks.own / ticks_per_second())
}

/// CPU seconds spent so far by a PostgreSQL server on this machine: every process named
/// `postgres` (the postmaster and its live children), and what its exited children spent,
/// counted in the postmaster's children's time once reaped (a closed session's backend).
pub fn postgres_cpu_seconds() -> anyhow::Result<f64> {
    let mut ticks = 0.0;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A process may end between the listing and the read.
        let Ok((command, t)) = stat_ticks(&format!("/proc/{pid}/stat")) else {
            continue;
        };
        if command == "postgres" {
            ticks += t.own + t.children;
        }
    }
    Ok(ticks / ticks_per_second())
}

struct Ticks {
    /// User and system time.
    own: f64,
    /// User and system time of its children that have ended and been waited for.
    children: f64,
}

/// A process's command name and CPU ticks from its `/proc/<pid>/stat`.
fn stat_ticks(path: &str) -> anyhow::Result<(String, Ticks)> {
    let stat = std::fs::read_to_string(path)?;
    // The command name is in parentheses and may hold spaces.
    let (head, after) = stat.rsplit_once(')').context("a /proc stat line")?;
    let command = head.split_once('(').map_or("", |(_, c)| c).to_owned();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("a /proc stat field")?
            .parse::<f64>()?)
    };
    let ticks = Ticks {
        own: field(11)? + field(12)?,
        children: field(13)? + field(14)?,
    };
    Ok((command, ticks))
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}
