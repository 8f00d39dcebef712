//! Webhook notifications for alerts, firing and resolved: a generic JSON body, or a
//! Slack-compatible `{"text": …}`. Each is retried a few times with back-off; a receiver that
//! stays down is logged, never blocks evaluation.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use crate::HttpClient;
use crate::engine::AlertEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Generic,
    Slack,
}

#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    pub url: String,
    pub format: Format,
}

const ATTEMPTS: u32 = 4;
const TIMEOUT: Duration = Duration::from_secs(3);

pub fn body(format: Format, event: &AlertEvent, incident: Option<i64>, now_ms: i64) -> Value {
    let status = if event.firing { "firing" } else { "resolved" };
    match format {
        Format::Generic => json!({
            "status": status,
            "alert": event.rule,
            "target": event.target,
            "key": event.key,
            "severity": event.severity,
            "component": event.component,
            "value": event.value,
            "since_s": event.since_s,
            "incident_id": incident,
            "sent_ms": now_ms,
        }),
        Format::Slack => {
            let mark = if event.firing {
                ":red_circle:"
            } else {
                ":large_green_circle:"
            };
            json!({"text": format!(
                "{mark} [{}] {} on {} ({}, {})",
                status.to_uppercase(), event.rule, event.target, event.severity, event.component
            )})
        }
    }
}

/// POSTs `payload` to `url`, retrying on failure.
pub async fn send(client: &HttpClient, url: &str, payload: &Value) -> bool {
    for attempt in 0..ATTEMPTS {
        let Ok(request) = hyper::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(payload.to_string())))
        else {
            return false;
        };
        match tokio::time::timeout(TIMEOUT, client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => {
                let _ = response.into_body().collect().await;
                return true;
            }
            outcome => tracing::warn!(%url, attempt, ok = outcome.is_ok(), "webhook failed"),
        }
        tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
    }
    false
}
