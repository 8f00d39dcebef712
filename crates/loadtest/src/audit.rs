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

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::LoadError;
use crate::http::{Answer, Call, HttpClient};

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

/// Tokens an attacker tries first: defaults, placeholders, the test suite's token.
pub const WELL_KNOWN_TOKENS: [&str; 12] = [
    "admin",
    "changeme",
    "secret",
    "token",
    "password",
    "croupier",
    "ops-token",
    "test-ops-token-0123456789abcdef0123456789",
    "00000000000000000000000000000000",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "changemechangemechangemechangeme",
    "0123456789abcdef0123456789abcdef",
];

/// Bits of entropy a token's characters suggest: length times the Shannon entropy of its
/// character distribution. A random hex token of 64 characters scores about 256.
pub fn estimated_bits(token: &str) -> f64 {
    let mut counts = std::collections::BTreeMap::new();
    for c in token.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = token.chars().count() as f64;
    let per_char: f64 = counts
        .values()
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.log2()
        })
        .sum();
    per_char * n
}

/// Why a token is weak, if it is.
pub fn weakness(token: &str) -> Option<String> {
    if WELL_KNOWN_TOKENS.contains(&token) {
        return Some("it is a well-known default".into());
    }
    if token.len() < 32 {
        return Some(format!("it has {} characters, fewer than 32", token.len()));
    }
    let bits = estimated_bits(token);
    (bits < 128.0).then(|| format!("its characters carry about {bits:.0} bits, fewer than 128"))
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

    async fn ops_auth(&mut self, player_token: &str) {
        for url in self.ops_urls() {
            let attempts = [
                ("no token", None),
                (
                    "a wrong token",
                    Some("wrong-token-wrong-token-wrong-token-0000"),
                ),
                ("a player's token", Some(player_token)),
            ];
            let mut let_in = Vec::new();
            let mut unreachable = None;
            for (what, token) in attempts {
                let mut call = Call::get(&url);
                call.token = token;
                match self.send(call).await {
                    Ok(a) if a.is_success() => let_in.push(format!("{what} got {}", a.status)),
                    Ok(_) => {}
                    Err(e) => unreachable = Some(e.to_string()),
                }
            }
            match (unreachable, let_in.is_empty()) {
                (Some(e), _) => self.note(
                    "ops_api_needs_token",
                    &url,
                    Status::Fail,
                    format!("could not be checked: {e}"),
                ),
                (None, true) => self.note(
                    "ops_api_needs_token",
                    &url,
                    Status::Pass,
                    "refused without a token, with a wrong one and with a player's",
                ),
                (None, false) => {
                    self.note("ops_api_needs_token", &url, Status::Fail, let_in.join("; "))
                }
            }
            let mut accepted = Vec::new();
            for token in WELL_KNOWN_TOKENS {
                if let Ok(a) = self.send(Call::get(&url).token(token)).await
                    && a.is_success()
                {
                    accepted.push(token);
                }
            }
            if accepted.is_empty() {
                self.note(
                    "no_default_tokens",
                    &url,
                    Status::Pass,
                    format!(
                        "none of {} well-known tokens is accepted",
                        WELL_KNOWN_TOKENS.len()
                    ),
                );
            } else {
                self.note(
                    "no_default_tokens",
                    &url,
                    Status::Fail,
                    format!("accepts the well-known token(s) {accepted:?}"),
                );
            }
        }
        match self.targets.ops_token.clone() {
            None => self.note(
                "ops_token_strength",
                "ops token",
                Status::Skip,
                "no token given to the audit (--ops-token or --data)",
            ),
            Some(token) => match weakness(&token) {
                None => self.note(
                    "ops_token_strength",
                    "ops token",
                    Status::Pass,
                    format!(
                        "{} characters, about {:.0} bits",
                        token.len(),
                        estimated_bits(&token)
                    ),
                ),
                Some(why) => self.note(
                    "ops_token_strength",
                    "ops token",
                    Status::Fail,
                    format!("weak: {why}"),
                ),
            },
        }
    }

    fn tls(&mut self) {
        let mut all: Vec<String> = vec![self.targets.gateway.clone()];
        all.extend(self.targets.nodes.iter().cloned());
        all.extend(self.targets.admin.iter().cloned());
        all.extend(self.targets.control.iter().cloned());
        let plain = all.iter().filter(|u| u.starts_with("http://")).count();
        self.note(
            "tls",
            "all",
            Status::Skip,
            format!("skipped: TLS off ({plain} of {} addresses are plain http; croupier does not terminate TLS yet, so there are no TLS settings or HSTS to check)", all.len()),
        );
    }

    fn header_problems(answer: &Answer) -> Vec<String> {
        let mut problems = Vec::new();
        if !answer
            .header("x-content-type-options")
            .is_some_and(|v| v.eq_ignore_ascii_case("nosniff"))
        {
            problems.push("X-Content-Type-Options: nosniff is missing".to_owned());
        }
        let frame_denied = answer
            .header("x-frame-options")
            .is_some_and(|v| ["deny", "sameorigin"].contains(&v.to_ascii_lowercase().as_str()))
            || answer
                .header("content-security-policy")
                .is_some_and(|v| v.contains("frame-ancestors"));
        if !frame_denied {
            problems.push("neither X-Frame-Options nor CSP frame-ancestors".to_owned());
        }
        if answer.header("referrer-policy").is_none() {
            problems.push("Referrer-Policy is missing".to_owned());
        }
        if !answer
            .header("cache-control")
            .is_some_and(|v| v.contains("no-store"))
        {
            problems.push("Cache-Control: no-store is missing".to_owned());
        }
        problems
    }

    async fn headers(&mut self, player_token: &str) {
        let mut probes: Vec<(String, Option<String>, Status)> = vec![
            (
                format!("{}/api/v1/lobby", self.targets.gateway),
                Some(player_token.to_owned()),
                Status::Fail,
            ),
            (
                format!("{}/api/v1/no-such-route", self.targets.gateway),
                None,
                Status::Fail,
            ),
        ];
        probes.extend(self.targets.nodes.iter().map(|n| {
            (
                format!("{n}/api/v1/lobby"),
                Some(player_token.to_owned()),
                Status::Fail,
            )
        }));
        if let Some(admin) = &self.targets.admin {
            probes.push((format!("{admin}/admin/nodes"), None, Status::Fail));
        }
        // The control plane is not a players' surface; missing headers there are a warning.
        if let Some(control) = &self.targets.control {
            probes.push((format!("{control}/api/v1/status"), None, Status::Warn));
        }
        for (url, token, severity) in probes {
            let mut call = Call::get(&url);
            call.token = token.as_deref();
            match self.send(call).await {
                Ok(answer) => {
                    let problems = Self::header_problems(&answer);
                    if problems.is_empty() {
                        self.note(
                            "security_headers",
                            &url,
                            Status::Pass,
                            format!(
                                "{}: nosniff, frame denial, referrer policy, no-store",
                                answer.status
                            ),
                        );
                    } else {
                        self.note("security_headers", &url, severity, problems.join("; "));
                    }
                }
                Err(e) => self.note("security_headers", &url, Status::Fail, e.to_string()),
            }
        }
    }

    async fn rate_limit(&mut self, token: &str) {
        let url = format!("{}/api/v1/lobby", self.targets.gateway);
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = self.targets.burst.div_ceil(32);
        for _ in 0..32 {
            let (http, url, token) = (self.http.clone(), url.clone(), token.to_owned());
            tasks.spawn(async move {
                let mut limited = 0usize;
                for _ in 0..per_task {
                    if let Ok(a) = http.send(0, Call::get(&url).token(&token)).await
                        && a.status == 429
                    {
                        limited += 1;
                    }
                }
                limited
            });
        }
        let limited: usize = tasks.join_all().await.into_iter().sum();
        let sent = per_task * 32;
        if limited > 0 {
            self.note(
                "rate_limit_enforced",
                &url,
                Status::Pass,
                format!("{limited} of {sent} requests from one player in a burst got 429"),
            );
        } else {
            self.note(
                "rate_limit_enforced",
                &url,
                Status::Fail,
                format!("none of {sent} requests from one player in a burst was limited"),
            );
        }
    }

    async fn expect_refusal(
        &mut self,
        check: &'static str,
        what: &str,
        call: Call<'_>,
        statuses: &[u16],
    ) {
        let url = call.url.clone();
        match self.send(call).await {
            Ok(a)
                if statuses.contains(&a.status)
                    && a.json()["error"].is_string()
                    && a.json()["message"].is_string() =>
            {
                self.note(
                    check,
                    &url,
                    Status::Pass,
                    format!("{what}: {} {}", a.status, a.json()["error"]),
                )
            }
            Ok(a) => self.note(
                check,
                &url,
                Status::Fail,
                format!(
                    "{what}: expected {statuses:?} with a JSON error, got {} {}",
                    a.status,
                    a.json()
                ),
            ),
            Err(e) => self.note(check, &url, Status::Fail, format!("{what}: {e}")),
        }
    }

    async fn bad_input(&mut self, token: &str) {
        let before = self.balance(token).await;
        let rounds = format!("{}/api/v1/rounds", self.targets.gateway);
        let big = vec![b'x'; 100 * 1024];
        let mut call = Call::post(&rounds, &Value::Null)
            .token(token)
            .key("audit-big");
        call.body = Some(big.clone());
        self.expect_refusal(
            "oversized_rejected",
            "100 KiB body through the gateway",
            call,
            &[413],
        )
        .await;
        let mut call = Call::get(format!("{}/api/v1/lobby", self.targets.gateway)).token(token);
        call.extra_headers
            .push(("x-padding", "y".repeat(20 * 1024)));
        self.expect_refusal(
            "oversized_rejected",
            "20 KiB of headers through the gateway",
            call,
            &[431],
        )
        .await;
        for node in self.targets.nodes.clone() {
            let mut call = Call::post(format!("{node}/api/v1/rounds"), &Value::Null)
                .token(token)
                .key("audit-big-node");
            call.body = Some(big[..20 * 1024].to_vec());
            self.expect_refusal(
                "oversized_rejected",
                "20 KiB body straight to a node",
                call,
                &[413],
            )
            .await;
        }
        let dice =
            json!({"game": "dice", "stake": 10, "bet": {"target": 5000, "direction": "over"}});
        let mut call = Call::post(&rounds, &Value::Null)
            .token(token)
            .key("audit-bad-json");
        call.body = Some(b"{\"game\": \"dice\", \"stake\": ".to_vec());
        self.expect_refusal("malformed_rejected", "truncated JSON", call, &[400])
            .await;
        let call = Call::post(&rounds, &json!({"game": "dice", "stake": "ten"}))
            .token(token)
            .key("audit-type");
        self.expect_refusal(
            "malformed_rejected",
            "a stake that is not a number",
            call,
            &[422],
        )
        .await;
        let call = Call::post(
            &rounds,
            &json!({"game": "dice", "stake": -10, "bet": dice["bet"]}),
        )
        .token(token)
        .key("audit-neg");
        self.expect_refusal("malformed_rejected", "a negative stake", call, &[422])
            .await;
        let call = Call::post(&rounds, &dice).token(token);
        self.expect_refusal(
            "malformed_rejected",
            "a bet without an Idempotency-Key",
            call,
            &[400],
        )
        .await;
        let call = Call::post(&rounds, &dice)
            .token("not-a-token")
            .key("audit-auth");
        self.expect_refusal(
            "malformed_rejected",
            "a bet with an unknown token",
            call,
            &[401],
        )
        .await;
        let after = self.balance(token).await;
        if before.is_some() && before == after {
            self.note(
                "malformed_rejected",
                &rounds,
                Status::Pass,
                format!("the balance is unchanged ({})", after.unwrap_or(0)),
            );
        } else {
            self.note(
                "malformed_rejected",
                &rounds,
                Status::Fail,
                format!("the balance moved from {before:?} to {after:?}"),
            );
        }
    }

    async fn isolation(&mut self, alice: &str, mallory: &str) {
        let rounds = format!("{}/api/v1/rounds", self.targets.gateway);
        // Alice plays blackjack until she has a round still open (a natural settles at once).
        let mut round = None;
        for i in 0..20 {
            let call = Call::post(&rounds, &json!({"game": "blackjack", "stake": 10})).token(alice);
            let key = format!("audit-bj-{i}");
            if let Ok(a) = self.send(call.key(&key)).await
                && a.is_success()
            {
                let open = a.json()["round"]["status"] == "open";
                round = a.json()["round"]["id"].as_str().map(str::to_owned);
                if open {
                    break;
                }
            }
        }
        let Some(round) = round else {
            self.note(
                "player_isolation",
                &rounds,
                Status::Fail,
                "could not play a round to test with",
            );
            return;
        };
        let alice_before = self.balance(alice).await;
        let mut leaks = Vec::new();
        for path in [
            format!("{rounds}/{round}"),
            format!("{rounds}/{round}/verify"),
        ] {
            if let Ok(a) = self.send(Call::get(&path).token(mallory)).await
                && a.status != 404
            {
                leaks.push(format!(
                    "GET {path} as another player answered {}",
                    a.status
                ));
            }
        }
        for action in ["double", "hit", "stand"] {
            let call = Call::post(
                format!("{rounds}/{round}/actions"),
                &json!({"action": action}),
            )
            .token(mallory);
            let key = format!("audit-steal-{action}");
            if let Ok(a) = self.send(call.key(&key)).await
                && a.status != 404
            {
                leaks.push(format!(
                    "{action} on another player's round answered {}",
                    a.status
                ));
            }
        }
        let spoof = json!({"game": "dice", "stake": 10, "bet": {"target": 5000, "direction": "over"}, "player": "someone-else"});
        if let Ok(a) = self
            .send(
                Call::post(&rounds, &spoof)
                    .token(mallory)
                    .key("audit-spoof"),
            )
            .await
            && a.is_success()
        {
            leaks.push("a bet naming another player in its body was accepted".into());
        }
        if let Ok(a) = self
            .send(Call::get(format!("{rounds}?limit=200")).token(mallory))
            .await
            && a.json().to_string().contains(&round)
        {
            leaks.push("another player's round is listed".into());
        }
        let alice_after = self.balance(alice).await;
        if alice_before.is_none() || alice_before != alice_after {
            leaks.push(format!(
                "the owner's balance moved from {alice_before:?} to {alice_after:?}"
            ));
        }
        if leaks.is_empty() {
            self.note("player_isolation", &rounds, Status::Pass, "another player's round is not found, cannot be acted on, and the owner's balance did not move");
        } else {
            self.note("player_isolation", &rounds, Status::Fail, leaks.join("; "));
        }
        // Leave no round open.
        for i in 0..12 {
            let call = Call::post(
                format!("{rounds}/{round}/actions"),
                &json!({"action": "stand"}),
            )
            .token(alice);
            let key = format!("audit-finish-{i}");
            match self.send(call.key(&key)).await {
                Ok(a) if a.is_success() && a.json()["round"]["status"] == "open" => continue,
                _ => break,
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_tokens_are_named() {
        assert!(weakness("changeme").is_some());
        assert!(weakness("short-but-random-9f8e7d").is_some());
        assert!(
            weakness(&"ab".repeat(20)).is_some(),
            "two characters repeated carry 40 bits"
        );
        assert!(weakness("00000000000000000000000000000000").is_some());
        let random = "3f9c2a7be1d04856a9c7e2f1b0d34e5a6c8b9d0e1f2a3b4c5d6e7f8091a2b3c4";
        assert_eq!(weakness(random), None);
        assert!(estimated_bits(random) > 200.0);
    }
}
