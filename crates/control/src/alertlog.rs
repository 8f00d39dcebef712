//! What the leading control plane told the world, kept where every control plane of the
//! deployment can read it: each alert's last transition (fired, silenced, held, resolved).
//! A new leader takes it on (`Control::take_over`), so an alert is sent once across a
//! failover. With control planes on one machine that is the shared `control.db`'s alert
//! history; with control planes on several machines (the PostgreSQL lease) it is also a table
//! on the lease's database, `croupier_control_alert_log`, written before any webhook goes out.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use crate::state::{State, StateError};

const TIMEOUT: Duration = Duration::from_secs(2);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS croupier_control_alert_log (
    alert_key text PRIMARY KEY, event text NOT NULL, ts_ms bigint NOT NULL)";

#[derive(Debug, thiserror::Error)]
pub enum AlertLogError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("alert log database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the alert log database did not answer in time")]
    Timeout,
}

/// The shared log on PostgreSQL: one session, opened when first needed and again after a
/// failure.
pub struct SharedLog {
    url: String,
    client: Mutex<Option<Client>>,
}

impl SharedLog {
    pub fn new(url: &str) -> SharedLog {
        SharedLog {
            url: url.to_owned(),
            client: Mutex::new(None),
        }
    }

    async fn session(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, AlertLogError> {
        let mut client = self.client.lock().await;
        if client.as_ref().is_none_or(Client::is_closed) {
            let (session, connection) = timed(tokio_postgres::connect(&self.url, NoTls)).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "alert log session ended");
                }
            });
            timed(session.batch_execute(SCHEMA)).await?;
            *client = Some(session);
        }
        Ok(client)
    }

    async fn sent(&self) -> Result<HashSet<String>, AlertLogError> {
        let guard = self.session().await?;
        let client = guard.as_ref().expect("a session was just opened");
        let rows = timed(client.query(
            "SELECT alert_key FROM croupier_control_alert_log WHERE event <> 'resolved'",
            &[],
        ))
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn record(&self, key: &str, event: &str, ts_ms: i64) -> Result<(), AlertLogError> {
        let guard = self.session().await?;
        let client = guard.as_ref().expect("a session was just opened");
        timed(client.execute(
            "INSERT INTO croupier_control_alert_log (alert_key, event, ts_ms) VALUES ($1, $2, $3)
             ON CONFLICT (alert_key) DO UPDATE SET event = excluded.event, ts_ms = excluded.ts_ms",
            &[&key, &event, &ts_ms],
        ))
        .await?;
        Ok(())
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
