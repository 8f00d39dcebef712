//! What every answer carries: the security headers.

use super::{Auditor, Status};
use crate::http::{Answer, Call};

impl Auditor {
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

    pub(super) async fn headers(&mut self, player_token: &str) {
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
        // The status feed is public: players read it.
        if let Some(control) = &self.targets.control {
            probes.push((format!("{control}/api/v1/status"), None, Status::Fail));
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
}
