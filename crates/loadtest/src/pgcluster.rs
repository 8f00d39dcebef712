//! A throwaway PostgreSQL cluster of real server processes, for drills that must stop, crash
//! or restart the database: created with `initdb` in a folder of the drill's, on a loopback
//! port, run with `pg_ctl`. As root the server binaries run as the `postgres` user (they
//! refuse root); as any other user, as that user. The cluster is stopped and its folder
//! removed when the value is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::error::LoadError;

/// The server's own superuser, and the database the stack's ledger lives in.
pub const SUPERUSER: &str = "postgres";
pub const DATABASE: &str = "croupier";

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

    /// The URL of the `croupier` database.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's settings: loopback only, durable commits, ready for a standby.
    fn configure(&self) -> Result<(), LoadError> {
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = on\nsynchronous_commit = on\nmax_connections = 200\nwal_level = replica\n\
             max_wal_senders = 5\nhot_standby = on\n",
            self.port,
            self.dir.display()
        );
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .map_err(|e| LoadError::io(format!("reading {}", conf.display()), e))?;
        text.push_str(&settings);
        std::fs::write(&conf, text)
            .map_err(|e| LoadError::io(format!("writing {}", conf.display()), e))
    }

    pub fn start(&self) -> Result<(), LoadError> {
        let log = self.dir.join("server.log").display().to_string();
        self.pg_ctl(&["start", "-w", "-t", "30", "-l", &log])
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
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        command.args(args).current_dir("/");
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
