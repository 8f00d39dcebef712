//! Several writes of a batch's flush sent as one statement. Each statement of the extended
//! protocol costs the server a cycle of its own (bind, portal, snapshot, executor start and
//! end, and an answer flushed to the socket at its Sync) and the client a message to frame and
//! an answer to read: a lone dice bet's flush was six statements for five small writes and the
//! journal's append. Writes that touch different rows can instead be data-modifying `WITH`
//! clauses of one statement, whose main query appends the journal once they are done.
//!
//! Only writes that need not see each other's rows may be joined: the clauses of one statement
//! run on one snapshot, in no defined order, and a row two of them change is changed by one
//! only. The flush keeps apart the writes that depend on each other (`batch::flush_statements`).

use std::fmt::Write as _;

use super::pipeline::Statement;

/// `writes` (each an INSERT, UPDATE or DELETE numbering its parameters from `$1`) and then
/// `last` (a SELECT, run once every write is done) as one statement; a single statement is
/// sent as it is.
pub fn one_statement(writes: Vec<Statement>, last: Option<Statement>) -> Option<Statement> {
    match (writes.len(), &last) {
        (0, _) => return last,
        (1, None) => return writes.into_iter().next(),
        _ => {}
    }
    let clauses = writes.len();
    let mut sql = String::from("WITH ");
    let mut params = Vec::new();
    for (i, write) in writes.into_iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "w{i} AS (");
        sql.push_str(&renumber(&write.sql, params.len()));
        sql.push_str(" RETURNING 1)");
        params.extend(write.params);
    }
    let written = counts(clauses);
    match last {
        // The main query's one row is made from a count of each clause's rows: it is
        // projected, and `last` evaluated, only once every write has run to its end.
        Some(last) => {
            let select = renumber(&last.sql, params.len());
            let from = select
                .strip_prefix("SELECT ")
                .expect("the last statement of a merge is a SELECT");
            let _ = write!(sql, " SELECT {from} FROM {written}");
            params.extend(last.params);
        }
        None => {
            let _ = write!(sql, " SELECT 1 FROM {written}");
        }
    }
    Some(Statement::new(sql, params))
}

/// `(SELECT count(*) FROM w0) AS c0, (SELECT count(*) FROM w1) AS c1, …` for `clauses`
/// clauses (named `w0`, `w1`, … by `one_statement`).
fn counts(clauses: usize) -> String {
    (0..clauses)
        .map(|i| format!("(SELECT count(*) FROM w{i}) AS c{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sql` with every parameter `$n` renumbered `$(n + offset)`.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(n) = rest[..digits].parse::<usize>() {
            let _ = write!(out, "{}", n + offset);
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(sql: &'static str, params: usize) -> Statement {
        Statement::new(
            sql,
            (0..params)
                .map(|i| Box::new(i as i64) as Box<dyn tokio_postgres::types::ToSql + Sync + Send>)
                .collect(),
        )
    }

    #[test]
    fn parameters_are_numbered_on_from_the_writes_before() {
        assert_eq!(
            renumber("a = $1 AND b = ANY($2::text[])", 3),
            "a = $4 AND b = ANY($5::text[])"
        );
        assert_eq!(renumber("$10, $9", 1), "$11, $10");
        assert_eq!(renumber("no parameters", 5), "no parameters");
    }

    #[test]
    fn writes_become_clauses_counted_before_the_last_statement() {
        let merged = one_statement(
            vec![
                statement("UPDATE a SET x = $1 WHERE id = $2", 2),
                statement("INSERT INTO b SELECT $1", 1),
            ],
            Some(statement("SELECT f($1, $2)", 2)),
        )
        .unwrap();
        assert_eq!(
            merged.sql,
            "WITH w0 AS (UPDATE a SET x = $1 WHERE id = $2 RETURNING 1), \
             w1 AS (INSERT INTO b SELECT $3 RETURNING 1) \
             SELECT f($4, $5) FROM (SELECT count(*) FROM w0) AS c0, (SELECT count(*) FROM w1) AS c1"
        );
        assert_eq!(merged.params.len(), 5);
    }

    #[test]
    fn a_lone_statement_is_sent_as_it_is() {
        let write = one_statement(vec![statement("DELETE FROM a WHERE id = $1", 1)], None);
        assert_eq!(write.unwrap().sql, "DELETE FROM a WHERE id = $1");
        let last = one_statement(vec![], Some(statement("SELECT f($1)", 1)));
        assert_eq!(last.unwrap().sql, "SELECT f($1)");
        assert!(one_statement(vec![], None).is_none());
    }

    #[test]
    fn writes_without_a_last_statement_still_all_run() {
        let merged = one_statement(
            vec![statement("DELETE FROM a", 0), statement("DELETE FROM b", 0)],
            None,
        )
        .unwrap();
        assert!(
            merged.sql.ends_with(
                " SELECT 1 FROM (SELECT count(*) FROM w0) AS c0, (SELECT count(*) FROM w1) AS c1"
            ),
            "{}",
            merged.sql
        );
    }
}
