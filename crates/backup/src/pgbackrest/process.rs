//! One `pgbackrest` command as a real process. PostgreSQL's files belong to the cluster's
//! owner and pgBackRest must run as that user: when Croupier runs as root it switches to the
//! owner of the data folder (uid and gid of the process, no `su`); otherwise it runs as
//! itself. A failed command is an error carrying pgBackRest's own message.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::error::BackupError;
use crate::pgbackrest::config::PgBackrestConfig;
use crate::pgbackrest::info::{StanzaInfo, parse_info};

/// The kinds of backup the schedule takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgBackupType {
    Full,
    /// Everything changed since the last full backup.
    Diff,
}

/// What a restore recovers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The end of the archived WAL.
    Newest,
    /// The state at this instant (Unix milliseconds): `--type=time`.
    At(i64),
}

pub struct PgBackrest {
    config: PgBackrestConfig,
    /// The user and group to run as (the data folder's owner, when we are root).
    owner: Option<(u32, u32)>,
}

/// The owner of `dir` when this process is root and `dir` is someone else's: whom
/// PostgreSQL's tools must run as.
pub fn owner_to_run_as(dir: &Path) -> Result<Option<(u32, u32)>, BackupError> {
    let me = std::fs::metadata("/proc/self")?.uid();
    let meta = std::fs::metadata(dir)?;
    Ok((me == 0 && meta.uid() != 0).then(|| (meta.uid(), meta.gid())))
}

/// `cmd` run as `owner` (when given), from `/`.
pub fn as_owner(mut cmd: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd.current_dir("/");
    cmd
}

/// Runs `cmd`; its standard output, or an error naming `what` with its standard error.
pub fn output_of(mut cmd: Command, what: &str) -> Result<String, BackupError> {
    let output = cmd.output().map_err(|e| BackupError::Tool {
        command: what.to_owned(),
        detail: e.to_string(),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let detail = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        return Err(BackupError::Tool {
            command: what.to_owned(),
            detail: format!("{} ({})", detail.trim(), output.status),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// pgBackRest's time target: `YYYY-MM-DD HH:MM:SS.mmm+00`.
fn time_target(at_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms.max(0) as u64);
    let text = humantime::format_rfc3339_millis(at).to_string();
    format!("{}+00", text.trim_end_matches('Z').replace('T', " "))
}

impl PgBackrest {
    /// Writes the stanza's configuration and runs as the data folder's owner.
    pub fn new(config: PgBackrestConfig) -> Result<PgBackrest, BackupError> {
        let owner = owner_to_run_as(&config.pg_data)?;
        config.write(owner)?;
        Ok(PgBackrest { config, owner })
    }

    /// The stanza as `new` wrote it (a backup daemon of this deployment writes it), without
    /// writing it again: the running cluster's `archive_command` reads that file at any time,
    /// and a rewrite (truncate, then write) could hand it a partial one.
    pub fn written(config: PgBackrestConfig) -> Result<PgBackrest, BackupError> {
        let owner = owner_to_run_as(&config.pg_data)?;
        Ok(PgBackrest { config, owner })
    }

    pub fn config(&self) -> &PgBackrestConfig {
        &self.config
    }

    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// Runs `pgbackrest --config=… --stanza=… ARGS`; its standard output.
    pub fn run(&self, args: &[&str]) -> Result<String, BackupError> {
        let mut cmd = Command::new(&self.config.program);
        cmd.arg(format!("--config={}", self.config.conf_path.display()))
            .arg(format!("--stanza={}", self.config.stanza))
            .args(args)
            .env_remove("PGUSER")
            .env_remove("PGPASSWORD");
        output_of(
            as_owner(cmd, self.owner),
            &format!("pgbackrest {}", args.join(" ")),
        )
    }

    /// Creates the stanza in the repository (nothing to do when it exists and matches).
    pub fn stanza_create(&self) -> Result<(), BackupError> {
        self.run(&["stanza-create"]).map(drop)
    }

    /// Checks that the cluster archives WAL into the repository.
    pub fn check(&self) -> Result<(), BackupError> {
        self.run(&["check"]).map(drop)
    }

    /// Takes a backup; pgBackRest expires what `repo1-retention-full` no longer keeps.
    pub fn backup(&self, kind: PgBackupType) -> Result<(), BackupError> {
        let kind = match kind {
            PgBackupType::Full => "--type=full",
            PgBackupType::Diff => "--type=diff",
        };
        self.run(&[kind, "backup"]).map(drop)
    }

    /// The stanza as `pgbackrest info` sees it.
    pub fn info(&self) -> Result<StanzaInfo, BackupError> {
        let json = self.run(&["--output=json", "info"])?;
        parse_info(&json)?
            .into_iter()
            .find(|s| s.name == self.config.stanza)
            .ok_or_else(|| BackupError::Tool {
                command: "pgbackrest info".into(),
                detail: format!("no stanza {} in its answer", self.config.stanza),
            })
    }

    /// Restores into `into`, a new or empty folder (made the owner's, mode 0700), to
    /// `target`; a time target is promoted once reached, so the cluster accepts writes.
    pub fn restore(&self, into: &Path, target: &RestoreTarget) -> Result<(), BackupError> {
        if into.exists() && std::fs::read_dir(into)?.next().is_some() {
            return Err(BackupError::TargetExists(into.display().to_string()));
        }
        std::fs::create_dir_all(into)?;
        std::fs::set_permissions(into, std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(into, Some(uid), Some(gid))?;
        }
        let path = format!("--pg1-path={}", into.display());
        match target {
            RestoreTarget::Newest => self.run(&[&path, "restore"]),
            RestoreTarget::At(at_ms) => self.run(&[
                &path,
                "--type=time",
                &format!("--target={}", time_target(*at_ms)),
                "--target-action=promote",
                "restore",
            ]),
        }
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_targets_are_utc_to_the_millisecond() {
        assert_eq!(time_target(1_764_007_205_250), "2025-11-24 18:00:05.250+00");
    }

    #[test]
    fn a_failing_command_says_why() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo 'ERROR: [041]: unable to open repo' >&2; exit 41",
        ]);
        let error = output_of(cmd, "pgbackrest backup").unwrap_err().to_string();
        assert!(
            error.contains("pgbackrest backup") && error.contains("[041]"),
            "{error}"
        );
    }
}
