//! What the leading control plane told the world, kept where every control plane of the
//! deployment can read it: each alert's last transition (fired, silenced, held, resolved).
//! A new leader takes it on (`Control::take_over`), so an alert is sent once across a
//! failover. With control planes on one machine that is the shared `control.db`'s alert
//! history; with control planes on several machines (the PostgreSQL lease) it is also a table
//! on the lease's database, `croupier_control_alert_log`, written before any webhook goes out.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use croupier_pgconn::{PgUrlError, Server};
use tokio::sync::Mutex;
use tokio_postgres::Client;

use crate::state::{State, StateError};

const TIMEOUT: Duration = Duration::from_secs(2);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS croupier_control_alert_log (
    alert_key text PRIMARY KEY, event text NOT NULL, ts_ms bigint NOT NULL)";

#[derive(Debug, thiserror::Error)]
pub enum AlertLogError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("alert log database: {}", croupier_pgconn::with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("alert log database: {0}")]
    Url(#[from] PgUrlError),
    #[error("the alert log database did not answer in time")]
    Timeout,
    #[error("the alert log database failed a moment ago; left alone for a while")]
    Resting,
}

/// The shared log on PostgreSQL: one session, opened when first needed and again after a
/// failure. A failure (an error, or no answer within `TIMEOUT`) drops the session and rests
/// the log for `REST_AFTER_FAILURE`: meanwhile every call fails at once and callers use this
/// machine's history, so a lost or frozen database costs one monitor round `TIMEOUT`, not
/// `TIMEOUT` per alert transition in every round (which held webhooks and pages back, and
/// with enough transitions made the monitor look stuck).
pub struct SharedLog {
    url: String,
    client: Mutex<Option<Client>>,
    resting_until: parking_lot::Mutex<Option<Instant>>,
}

/// How long the shared log is left alone after a failure.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(15);

impl SharedLog {
    pub fn new(url: &str) -> SharedLog {
        SharedLog {
            url: url.to_owned(),
            client: Mutex::new(None),
            resting_until: parking_lot::Mutex::new(None),
        }
    }

    /// Runs `call` on the session (opened first when there is none), or fails at once while
    /// the log rests after a failure.
    async fn with_session<T>(
        &self,
        call: impl AsyncFnOnce(&Client) -> Result<T, AlertLogError>,
    ) -> Result<T, AlertLogError> {
        if self
            .resting_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
        {
            return Err(AlertLogError::Resting);
        }
        let mut guard = self.client.lock().await;
        let outcome = match guard.take().filter(|c| !c.is_closed()) {
            Some(client) => Ok(client),
            None => self.open().await,
        };
        let outcome = match outcome {
            Ok(client) => call(&client).await.map(|value| (client, value)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok((client, value)) => {
                *guard = Some(client);
                Ok(value)
            }
            Err(e) => {
                *self.resting_until.lock() = Some(Instant::now() + REST_AFTER_FAILURE);
                Err(e)
            }
        }
    }

    /// A new session; the server and this side both notice a silent peer within seconds.
    async fn open(&self) -> Result<Client, AlertLogError> {
        let mut server = Server::from_url(&self.url)?;
        server
            .config
            .application_name("croupier-control-alert-log")
            .connect_timeout(TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .tcp_user_timeout(Duration::from_secs(5));
        let (session, _driver) = timed(server.connect_driven()).await?;
        timed(session.batch_execute(SCHEMA)).await?;
        Ok(session)
    }

    async fn sent(&self) -> Result<HashSet<String>, AlertLogError> {
        self.with_session(async |client| {
            let rows = timed(client.query(
                "SELECT alert_key FROM croupier_control_alert_log WHERE event <> 'resolved'",
                &[],
            ))
            .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
        .await
    }

    async fn record(&self, key: &str, event: &str, ts_ms: i64) -> Result<(), AlertLogError> {
        self.with_session(async |client| {
            timed(client.execute(
                "INSERT INTO croupier_control_alert_log (alert_key, event, ts_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (alert_key) DO UPDATE SET event = excluded.event, ts_ms = excluded.ts_ms",
                &[&key, &event, &ts_ms],
            ))
            .await?;
            Ok(())
        })
        .await
    }
}

async fn timed<T>(
    call: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, AlertLogError> {
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(AlertLogError::Timeout),
    }
}

/// The alerts sent as firing and not resolved since: the shared log's view when there is one
/// (the local history when it cannot be read, logged), else the local history.
pub async fn sent(
    state: &State,
    shared: Option<&SharedLog>,
) -> Result<HashSet<String>, StateError> {
    if let Some(shared) = shared {
        match shared.sent().await {
            Ok(sent) => return Ok(sent),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the shared alert log; using this machine's")
            }
        }
    }
    state.sent_alerts()
}

/// Writes a transition to the shared log, if any (the local history has it already).
pub async fn record(shared: Option<&SharedLog>, key: &str, event: &str, ts_ms: i64) {
    if let Some(shared) = shared
        && let Err(e) = shared.record(key, event, ts_ms).await
    {
        tracing::error!(error = %e, key, event, "cannot write the shared alert log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database that accepts connections and never answers (a frozen host, a half-open
    /// path): its URL.
    async fn black_hole() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        format!("postgres://root@{address}/croupier")
    }

    /// Before: every call waited its full timeout, so a round with 20 transitions spent 40 s
    /// on the log before any webhook or page went out.
    #[tokio::test]
    async fn a_frozen_database_costs_one_timeout_not_one_per_transition() {
        let log = SharedLog::new(&black_hole().await);
        let started = Instant::now();
        assert!(log.sent().await.is_err());
        for n in 0..20 {
            let outcome = log.record(&format!("down/node-{n}"), "fired", 1).await;
            assert!(outcome.is_err(), "{outcome:?}");
        }
        assert!(started.elapsed() < TIMEOUT * 2, "{:?}", started.elapsed());
    }
}
