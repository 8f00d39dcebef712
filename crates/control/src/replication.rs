//! The ledger's PostgreSQL replication as the control plane sees it. A `[[store]]` target
//! whose URL is `postgres://…` (the ledger's own URL, several hosts for a failover pair) is
//! read by the control plane itself instead of scraped over HTTP: it connects to the host
//! that accepts writes (`target_session_attrs=read-write`), reads `pg_stat_replication`
//! (write, flush and replay lag per standby, and how far replay is behind in bytes) and which
//! host it is. The answer becomes metric samples, so the usual rules read it like any scrape
//! (`store_down`, `replication_lag`), and a change of primary is a failover: a line on the
//! open wallet incident's timeline, or an incident of its own on `store` (docs/design.md says
//! why the control plane reads PostgreSQL itself rather than through the nodes' metrics).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::state::{State, StateError};
use croupier_monitor::engine::{Kind, Target};
use croupier_monitor::promtext::Sample;
use croupier_pgconn::Server;

pub use croupier_monitor::engine::STORE_COMPONENT;

const READ_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standby {
    /// `application_name` (the standby's `cluster_name` or `walreceiver`).
    pub name: String,
    pub client_addr: Option<String>,
    pub state: String,
    /// `sync`, `async`, `potential` or `quorum`.
    pub sync_state: String,
    pub write_lag_s: Option<f64>,
    pub flush_lag_s: Option<f64>,
    pub replay_lag_s: Option<f64>,
    /// WAL the primary has written that the standby has not replayed yet.
    pub replay_lag_bytes: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replication {
    /// The host accepting writes, as `address:port`.
    pub primary: String,
    pub standbys: Vec<Standby>,
    /// The ledger database's connections and transactions, read in the same session.
    pub activity: crate::pgstats::Activity,
    pub read_ms: i64,
}

impl Replication {
    /// The largest replay lag of any standby (0 with standbys all caught up; `None` without
    /// any standby).
    pub fn max_replay_lag_s(&self) -> Option<f64> {
        self.standbys
            .iter()
            .map(|s| s.replay_lag_s.unwrap_or(0.0))
            .reduce(f64::max)
    }
}

/// How the control plane reaches the store `url` names: parsed once, when the control plane
/// starts, since a TLS URL's certificates are loaded then (the system's roots, without
/// `sslrootcert`: some hundred files), not at every read.
pub fn server(url: &str) -> Result<Server, String> {
    let mut server = Server::from_url(url).map_err(|e| e.to_string())?;
    server
        .config
        .connect_timeout(READ_TIMEOUT)
        .application_name("croupier-control")
        .target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    Ok(server)
}

/// How each `postgres://` store target is reached, by name; a URL that cannot be used is
/// logged once, here, and its target reads as down.
pub fn servers(targets: &[Target]) -> HashMap<String, Result<Server, String>> {
    targets
        .iter()
        .filter(|target| target.kind == Kind::Store && is_postgres(&target.base))
        .map(|target| {
            let server = server(&target.base);
            if let Err(e) = &server {
                tracing::error!(store = %target.name, error = %e, "the store's URL cannot be used");
            }
            (target.name.clone(), server)
        })
        .collect()
}

/// Reads the replication state from the host of `server` that accepts writes.
pub async fn read(server: &Server) -> Result<Replication, String> {
    let work = async {
        let (client, connection) = server.connect().await?;
        let driver = tokio::spawn(connection);
        let primary = client
            .query_one(
                "SELECT coalesce(host(inet_server_addr()), 'local') || ':' || \
                 coalesce(inet_server_port(), current_setting('port')::int)",
                &[],
            )
            .await?
            .get::<_, String>(0);
        let rows = client
            .query(
                "SELECT application_name, host(client_addr), state, sync_state, \
                 extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8, \
                 extract(epoch FROM replay_lag)::float8, \
                 pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 \
                 FROM pg_stat_replication ORDER BY application_name",
                &[],
            )
            .await?;
        let activity = crate::pgstats::read(&client).await?;
        drop(client);
        driver.abort();
        let standbys = rows
            .iter()
            .map(|r| Standby {
                name: r.get(0),
                client_addr: r.get(1),
                state: r.get::<_, Option<String>>(2).unwrap_or_default(),
                sync_state: r.get::<_, Option<String>>(3).unwrap_or_default(),
                write_lag_s: r.get(4),
                flush_lag_s: r.get(5),
                replay_lag_s: r.get(6),
                replay_lag_bytes: r.get(7),
            })
            .collect();
        Ok::<_, tokio_postgres::Error>((primary, standbys, activity))
    };
    let (primary, standbys, activity) = tokio::time::timeout(READ_TIMEOUT * 2, work)
        .await
        .map_err(|_| "timed out reading pg_stat_replication".to_owned())?
        .map_err(|e: tokio_postgres::Error| croupier_pgconn::with_causes(&e))?;
    Ok(Replication {
        primary,
        standbys,
        activity,
        read_ms: crate::now_ms(),
    })
}

/// The samples the series and rules read: the store is up (a host accepts writes), each
/// standby's lags, the largest replay lag, and the database's activity (`pgstats`).
pub fn samples(replication: &Replication) -> Vec<Sample> {
    let sample = Sample::new;
    let mut samples = vec![
        sample("croupier_store_up", &[], 1.0),
        sample(
            "croupier_replication_standbys",
            &[],
            replication.standbys.len() as f64,
        ),
    ];
    if let Some(max) = replication.max_replay_lag_s() {
        samples.push(sample(
            "croupier_replication_max_replay_lag_seconds",
            &[],
            max,
        ));
    }
    for standby in &replication.standbys {
        for (kind, value) in [
            ("write", standby.write_lag_s),
            ("flush", standby.flush_lag_s),
            ("replay", standby.replay_lag_s),
        ] {
            let labels = [("standby", standby.name.as_str()), ("kind", kind)];
            samples.push(sample(
                "croupier_replication_lag_seconds",
                &labels,
                value.unwrap_or(0.0),
            ));
        }
        if let Some(bytes) = standby.replay_lag_bytes {
            let labels = [("standby", standby.name.as_str())];
            samples.push(sample(
                "croupier_replication_replay_lag_bytes",
                &labels,
                bytes,
            ));
        }
    }
    samples.extend(crate::pgstats::samples(&replication.activity));
    samples
}

/// Puts a failover (the primary of `store` moved from `from` to `to`) on the incident
/// timeline: a line on the open wallet incident (the outage the failover ended), or else an
/// incident of its own on `store`, opened and resolved at once (it cost players nothing this
/// control plane saw). Returns the incident.
pub fn record_failover(
    state: &State,
    store: &str,
    from: &str,
    to: &str,
    now_ms: i64,
) -> Result<i64, StateError> {
    let message = format!("Failover of {store}: the primary moved from {from} to {to}");
    if let Some(id) = state.open_alert_incident_for_component("wallet")? {
        state.note_incident(id, &message, now_ms)?;
        return Ok(id);
    }
    let title = format!("Failover of {store}");
    let id = state.open_incident(
        &title,
        STORE_COMPONENT,
        croupier_monitor::severity::Severity::Minor,
        None,
        &message,
        now_ms,
    )?;
    let done = format!("Writes go to {to}");
    state.update_incident(
        id,
        crate::state::IncidentStatus::Resolved,
        &done,
        None,
        now_ms,
    )?;
    Ok(id)
}

/// Whether a target's URL is a PostgreSQL server the control plane reads itself.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_become_samples_the_rules_read() {
        let replication = Replication {
            primary: "127.0.0.1:5432".into(),
            standbys: vec![Standby {
                name: "standby-1".into(),
                client_addr: Some("127.0.0.1".into()),
                state: "streaming".into(),
                sync_state: "sync".into(),
                write_lag_s: Some(0.001),
                flush_lag_s: Some(0.002),
                replay_lag_s: Some(7.5),
                replay_lag_bytes: Some(90_000.0),
            }],
            activity: crate::pgstats::Activity {
                database: "casino".into(),
                connections: 4.0,
                connections_by_state: Default::default(),
                max_connections: 100.0,
                xact_commit: 0.0,
                xact_rollback: 0.0,
                deadlocks: 0.0,
                size_bytes: 0.0,
            },
            read_ms: 0,
        };
        let samples = samples(&replication);
        let value = |name: &str, kind: Option<&str>| {
            samples
                .iter()
                .find(|s| {
                    s.name == name
                        && kind.is_none_or(|k| s.labels.get("kind").map(String::as_str) == Some(k))
                })
                .map(|s| s.value)
        };
        assert_eq!(value("croupier_store_up", None), Some(1.0));
        assert_eq!(
            value("croupier_replication_max_replay_lag_seconds", None),
            Some(7.5)
        );
        assert_eq!(
            value("croupier_replication_lag_seconds", Some("flush")),
            Some(0.002)
        );
        assert_eq!(
            value("croupier_replication_replay_lag_bytes", None),
            Some(90_000.0)
        );
    }

    #[test]
    fn passwords_never_leave_the_process() {
        assert_eq!(
            croupier_pgconn::shown("postgres://app:s3cret@db1:5432,db2:5433/casino"),
            "postgres://app:***@db1:5432,db2:5433/casino"
        );
        assert_eq!(
            croupier_pgconn::shown("postgres://app@db/casino"),
            "postgres://app@db/casino"
        );
        assert!(is_postgres("postgresql://x/y") && !is_postgres("http://x:9187"));
    }

    /// Each PostgreSQL store target is parsed once; one whose URL cannot be used says why.
    #[test]
    fn store_targets_are_parsed_once_with_their_faults_named() {
        let targets = [
            Target::new(
                "store",
                Kind::Store,
                "postgres://app@db1:5432,db2:5433/casino",
            ),
            Target::new(
                "typo",
                Kind::Store,
                "postgres://app@db/casino?sslmode=verify-fulll",
            ),
            Target::new("exporter", Kind::Store, "http://127.0.0.1:9187"),
            Target::new("node-1", Kind::Node, "postgres://not-a-store/x"),
        ];
        let servers = servers(&targets);
        let mut names: Vec<&str> = servers.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["store", "typo"]);
        let server = servers["store"].as_ref().unwrap();
        assert_eq!(server.config.get_hosts().len(), 2);
        assert_eq!(
            server.config.get_application_name(),
            Some("croupier-control")
        );
        let fault = servers["typo"].as_ref().err().unwrap();
        assert!(fault.contains("verify-fulll"), "{fault}");
    }
}
