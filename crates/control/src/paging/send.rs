//! What a page says and where it goes: to each of the paged person's senders — their webhook
//! (generic JSON), Slack webhook (text with links) and e-mail address (`mail`) — with the
//! same signed acknowledge and resolve links. Each send is a task: a slow receiver never holds
//! the monitor loop, and one that stays down is logged (by `notify::send` and `mail`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::Pager;
use crate::Control;
use crate::state::Incident;
use crate::state_pages::Page;

/// Sends a page to the person it is with now, through each of their senders.
pub fn send(control: &Arc<Control>, pager: &Pager, page: &Page, incident: &Incident, now: i64) {
    let Some(person) = pager.config.person(&page.person) else {
        return;
    };
    let ack = pager.link(page.id, "ack", &person.name, page.level, now);
    let resolve = pager.link(page.id, "resolve", &person.name, page.level, now);
    let level = page.level + 1;
    let generic = json!({
        "kind": "page", "page_id": page.id, "incident_id": incident.id, "level": level,
        "repeat": page.repeats, "person": person.name, "title": incident.title,
        "component": incident.component, "severity": incident.severity, "ack_url": ack,
        "resolve_url": resolve, "expires_ms": now + pager.link_ttl_ms, "sent_ms": now,
    });
    let slack = json!({"text": format!(
        ":rotating_light: Page for {}: {} ({}, {}), level {level}. <{ack}|Acknowledge> · <{resolve}|Resolve>",
        person.name, incident.title, incident.component, incident.severity
    )});
    let hooks: Vec<(String, Value)> = [
        person.webhook.clone().map(|url| (url, generic)),
        person.slack_webhook.clone().map(|url| (url, slack)),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (url, payload) in hooks {
        let control = control.clone();
        tokio::spawn(async move { crate::notify::send(&control.client, &url, &payload).await });
    }
    if let Some(address) = person.email.clone() {
        let subject = format!(
            "[Croupier page] {} ({}, {}), level {level}",
            incident.title, incident.component, incident.severity
        );
        let text = format!(
            "{}, you are paged for incident #{}: {} on {} ({}), escalation level {level}.\n\n\
             Acknowledge: {ack}\n\nResolve: {resolve}\n\n\
             Each link works once, until {}; opening it shows a button.\n",
            person.name,
            incident.id,
            incident.title,
            incident.component,
            incident.severity,
            crate::dates::utc(now + pager.link_ttl_ms),
        );
        let control = control.clone();
        tokio::spawn(async move {
            let mailer = control
                .config
                .pager
                .as_ref()
                .and_then(|p| p.mailer.as_ref());
            if let Some(mailer) = mailer {
                mailer.send(&address, &subject, &text).await;
            }
        });
    }
}
