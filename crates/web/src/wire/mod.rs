//! The wire vocabulary every Croupier server and client shares, spelled once: the header
//! names Croupier defines (idempotency, draining, which node or player answered, the
//! operator's name), the JSON error envelope `{"error": code, "message": text}` with its
//! answer, and, one module per API, the bodies its requests take and its answers give
//! (`player`, `ops` of a node, `admin` of a gateway, `control`, `supervisor` of `up`). The node, gateway, control
//! plane, `up`'s supervisor, the load generator, `ctl` and the tests all use these, so a
//! header or a body's shape cannot drift between a server and its clients.
//!
//! JSON lives at the HTTP edge: a handler answers one of these types and a client reads one
//! back, never a `serde_json::Value` it picks keys out of. The fields of an answer that used
//! to be built with `json!` are declared in alphabetical order, the order `json!` sent them
//! in (serde_json sorts a map's keys), so the bytes on the wire did not change. A request's
//! fields keep the order the server declared them in, since its refusals quote it ("expected
//! one of …", the first field missing). Each module's tests pin the bytes.

pub mod admin;
pub mod control;
pub mod ops;
pub mod player;
pub mod supervisor;

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// A player's key that makes a money-moving request safe to retry: the same key and body
/// answer the first outcome again instead of acting twice.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `true` on an answer replayed from an idempotency record rather than acted on again.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// `true` on a draining node's refusals, so the gateway retries them on another node at once.
pub const DRAINING: HeaderName = HeaderName::from_static("croupier-draining");
/// Names the node that answered a request the gateway proxied, for operators and tests.
pub const NODE: HeaderName = HeaderName::from_static("croupier-node");
/// Names a WebSocket's player in the node's 101 answer, for the gateway's per-player cap.
pub const PLAYER: HeaderName = HeaderName::from_static("croupier-player");
/// The operator's name that `croupier ctl` sends with the ops token, for the audit log.
pub const OPERATOR: HeaderName = HeaderName::from_static("x-croupier-operator");

/// No fields beyond `error` and `message`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDetail {}

/// The body of every refusal: a machine-readable `error` code, a sentence for people, and for
/// a few refusals fields that say why (a balance), flattened next to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<D = NoDetail> {
    pub error: Cow<'static, str>,
    pub message: String,
    #[serde(flatten)]
    pub detail: D,
}

impl ErrorBody {
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: code.into(),
            message: message.into(),
            detail: NoDetail {},
        }
    }
}

/// A refusal as an answer: its status and its [`ErrorBody`] as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal<D = NoDetail> {
    pub status: StatusCode,
    pub body: ErrorBody<D>,
}

impl Refusal {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Refusal {
            status,
            body: ErrorBody::new(code, message),
        }
    }

    /// The same refusal with `detail`'s fields in its body.
    pub fn with<D: Serialize>(self, detail: D) -> Refusal<D> {
        Refusal {
            status: self.status,
            body: ErrorBody {
                error: self.body.error,
                message: self.body.message,
                detail,
            },
        }
    }
}

impl<D: Serialize> IntoResponse for Refusal<D> {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// `value` is sent as exactly `json` and reads back as itself: the golden check of a body.
#[cfg(test)]
pub(crate) fn pinned<T>(value: T, json: &str)
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(serde_json::to_string(&value).unwrap(), json);
    assert_eq!(serde_json::from_str::<T>(json).unwrap(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Balance {
        balance: i64,
    }

    #[test]
    fn the_envelope_is_error_and_message_then_any_detail() {
        let plain = ErrorBody::new("not_found", "no such round");
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"error":"not_found","message":"no such round"}"#
        );
        let read: ErrorBody = serde_json::from_str(r#"{"message":"m","error":"e","x":1}"#).unwrap();
        assert_eq!(read, ErrorBody::new("e", "m"));
        let detailed = Refusal::new(StatusCode::CONFLICT, "insufficient_funds", "short")
            .with(Balance { balance: 5 });
        assert_eq!(
            serde_json::to_string(&detailed.body).unwrap(),
            r#"{"error":"insufficient_funds","message":"short","balance":5}"#
        );
    }

    #[tokio::test]
    async fn a_refusal_answers_its_status_with_a_json_body() {
        let response = Refusal::new(StatusCode::GONE, "gone", "it left").into_response();
        assert_eq!(response.status(), StatusCode::GONE);
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            "application/json"
        );
    }
}
