//! Calls to other components' operator APIs (gateways' admin API, nodes' ops API, the
//! supervisor) with the ops token, a timeout, and their answer read as its type (from
//! `croupier_web::wire`) or a named error. The JSON stops here.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Control;

const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no gateway is configured")]
    NoGateway,
    #[error("{peer}: {message}")]
    Call { peer: String, message: String },
    #[error("{peer} answered {status}: {body}")]
    Refused {
        peer: String,
        status: u16,
        body: Value,
    },
}

/// The answer to `request`, read as `T` (`serde::de::IgnoredAny` when only success matters).
pub async fn call<T: DeserializeOwned>(
    control: &Control,
    peer: &str,
    request: hyper::Request<Full<Bytes>>,
) -> Result<T, CallError> {
    call_within(control, peer, request, TIMEOUT).await
}

/// `call` with its own time limit (a node's graceful stop takes longer than an answer).
pub async fn call_within<T: DeserializeOwned>(
    control: &Control,
    peer: &str,
    request: hyper::Request<Full<Bytes>>,
    limit: Duration,
) -> Result<T, CallError> {
    let failed = |message: String| CallError::Call {
        peer: peer.to_owned(),
        message,
    };
    let response = tokio::time::timeout(limit, control.client.request(request))
        .await
        .map_err(|_| failed("timed out".into()))?
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(limit, response.into_body().collect())
        .await
        .map_err(|_| failed("timed out reading".into()))?
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    if (200..300).contains(&status) {
        serde_json::from_slice(&body).map_err(|e| failed(format!("unexpected answer: {e}")))
    } else {
        Err(CallError::Refused {
            peer: peer.to_owned(),
            status,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        })
    }
}

/// A request without a body.
pub fn request(
    control: &Control,
    method: hyper::Method,
    url: String,
) -> hyper::Request<Full<Bytes>> {
    build(control, method, url, Vec::new())
}

/// A request with `body` as JSON.
pub fn request_with<B: Serialize>(
    control: &Control,
    method: hyper::Method,
    url: String,
    body: &B,
) -> hyper::Request<Full<Bytes>> {
    let body = serde_json::to_vec(body).expect("a wire type serializes");
    build(control, method, url, body)
}

fn build(
    control: &Control,
    method: hyper::Method,
    url: String,
    body: Vec<u8>,
) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .header(
            "authorization",
            format!("Bearer {}", control.config.ops_token),
        )
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}
