//! A throwaway PostgreSQL cluster of real server processes, for drills that must stop, crash
//! or restart the database: created with `initdb` in a folder of the drill's, on a loopback
//! port, run with `pg_ctl`. As root the server binaries run as the `postgres` user (they
//! refuse root); as any other user, as that user. The cluster is stopped and its folder
//! removed when the value is dropped.
//!
//! A cluster can also be a streaming standby of another (`standby_of`: `pg_basebackup -R`),
//! synchronous or not, so the store-failover drill can lose its primary (`kill`: SIGKILL of
//! the server and every one of its processes, as when the machine is gone) and promote the
//! standby, as an HA manager (Patroni, CloudNativePG) would.
// libc::kill for the SIGKILL of a lost machine; the block says why it is sound.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::LoadError;

/// The server's own superuser, and the database the stack's ledger lives in.
pub const SUPERUSER: &str = "postgres";
pub const DATABASE: &str = "croupier";

/// How a standby's primary waits for it at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Replication {
    /// A commit returns once the standby has the WAL on disk (`synchronous_standby_names`):
    /// a promoted standby has every acknowledged commit.
    Sync,
    /// A commit returns at once; the standby follows as fast as it can, and the last
    /// commits before a crash of the primary may never reach it.
    Async,
}

pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run the server binaries as this user (when we are root).
    run_as: Option<String>,
}

/// Where the PostgreSQL server binaries are: `CROUPIER_PG_BIN`, or the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
pub fn server_bin() -> Result<PathBuf, LoadError> {
    if let Ok(dir) = std::env::var("CROUPIER_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| LoadError::io("looking for PostgreSQL in /usr/lib/postgresql", e))?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| LoadError::Config("no PostgreSQL server binaries (initdb) found".into()))
}

impl PgCluster {
    /// Creates and starts a cluster in `dir` (which must not exist yet) on `port`, with a
    /// `croupier` database.
    pub fn create(dir: &Path, port: u16) -> Result<PgCluster, LoadError> {
        let cluster = PgCluster::prepare(dir, port)?;
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
            ],
        )?;
        cluster.configure()?;
        cluster.start()?;
        cluster.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                SUPERUSER,
                DATABASE,
            ],
        )?;
        Ok(cluster)
    }

    /// The value for a folder `dir` (created, and handed to the server's user) and `port`.
    fn prepare(dir: &Path, port: u16) -> Result<PgCluster, LoadError> {
        let run_as = running_as_root().then(|| SUPERUSER.to_owned());
        let cluster = PgCluster {
            bin: server_bin()?,
            dir: dir.to_owned(),
            port,
            run_as,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| LoadError::io(format!("creating {}", dir.display()), e))?;
        cluster.hand_over(dir)?;
        Ok(cluster)
    }

    /// Creates and starts a streaming standby of `primary` in `dir` on `port`
    /// (`pg_basebackup -R`), and, for `Replication::Sync`, makes the primary wait for it at
    /// every commit. Returns once the standby streams (and, in sync mode, is the primary's
    /// synchronous standby).
    pub fn standby_of(
        primary: &PgCluster,
        dir: &Path,
        port: u16,
        replication: Replication,
    ) -> Result<PgCluster, LoadError> {
        let standby = PgCluster::prepare(dir, port)?;
        standby.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                SUPERUSER,
                "-D",
                &standby.data().display().to_string(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        )?;
        // The copied settings name the primary's port and folder: these lines come later and
        // win. A promoted standby has no standby of its own, so it must not wait for one.
        standby.configure()?;
        standby.append_settings("synchronous_standby_names = ''\n")?;
        standby.start()?;
        standby.wait_accepting(Duration::from_secs(30))?;
        if replication == Replication::Sync {
            primary.append_settings("synchronous_standby_names = '*'\n")?;
            primary.pg_ctl(&["reload"])?;
        }
        primary.wait_streaming(replication, Duration::from_secs(30))?;
        Ok(standby)
    }

    /// A primary in `dir/primary` on `port` and its streaming standby in `dir/standby` on
    /// `standby_port` (see `standby_of`).
    pub fn primary_and_standby(
        dir: &Path,
        port: u16,
        standby_port: u16,
        replication: Replication,
    ) -> Result<(PgCluster, PgCluster), LoadError> {
        let primary = PgCluster::create(&dir.join("primary"), port)?;
        let standby =
            PgCluster::standby_of(&primary, &dir.join("standby"), standby_port, replication)?;
        Ok((primary, standby))
    }

    /// The URL of the `croupier` database.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The `croupier` database on whichever of `hosts` accepts writes, asked in this order
    /// (`target_session_attrs=read-write`).
    pub fn read_write_url(hosts: &[&PgCluster]) -> String {
        let addresses: Vec<String> = hosts
            .iter()
            .map(|h| format!("127.0.0.1:{}", h.port))
            .collect();
        format!(
            "postgres://{SUPERUSER}@{}/{DATABASE}?target_session_attrs=read-write",
            addresses.join(",")
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The data folder (`PGDATA`), e.g. for pgBackRest's `pg1-path`.
    pub fn data_dir(&self) -> PathBuf {
        self.data()
    }

    /// The folder of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The server's settings: loopback only, durable commits, ready for a standby.
    fn configure(&self) -> Result<(), LoadError> {
        self.append_settings(&format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = on\nsynchronous_commit = on\nmax_connections = 200\nwal_level = replica\n\
             max_wal_senders = 5\nhot_standby = on\nwal_sender_timeout = 5s\n\
             wal_retrieve_retry_interval = 200ms\n",
            self.port,
            self.dir.display()
        ))
    }

    /// Appends lines to `postgresql.conf` (a later line wins over an earlier one); a
    /// `restart` (or a reload, for the settings that allow it) applies them.
    pub fn append_settings(&self, lines: &str) -> Result<(), LoadError> {
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .map_err(|e| LoadError::io(format!("reading {}", conf.display()), e))?;
        text.push('\n');
        text.push_str(lines);
        std::fs::write(&conf, text)
            .map_err(|e| LoadError::io(format!("writing {}", conf.display()), e))
    }

    /// Runs one SQL statement on the `croupier` database with psql, through the server's Unix
    /// socket (what `pg_hba.conf` lets in over TCP may be TLS clients only); its output,
    /// trimmed.
    pub fn sql(&self, statement: &str) -> Result<String, LoadError> {
        let output = self.run(
            "psql",
            &[
                "-h",
                &self.dir.display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                DATABASE,
                "-Atc",
                statement,
            ],
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Waits until a standby streams from this primary (`sync` in sync mode).
    fn wait_streaming(&self, replication: Replication, within: Duration) -> Result<(), LoadError> {
        let want = match replication {
            Replication::Sync => "sync",
            Replication::Async => "async",
        };
        let deadline = Instant::now() + within;
        loop {
            let states =
                self.sql("SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'")?;
            if states.lines().any(|s| s == want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LoadError::Stack(format!(
                    "no {want} standby streamed from port {} within {within:?} (saw '{states}')",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Promotes a standby to primary (`pg_ctl promote`), waiting until it accepts writes.
    pub fn promote(&self) -> Result<(), LoadError> {
        self.pg_ctl(&["promote", "-w", "-t", "30"])
    }

    /// Kills the server as a lost machine would: SIGKILL to the postmaster and to every
    /// process it started, with no chance to finish, flush or say goodbye to a client.
    /// Returns the postmaster's pid.
    pub fn kill(&self) -> Result<i32, LoadError> {
        let pid_file = self.data().join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file)
            .map_err(|e| LoadError::io(format!("reading {}", pid_file.display()), e))?;
        let pid: i32 = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| LoadError::Stack(format!("no pid in {}", pid_file.display())))?;
        let children = children_of(pid);
        for target in std::iter::once(pid).chain(children) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(target, libc::SIGKILL) };
        }
        Ok(pid)
    }

    pub fn start(&self) -> Result<(), LoadError> {
        let log = self.dir.join("server.log").display().to_string();
        self.pg_ctl(&["start", "-w", "-t", "30", "-l", &log])
    }

    /// Stops the server cleanly and starts it again (what `archive_mode` needs).
    pub fn restart(&self) -> Result<(), LoadError> {
        self.restart_with_env(&[])
    }

    /// `restart` with `env` added to the server's environment, and so to its
    /// `archive_command`'s: e.g. the keys of an S3 repository, which stay out of every file
    /// and command line.
    pub fn restart_with_env(&self, env: &[(&str, &str)]) -> Result<(), LoadError> {
        self.stop("fast")?;
        let (data, log) = (self.data(), self.dir.join("server.log"));
        let (data, log) = (data.display().to_string(), log.display().to_string());
        let args = ["-D", &data, "start", "-w", "-t", "30", "-l", &log];
        self.run_with_env("pg_ctl", &args, env).map(drop)
    }

    /// Stops the server: `fast` (clients are disconnected, a clean shutdown) or `immediate`
    /// (like a crash: recovery runs at the next start).
    pub fn stop(&self, mode: &str) -> Result<(), LoadError> {
        self.pg_ctl(&["stop", "-w", "-t", "30", "-m", mode])
    }

    /// Whether the server accepts connections now.
    pub fn accepting(&self) -> bool {
        self.run(
            "pg_isready",
            &["-h", "127.0.0.1", "-p", &self.port.to_string()],
        )
        .is_ok()
    }

    /// Waits until the server accepts connections.
    pub fn wait_accepting(&self, within: Duration) -> Result<(), LoadError> {
        let deadline = Instant::now() + within;
        while !self.accepting() {
            if Instant::now() > deadline {
                return Err(LoadError::Stack(format!(
                    "PostgreSQL on port {} did not accept connections within {within:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), LoadError> {
        let data = self.data().display().to_string();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all).map(|_| ())
    }

    /// Gives `dir` to the user the server runs as.
    fn hand_over(&self, dir: &Path) -> Result<(), LoadError> {
        let Some(user) = &self.run_as else {
            return Ok(());
        };
        let status = Command::new("chown")
            .args(["-R", &format!("{user}:"), &dir.display().to_string()])
            .status()
            .map_err(|e| LoadError::io("running chown", e))?;
        if !status.success() {
            return Err(LoadError::Stack(format!(
                "chown of {} failed",
                dir.display()
            )));
        }
        Ok(())
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, LoadError> {
        self.run_with_env(program, args, &[])
    }

    fn run_with_env(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Output, LoadError> {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        command
            .args(args)
            .envs(env.iter().copied())
            .current_dir("/");
        let output = command
            .output()
            .map_err(|e| LoadError::io(format!("running {program}"), e))?;
        if !output.status.success() {
            return Err(LoadError::Stack(format!(
                "{program} {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(output)
    }
}

/// The pids whose parent is `parent` (from /proc).
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // After the command name in parentheses: state, then the parent's pid.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
