//! The control plane's one error answer: a status and `{"error": code, "message": …}`. Every
//! handler (the API's, the dashboard's guards, the operator check) refuses through it, so a
//! caller always gets the same JSON shape and the audit log the same `refused: <code>`.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;

use crate::state::StateError;

/// A refusal: status plus `{"error": code, "message": …}`; its code (`body.error`) is also
/// what the audit log records as `refused: <code>`.
pub(crate) use croupier_web::wire::Refusal;

pub(crate) fn refuse(status: StatusCode, code: &'static str, message: &str) -> Refusal {
    Refusal::new(status, code, message)
}

/// The control plane's own records cannot be read or written: 503.
pub(crate) fn unavailable(e: StateError) -> Refusal {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "state_unavailable",
        &e.to_string(),
    )
}

/// A JSON body of type `T`, or a 422 naming what is wrong with it.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    croupier_web::extract::json_object(body).map_err(|e| {
        refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            &e.to_string(),
        )
    })
}

/// A query string, or a 400 naming what is wrong with it.
pub(crate) fn query_or_refuse<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Refusal> {
    query
        .map(|Query(q)| q)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "invalid_query", &e.body_text()))
}

/// A title and a message players will read (an incident's, a maintenance window's), or a 422
/// `invalid_body`: not blank, and short enough that every node delivers it as a notice
/// (`MAX_NOTICE_BYTES`; a longer one was stored, shown on the status page, and refused by
/// every node, so players were never told).
pub(crate) fn players_text(title: Option<&str>, message: Option<&str>) -> Result<(), Refusal> {
    use croupier_web::wire::control::MAX_TITLE_BYTES;
    use croupier_web::wire::ops::MAX_NOTICE_BYTES;
    let invalid = |message: String| {
        Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            &message,
        ))
    };
    if let Some(title) = title
        && (title.trim().is_empty() || title.len() > MAX_TITLE_BYTES)
    {
        return invalid(format!(
            "the title is 1 to {MAX_TITLE_BYTES} bytes, not blank"
        ));
    }
    if let Some(message) = message
        && (message.trim().is_empty() || message.len() > MAX_NOTICE_BYTES)
    {
        return invalid(format!(
            "the message is 1 to {MAX_NOTICE_BYTES} bytes, not blank"
        ));
    }
    Ok(())
}
