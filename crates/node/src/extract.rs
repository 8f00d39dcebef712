//! Request extractors that turn every malformed input into a JSON `ApiError`: bodies (with a
//! fingerprint for idempotency), query strings, paths, bearer tokens for players and operators.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use croupier_web::wire;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body, plus a fingerprint of the request it came in (method, path, body).
pub struct JsonBody<T> {
    pub value: T,
    pub fingerprint: String,
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let prefix = format!("{} {}\n", req.method(), req.uri().path());
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "unreadable_body"
            };
            ApiError::new(status, code, rejection.body_text())
        })?;
        let value = croupier_web::extract::json_object(&bytes).map_err(|e| {
            if e.is_syntax() {
                ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            } else {
                ApiError::unprocessable("invalid_field", e.to_string())
            }
        })?;
        let mut hasher = Sha256::new();
        hasher.update(prefix.as_bytes());
        hasher.update(&bytes);
        Ok(JsonBody {
            value,
            fingerprint: hex::encode(hasher.finalize()),
        })
    }
}

/// Query parameters with JSON errors.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryParams(v))
            .map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))
    }
}

/// A path parameter with JSON errors (400 `invalid_path`), as on every other server.
pub use croupier_web::extract::PathParam;

/// The bearer token of a request, from the Authorization header or, for WebSockets whose
/// browser API cannot set headers, a `token` query parameter.
fn bearer(parts: &Parts) -> Option<String> {
    croupier_web::bearer_or_query(&parts.headers, &parts.uri).map(str::to_owned)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A signed-in player.
pub struct PlayerAuth(pub String);

impl FromRequestParts<AppState> for PlayerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "sign in first: POST /api/v1/sessions, then send Authorization: Bearer <token>",
            )
        })?;
        player_for_token(state, &token)
            .await?
            .map(PlayerAuth)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the token is unknown or expired; sign in again",
                )
            })
    }
}

/// The player of a live session. A cached answer is used while it is younger than
/// `session_cache::TTL` and the session itself has not expired: no node keeps serving an
/// expired session from its cache.
async fn player_for_token(state: &AppState, token: &str) -> Result<Option<String>, ApiError> {
    let hash = token_hash(token);
    if let Some(player) = state.sessions.get(&hash, now_ms()) {
        return Ok(Some(player));
    }
    let lookup = hash.clone();
    let session = state
        .store
        .read(move |tx| tx.session_player(&lookup))
        .await?;
    let Some((player, expires_ms)) = session else {
        return Ok(None);
    };
    state.sessions.insert(hash, player.clone(), expires_ms);
    Ok(Some(player))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The bearer token of an operator surface (header only), or a 401 saying what is needed.
pub(crate) fn required_bearer<'a>(
    parts: &'a Parts,
    needed: &'static str,
) -> Result<&'a str, ApiError> {
    croupier_web::bearer(&parts.headers)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing_token", needed))
}

/// An operator: the bearer token equals the node's ops token. Player tokens are refused.
pub struct OpsAuth;

impl FromRequestParts<AppState> for OpsAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = required_bearer(parts, "the ops API needs Authorization: Bearer <ops token>")?;
        if croupier_web::same_token(token, &state.ops_token) {
            return Ok(OpsAuth);
        }
        if player_for_token(state, token).await?.is_some() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "player tokens cannot use the ops API",
            ));
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "wrong ops token",
        ))
    }
}

/// The `Idempotency-Key` header, scoped to the player; required on money-moving requests.
pub struct IdempotencyKey(pub String);

const MAX_KEY_LEN: usize = 128;

impl FromRequestParts<AppState> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        idempotency_key(&parts.headers)?
            .map(IdempotencyKey)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "missing_idempotency_key",
                    "money-moving requests need an Idempotency-Key header (a unique string per request)",
                )
            })
    }
}

/// The request's Idempotency-Key, where it may be left out: none without the header; a 400
/// when it is there but empty, not visible ASCII, or too long. A key the node cannot use must
/// be refused, never ignored: the gateway treats any request carrying one as safe to repeat.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(wire::IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let invalid = |why: &str| {
        ApiError::bad_request("invalid_idempotency_key", format!("Idempotency-Key {why}"))
    };
    let key = value
        .to_str()
        .map_err(|_| invalid("must be visible ASCII characters"))?
        .trim();
    if key.is_empty() {
        return Err(invalid("is empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(invalid(&format!("is longer than {MAX_KEY_LEN} characters")));
    }
    Ok(Some(key.to_owned()))
}
