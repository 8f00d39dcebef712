//! `GET /api/v1/sla?from=&to=[&format=json|csv|html]` for operators: the SLA report over a
//! range of whole minutes (dates as `YYYY-MM-DD`, midnight UTC, or RFC 3339), as JSON, CSV
//! (`format=csv` or `Accept: text/csv`) or printable HTML (`format=html`, or a browser's
//! `Accept: text/html`). Bad ranges are a 400 naming the fault.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::operator::Operator;
use crate::refusal::{Refusal, query_or_refuse, refuse, unavailable};
use crate::sla::{Terms, report};
use crate::{Control, now_ms};

/// The longest report: the rollups are kept a year.
const MAX_RANGE_MS: i64 = 366 * 86_400_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlaQuery {
    from: String,
    to: String,
    format: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Format {
    Json,
    Csv,
    Html,
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time, as Unix milliseconds.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn bad(message: &str) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, "invalid_query", message)
}

/// The range asked for, checked: whole minutes, `from` before `to`, at most a year.
fn range(query: &SlaQuery) -> Result<(i64, i64), Refusal> {
    let (Some(from), Some(to)) = (parse_time(&query.from), parse_time(&query.to)) else {
        return Err(bad(
            "from and to are dates (2026-11-01) or RFC 3339 times (2026-11-01T00:00:00Z)",
        ));
    };
    if from % 60_000 != 0 || to % 60_000 != 0 {
        return Err(bad("from and to are whole minutes"));
    }
    if from >= to || to - from > MAX_RANGE_MS {
        return Err(bad("from comes before to, at most 366 days apart"));
    }
    Ok((from, to))
}

/// `format=` if given, else what `Accept` prefers among CSV and HTML, else JSON.
fn format(query: &SlaQuery, headers: &HeaderMap) -> Result<Format, Refusal> {
    match query.format.as_deref() {
        Some("json") => return Ok(Format::Json),
        Some("csv") => return Ok(Format::Csv),
        Some("html") => return Ok(Format::Html),
        Some(_) => return Err(bad("format is json, csv or html")),
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(if accept.contains("text/csv") {
        Format::Csv
    } else if accept.contains("text/html") {
        Format::Html
    } else {
        Format::Json
    })
}

pub(crate) async fn sla(
    _: Operator,
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    query: Result<Query<SlaQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let query = query_or_refuse(query)?;
    let (from, to) = range(&query)?;
    let format = format(&query, &headers)?;
    let terms = Terms {
        slos: &control.config.slos,
        credits: &control.config.sla_credits,
    };
    let report = report(&control.state, &terms, from, to, now_ms()).map_err(unavailable)?;
    Ok(match format {
        Format::Json => Json(report).into_response(),
        Format::Csv => {
            let name = format!(
                "attachment; filename=\"sla-{}-{}.csv\"",
                crate::dates::day(from),
                crate::dates::day(to)
            );
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, name),
                ],
                crate::sla_format::csv(&report),
            )
                .into_response()
        }
        Format::Html => crate::html::page(
            "Service level report",
            "",
            &crate::sla_format::html(&report),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(from: &str, to: &str) -> SlaQuery {
        SlaQuery {
            from: from.into(),
            to: to.into(),
            format: None,
        }
    }

    #[test]
    fn ranges_are_checked_and_named() {
        assert_eq!(
            range(&query("2026-11-01", "2026-12-01")).ok(),
            Some((1_793_491_200_000, 1_796_083_200_000))
        );
        assert!(range(&query("2026-11-01T00:00:00+01:00", "2026-11-02")).is_ok());
        for (from, to) in [
            ("2026-11", "2026-12-01"),
            ("2026-12-01", "2026-11-01"),
            ("2026-11-01T00:00:30Z", "2026-12-01"),
            ("2025-01-01", "2026-12-01"),
        ] {
            assert!(range(&query(from, to)).is_err(), "{from} {to}");
        }
    }

    #[test]
    fn the_format_is_asked_for_or_negotiated() {
        let mut headers = HeaderMap::new();
        let plain = query("2026-11-01", "2026-12-01");
        assert_eq!(format(&plain, &headers).ok(), Some(Format::Json));
        headers.insert(header::ACCEPT, "text/csv".parse().unwrap());
        assert_eq!(format(&plain, &headers).ok(), Some(Format::Csv));
        let html = SlaQuery {
            format: Some("html".into()),
            ..plain
        };
        assert_eq!(format(&html, &headers).ok(), Some(Format::Html));
        let pdf = SlaQuery {
            format: Some("pdf".into()),
            ..html
        };
        assert!(format(&pdf, &headers).is_err());
    }
}
