//! The ledger's PostgreSQL server as postgres_exporter would show it: connections (by state,
//! against `max_connections`), commits, rollbacks, deadlocks and the database's size. Read by
//! the control plane in the same session as the replication (`replication::read`), so a
//! casino that runs no postgres_exporter still sees its database's connections on the
//! dashboard, alerts on them, and can scrape them from the control plane's `/metrics` under
//! postgres_exporter's names.

use std::collections::BTreeMap;

use croupier_monitor::promtext::Sample;
use serde::Serialize;
use tokio_postgres::Client;

/// The ledger database's activity, as of one read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    /// The database the store URL names (`datname`).
    pub database: String,
    /// Connections to it (`pg_stat_database.numbackends`).
    pub connections: f64,
    /// Those connections by `pg_stat_activity.state` (`active`, `idle`, `idle in transaction`…).
    pub connections_by_state: BTreeMap<String, f64>,
    /// The server's `max_connections`.
    pub max_connections: f64,
    pub xact_commit: f64,
    pub xact_rollback: f64,
    pub deadlocks: f64,
    pub size_bytes: f64,
}

/// The database's statistics, then its connections by state.
pub async fn read(client: &Client) -> Result<Activity, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT datname::text, numbackends::float8, \
                    current_setting('max_connections')::float8, xact_commit::float8, \
                    xact_rollback::float8, deadlocks::float8, \
                    pg_database_size(current_database())::float8 \
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?;
    let states = client
        .query(
            "SELECT coalesce(state, 'unknown'), count(*)::float8 FROM pg_stat_activity \
             WHERE datname = current_database() GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await?;
    Ok(Activity {
        database: row.get(0),
        connections: row.get(1),
        max_connections: row.get(2),
        xact_commit: row.get(3),
        xact_rollback: row.get(4),
        deadlocks: row.get(5),
        size_bytes: row.get(6),
        connections_by_state: states.iter().map(|r| (r.get(0), r.get(1))).collect(),
    })
}

/// The activity as postgres_exporter names it.
pub fn samples(activity: &Activity) -> Vec<Sample> {
    let sample = Sample::new;
    let database = [("datname", activity.database.as_str())];
    let mut samples = vec![
        sample("pg_up", &[], 1.0),
        sample("pg_settings_max_connections", &[], activity.max_connections),
        sample(
            "pg_stat_database_numbackends",
            &database,
            activity.connections,
        ),
        sample(
            "pg_stat_database_xact_commit",
            &database,
            activity.xact_commit,
        ),
        sample(
            "pg_stat_database_xact_rollback",
            &database,
            activity.xact_rollback,
        ),
        sample("pg_stat_database_deadlocks", &database, activity.deadlocks),
        sample("pg_database_size_bytes", &database, activity.size_bytes),
    ];
    for (state, count) in &activity.connections_by_state {
        let labels = [("datname", activity.database.as_str()), ("state", state)];
        samples.push(sample("pg_stat_activity_count", &labels, *count));
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_takes_postgres_exporters_names() {
        let activity = Activity {
            database: "casino".into(),
            connections: 7.0,
            connections_by_state: [("active".to_owned(), 2.0), ("idle".to_owned(), 5.0)].into(),
            max_connections: 100.0,
            xact_commit: 1234.0,
            xact_rollback: 3.0,
            deadlocks: 0.0,
            size_bytes: 9e6,
        };
        let samples = samples(&activity);
        let find = |name: &str, state: Option<&str>| {
            samples
                .iter()
                .find(|s| {
                    s.name == name
                        && s.labels.get("state").map(String::as_str) == state
                        && (name.starts_with("pg_settings")
                            || name == "pg_up"
                            || s.labels["datname"] == "casino")
                })
                .map(|s| s.value)
        };
        assert_eq!(find("pg_up", None), Some(1.0));
        assert_eq!(find("pg_settings_max_connections", None), Some(100.0));
        assert_eq!(find("pg_stat_database_numbackends", None), Some(7.0));
        assert_eq!(find("pg_stat_database_xact_commit", None), Some(1234.0));
        assert_eq!(find("pg_stat_activity_count", Some("idle")), Some(5.0));
        assert_eq!(find("pg_database_size_bytes", None), Some(9e6));
    }
}
