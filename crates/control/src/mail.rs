//! E-mail out of the control plane: one SMTP transport (lettre over rustls) and a sender,
//! shared by what mails people — status-page subscribers (`subscriptions`) and the people on
//! call (`paging`) — so both speak to the SMTP server the same way and log failures alike.
//! A message is bounded whole (`SEND_LIMIT`): lettre's own timeout covers connecting only, and
//! a relay that accepts and then never greets or answers would hold its sender forever.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Longest time one message may take, from connecting to the relay's last answer.
pub const SEND_LIMIT: Duration = Duration::from_secs(30);

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// `smtp_url`: `smtp://host:port` (plain, a local relay), `smtp://host?tls=required`
    /// (STARTTLS) or `smtps://host` (TLS), with `user:password@` if it needs them. `what`
    /// names the setting in errors (e.g. `subscriptions`).
    pub fn new(smtp_url: &str, from: &str, what: &str) -> Result<Mailer, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| format!("{what}.smtp_url: {e}"))?
            .build();
        let from = from
            .parse()
            .map_err(|e| format!("{what}.from '{from}': {e}"))?;
        Ok(Mailer { transport, from })
    }

    /// Sends a plain-text message to `to`; false (and a warning in the log) on failure.
    pub async fn send(&self, to: &str, subject: &str, text: &str) -> bool {
        let Ok(address) = to.parse::<Mailbox>() else {
            tracing::warn!("cannot send an e-mail to an address that does not parse");
            return false;
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(address)
            .subject(subject)
            .body(text.to_owned());
        match message {
            Ok(message) => {
                match tokio::time::timeout(SEND_LIMIT, self.transport.send(message)).await {
                    Ok(Ok(_)) => true,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot send an e-mail");
                        false
                    }
                    Err(_) => {
                        tracing::warn!(
                            limit_s = SEND_LIMIT.as_secs(),
                            "cannot send an e-mail: the SMTP server did not finish in time"
                        );
                        false
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot build an e-mail");
                false
            }
        }
    }
}
