//! A panic inside a request handler becomes a `500 {"error": "internal", ...}` for that request
//! alone: the connection is answered, the server and every other request carry on. Without it
//! hyper drops the connection without a word and, worse, a lock held at that moment used to
//! stay poisoned for every later request. Panics are counted for `/metrics`.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use croupier_web::wire::Refusal;
use tower_http::catch_panic::CatchPanicLayer;

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Requests whose handler panicked since the process started.
pub fn count() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Counts a panic caught outside a request (a background loop's round).
pub fn record() {
    PANICS.fetch_add(1, Ordering::Relaxed);
}

/// The panic's message, when it carried one.
pub fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The answer to a request whose handler panicked with `payload` (counted and logged): the
/// layer's, and a server's without a middleware stack.
pub fn answer(payload: Box<dyn Any + Send + 'static>) -> Response {
    record();
    tracing::error!(
        panic = message(payload.as_ref()),
        "a request handler panicked; answered 500"
    );
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server failed while answering this request; nothing was changed by the failure itself, please retry",
    )
    .into_response()
}

/// The layer every Croupier router wears outermost.
pub fn layer() -> CatchPanicLayer<fn(Box<dyn Any + Send + 'static>) -> Response> {
    CatchPanicLayer::custom(answer as fn(Box<dyn Any + Send + 'static>) -> Response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        std::panic::panic_any("boom")
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_and_the_next_request_is_served() {
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/ok", get(|| async { "ok" }))
            .layer(layer());
        let before = count();
        let boom = app
            .clone()
            .oneshot(
                axum::http::Request::get("/boom")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(boom.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(count() > before);
        let ok = app
            .oneshot(axum::http::Request::get("/ok").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }
}
