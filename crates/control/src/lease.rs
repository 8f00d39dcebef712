//! Which of several control planes of one deployment leads. Only the leader alerts, notifies,
//! opens incidents, announces maintenance, rolls uptime up, runs backups, synthetic test bets
//! and rolling updates; the others follow (they scrape and evaluate, so their view is warm,
//! serve the read-only API and the status page) and take over when the leader dies.
//!
//! The lease is what the operating system or the database already guarantees to one holder:
//! an exclusive `flock` on `control.lock` in the shared data folder (control planes on one
//! machine), or a PostgreSQL session advisory lock (control planes on several machines). Both
//! are released by the kernel or the server when the holder dies, even by SIGKILL, so a
//! follower that asks every `POLL` takes over within a poll of the leader's death.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use croupier_pgconn::{PgUrlError, Server};
use croupier_vitals::background::{survive, survive_blocking};
use tokio_postgres::Client;

/// How often a follower asks for the lease and a leader checks it still holds it.
pub const POLL: Duration = Duration::from_millis(500);
/// A PostgreSQL leader whose lock session does not answer within this steps down.
const CHECK_TIMEOUT: Duration = Duration::from_millis(1_500);
/// The advisory lock's key: the ASCII bytes of "croupier" as an i64, fixed forever so
/// every version of the control plane contends for the same lock.
pub const ADVISORY_KEY: i64 = 0x6372_6f75_7069_6572;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lease database: {}", croupier_pgconn::with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("lease database: {0}")]
    Url(#[from] PgUrlError),
    #[error("the lease database did not answer in time")]
    Timeout,
}

/// Where the lease lives.
#[derive(Debug, Clone)]
pub enum LeaseSource {
    /// `flock` on this file (control planes sharing one data folder on one machine).
    File(PathBuf),
    /// A session advisory lock on this PostgreSQL database (control planes on several
    /// machines).
    Postgres(String),
}

impl LeaseSource {
    /// The file lease of a data folder.
    pub fn in_folder(data: &Path) -> LeaseSource {
        LeaseSource::File(data.join("control.lock"))
    }
}

/// Whether this process leads, as the monitor loop, the API and `/metrics` read it.
#[derive(Debug, Default)]
pub struct Leadership {
    leader: AtomicBool,
    /// When this process last became leader (ms since the epoch; 0: never).
    since_ms: AtomicI64,
    /// How many times this process became leader.
    terms: AtomicU64,
}

impl Leadership {
    /// A process that leads from the start (a control plane with no rival, and tests).
    pub fn sole() -> Arc<Leadership> {
        let leadership = Arc::new(Leadership::default());
        leadership.set(true);
        leadership
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    pub fn since_ms(&self) -> i64 {
        self.since_ms.load(Ordering::SeqCst)
    }

    pub fn terms(&self) -> u64 {
        self.terms.load(Ordering::SeqCst)
    }

    pub(crate) fn set(&self, leader: bool) {
        let was = self.leader.swap(leader, Ordering::SeqCst);
        if leader && !was {
            self.since_ms.store(crate::now_ms(), Ordering::SeqCst);
            self.terms.fetch_add(1, Ordering::SeqCst);
            tracing::info!("this control plane now leads");
        } else if was && !leader {
            tracing::warn!("this control plane lost the lease and follows");
        }
    }
}

/// Contends for the lease until the process stops: takes it when free, and on a PostgreSQL
/// lease steps down as soon as the lock's session stops answering.
pub fn spawn(source: LeaseSource) -> Arc<Leadership> {
    let leadership = Arc::new(Leadership::default());
    let shared = leadership.clone();
    tokio::spawn(async move {
        match source {
            LeaseSource::File(path) => hold_file(&path, &shared).await,
            LeaseSource::Postgres(url) => hold_postgres(&url, &shared).await,
        }
    });
    leadership
}

/// Tries the lock once; the open file is the lease, held until the process ends.
fn try_file(path: &Path) -> Result<Option<File>, LeaseError> {
    let error = |source| LeaseError::File {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(error)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(error(e)),
    }
}

async fn hold_file(path: &Path, leadership: &Leadership) {
    loop {
        match survive_blocking("file lease", || try_file(path)).unwrap_or(Ok(None)) {
            Ok(Some(file)) => {
                leadership.set(true);
                // The kernel holds the lock for as long as the file stays open: until the
                // process ends, however it ends.
                std::mem::forget(file);
                return;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot ask for the lease"),
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn hold_postgres(url: &str, leadership: &Leadership) {
    loop {
        // A panic while leading steps down too: the session, and so the lock, is dropped.
        let led = survive("postgres lease", lead_on_postgres(url, leadership)).await;
        if let Some(Err(e)) = led {
            tracing::warn!(error = %e, "lease database");
        }
        leadership.set(false);
        tokio::time::sleep(POLL).await;
    }
}

/// Opens a session, asks for the lock every poll until it is granted, then checks every poll
/// that the session still answers. Returns (and so steps down) when it does not.
async fn lead_on_postgres(url: &str, leadership: &Leadership) -> Result<(), LeaseError> {
    let client = lease_session(url).await?;
    loop {
        let granted: bool =
            timed(client.query_one("SELECT pg_try_advisory_lock($1)", &[&ADVISORY_KEY]))
                .await?
                .get(0);
        if granted {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    leadership.set(true);
    loop {
        tokio::time::sleep(POLL).await;
        timed(client.simple_query("SELECT 1")).await?;
    }
}

/// A session for the lock. The server ends it, and releases the lock, within about 8 s of the
/// client going silent (a frozen or cut-off machine); the client itself steps down after
/// `CHECK_TIMEOUT`, before anyone else can take over.
async fn lease_session(url: &str) -> Result<Client, LeaseError> {
    let mut server = Server::from_url(url)?;
    server
        .config
        .application_name("croupier-control-lease")
        .connect_timeout(CHECK_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5));
    let (client, _driver) = timed(server.connect_driven()).await?;
    timed(client.batch_execute(
        "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 1; \
         SET tcp_keepalives_count = 3",
    ))
    .await?;
    Ok(client)
}

async fn timed<T>(
    call: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, LeaseError> {
    match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(LeaseError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_of_the_file_lease_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.lock");
        let first = try_file(&path).unwrap().expect("a free lease is granted");
        assert!(
            try_file(&path).unwrap().is_none(),
            "a second open file description must not get the lease"
        );
        drop(first);
        assert!(
            try_file(&path).unwrap().is_some(),
            "a released lease is granted again"
        );
    }
}
