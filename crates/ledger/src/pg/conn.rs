//! A connection as the synchronous ledger primitives use it: every statement is prepared once
//! per connection (deadpool's statement cache) and run to completion on the runtime that
//! drives the connection. The writer drives its own single-threaded runtime; readers, called
//! from blocking threads, drive the store's reader runtime through its handle.

use std::future::Future;

use deadpool_postgres::ClientWrapper;
use tokio::runtime::{Handle, Runtime};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::error::pg_error;
use crate::error::LedgerError;

/// Runs futures to completion on the runtime that drives a connection.
#[derive(Clone, Copy)]
pub enum Driver<'a> {
    /// The writer thread's own current-thread runtime: only `Runtime::block_on` drives its I/O.
    Runtime(&'a Runtime),
    /// A multi-thread runtime whose workers drive the I/O; used from blocking threads.
    Handle(&'a Handle),
}

impl Driver<'_> {
    pub fn run<F: Future>(self, future: F) -> F::Output {
        match self {
            Driver::Runtime(runtime) => runtime.block_on(future),
            Driver::Handle(handle) => handle.block_on(future),
        }
    }
}

pub type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// A connection and the runtime that drives it.
#[derive(Clone, Copy)]
pub struct Conn<'a> {
    pub client: &'a ClientWrapper,
    pub driver: Driver<'a>,
}

impl Conn<'_> {
    pub fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, LedgerError> {
        self.driver
            .run(async {
                let statement = self.client.prepare_cached(sql).await?;
                self.client.query(&statement, params).await
            })
            .map_err(pg_error)
    }

    pub fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, LedgerError> {
        self.driver
            .run(async {
                let statement = self.client.prepare_cached(sql).await?;
                self.client.query_opt(&statement, params).await
            })
            .map_err(pg_error)
    }

    pub fn batch_execute(&self, sql: &str) -> Result<(), LedgerError> {
        self.driver
            .run(self.client.batch_execute(sql))
            .map_err(pg_error)
    }
}
