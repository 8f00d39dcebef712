//! Who may open a player session. Outside demo mode only a launch token the operator signed
//! does; the audit holds no operator key, so it tries what an attacker can: a name alone (in
//! demo mode that works, which is reported as a warning: play money, never real money), an
//! unsigned token (`alg: none`), tokens signed with guessed secrets under a usual and an
//! unknown `kid`, and garbage. Every one of those must get a 401. Given the operator's key
//! (`--launch-key`, or the first of `<data>/launch-keys`), it also signs tokens that are valid
//! but expired, for another currency, or already used, which must get a 401 too.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use croupier_web::launch::{SigningKey, claims_for};
use serde_json::json;

use super::{Auditor, Status};
use crate::http::Call;

/// Forged launch tokens for `player`, each with what it is.
fn forgeries(player: &str, currency: &str) -> Vec<(&'static str, String)> {
    let claims = claims_for(player, currency, 300, format!("{player}-forged"));
    let payload = URL_SAFE_NO_PAD.encode(json!(claims).to_string());
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"operator"}"#);
    let mut tokens = vec![
        (
            "an unsigned token (alg none)",
            format!("{none_header}.{payload}."),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, kid) in [
        ("a guessed secret, kid 'operator'", "operator"),
        ("a guessed secret, an unknown kid", "audit-unknown-kid"),
    ] {
        if let Ok(token) = SigningKey::hs256(kid, b"changemechangemechangemechangeme").sign(&claims)
        {
            tokens.push((what, token));
        }
    }
    tokens
}

impl Auditor {
    /// A launch token for `player` signed with the operator's key, if the auditor has it.
    pub(super) fn launch_token(
        &self,
        player: &str,
        ttl_s: i64,
        currency: Option<&str>,
    ) -> Option<String> {
        let key = &self.targets.launch_key.as_ref()?.0;
        let currency = currency.unwrap_or(&self.targets.currency);
        let jti = format!("{player}-{ttl_s}-{currency}");
        key.sign(&claims_for(player, currency, ttl_s, jti)).ok()
    }

    /// Valid signatures on tokens that must still be refused: expired, foreign, replayed.
    async fn signed_refusals(&mut self, url: &str, stamp: &str) {
        let player = format!("audit-{stamp}-signed");
        if self.targets.launch_key.is_none() {
            self.note(
                "signed_launch_tokens",
                url,
                Status::Skip,
                "skipped: no launch key given",
            );
            return;
        }
        let fresh = self.launch_token(&player, 290, None);
        let tokens = vec![
            ("an expired token", self.launch_token(&player, -5, None)),
            (
                "a token for another currency",
                self.launch_token(&player, 300, Some("XTS")),
            ),
            ("a replayed token", fresh.clone()),
        ];
        // Use the fresh token once first, so that sending it again is a replay.
        if let Some(token) = &fresh {
            let _ = self
                .send(Call::post(url, &json!({"launch_token": token})))
                .await;
        }
        let tokens = tokens
            .into_iter()
            .filter_map(|(what, token)| token.map(|t| (what, t)));
        let let_in = self.not_refused(url, tokens).await;
        if let_in.is_empty() {
            self.note(
                "signed_launch_tokens",
                url,
                Status::Pass,
                "expired, foreign-currency and replayed tokens get 401",
            );
        } else {
            self.note("signed_launch_tokens", url, Status::Fail, let_in.join("; "));
        }
    }

    pub(super) async fn launch_tokens(&mut self, stamp: &str) {
        let url = format!("{}/api/v1/sessions", self.targets.gateway);
        let player = format!("audit-{stamp}-forged");
        match self.send(Call::post(&url, &json!({"player": player}))).await {
            Ok(a) if a.status == 201 => self.note(
                "launch_token_required",
                &url,
                Status::Warn,
                "demo mode: anyone signs in by name alone and gets play money; never for real money",
            ),
            Ok(a) if a.status == 401 => self.note(
                "launch_token_required",
                &url,
                Status::Pass,
                "a name alone is refused: sessions need the operator's launch token",
            ),
            Ok(a) => self.note(
                "launch_token_required",
                &url,
                Status::Fail,
                format!("a name alone got {}", a.status),
            ),
            Err(e) => self.note("launch_token_required", &url, Status::Fail, e.to_string()),
        }
        let let_in = self.not_refused(&url, forgeries(&player, "EUR")).await;
        if let_in.is_empty() {
            self.note(
                "forged_launch_tokens",
                &url,
                Status::Pass,
                "unsigned, guessed-secret and garbage launch tokens get 401",
            );
        } else {
            self.note(
                "forged_launch_tokens",
                &url,
                Status::Fail,
                let_in.join("; "),
            );
        }
        self.signed_refusals(&url, stamp).await;
    }

    /// Signs in with each token at `url`; what was not refused with a 401, and its answer.
    async fn not_refused<W: std::fmt::Display>(
        &mut self,
        url: &str,
        tokens: impl IntoIterator<Item = (W, String)>,
    ) -> Vec<String> {
        let mut let_in = Vec::new();
        for (what, token) in tokens {
            match self
                .send(Call::post(url, &json!({"launch_token": token})))
                .await
            {
                Ok(a) if a.status == 401 => {}
                Ok(a) => let_in.push(format!("{what} got {}", a.status)),
                Err(e) => let_in.push(format!("{what}: {e}")),
            }
        }
        let_in
    }
}
