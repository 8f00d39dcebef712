//! The dashboard's server-side sessions. Signing in with the ops token opens a session: the
//! browser's cookie holds only a random session id (never the token), the control plane
//! keeps its hash, its expiry, who signed in and the session's CSRF token. Signing out
//! revokes it at once. State-changing requests that authenticate by the cookie must carry
//! the session's CSRF token in `X-CSRF-Token` and, when the browser sends an `Origin`, come
//! from this control plane's own origin; requests with a bearer token carry no ambient
//! credential and need neither.
//!
//! Sessions live in the control plane's memory: a restart (or another control plane behind
//! the same address) signs operators out, which costs a sign-in, never access.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// The cookie holding the session id (HttpOnly, SameSite=Strict; Secure over HTTPS).
pub const SESSION_COOKIE: &str = "croupier_session";
/// The header a cookie-authenticated change carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most sessions open at once; opening one more ends the oldest.
pub const MAX_SESSIONS: usize = 256;

/// One signed-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSession {
    /// Who signed in, as they named themselves at sign-in (for the audit log).
    pub name: String,
    pub csrf: String,
    pub expires_ms: i64,
}

#[derive(Default)]
pub struct OperatorSessions {
    /// By the SHA-256 of the session id: a memory dump holds no usable cookie.
    open: Mutex<HashMap<[u8; 32], OperatorSession>>,
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    // The OS's generator; without it there is no safe session to give.
    if getrandom::fill(&mut bytes).is_err() {
        return String::new();
    }
    hex::encode(bytes)
}

impl OperatorSessions {
    /// Opens a session for `name` at `now_ms`: the cookie's id and the session (None when
    /// the system has no randomness to give).
    pub fn open(&self, name: &str, now_ms: i64) -> Option<(String, OperatorSession)> {
        let (id, csrf) = (random_hex(), random_hex());
        if id.is_empty() || csrf.is_empty() {
            return None;
        }
        let session = OperatorSession {
            name: name.to_owned(),
            csrf,
            expires_ms: now_ms + SESSION_LIFETIME.as_millis() as i64,
        };
        let mut open = self.open.lock();
        open.retain(|_, s| s.expires_ms > now_ms);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| *k)
        {
            open.remove(&oldest);
        }
        open.insert(digest(&id), session.clone());
        Some((id, session))
    }

    /// The live session of `id`.
    pub fn find(&self, id: &str, now_ms: i64) -> Option<OperatorSession> {
        let key = digest(id);
        let mut open = self.open.lock();
        match open.get(&key) {
            Some(session) if session.expires_ms > now_ms => Some(session.clone()),
            Some(_) => {
                open.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `id`; whether there was one.
    pub fn revoke(&self, id: &str) -> bool {
        self.open.lock().remove(&digest(id)).is_some()
    }

    /// The live session a request's cookie names.
    pub fn of_request(
        &self,
        headers: &HeaderMap,
        now_ms: i64,
    ) -> Option<(String, OperatorSession)> {
        let id = cookie(headers, SESSION_COOKIE)?;
        self.find(id, now_ms).map(|s| (id.to_owned(), s))
    }
}

/// `name` when it is a plain operator name (1 to 64 letters, digits, `.`, `_`, `-`, `@`):
/// what the audit log records of a name the caller gives.
pub fn plain_name(name: &str) -> Option<&str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-@".contains(c);
    (!name.is_empty() && name.len() <= 64 && name.chars().all(plain)).then_some(name)
}

/// The value of cookie `name` in a request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// Why a cookie-authenticated change is refused as a possible cross-site request, if it is:
/// an `Origin` other than the request's own host, or a missing or wrong CSRF token.
pub fn forged(headers: &HeaderMap, session: &OperatorSession) -> Option<&'static str> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let origin_host = origin.split_once("://").map(|(_, rest)| rest);
        if origin_host.is_none() || origin_host != host {
            return Some("the request comes from another site (Origin)");
        }
    }
    let token = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !token.is_some_and(|t| croupier_web::same_token(t, &session.csrf)) {
        return Some("the request lacks this session's X-CSRF-Token");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn a_session_lives_until_it_expires_or_is_revoked() {
        let sessions = OperatorSessions::default();
        let (id, session) = sessions.open("alice", 1_000).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.find(&id, 2_000), Some(session.clone()));
        assert_eq!(sessions.find(&id, session.expires_ms), None, "expired");
        let (id, _) = sessions.open("alice", 1_000).unwrap();
        assert!(sessions.revoke(&id));
        assert_eq!(sessions.find(&id, 2_000), None, "revoked");
        assert_eq!(sessions.find("made-up", 2_000), None);
    }

    #[test]
    fn past_the_cap_the_oldest_session_ends() {
        let sessions = OperatorSessions::default();
        let (first, _) = sessions.open("first", 0).unwrap();
        for i in 0..MAX_SESSIONS {
            sessions.open("other", 1 + i as i64).unwrap();
        }
        assert_eq!(sessions.find(&first, 1), None);
        assert_eq!(sessions.open.lock().len(), MAX_SESSIONS);
    }

    #[test]
    fn a_change_needs_the_csrf_token_and_no_foreign_origin() {
        let sessions = OperatorSessions::default();
        let (_, session) = sessions.open("alice", 0).unwrap();
        let csrf = session.csrf.clone();
        let same = headers(&[
            ("host", "ops.example:8080"),
            ("origin", "https://ops.example:8080"),
            ("x-csrf-token", &csrf),
        ]);
        assert_eq!(forged(&same, &session), None);
        let no_origin = headers(&[("host", "ops.example:8080"), ("x-csrf-token", &csrf)]);
        assert_eq!(forged(&no_origin, &session), None);
        let foreign = headers(&[
            ("host", "ops.example:8080"),
            ("origin", "https://evil.example"),
            ("x-csrf-token", &csrf),
        ]);
        assert!(forged(&foreign, &session).is_some());
        let tokenless = headers(&[("host", "ops.example:8080")]);
        assert!(forged(&tokenless, &session).is_some());
        let wrong = headers(&[("host", "ops.example:8080"), ("x-csrf-token", "guess")]);
        assert!(forged(&wrong, &session).is_some());
    }

    #[test]
    fn only_plain_names_go_to_the_audit_log() {
        assert_eq!(plain_name("release-bot"), Some("release-bot"));
        assert_eq!(
            plain_name("alice@casino.example"),
            Some("alice@casino.example")
        );
        assert_eq!(plain_name(""), None);
        assert_eq!(plain_name("admin\nforged line"), None);
        assert_eq!(plain_name(&"x".repeat(65)), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let request = headers(&[("cookie", "a=1; croupier_session=abc; b=2")]);
        assert_eq!(cookie(&request, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&request, "missing"), None);
    }
}
