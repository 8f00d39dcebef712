//! `croupier audit`: a security sweep of a running deployment. Each check talks to the real
//! addresses and passes, fails, warns or is skipped with a reason:
//!
//! - the ops APIs (node `/ops`, gateway `/admin`, control plane) refuse requests without a
//!   token, with a wrong one, and with a player's token;
//! - none of them accepts a default or well-known token, and the ops token given to the audit
//!   is long and random enough;
//! - TLS settings where TLS is on (Croupier serves plain HTTP today: skipped, said so);
//! - security headers on the players' answers (nosniff, frame denial, referrer policy,
//!   `Cache-Control: no-store`; HSTS only with TLS);
//! - the per-player rate limit answers 429 under a burst;
//! - oversized bodies and headers get 413/431, malformed requests 4xx with a JSON error, and
//!   none of them moves money;
//! - one player cannot read or act on another's round, nor move their money.

mod input;
mod isolation;
mod surface;
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
        let url = format!("{}/api/v1/sessions", self.targets.gateway);
        let answer = self
            .send(Call::post(&url, &json!({"player": name})))
            .await?;
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
        http: HttpClient::new(1, Duration::from_secs(10)),
        targets,
        findings: Vec::new(),
    };
    let stamp = crate::run::default_prefix();
    let alice = auditor.sign_in(&format!("audit-{stamp}-a")).await?;
    let mallory = auditor.sign_in(&format!("audit-{stamp}-b")).await?;
    let burst = auditor.sign_in(&format!("audit-{stamp}-c")).await?;
    auditor.ops_auth(&mallory).await;
    auditor.tls();
    auditor.headers(&alice).await;
    auditor.bad_input(&mallory).await;
    auditor.isolation(&alice, &mallory).await;
    auditor.rate_limit(&burst).await;
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
