//! Scratch databases on a PostgreSQL server, for tests and drills: each is created with a
//! unique name and dropped (with its connections) when the handle goes. The server comes from
//! `CROUPIER_TEST_PG` (default: the local server, as user `root`).

use crate::error::LedgerError;

pub const DEFAULT_SERVER: &str = "postgres://root@127.0.0.1:5432/postgres";

/// A database that exists as long as this value does.
pub struct ScratchDb {
    admin_url: String,
    name: String,
    url: String,
}

/// The server tests use: `CROUPIER_TEST_PG` or the local one.
pub fn test_server() -> String {
    std::env::var("CROUPIER_TEST_PG").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
}

impl ScratchDb {
    /// Creates `croupier_<prefix>_<unix seconds>_<random>` on the server `admin_url` names
    /// (the time in the name lets a clean-up tell leftovers by age).
    pub fn create(admin_url: &str, prefix: &str) -> Result<ScratchDb, LedgerError> {
        let mut random = [0u8; 4];
        getrandom::fill(&mut random)
            .map_err(|e| LedgerError::Storage(format!("no randomness: {e}")))?;
        let name = format!(
            "croupier_{prefix}_{}_{}",
            crate::clock::now_ms() / 1000,
            hex::encode(random)
        );
        admin(admin_url, &format!("CREATE DATABASE {name}"))?;
        let url = url_for(admin_url, &name);
        Ok(ScratchDb {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keeps the database after this value is gone (for processes that outlive it, such as a
    /// test's stack); `scripts/test.sh` drops leftover test databases by their prefix.
    pub fn keep(self) -> String {
        let url = self.url.clone();
        std::mem::forget(self);
        url
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Err(e) = drop_database(&self.admin_url, &self.name) {
            tracing::warn!(database = %self.name, error = %e, "scratch database not dropped");
        }
    }
}

/// Drops the database `name` on the server `admin_url` names, with its connections.
pub fn drop_database(admin_url: &str, name: &str) -> Result<(), LedgerError> {
    admin(
        admin_url,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
}

/// `admin_url` with its database replaced by `name` (the path of the URL).
fn url_for(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// Runs one statement on the server, from a thread of its own (callable from anywhere).
pub fn admin(url: &str, sql: &str) -> Result<(), LedgerError> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    super::on_a_thread_of_its_own("admin", move || async move {
        let server =
            super::Server::from_url(&url).map_err(|e| LedgerError::Storage(e.to_string()))?;
        let (client, connection) = server.connect().await.map_err(super::error::pg_error)?;
        tokio::spawn(connection);
        client
            .batch_execute(&sql)
            .await
            .map_err(super::error::pg_error)
    })
}

#[cfg(test)]
mod tests {
    use super::url_for;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            url_for("postgres://root@127.0.0.1:5432/postgres", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_for(
                "postgres://u@h1:1,h2:2/db?target_session_attrs=read-write",
                "x"
            ),
            "postgres://u@h1:1,h2:2/x?target_session_attrs=read-write"
        );
        assert_eq!(url_for("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
