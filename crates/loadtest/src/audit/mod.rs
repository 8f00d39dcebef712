//! `croupier audit`: a security sweep of a running deployment. Each check talks to the real
//! addresses and passes, fails, warns or is skipped with a reason:
//!
//! - the ops APIs (node `/ops`, gateway `/admin`, control plane) refuse requests without a
//!   token, with a wrong one, and with a player's token, block a guesser, and keep it blocked
//!   when it names another client in `X-Forwarded-For`;
//! - none of them accepts a default or well-known token, and the ops token given to the audit
//!   is long and random enough;
//! - TLS where other hosts can reach an address; on every HTTPS address TLS 1.2+ only, no
//!   plain HTTP, a trusted certificate valid for two more weeks, HSTS;
//! - security headers on the players' answers (nosniff, frame denial, referrer policy,
//!   `Cache-Control: no-store`; HSTS only with TLS);
//! - the per-player rate limit answers 429 under a burst;
//! - oversized bodies and headers get 413/431, malformed requests 4xx with a JSON error, and
//!   none of them moves money;
//! - one player cannot read or act on another's round, nor move their money;
//! - the players' port forwards only the player API, every server cuts a client that sends
//!   its headers a byte at a time, one player's WebSockets are capped, and (on the
//!   deployment's host) the data folder is private to its owner;
//! - the dashboard's cookie is a session id, not the token; a cross-site change posted
//!   with it is refused; sign-out ends the session;
//! - the operator's cashier API is not on the players' port, and refuses (moving nothing) a
//!   call without its credential, with a player's token or with the ops token;
//! - (on the host of a SQLite ledger) no unrevealed server seed is stored in clear; one
//!   player's sessions are capped (the oldest revoked); a scanner of the players' port gets
//!   blocked (checked last: the probe's address stays blocked for a while), and naming
//!   another client in `X-Forwarded-For` does not lift the block.

mod cashier;
mod dashboard;
mod doors;
mod forwarded;
mod input;
mod isolation;
mod launch;
mod locks;
mod surface;
mod tls;
mod tokens;

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::error::LoadError;
use crate::http::{Answer, Call, HttpClient};

pub use tokens::{WELL_KNOWN_TOKENS, estimated_bits, weakness};

#[derive(Debug, Clone)]
pub struct AuditTargets {
    /// The players' address (gateway).
    pub gateway: String,
    /// The gateway's admin address.
    pub admin: Option<String>,
    pub nodes: Vec<String>,
    pub control: Option<String>,
    /// The deployment's ops token, when the auditor has it (rates its strength).
    pub ops_token: Option<String>,
    /// Requests in the rate-limit burst.
    pub burst: usize,
    /// The operator's launch key, when the auditor has it: its probe players sign in with
    /// launch tokens, and expiry, replay and currency are checked too.
    pub launch_key: Option<LaunchKey>,
    /// The ledger's currency, for those tokens.
    pub currency: String,
    /// The deployment's data folder, when the audit runs on its host (modes are checked).
    pub data: Option<std::path::PathBuf>,
    /// What the audit trusts and presents at `https://` addresses (nodes ask for a client
    /// certificate under mutual TLS).
    pub tls: croupier_web::tls::ClientFiles,
}

/// The operator's signing key, shown in debug output without its secret.
#[derive(Clone)]
pub struct LaunchKey(pub std::sync::Arc<croupier_web::launch::SigningKey>);

impl std::fmt::Debug for LaunchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LaunchKey(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Warn,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub target: String,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub ok: bool,
    pub passed: usize,
    pub failed: usize,
    pub findings: Vec<Finding>,
}

struct Auditor {
    http: HttpClient,
    targets: AuditTargets,
    findings: Vec<Finding>,
}

impl Auditor {
    fn note(
        &mut self,
        check: &'static str,
        target: &str,
        status: Status,
        detail: impl Into<String>,
    ) {
        self.findings.push(Finding {
            check,
            target: target.to_owned(),
            status,
            detail: detail.into(),
        });
    }

    async fn send(&self, call: Call<'_>) -> Result<Answer, LoadError> {
        self.http.send(0, call).await
    }

    async fn sign_in(&self, name: &str) -> Result<String, LoadError> {
        self.sign_in_for(name, 300).await
    }

    /// A sign-in whose launch token (if the audit signs them) lives `ttl_s`: each lifetime
    /// makes another token id, so one player can sign in several times.
    async fn sign_in_for(&self, name: &str, ttl_s: i64) -> Result<String, LoadError> {
        let url = format!("{}/api/v1/sessions", self.targets.gateway);
        let body = match self.launch_token(name, ttl_s, None) {
            Some(token) => json!({ "launch_token": token }),
            None => json!({ "player": name }),
        };
        let answer = self.send(Call::post(&url, &body)).await?;
        answer.json()["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LoadError::Http {
                url,
                reason: format!("sign-in answered {} {}", answer.status, answer.json()),
            })
    }

    async fn balance(&self, token: &str) -> Option<i64> {
        let url = format!("{}/api/v1/wallet", self.targets.gateway);
        self.send(Call::get(url).token(token)).await.ok()?.json()["balance"].as_i64()
    }

    /// The operator-only URLs of the deployment, one per surface.
    fn ops_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self
            .targets
            .nodes
            .iter()
            .map(|n| format!("{n}/ops/drain"))
            .collect();
        if let Some(admin) = &self.targets.admin {
            urls.push(format!("{admin}/admin/nodes"));
        }
        if let Some(control) = &self.targets.control {
            urls.push(format!("{control}/api/v1/incidents"));
        }
        urls
    }
}

/// Runs every check against the deployment.
pub async fn run(targets: AuditTargets) -> Result<AuditReport, LoadError> {
    let mut auditor = Auditor {
        http: HttpClient::with_tls(1, Duration::from_secs(10), &targets.tls)?,
        targets,
        findings: Vec::new(),
    };
    let stamp = crate::run::default_prefix();
    let alice_name = format!("audit-{stamp}-a");
    let alice = auditor.sign_in(&alice_name).await?;
    let mallory = auditor.sign_in(&format!("audit-{stamp}-b")).await?;
    let burst = auditor.sign_in(&format!("audit-{stamp}-c")).await?;
    // Before the guessing checks get this address blocked on the control plane.
    auditor.dashboard_sessions().await;
    // Before `ops_auth`, which gets the auditor's address blocked on the nodes' lockout.
    auditor.cashier_closed(&alice_name, &alice, &stamp).await;
    auditor.ops_auth(&mallory).await;
    auditor.tls().await;
    auditor.headers(&alice).await;
    auditor.bad_input(&mallory).await;
    auditor.isolation(&alice, &mallory).await;
    auditor.rate_limit(&burst).await;
    auditor.launch_tokens(&stamp).await;
    let sockets = auditor.sign_in(&format!("audit-{stamp}-d")).await?;
    auditor.players_port_paths().await;
    auditor.websocket_cap(&sockets).await;
    auditor.slow_clients().await;
    auditor.data_modes();
    auditor.seeds_sealed();
    auditor.session_cap(&format!("audit-{stamp}-e")).await;
    auditor.scanning_blocked().await;
    let failed = auditor
        .findings
        .iter()
        .filter(|f| f.status == Status::Fail)
        .count();
    let passed = auditor
        .findings
        .iter()
        .filter(|f| f.status == Status::Pass)
        .count();
    Ok(AuditReport {
        ok: failed == 0,
        passed,
        failed,
        findings: auditor.findings,
    })
}

/// The report as a table for a terminal.
pub fn table(report: &AuditReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<22} {:<48} detail",
        "status", "check", "target"
    );
    for f in &report.findings {
        let status = match f.status {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Warn => "warn",
            Status::Skip => "skip",
        };
        let _ = writeln!(
            out,
            "{status:<6} {:<22} {:<48} {}",
            f.check, f.target, f.detail
        );
    }
    let _ = writeln!(out, "{} passed, {} failed", report.passed, report.failed);
    out
}
