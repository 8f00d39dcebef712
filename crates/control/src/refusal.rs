//! The control plane's one error answer: a status and `{"error": code, "message": …}`. Every
//! handler (the API's, the dashboard's guards, the operator check) refuses through it, so a
//! caller always gets the same JSON shape and the audit log the same `refused: <code>`.

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::StateError;

/// A refusal: status plus `{"error": code, "message": …}`.
pub(crate) struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    /// The machine-readable reason (`error` in the body, `refused: <code>` in the audit log).
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

pub(crate) fn refuse(status: StatusCode, code: &'static str, message: &str) -> Refusal {
    Refusal {
        status,
        code,
        message: message.to_owned(),
    }
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
    serde_json::from_slice(body).map_err(|e| {
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
