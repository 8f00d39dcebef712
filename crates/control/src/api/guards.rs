//! The layers every request to the control plane crosses before a handler: a change made
//! with a dashboard session's cookie must prove it comes from the dashboard (CSRF), and a
//! follower refuses every change (only the leader acts). Both refusals are audited.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::operator::{Operator, audit};
use crate::operator_sessions;
use crate::refusal::refuse;
use crate::{Control, now_ms};

/// Paths that change nothing of an operator's, or check their own credential: no CSRF
/// token is asked there (sign-in and sign-out, players' subscriptions, signed page links).
fn csrf_exempt(path: &str) -> bool {
    matches!(path, "/login" | "/logout" | "/api/v1/subscriptions")
        || path.starts_with("/subscriptions/")
        || path.starts_with("/pages/")
}

/// A change authenticated by a dashboard session's cookie must carry the session's CSRF
/// token and come from this origin (`operator_sessions::forged`): a page elsewhere that
/// makes the browser post with the cookie gets 403 `csrf`, audited. Bearer-token calls
/// carry no ambient credential and pass.
pub(super) async fn same_site_changes(
    State(control): State<Arc<Control>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe
        || croupier_web::bearer(request.headers()).is_some()
        || csrf_exempt(request.uri().path())
    {
        return next.run(request).await;
    }
    let Some((_, session)) = control.sessions.of_request(request.headers(), now_ms()) else {
        return next.run(request).await;
    };
    let Some(why) = operator_sessions::forged(request.headers(), &session) else {
        return next.run(request).await;
    };
    let refusal = || refuse(StatusCode::FORBIDDEN, "csrf", why);
    let detail = json!({"method": request.method().as_str(), "path": request.uri().path()});
    let actor = format!("session:{}", session.name);
    tracing::warn!(path = %request.uri().path(), why, "refused a cookie-authenticated change");
    audit::<()>(&control, &actor, "change", "csrf", &detail, &Err(refusal()));
    refusal().into_response()
}

/// A follower serves reads; an operator's change (any other method under `/api/`) is
/// refused with 503 `not_leader` and audited, so that no change is made where it would not
/// be acted on. Callers without the ops token get the 401 the leader would give them.
pub(super) async fn leader_only_changes(
    State(control): State<Arc<Control>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let change = !matches!(*request.method(), Method::GET | Method::HEAD)
        && request.uri().path().starts_with("/api/");
    if !change || control.config.leadership.is_leader() {
        return next.run(request).await;
    }
    let operator = match Operator::from_headers(&control, request.headers()) {
        Ok(operator) => operator,
        Err(refusal) => return refusal.into_response(),
    };
    let detail = json!({"method": request.method().as_str(), "path": request.uri().path()});
    let refused = operator
        .audited(&control, ("change", "leadership"), &detail, async {
            Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_leader",
                "this control plane follows; send changes to the leader (GET /healthz says which one leads)",
            ))
        })
        .await;
    let mut response = refused.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}
