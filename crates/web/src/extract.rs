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

/// Why a request body could not be read as the object a server takes.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Every body the servers take is an object, but serde also reads a struct from an array
    /// of its fields in order, so `["alice"]` would sign Alice in: an array is refused before
    /// it is read, as a bet sent as an array is (`croupier_games::bet`).
    #[error("the body is a JSON array; this endpoint takes a JSON object")]
    Array,
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl BodyError {
    /// Whether the body is not JSON at all (rather than JSON of the wrong shape).
    pub fn is_syntax(&self) -> bool {
        matches!(self, BodyError::Json(e) if !e.is_data())
    }
}

/// A request body read as `T`, which every server's body type is: a JSON object.
pub fn json_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    if is_json_array(body) {
        return Err(BodyError::Array);
    }
    Ok(serde_json::from_slice(body)?)
}

/// Whether a request body is a JSON array: its first byte past any whitespace is `[`.
fn is_json_array(body: &[u8]) -> bool {
    body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[')
}

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

#[cfg(test)]
mod tests {
    use super::{BodyError, is_json_array, json_object};

    #[derive(Debug, serde::Deserialize)]
    struct SignIn {
        player: String,
    }

    #[test]
    fn an_object_body_is_read_and_an_array_of_its_fields_is_refused() {
        let read: SignIn = json_object(br#"{"player": "alice"}"#).unwrap();
        assert_eq!(read.player, "alice");
        assert!(matches!(
            json_object::<SignIn>(br#" ["alice"]"#),
            Err(BodyError::Array)
        ));
        assert!(json_object::<SignIn>(b"{").unwrap_err().is_syntax());
        assert!(!json_object::<SignIn>(b"{}").unwrap_err().is_syntax());
    }

    #[test]
    fn an_array_body_is_told_apart_from_an_object_whatever_the_whitespace() {
        for array in [&b"[]"[..], b" \n\t[\"alice\"]", b"\r\n[1, 2]"] {
            assert!(is_json_array(array), "{:?}", String::from_utf8_lossy(array));
        }
        for other in [
            &b"{}"[..],
            b" {\"player\": \"alice\"}",
            b"",
            b"  ",
            b"\"[\"",
            b"null",
        ] {
            assert!(
                !is_json_array(other),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
