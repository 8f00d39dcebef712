//! Paging people: every second, an open major or critical incident without a page gets one,
//! sent to whoever the first escalation level's schedule has on call; a page nobody
//! acknowledges within its level's `ack_within_s` goes to the next level, and at the last
//! level to its person again, `repeat` times at most (so it neither goes silent at once nor
//! wakes people forever); a page whose incident resolved is resolved. Each page goes out
//! through the person's own senders (`send`: webhook, Slack, e-mail) and carries signed,
//! expiring, single-use links (HMAC-SHA256 with the control plane's page key) to acknowledge
//! or resolve it. Every page, escalation, repeat, acknowledgement and resolution goes on the
//! incident's timeline and in the audit log; so does every refused acknowledgement (`audit`).

mod send;

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::Control;
use crate::mail::Mailer;
use crate::oncall::{OnCall, Rotation};
use crate::state::Incident;
use crate::state_pages::Page;
use croupier_monitor::severity::Severity;

/// A day: how long a page's links work unless the file says otherwise.
const LINK_TTL_S: u64 = 86_400;

pub struct Pager {
    pub config: OnCall,
    pub rotations: Vec<Rotation>,
    key: Vec<u8>,
    public_url: String,
    pub(crate) link_ttl_ms: i64,
    /// The SMTP server of e-mailed pages, when the deployment file names one.
    pub(crate) mailer: Option<Mailer>,
}

/// What a signed link asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub page: i64,
    pub action: String,
    pub person: String,
    pub level: i64,
    pub expires_ms: i64,
    pub signature: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum LinkError {
    #[error("this link's signature is not valid")]
    Forged,
    #[error("this link has expired")]
    Expired,
}

impl Pager {
    /// `key` is the page key (a server secret); `default_url` the control plane's address;
    /// `smtp_url` the SMTP server e-mailed pages go through.
    pub fn new(
        config: OnCall,
        key: &str,
        default_url: &str,
        smtp_url: Option<&str>,
    ) -> Result<Pager, String> {
        let rotations = config.rotations()?;
        let mailer = match smtp_url {
            Some(url) => Some(Mailer::new(url, &config.from, "oncall")?),
            None => None,
        };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| default_url.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let link_ttl_ms = config.link_ttl_s.unwrap_or(LINK_TTL_S) as i64 * 1000;
        Ok(Pager {
            config,
            rotations,
            key: key.as_bytes().to_vec(),
            public_url,
            link_ttl_ms,
            mailer,
        })
    }

    /// Who level `level` pages at `now_ms`.
    pub fn on_call(&self, level: usize, now_ms: i64) -> Option<String> {
        let schedule = &self.config.escalation.get(level)?.schedule;
        let rotation = self.rotations.iter().find(|r| &r.name == schedule)?;
        Some(rotation.on_call(now_ms))
    }

    fn sign(&self, page: i64, action: &str, person: &str, level: i64, expires_ms: i64) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(format!("{page}|{action}|{person}|{level}|{expires_ms}").as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A link that acknowledges (or resolves) `page` as `person`, for a while.
    pub fn link(&self, page: i64, action: &str, person: &str, level: i64, now_ms: i64) -> String {
        let expires = now_ms + self.link_ttl_ms;
        let signature = hex::encode(self.sign(page, action, person, level, expires));
        format!(
            "{}/pages/{page}/{action}?person={person}&level={level}&expires_ms={expires}&signature={signature}",
            self.public_url
        )
    }

    /// Checks a link's signature (in constant time) and expiry.
    pub fn verify(&self, link: &Link, now_ms: i64) -> Result<(), LinkError> {
        let presented = hex::decode(&link.signature).map_err(|_| LinkError::Forged)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(
            format!(
                "{}|{}|{}|{}|{}",
                link.page, link.action, link.person, link.level, link.expires_ms
            )
            .as_bytes(),
        );
        mac.verify_slice(&presented)
            .map_err(|_| LinkError::Forged)?;
        if now_ms >= link.expires_ms {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

/// Records a step of a page on its incident's timeline (an on-call line: never shown to
/// players) and in the audit log.
pub fn record(control: &Control, page: &Page, actor: &str, action: &str, message: &str, now: i64) {
    if let Err(e) = control.state.note_oncall(page.incident_id, message, now) {
        tracing::error!(error = %e, "cannot write the incident's timeline");
    }
    let detail = json!({"incident_id": page.incident_id, "level": page.level + 1,
                        "person": page.person, "message": message});
    audit(control, actor, action, page.id, &detail, "ok", now);
}

/// The audit-log entry of a page's step or of a refused one: every entry about pages is
/// written here, with the target `page/<id>`.
pub fn audit(
    control: &Control,
    actor: &str,
    action: &str,
    page_id: i64,
    detail: &Value,
    outcome: &str,
    now: i64,
) {
    let target = format!("page/{page_id}");
    if let Err(e) = control
        .state
        .audit(actor, action, &target, &detail.to_string(), outcome, now)
    {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

/// One round: page new incidents, escalate pages nobody acknowledged, resolve pages whose
/// incident resolved.
pub fn upkeep(control: &Arc<Control>, now: i64) {
    let Some(pager) = &control.config.pager else {
        return;
    };
    let (Ok(active), Ok(pages)) = (
        control.state.incidents(true),
        control.state.pages(true, 500),
    ) else {
        return;
    };
    for incident in active.iter().filter(|i| i.severity != Severity::Minor) {
        let Some(person) = pager.on_call(0, now) else {
            return;
        };
        if let Ok(Some(id)) = control.state.open_page(incident.id, &person, now)
            && let Ok(Some(page)) = control.state.page(id)
        {
            let message = format!("Paged {person} (level 1).");
            record(
                control,
                &page,
                "control-plane",
                "page.notify",
                &message,
                now,
            );
            send::send(control, pager, &page, incident, now);
        }
    }
    for page in pages {
        let Some(incident) = active.iter().find(|i| i.id == page.incident_id) else {
            if let Ok(true) = control.state.resolve_page(page.id, "control-plane", now) {
                let message = "Page resolved: the incident resolved.";
                record(
                    control,
                    &page,
                    "control-plane",
                    "page.resolve",
                    message,
                    now,
                );
            }
            continue;
        };
        escalate(control, pager, &page, incident, now);
    }
}

/// Moves an open page to the next level when its level's time to acknowledge is up; at the
/// last level, pages its person again while repeats are left.
fn escalate(control: &Arc<Control>, pager: &Pager, page: &Page, incident: &Incident, now: i64) {
    let Some(level) = pager.config.escalation.get(page.level as usize) else {
        return;
    };
    if page.status != "open" || now - page.level_since_ms < level.ack_within_s as i64 * 1000 {
        return;
    }
    let next = page.level + 1;
    let last = next as usize >= pager.config.escalation.len();
    if last && page.repeats >= i64::from(pager.config.repeat) {
        return;
    }
    let Some(person) = pager.on_call(if last { page.level } else { next } as usize, now) else {
        return;
    };
    let (moved, action, message) = if last {
        let repeat = page.repeats + 1;
        let total = pager.config.repeat;
        let last_word = if repeat == i64::from(total) {
            ", the last"
        } else {
            ""
        };
        let message = format!(
            "Not acknowledged within {} s: paged {person} again (repeat {repeat} of {total}{last_word}).",
            level.ack_within_s
        );
        let moved = control.state.repeat_page(page.id, repeat, &person, now);
        (moved, "page.repeat", message)
    } else {
        let message = format!(
            "Not acknowledged within {} s: escalated to level {}, paged {person}.",
            level.ack_within_s,
            next + 1
        );
        let moved = control.state.escalate_page(page.id, next, &person, now);
        (moved, "page.escalate", message)
    };
    if let Ok(true) = moved
        && let Ok(Some(moved)) = control.state.page(page.id)
    {
        record(control, &moved, "control-plane", action, &message, now);
        send::send(control, pager, &moved, incident, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pager() -> Pager {
        let config: OnCall = toml::from_str(
            r#"
            public_url = "https://ops.example.com/"
            [[person]]
            name = "ana"
            [[schedule]]
            name = "primary"
            timezone = "UTC"
            handoff = "09:00"
            start = "2026-01-05"
            people = ["ana"]
            [[escalation]]
            schedule = "primary"
            ack_within_s = 60
            "#,
        )
        .unwrap();
        Pager::new(
            config,
            "a-page-key-of-the-server",
            "http://127.0.0.1:8080",
            None,
        )
        .unwrap()
    }

    fn parse(url: &str) -> Link {
        let (path, query) = url.split_once('?').unwrap();
        let mut parts = path.rsplit('/');
        let action = parts.next().unwrap().to_owned();
        let page = parts.next().unwrap().parse().unwrap();
        let field = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap()
                .to_owned()
        };
        Link {
            page,
            action,
            person: field("person"),
            level: field("level").parse().unwrap(),
            expires_ms: field("expires_ms").parse().unwrap(),
            signature: field("signature"),
        }
    }

    #[test]
    fn links_are_signed_expire_and_cannot_be_bent() {
        let pager = pager();
        let url = pager.link(4, "ack", "ana", 0, 1_000);
        assert!(url.starts_with(
            "https://ops.example.com/pages/4/ack?person=ana&level=0&expires_ms=86401000&signature="
        ));
        let link = parse(&url);
        assert_eq!(pager.verify(&link, 2_000), Ok(()));
        assert_eq!(pager.verify(&link, 86_401_000), Err(LinkError::Expired));
        for bent in [
            Link {
                action: "resolve".into(),
                ..link.clone()
            },
            Link {
                page: 5,
                ..link.clone()
            },
            Link {
                person: "mallory".into(),
                ..link.clone()
            },
            Link {
                expires_ms: link.expires_ms + 1,
                ..link.clone()
            },
            Link {
                signature: "00".repeat(32),
                ..link.clone()
            },
            Link {
                signature: "not hex".into(),
                ..link.clone()
            },
        ] {
            assert_eq!(
                pager.verify(&bent, 2_000),
                Err(LinkError::Forged),
                "{bent:?}"
            );
        }
        let other_key = Pager::new(pager.config.clone(), "another-key", "http://x", None).unwrap();
        assert_eq!(other_key.verify(&link, 2_000), Err(LinkError::Forged));
    }
}
