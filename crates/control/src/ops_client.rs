//! Calls to other components' operator APIs (gateways' admin API, nodes' ops API, the
//! supervisor) with the ops token, a timeout, and their JSON answer or a named error.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
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

pub async fn call(
    control: &Control,
    peer: &str,
    request: hyper::Request<Full<Bytes>>,
) -> Result<Value, CallError> {
    call_within(control, peer, request, TIMEOUT).await
}

/// `call` with its own time limit (a node's graceful stop takes longer than an answer).
pub async fn call_within(
    control: &Control,
    peer: &str,
    request: hyper::Request<Full<Bytes>>,
    limit: Duration,
) -> Result<Value, CallError> {
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
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(CallError::Refused {
            peer: peer.to_owned(),
            status,
            body,
        })
    }
}

pub fn request(
    control: &Control,
    method: hyper::Method,
    url: String,
    body: Option<Value>,
) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .header(
            "authorization",
            format!("Bearer {}", control.config.ops_token),
        )
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .expect("a valid request")
}
