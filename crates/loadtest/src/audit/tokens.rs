//! Who may reach the ops APIs: no token, a wrong one or a player's must be refused, no
//! well-known token may work, and the deployment's own token must be long and random.

use super::{Auditor, Status, forwarded};
use crate::http::Call;

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

/// Wrong tokens the lockout check sends at most before it expects the address blocked.
const GUESSES: usize = 30;

impl Auditor {
    /// After the guesses above (and more, up to `GUESSES`), the auditor's address must be
    /// blocked: the right token refused too, also when the request names another client in
    /// `X-Forwarded-For`. Leaves the address blocked on `url` for a while (a minute by
    /// default), as it would an attacker's.
    async fn lockout(&mut self, url: &str) {
        let Some(token) = self.targets.ops_token.clone() else {
            self.note(
                "credential_lockout",
                url,
                Status::Skip,
                "no ops token given to the audit (--ops-token or --data)",
            );
            return;
        };
        let mut blocked = false;
        for guess in 0..GUESSES {
            let wrong = format!("audit-guess-{guess:04}-{}", "0".repeat(32));
            if let Ok(a) = self.send(Call::get(url).token(&wrong)).await
                && a.status == 429
            {
                blocked = true;
                break;
            }
        }
        let (status, detail) = match self.send(Call::get(url).token(&token)).await {
            Ok(a) if blocked && a.status == 429 => (
                Status::Pass,
                "guessing got this address blocked: the right token is refused too (429), for now"
                    .to_owned(),
            ),
            Ok(a) => (
                Status::Fail,
                format!(
                    "{GUESSES}+ wrong tokens in a row and the right one answered {}: guessing is not throttled",
                    a.status
                ),
            ),
            Err(e) => (Status::Fail, format!("could not be checked: {e}")),
        };
        self.note("credential_lockout", url, status, detail);
        self.spoofed_guess(url, &token, blocked).await;
    }

    /// The blocked guesser sends the right token naming another client (`forwarded`).
    async fn spoofed_guess(&mut self, url: &str, token: &str, blocked: bool) {
        if !blocked {
            let why = "skipped: guessing was not blocked, so there is no block to escape";
            self.note(forwarded::CHECK, url, Status::Skip, why);
            return;
        }
        let mut call = Call::get(url).token(token);
        call.extra_headers.push(forwarded::spoofed_header());
        let answer = self.send(call).await.map_or(0, |a| a.status);
        let (status, detail) = forwarded::verdict("the blocked guesser", answer);
        self.note(forwarded::CHECK, url, status, detail);
    }

    pub(super) async fn ops_auth(&mut self, player_token: &str) {
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
            self.lockout(&url).await;
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
