//! The control plane's hands on the gateways' admin API: the nodes as the gateways see them
//! (state, health, outstanding requests, WebSockets), and setting a node active, draining or
//! in maintenance on every gateway at once.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::Control;
use crate::engine::Kind;

const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no gateway is configured")]
    NoGateway,
    #[error("gateway {gateway}: {message}")]
    Call { gateway: String, message: String },
    #[error("gateway {gateway} answered {status}: {body}")]
    Refused {
        gateway: String,
        status: u16,
        body: Value,
    },
}

async fn call(
    control: &Control,
    gateway: &str,
    request: hyper::Request<Full<Bytes>>,
) -> Result<Value, GatewayError> {
    let failed = |message: String| GatewayError::Call {
        gateway: gateway.to_owned(),
        message,
    };
    let response = tokio::time::timeout(TIMEOUT, control.client.request(request))
        .await
        .map_err(|_| failed("timed out".into()))?
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| failed("timed out reading".into()))?
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(GatewayError::Refused {
            gateway: gateway.to_owned(),
            status,
            body,
        })
    }
}

fn request(
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

/// The nodes as each gateway sees them: `[{"gateway": name, "nodes": [...]}]`.
pub async fn nodes(control: &Control) -> Result<Value, GatewayError> {
    let gateways: Vec<_> = control
        .config
        .targets
        .iter()
        .filter(|t| t.kind == Kind::Gateway)
        .collect();
    if gateways.is_empty() {
        return Err(GatewayError::NoGateway);
    }
    let mut views = Vec::new();
    for gateway in gateways {
        let url = format!("{}/admin/nodes", gateway.base);
        let view = match call(
            control,
            &gateway.name,
            request(control, hyper::Method::GET, url, None),
        )
        .await
        {
            Ok(body) => json!({"gateway": gateway.name, "nodes": body["nodes"]}),
            Err(e) => json!({"gateway": gateway.name, "error": e.to_string()}),
        };
        views.push(view);
    }
    Ok(Value::Array(views))
}

/// Sets `node` to `state` on every gateway; fails on the first gateway that refuses.
pub async fn set_node_state(
    control: &Control,
    node: &str,
    state: &str,
) -> Result<Value, GatewayError> {
    let mut last = Err(GatewayError::NoGateway);
    for gateway in control
        .config
        .targets
        .iter()
        .filter(|t| t.kind == Kind::Gateway)
    {
        let url = format!("{}/admin/nodes/{node}", gateway.base);
        last = Ok(call(
            control,
            &gateway.name,
            request(
                control,
                hyper::Method::PUT,
                url,
                Some(json!({"state": state})),
            ),
        )
        .await?);
    }
    last
}
