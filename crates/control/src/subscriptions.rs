//! Status-page subscriptions: players (or partners) subscribe an e-mail address or a webhook
//! to some components (or all), confirm with a signed link sent there, and from then on get
//! each public incident line (opened, updates, resolved) and each maintenance announcement
//! of those components, every message with a signed unsubscribe link. E-mail goes through
//! SMTP (`mail`: lettre, rustls); webhooks get JSON through `notify::send`. Links are HMAC-SHA256
//! with the control plane's link key; addresses are shown to operators only. News goes to
//! `SENDS_AT_ONCE` subscribers at a time, each send bounded, so a subscriber whose receiver
//! stalls (anyone can subscribe a webhook) delays no one else's news.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use crate::Control;
use crate::mail::Mailer;
use crate::state::Incident;
use crate::state_subscriptions::Subscriber;

/// `[subscriptions]` of the deployment file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsConfig {
    /// The SMTP server: `smtp://host:port` (plain, a local relay), `smtp://host?tls=required`
    /// (STARTTLS) or `smtps://host` (TLS), with `user:password@` if it needs them.
    pub smtp_url: Option<String>,
    /// The sender of the messages.
    #[serde(default = "sender")]
    pub from: String,
    /// The status page's address as players reach it: the base of the links.
    pub public_url: Option<String>,
    /// Webhooks may be plain http:// URLs (tests, a closed network). Off by default: only
    /// https://, so a stranger cannot make the control plane post to services beside it.
    #[serde(default)]
    pub allow_http_webhooks: bool,
}

fn sender() -> String {
    "Croupier status <status@localhost>".into()
}

/// Subscribers sent one piece of news at once.
const SENDS_AT_ONCE: usize = 8;

/// Subscription requests admitted per minute from one requester (an IPv4 address, an IPv6
/// /64): enough for a person, and a flood from one requester is refused before it spends any
/// of everyone's share below.
const REQUESTS_PER_REQUESTER_PER_MINUTE: u32 = 5;
/// Subscription requests admitted per minute from everyone together: bounds the confirmation
/// messages many requesters at once can have sent to addresses that never asked.
const REQUESTS_PER_MINUTE: u32 = 60;
/// Requesters the per-requester limit remembers before it forgets those whose minute has passed.
const REQUESTERS_KEPT: usize = 10_000;

pub struct Subscriptions {
    mailer: Option<Mailer>,
    per_requester: governor::DefaultKeyedRateLimiter<IpAddr>,
    everyone: governor::DefaultDirectRateLimiter,
    allow_http_webhooks: bool,
    key: Vec<u8>,
    public_url: String,
}

/// Who a request counts against: an IPv4 address, or an IPv6 address's /64 (the block one
/// subscriber line is given, so one caller cannot take a fresh share per address).
fn requester(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// What a message says: a subject and a text.
pub struct News {
    pub components: Vec<String>,
    pub subject: String,
    pub text: String,
}

impl Subscriptions {
    pub fn new(
        config: &SubscriptionsConfig,
        key: &str,
        default_url: &str,
    ) -> Result<Subscriptions, String> {
        let mailer = match &config.smtp_url {
            Some(url) => Some(Mailer::new(url, &config.from, "subscriptions")?),
            None => None,
        };
        let public_url = config.public_url.as_deref().unwrap_or(default_url);
        let per_minute = |n| governor::Quota::per_minute(NonZeroU32::new(n).expect("not zero"));
        Ok(Subscriptions {
            mailer,
            per_requester: governor::RateLimiter::keyed(per_minute(
                REQUESTS_PER_REQUESTER_PER_MINUTE,
            )),
            everyone: governor::RateLimiter::direct(per_minute(REQUESTS_PER_MINUTE)),
            allow_http_webhooks: config.allow_http_webhooks,
            key: key.as_bytes().to_vec(),
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Whether one more subscription request from `address` may go through now: within its
    /// requester's share first, so a refused flood spends nothing of everyone's.
    pub fn admit(&self, address: IpAddr) -> bool {
        if self.per_requester.len() >= REQUESTERS_KEPT {
            self.per_requester.retain_recent();
        }
        self.per_requester.check_key(&requester(address)).is_ok() && self.everyone.check().is_ok()
    }

    /// Whether a webhook URL may be subscribed.
    pub fn webhook_allowed(&self, url: &str) -> bool {
        url.starts_with("https://") || (self.allow_http_webhooks && url.starts_with("http://"))
    }

    /// Whether e-mail subscriptions can be served.
    pub fn has_mail(&self) -> bool {
        self.mailer.is_some()
    }

    fn signature(&self, action: &str, subscriber: &Subscriber) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(
            format!(
                "subscription|{action}|{}|{}|{}",
                subscriber.id, subscriber.address, subscriber.created_ms
            )
            .as_bytes(),
        );
        hex::encode(mac.finalize().into_bytes())
    }

    /// A subscriber's confirm or unsubscribe link.
    pub fn link(&self, action: &str, subscriber: &Subscriber) -> String {
        format!(
            "{}/subscriptions/{}/{action}?signature={}",
            self.public_url,
            subscriber.id,
            self.signature(action, subscriber)
        )
    }

    /// Checks a link's signature in constant time.
    pub fn verify(&self, action: &str, subscriber: &Subscriber, signature: &str) -> bool {
        croupier_web::same_token(signature, &self.signature(action, subscriber))
    }

    /// Sends `subject` and `text` to one subscriber (e-mail or webhook); false on failure.
    pub async fn send(
        &self,
        control: &Control,
        to: &Subscriber,
        subject: &str,
        text: &str,
    ) -> bool {
        if to.kind == "webhook" {
            let payload = json!({"subject": subject, "text": text,
                                 "unsubscribe_url": self.link("unsubscribe", to)});
            return crate::notify::send(&control.client, &to.address, &payload).await;
        }
        match &self.mailer {
            Some(mailer) => mailer.send(&to.address, subject, text).await,
            None => false,
        }
    }

    /// Asks a new subscriber to confirm.
    pub async fn ask_to_confirm(&self, control: &Control, to: &Subscriber) -> bool {
        let text = format!(
            "Someone (we hope you) asked for news of the Croupier status page at this address.\n\n\
             Confirm: {}\n\nIf it was not you, ignore this message; nothing will be sent.\n",
            self.link("confirm", to)
        );
        self.send(
            control,
            to,
            "Confirm your Croupier status subscription",
            &text,
        )
        .await
    }

    /// Sends `news` to every confirmed subscriber who chose one of its components.
    pub async fn tell(&self, control: &Control, news: &News) {
        let Ok(subscribers) = control.state.subscribers(true) else {
            return;
        };
        let components: Vec<&str> = news.components.iter().map(String::as_str).collect();
        let wanting = subscribers.iter().filter(|s| s.wants(&components));
        futures_util::stream::iter(wanting)
            .for_each_concurrent(SENDS_AT_ONCE, |to| async move {
                let text = format!(
                    "{}\n\nUnsubscribe: {}\n",
                    news.text,
                    self.link("unsubscribe", to)
                );
                self.send(control, to, &news.subject, &text).await;
            })
            .await;
    }
}

/// The components an incident touches (an incident on `games` touches every game).
fn components_of(incident: &Incident) -> Vec<String> {
    if incident.component == "games" {
        crate::catalog::GAMES
            .iter()
            .map(|g| (*g).to_owned())
            .collect()
    } else {
        vec![incident.component.clone()]
    }
}

/// Sends every public timeline line written since the last round to the subscribers of its
/// incident's components (a task: slow mail never holds the monitor loop).
pub fn deliver(control: &Arc<Control>) {
    let Some(subscriptions) = &control.config.subscriptions else {
        return;
    };
    let Ok(lines) = control.state.undelivered_lines() else {
        return;
    };
    if lines.is_empty() {
        return;
    }
    let Ok(incidents) = control.state.incidents(false) else {
        return;
    };
    let all_news: Vec<News> = lines
        .iter()
        .filter_map(|(line, incident_id)| {
            let incident = incidents.iter().find(|i| i.id == *incident_id)?;
            subscriptions.news_of(incident, *line, control)
        })
        .collect();
    let control = control.clone();
    tokio::spawn(async move {
        if let Some(subscriptions) = &control.config.subscriptions {
            for news in &all_news {
                subscriptions.tell(&control, news).await;
            }
        }
    });
}

impl Subscriptions {
    /// The news a timeline line makes, if players may see it: a public line of an incident
    /// on one of their components (never one on an operators' component, such as security).
    pub(crate) fn news_of(
        &self,
        incident: &Incident,
        line: i64,
        control: &Control,
    ) -> Option<News> {
        crate::catalog::players_name(&incident.component)?;
        let update = control.state.timeline_line(line).ok()??;
        if !update.is_public() {
            return None;
        }
        Some(News {
            components: components_of(incident),
            subject: format!("[Croupier status] {} ({})", incident.title, update.status),
            text: format!(
                "{} on {}: {}\n{}\n\nStatus page: {}/status",
                incident.title, incident.component, update.status, update.message, self.public_url
            ),
        })
    }

    /// A maintenance announcement's news.
    pub fn maintenance_news(window: &crate::maintenance::Window, message: &str) -> News {
        News {
            components: window
                .scope
                .components()
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            subject: format!("[Croupier status] Scheduled maintenance: {}", window.title),
            text: message.to_owned(),
        }
    }
}
