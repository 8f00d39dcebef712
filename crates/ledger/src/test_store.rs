//! The ledger a test runs on, chosen by `CROUPIER_TEST_STORE`: `sqlite` (the default: a file
//! in the test's folder) or `postgres` (a scratch database on `CROUPIER_TEST_PG`, by default
//! the local server). CI runs the whole suite once with each, so every test that opens a
//! store through here checks both backends.

use std::path::Path;
use std::sync::Arc;

use crate::error::LedgerError;
use crate::locator::StoreLocation;
use crate::pg::scratch::{ScratchDb, test_server};
use crate::store::Store;

/// The environment variable that picks the backend of the tests.
pub const BACKEND_VAR: &str = "CROUPIER_TEST_STORE";

/// Whether the tests run on PostgreSQL.
pub fn postgres() -> bool {
    std::env::var(BACKEND_VAR).is_ok_and(|v| v == "postgres")
}

/// A test's ledger: where it is, and the scratch database behind it (dropped with it).
pub struct TestLedger {
    pub location: StoreLocation,
    _database: Option<ScratchDb>,
}

impl TestLedger {
    /// A fresh ledger for a test whose files go in `dir`.
    pub fn new(dir: &Path) -> Result<TestLedger, LedgerError> {
        if postgres() {
            let database = ScratchDb::create(&test_server(), "test")?;
            Ok(TestLedger {
                location: StoreLocation::Postgres(database.url().to_owned()),
                _database: Some(database),
            })
        } else {
            Ok(TestLedger {
                location: StoreLocation::Sqlite(dir.join("ledger.db")),
                _database: None,
            })
        }
    }

    pub fn open(&self) -> Result<Arc<dyn Store>, LedgerError> {
        self.location.open("EUR")
    }
}
