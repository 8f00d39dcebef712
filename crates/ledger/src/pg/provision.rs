//! The ledger's database created when `croupier up` names one its PostgreSQL server does not
//! have yet, as `up` creates its SQLite file on the embedded default: one machine, no
//! configuration (CloudNativePG and Patroni likewise create the application's database when
//! they bootstrap a cluster). Only `up` does this; a node (`croupier node`, production) never
//! creates a database: a misspelt name there would start an empty casino beside the real one.
//! The role must have `CREATEDB`; without it the server's refusal is the answer.

use tokio_postgres::error::SqlState;

use super::Server;
use super::error::{describe, pg_error};
use crate::error::LedgerError;

/// Where a database a node is pointed at stands once `create_if_missing` has run.
#[derive(Debug, PartialEq, Eq)]
pub enum Database {
    /// It was there already (or another process created it meanwhile).
    Existed,
    /// It was not, and was created on the server (its name).
    Created(String),
}

/// Connects to the database `url` names; when the server says it does not exist, creates it
/// from the server's `postgres` database (with the URL's role, hosts and TLS). Blocking: from
/// a thread of its own. A refusal (no `CREATEDB`, an unknown role) is `Storage`; a server
/// that cannot be reached is `Unavailable`.
pub fn create_if_missing(url: &str) -> Result<Database, LedgerError> {
    let server = super::connection_config(url)?;
    super::on_a_thread_of_its_own("provisioning", move || async move { ensure(&server).await })
}

async fn ensure(server: &Server) -> Result<Database, LedgerError> {
    match server.connect().await {
        Ok(_) => return Ok(Database::Existed),
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {}
        Err(e) => return Err(pg_error(e)),
    }
    // The URL itself is not said: it may hold a password.
    let config = &server.config;
    let Some(name) = config.get_dbname().or(config.get_user()) else {
        return Err(LedgerError::Storage(
            "the store's URL names neither a database nor a user".into(),
        ));
    };
    let name = name.to_owned();
    let mut maintenance = server.clone();
    maintenance.config.dbname("postgres");
    let (client, connection) = maintenance.connect().await.map_err(pg_error)?;
    tokio::spawn(connection);
    match client
        .batch_execute(&format!("CREATE DATABASE {}", quoted_identifier(&name)))
        .await
    {
        Ok(()) => Ok(Database::Created(name)),
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(Database::Existed),
        Err(e) => Err(LedgerError::Storage(format!(
            "the database {name} does not exist and could not be created: {}",
            describe(&e)
        ))),
    }
}

/// `name` as an SQL identifier, whatever it holds (quotes doubled).
fn quoted_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::scratch::{ScratchDb, test_server};

    #[test]
    fn identifiers_are_quoted_whatever_they_hold() {
        assert_eq!(quoted_identifier("casino"), "\"casino\"");
        assert_eq!(quoted_identifier("Casino"), "\"Casino\"");
        assert_eq!(
            quoted_identifier("x\"; DROP DATABASE y; --"),
            "\"x\"\"; DROP DATABASE y; --\""
        );
    }

    /// A database the server does not have is created, once: the second call finds it, and
    /// a database that was there is left as it was.
    #[test]
    fn a_missing_database_is_created_once() {
        let existing = ScratchDb::create(&test_server(), "provision").unwrap();
        assert_eq!(
            create_if_missing(existing.url()).unwrap(),
            Database::Existed
        );
        let name = format!("{}_new", existing.name());
        let url = existing.url().replace(existing.name(), &name);
        let created = create_if_missing(&url);
        let again = create_if_missing(&url);
        let dropped = super::super::scratch::drop_database(&test_server(), &name);
        assert_eq!(created.unwrap(), Database::Created(name));
        assert_eq!(again.unwrap(), Database::Existed);
        dropped.unwrap();
    }
}
