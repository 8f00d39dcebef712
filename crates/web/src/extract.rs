//! Extractors and fallbacks that answer a caller's mistakes in the project's JSON refusal
//! shape, where axum's own answer is plain text (a path parameter that does not parse) or
//! empty (a method a route does not take).

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;

use crate::wire::Refusal;

/// A path parameter; one that does not parse (`/silences/abc`, `%FF` in a name) is a 400
/// `invalid_path` refusal.
pub struct PathParam<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParam<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        path_value(Path::<T>::from_request_parts(parts, state).await).map(PathParam)
    }
}

/// A path parameter taken as a `Result`, for a handler that checks who asks first (a 401
/// before a 400): its value, or the refusal `PathParam` gives.
pub fn path_value<T>(path: Result<Path<T>, PathRejection>) -> Result<T, Refusal> {
    path.map(|Path(value)| value).map_err(|rejection| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            rejection.body_text(),
        )
    })
}

/// `router` answering an unknown route 404 `not_found` and a method a route does not take
/// 405 `method_not_allowed`, both in JSON.
pub fn json_fallbacks<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .fallback(|| async {
            Refusal::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
        })
        .method_not_allowed_fallback(|| async {
            let message = "this route does not take that method";
            Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                message,
            )
            .into_response()
        })
}
