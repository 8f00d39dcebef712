//! The logging options every subcommand takes: where the log goes (`--log-to`), and for a
//! file how it is rotated. `auto` writes to stderr, which is right on a terminal, under
//! systemd (the journal) and under Kubernetes; `croupier up` asks its children for files in
//! `<data>/logs` unless it runs under one of those itself.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use croupier_vitals::logs::{self, Destination};
use croupier_vitals::rotating::Rotation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTo {
    /// stderr unless `--log-file` is given.
    Auto,
    /// Plain lines on stderr (journald, a container runtime, a terminal).
    Stdout,
    /// The rotated file `--log-file`.
    File,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Where the log goes.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        env = "CROUPIER_LOG_TO"
    )]
    pub log_to: LogTo,
    /// Log file, rotated (with --log-to file or auto).
    #[arg(long, global = true, env = "CROUPIER_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Rotate the log file when it passes this many bytes.
    #[arg(long, global = true, default_value_t = 64 * 1024 * 1024)]
    pub log_max_bytes: u64,
    /// Rotate the log file when it is this many hours old.
    #[arg(long, global = true, default_value_t = 24)]
    pub log_max_age_h: u64,
    /// Rotated log files kept (older ones are deleted; all but the newest are gzipped).
    #[arg(long, global = true, default_value_t = 7)]
    pub log_keep: usize,
}

impl LogArgs {
    pub fn rotation(&self) -> Rotation {
        Rotation {
            max_bytes: self.log_max_bytes.max(1),
            max_age: Duration::from_secs(self.log_max_age_h.max(1) * 3_600),
            keep: self.log_keep.max(1),
        }
    }

    pub fn destination(&self) -> anyhow::Result<Destination> {
        Ok(match (self.log_to, &self.log_file) {
            (LogTo::Stdout, _) | (LogTo::Auto, None) => Destination::Stderr,
            (LogTo::File | LogTo::Auto, Some(path)) => {
                Destination::File(path.clone(), self.rotation())
            }
            (LogTo::File, None) => anyhow::bail!("--log-to file needs --log-file PATH"),
        })
    }

    pub fn init(&self) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
        Ok(logs::init(self.destination()?)?)
    }

    /// The options to hand a child process that logs to `file`.
    pub fn for_child(&self, file: PathBuf) -> Vec<String> {
        vec![
            "--log-to".into(),
            "file".into(),
            "--log-file".into(),
            file.display().to_string(),
            "--log-max-bytes".into(),
            self.log_max_bytes.to_string(),
            "--log-max-age-h".into(),
            self.log_max_age_h.to_string(),
            "--log-keep".into(),
            self.log_keep.to_string(),
        ]
    }
}
