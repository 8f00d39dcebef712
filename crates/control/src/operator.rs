//! Who may change things, and the record of what they changed. `Operator` is the extractor
//! every operator route takes first: the ops token as a bearer token or a live dashboard
//! session, else 401 before the handler runs. `Operator::audited` is the one shape of a
//! state-changing handler: run the change, then write who, what, on what, with which
//! request, and its outcome (`ok` or `refused: <code>`) to the audit log — refusals included.

use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use croupier_web::wire;
use serde_json::Value;

use crate::operator_sessions;
use crate::refusal::{Refusal, refuse};
use crate::{Control, now_ms};

/// An admitted operator; `actor` is who the audit log names (`credential_actor`).
pub(crate) struct Operator {
    pub(crate) actor: String,
}

impl Operator {
    /// Admits the ops token or a dashboard session; anyone else gets 401 `unauthorized`.
    pub(crate) fn from_headers(
        control: &Control,
        headers: &HeaderMap,
    ) -> Result<Operator, Refusal> {
        credential_actor(control, headers)
            .map(|actor| Operator { actor })
            .ok_or_else(|| {
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "needs Authorization: Bearer <ops token>",
                )
            })
    }

    /// Runs `change` and writes it to the audit log as `action` on `subject`, with `detail`
    /// (what was asked) and its outcome; answers what `change` answered.
    pub(crate) async fn audited(
        &self,
        control: &Control,
        (action, subject): (&str, &str),
        detail: &Value,
        change: impl Future<Output = Result<Response, Refusal>>,
    ) -> Result<Response, Refusal> {
        let result = change.await;
        audit(control, &self.actor, action, subject, detail, &result);
        result
    }
}

impl FromRequestParts<Arc<Control>> for Operator {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        control: &Arc<Control>,
    ) -> Result<Operator, Refusal> {
        Operator::from_headers(control, &parts.headers)
    }
}

/// Who is calling, from the credential: `token:<name>` for the ops token as a bearer token
/// (the name is what the caller says in `X-Croupier-Operator`), `session:<name>` for a
/// dashboard session (the name given at its sign-in); None for anyone else.
fn credential_actor(control: &Control, headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = croupier_web::bearer(headers) {
        if !croupier_web::same_token(bearer, &control.config.ops_token) {
            return None;
        }
        let claimed = headers
            .get(wire::OPERATOR)
            .and_then(|v| v.to_str().ok())
            .and_then(operator_sessions::plain_name)
            .unwrap_or("operator");
        return Some(format!("token:{claimed}"));
    }
    let (_, session) = control.sessions.of_request(headers, now_ms())?;
    Some(format!("session:{}", session.name))
}

/// What the audit log keeps of a request's body: its JSON, or null when it is none.
pub(crate) fn body_detail(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// Writes an operator's action and its outcome to the audit log.
pub(crate) fn audit<T>(
    control: &Control,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &Value,
    result: &Result<T, Refusal>,
) {
    let outcome = match result {
        Ok(_) => "ok".to_owned(),
        Err(refusal) => format!("refused: {}", refusal.body.error),
    };
    if let Err(e) = control.state.audit(
        actor,
        action,
        subject,
        &detail.to_string(),
        &outcome,
        now_ms(),
    ) {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}
