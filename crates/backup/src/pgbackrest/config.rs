//! The stanza Croupier generates for its ledger's cluster (`pgbackrest.conf`) and the lines
//! `postgresql.conf` needs so that every WAL segment is archived into the same repository.
//! The repository is a folder or S3; the S3 keys come from pgBackRest's own
//! `PGBACKREST_REPO1_S3_KEY` / `PGBACKREST_REPO1_S3_KEY_SECRET` variables, never a file or an
//! argument. The file holds no secret and is still the cluster owner's alone (0600).

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::BackupError;

/// Where pgBackRest keeps backups and archived WAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Repo {
    Folder(PathBuf),
    S3 {
        bucket: String,
        /// The path inside the bucket (`/` when none).
        path: String,
        /// The host (`repo1-s3-endpoint`), without scheme or port.
        endpoint: String,
        /// The port when not 443 (`repo1-storage-port`), e.g. MinIO's 9000.
        port: Option<u16>,
        region: String,
    },
}

/// `AWS_ENDPOINT` as pgBackRest takes it: `[https://]host[:port]`. Its S3 driver speaks
/// HTTPS only, so an `http://` endpoint is refused here rather than by a failing archive.
fn s3_endpoint(endpoint: &str) -> Result<(String, Option<u16>), BackupError> {
    if endpoint.starts_with("http://") {
        return Err(BackupError::BadTarget(format!(
            "{endpoint}: pgBackRest reaches S3 over HTTPS only (give https://host:port)"
        )));
    }
    let hostport = endpoint
        .strip_prefix("https://")
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    let Some((host, port)) = hostport.rsplit_once(':') else {
        return Ok((hostport.to_owned(), None));
    };
    let port = port
        .parse()
        .map_err(|_| BackupError::BadTarget(format!("{endpoint}: bad port '{port}'")))?;
    Ok((host.to_owned(), Some(port)))
}

impl Repo {
    /// A folder, or `s3://bucket/prefix` with the endpoint and region from `AWS_ENDPOINT`
    /// (`[https://]host[:port]`) and `AWS_REGION` (defaults `s3.amazonaws.com`, `us-east-1`).
    pub fn parse(target: &str) -> Result<Repo, BackupError> {
        let Some(rest) = target.strip_prefix("s3://") else {
            if target.contains("://") {
                return Err(BackupError::BadTarget(format!(
                    "{target}: pgBackRest repositories are folders or s3:// URLs"
                )));
            }
            return Ok(Repo::Folder(PathBuf::from(target)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(BackupError::BadTarget(format!(
                "{target}: no bucket after s3://"
            )));
        }
        let env =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let (endpoint, port) = s3_endpoint(&env("AWS_ENDPOINT", "s3.amazonaws.com"))?;
        Ok(Repo::S3 {
            bucket: bucket.to_owned(),
            path: format!("/{}", prefix.trim_matches('/')),
            endpoint,
            port,
            region: env("AWS_REGION", "us-east-1"),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgBackrestConfig {
    /// The stanza's name (one per cluster).
    pub stanza: String,
    /// Where the generated `pgbackrest.conf` is written; `archive_command` names it, so the
    /// cluster's owner must be able to read it.
    pub conf_path: PathBuf,
    /// The cluster's data directory (`pg1-path`).
    pub pg_data: PathBuf,
    pub pg_port: u16,
    /// The folder of the cluster's Unix socket (`unix_socket_directories`).
    pub pg_socket: PathBuf,
    /// The database role pgBackRest connects as (a superuser or one with backup rights).
    pub pg_user: String,
    pub repo: Repo,
    /// Full backups kept (`repo1-retention-full`); differentials go with their full.
    pub retention_full: u32,
    /// The `pgbackrest` program.
    pub program: PathBuf,
}

impl PgBackrestConfig {
    /// A stanza with the usual defaults for the rest: `pgbackrest` on the PATH, role
    /// `postgres`, two fulls kept.
    pub fn new(
        conf_path: &Path,
        pg_data: &Path,
        pg_port: u16,
        pg_socket: &Path,
        repo: Repo,
    ) -> Self {
        PgBackrestConfig {
            stanza: "croupier".into(),
            conf_path: conf_path.to_owned(),
            pg_data: pg_data.to_owned(),
            pg_port,
            pg_socket: pg_socket.to_owned(),
            pg_user: "postgres".into(),
            repo,
            retention_full: 2,
            program: PathBuf::from("pgbackrest"),
        }
    }

    /// The repository as the reports name it: the folder, or `s3://bucket/path`.
    pub fn repo_location(&self) -> String {
        match &self.repo {
            Repo::Folder(path) => path.display().to_string(),
            Repo::S3 { bucket, path, .. } => format!("s3://{bucket}{path}"),
        }
    }

    /// The folder of pgBackRest's lock files, beside the configuration (one per stanza, so
    /// two deployments on one host do not wait for each other).
    pub fn lock_dir(&self) -> PathBuf {
        self.conf_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("{}.lock", self.stanza))
    }

    /// The text of `pgbackrest.conf`.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# Written by Croupier (croupier-backup); changes are overwritten.\n[global]\n",
        );
        match &self.repo {
            Repo::Folder(path) => {
                let _ = writeln!(text, "repo1-path={}", path.display());
            }
            Repo::S3 {
                bucket,
                path,
                endpoint,
                port,
                region,
            } => {
                // repo1-bundle: small files go into shared objects; a cluster is about a
                // thousand files, each a request of its own (and a charge) without it.
                let _ = writeln!(
                    text,
                    "repo1-type=s3\nrepo1-path={path}\nrepo1-s3-bucket={bucket}\n\
                     repo1-s3-endpoint={endpoint}\nrepo1-s3-region={region}\nrepo1-s3-uri-style=path\n\
                     repo1-bundle=y"
                );
                if let Some(port) = port {
                    let _ = writeln!(text, "repo1-storage-port={port}");
                }
            }
        }
        let _ = writeln!(
            text,
            "repo1-retention-full={}\nlock-path={}\nlog-level-console=warn\nlog-level-stderr=error\n\
             log-level-file=off\nstart-fast=y\ncompress-type=zst\n\n[{}]\npg1-path={}\n\
             pg1-port={}\npg1-socket-path={}\npg1-user={}",
            self.retention_full,
            self.lock_dir().display(),
            self.stanza,
            self.pg_data.display(),
            self.pg_port,
            self.pg_socket.display(),
            self.pg_user,
        );
        text
    }

    /// The `postgresql.conf` lines of continuous WAL archiving into this stanza's repository
    /// (a restart of the cluster takes `archive_mode`; `archive_timeout` bounds the RPO of an
    /// idle ledger: a partly filled WAL segment is archived at least that often).
    pub fn archive_settings(&self, archive_timeout_s: u32) -> String {
        let command = format!(
            "{} --config={} --stanza={} archive-push %p",
            self.program.display(),
            self.conf_path.display(),
            self.stanza
        );
        format!(
            "wal_level = replica\narchive_mode = on\narchive_command = '{}'\narchive_timeout = {}\n",
            command.replace('\'', "''"),
            archive_timeout_s
        )
    }

    /// Writes `pgbackrest.conf` (mode 0600) and the lock folder, both the cluster owner's
    /// (`owner`).
    pub fn write(&self, owner: Option<(u32, u32)>) -> Result<(), BackupError> {
        let lock = self.lock_dir();
        std::fs::create_dir_all(&lock)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.conf_path)?;
        // An older file keeps its mode through `open`: set it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(self.render().as_bytes())?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&lock, Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&self.conf_path, Some(uid), Some(gid))?;
            if let Repo::Folder(path) = &self.repo {
                std::fs::create_dir_all(path)?;
                std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stanza_names_the_cluster_and_the_repository() {
        let config = PgBackrestConfig::new(
            Path::new("/etc/croupier/pgbackrest.conf"),
            Path::new("/var/lib/postgresql/15/main"),
            5433,
            Path::new("/run/postgresql"),
            Repo::Folder("/srv/backups".into()),
        );
        let text = config.render();
        for line in [
            "repo1-path=/srv/backups",
            "repo1-retention-full=2",
            "lock-path=/etc/croupier/croupier.lock",
            "[croupier]",
            "pg1-path=/var/lib/postgresql/15/main",
            "pg1-port=5433",
            "pg1-socket-path=/run/postgresql",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        let archive = config.archive_settings(60);
        assert!(archive.contains(
            "archive_command = 'pgbackrest --config=/etc/croupier/pgbackrest.conf --stanza=croupier archive-push %p'"
        ));
    }

    #[test]
    fn an_s3_repository_keeps_its_keys_out_of_the_file() {
        let repo = Repo::parse("s3://casino-backups/ledger/pg").unwrap();
        let Repo::S3 { bucket, path, .. } = &repo else {
            panic!("not s3: {repo:?}");
        };
        assert_eq!(
            (bucket.as_str(), path.as_str()),
            ("casino-backups", "/ledger/pg")
        );
        let mut config = PgBackrestConfig::new(
            Path::new("/c/p.conf"),
            Path::new("/d"),
            5432,
            Path::new("/s"),
            repo,
        );
        config.retention_full = 4;
        let text = config.render();
        assert!(
            text.contains("repo1-type=s3\nrepo1-path=/ledger/pg\nrepo1-s3-bucket=casino-backups")
        );
        assert!(!text.contains("key"), "no secret in the file:\n{text}");
        assert!(Repo::parse("ftp://x").is_err());
        assert!(Repo::parse("s3:///x").is_err());
    }

    #[test]
    fn an_s3_endpoint_with_a_port_is_https_on_that_port() {
        assert_eq!(
            s3_endpoint("https://minio.internal:9000/").unwrap(),
            ("minio.internal".to_owned(), Some(9000))
        );
        assert_eq!(
            s3_endpoint("s3.eu-west-1.amazonaws.com").unwrap(),
            ("s3.eu-west-1.amazonaws.com".to_owned(), None)
        );
        let refused = s3_endpoint("http://127.0.0.1:9000")
            .unwrap_err()
            .to_string();
        assert!(refused.contains("HTTPS only"), "{refused}");
        assert!(s3_endpoint("https://h:port").is_err());
        let repo = Repo::S3 {
            bucket: "b".into(),
            path: "/".into(),
            endpoint: "127.0.0.1".into(),
            port: Some(9443),
            region: "us-east-1".into(),
        };
        let config = PgBackrestConfig::new(
            Path::new("/c/p.conf"),
            Path::new("/d"),
            5432,
            Path::new("/s"),
            repo,
        );
        let text = config.render();
        assert!(
            text.contains("repo1-s3-endpoint=127.0.0.1\n")
                && text.contains("repo1-storage-port=9443\n"),
            "{text}"
        );
    }

    #[test]
    fn the_stanza_file_is_the_owners_alone() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("croupier.conf");
        std::fs::write(&conf, "old").unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = PgBackrestConfig::new(
            &conf,
            Path::new("/d"),
            5432,
            Path::new("/s"),
            Repo::Folder(dir.path().join("repo")),
        );
        config.write(None).unwrap();
        let mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), config.render());
    }
}
