//! Webhook notifications for alerts, firing and resolved, grouped by component (what fired on
//! one component in one evaluation is one message, like Alertmanager's groups): a generic JSON
//! body, or a Slack-compatible `{"text": …}`. Each is retried a few times with back-off; a
//! receiver that stays down is logged, never blocks evaluation. A try ends at the answer's
//! status, within `TIMEOUT`; its body is never read, so a receiver that sends its headers and
//! then nothing (or an endless body) costs the sender nothing more.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::HttpClient;
use croupier_monitor::engine::AlertEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
/// One try, from sending the request to the answer's status.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Alerts of one component that changed the same way in one evaluation, each with the
/// incident it belongs to.
pub struct Group {
    pub component: String,
    pub firing: bool,
    pub alerts: Vec<(AlertEvent, Option<i64>)>,
}

pub fn body(format: Format, group: &Group, now_ms: i64) -> Value {
    let status = if group.firing { "firing" } else { "resolved" };
    match format {
        Format::Generic => {
            let alerts: Vec<Value> = group
                .alerts
                .iter()
                .map(|(event, incident)| {
                    json!({
                        "status": status,
                        "alert": event.rule,
                        "target": event.target,
                        "key": event.key,
                        "severity": event.severity,
                        "component": event.component,
                        "value": event.value,
                        "since_s": event.since_s,
                        "incident_id": incident,
                        "detail": event.detail,
                    })
                })
                .collect();
            json!({
                "status": status,
                "group": group.component,
                "alerts": alerts,
                "sent_ms": now_ms,
            })
        }
        Format::Slack => {
            let mark = if group.firing {
                ":red_circle:"
            } else {
                ":large_green_circle:"
            };
            let lines: Vec<String> = group
                .alerts
                .iter()
                .map(|(e, _)| {
                    let detail = e
                        .detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default();
                    format!("• {} on {} ({}){detail}", e.rule, e.target, e.severity)
                })
                .collect();
            json!({"text": format!(
                "{mark} [{}] {}: {} alert(s)\n{}",
                status.to_uppercase(), group.component, group.alerts.len(), lines.join("\n")
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
        match tokio::time::timeout(TIMEOUT, exchange(client, request)).await {
            Ok(Ok(true)) => return true,
            outcome => {
                tracing::warn!(%url, attempt, answered = matches!(outcome, Ok(Ok(_))), "webhook failed")
            }
        }
        tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
    }
    false
}

/// One try: whether the receiver answered 2xx. The body is dropped unread (its connection
/// with it): nothing in it is used.
async fn exchange(
    client: &HttpClient,
    request: hyper::Request<Full<Bytes>>,
) -> Result<bool, hyper_util::client::legacy::Error> {
    let response = client.request(request).await?;
    Ok(response.status().is_success())
}
