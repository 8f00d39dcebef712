//! Where the ledger lives, as an operator writes it: `postgres://…` (or `postgresql://…`) for
//! a PostgreSQL server, `sqlite://PATH` or a plain path for a SQLite file. Every command that
//! chooses a store parses this one type and opens the store through it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::LedgerError;
use crate::pg::{PgConfig, PgStore};
use crate::seed_seal::SeedVault;
use crate::sqlite::{SqliteConfig, SqliteStore};
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(String),
}

impl FromStr for StoreLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("a store is a postgres:// URL, sqlite://PATH or a file path".into());
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(s.to_owned()));
        }
        if let Some(path) = s.strip_prefix("sqlite://") {
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if s.contains("://") {
            return Err(format!(
                "unknown store scheme in '{}': use postgres://, sqlite:// or a file path",
                s.split("://").next().unwrap_or_default()
            ));
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(s)))
    }
}

/// Shown in logs and pages: every password in a URL is masked (`croupier_pgconn::shown`).
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            StoreLocation::Postgres(url) => f.write_str(&croupier_pgconn::shown(url)),
        }
    }
}

impl StoreLocation {
    /// Whether a ledger is already there, asked without creating or changing anything. Opening
    /// a store creates its schema, so an offline check (`croupier integrity`) of a mistyped
    /// database or file would otherwise find an empty ledger there, and every invariant of it
    /// holding.
    pub async fn holds_a_ledger(&self) -> Result<bool, LedgerError> {
        match self {
            StoreLocation::Sqlite(path) => crate::sqlite::schema::holds_a_ledger(path),
            StoreLocation::Postgres(url) => crate::pg::schema::holds_a_ledger(url).await,
        }
    }

    /// The backend's name, for metrics and pages.
    pub fn backend(&self) -> &'static str {
        match self {
            StoreLocation::Sqlite(_) => "sqlite",
            StoreLocation::Postgres(_) => "postgres",
        }
    }

    /// The location as a command-line argument (`--store`), password included.
    pub fn as_arg(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(url) => url.clone(),
        }
    }

    /// Opens (creating and migrating where needed) the store, for a command that deals no
    /// seeds (checks, tools): new seeds would be stored as given, sealed ones stay shut.
    pub fn open(&self, currency: &str) -> Result<Arc<dyn Store>, LedgerError> {
        self.open_with_seeds(currency, SeedVault::default())
    }

    /// Opens the store with the seed keys of a node: unrevealed seeds are sealed at rest
    /// (and those that are not yet, sealed now).
    pub fn open_with_seeds(
        &self,
        currency: &str,
        seeds: SeedVault,
    ) -> Result<Arc<dyn Store>, LedgerError> {
        Ok(match self {
            StoreLocation::Sqlite(path) => {
                let mut config = SqliteConfig::new(path);
                config.currency = currency.to_owned();
                config.seeds = seeds;
                Arc::new(SqliteStore::open(config)?)
            }
            StoreLocation::Postgres(url) => {
                let mut config = PgConfig::new(url);
                config.currency = currency.to_owned();
                config.seeds = seeds;
                Arc::new(PgStore::open(config)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_choose_the_backend() {
        assert_eq!(
            "data/ledger.db".parse(),
            Ok(StoreLocation::Sqlite("data/ledger.db".into()))
        );
        assert_eq!(
            "sqlite:///var/lib/croupier/ledger.db".parse(),
            Ok(StoreLocation::Sqlite("/var/lib/croupier/ledger.db".into()))
        );
        let pg = "postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write";
        assert_eq!(pg.parse(), Ok(StoreLocation::Postgres(pg.into())));
        assert!("mysql://x".parse::<StoreLocation>().is_err());
        assert!("".parse::<StoreLocation>().is_err());
    }

    #[test]
    fn passwords_are_masked_when_shown() {
        let shown = StoreLocation::Postgres("postgres://app:s3cret@db:5432/casino".into());
        assert_eq!(shown.to_string(), "postgres://app:***@db:5432/casino");
        let query = StoreLocation::Postgres("postgres://app@db/casino?password=s3cret".into());
        assert_eq!(query.to_string(), "postgres://app@db/casino?password=***");
        let plain = StoreLocation::Postgres("postgres://app@db/casino".into());
        assert_eq!(plain.to_string(), "postgres://app@db/casino");
    }
}
