//! Statements sent together: each with its parameters (`Statement`), sent in one round trip
//! before any answer is read (`run_pipelined`), prepared first where the connection has not
//! prepared them yet. Every write batch, prefetch and turn goes through it.

use std::borrow::Cow;

use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;

use super::conn::Conn;
use super::error::pg_error;
use crate::error::LedgerError;

/// One statement of a pipeline and its parameters.
pub struct Statement {
    pub(super) sql: Cow<'static, str>,
    pub(super) params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Statement {
    pub fn new(
        sql: impl Into<Cow<'static, str>>,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
    ) -> Statement {
        Statement {
            sql: sql.into(),
            params,
        }
    }
}

/// Sends every statement before reading any answer (one round trip), in order. Statements
/// not yet prepared on this connection are prepared first, all of them, before any is sent:
/// an execution waiting for its own preparation would let the ones after it (the commit
/// among them) overtake it.
pub fn run_pipelined(
    conn: Conn<'_>,
    statements: &[Statement],
) -> Result<Vec<Vec<tokio_postgres::Row>>, LedgerError> {
    pipelined(conn, statements, None).map_err(pg_error)
}

/// As `run_pipelined`, then `then` (a simple query, without parameters) in the same round
/// trip.
pub(super) fn pipelined(
    conn: Conn<'_>,
    statements: &[Statement],
    then: Option<&str>,
) -> Result<Vec<Vec<tokio_postgres::Row>>, tokio_postgres::Error> {
    conn.driver.run(async {
        let prepared = try_join_all(
            statements
                .iter()
                .map(|s| conn.client.prepare_cached(&s.sql)),
        )
        .await?;
        let answers = try_join_all(statements.iter().zip(&prepared).map(|(s, prepared)| {
            let params: Vec<&(dyn ToSql + Sync)> = s
                .params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            async move { conn.client.query(prepared, &params).await }
        }));
        let last = async {
            match then {
                Some(sql) => conn.client.batch_execute(sql).await,
                None => Ok(()),
            }
        };
        let (answers, ()) = futures_util::future::try_join(answers, last).await?;
        Ok(answers)
    })
}
