//! The dashboard's sessions, as an attacker who got a browser to visit their page would use
//! them: the cookie must not be the ops token, a change posted with the cookie from another
//! site must be refused (CSRF), and signing out must end the session on the server.

use super::{Auditor, Status};
use crate::http::Call;

const CHECK: &str = "dashboard_sessions";

impl Auditor {
    pub(super) async fn dashboard_sessions(&mut self) {
        let (Some(control), Some(token)) =
            (self.targets.control.clone(), self.targets.ops_token.clone())
        else {
            let detail = "skipped: needs the control plane's address and the ops token";
            self.note(CHECK, "control", Status::Skip, detail);
            return;
        };
        let (status, detail) = match self.session_findings(&control, &token).await {
            Ok(()) => (
                Status::Pass,
                "the cookie is a session id, a cross-site change is refused, sign-out ends it"
                    .to_owned(),
            ),
            Err(problem) => (Status::Fail, problem),
        };
        self.note(CHECK, &control, status, detail);
    }

    async fn session_findings(&self, control: &str, token: &str) -> Result<(), String> {
        let mut login = Call::get(format!("{control}/login"));
        login.method = hyper::Method::POST;
        login.body = Some(format!("token={token}&name=audit").into_bytes());
        login.extra_headers = vec![("content-type", "application/x-www-form-urlencoded".into())];
        let answer = self.send(login).await.map_err(|e| e.to_string())?;
        let cookie = answer
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .filter(|c| answer.status == 303 && !c.ends_with('='))
            .ok_or(format!(
                "sign-in answered {} without a cookie",
                answer.status
            ))?
            .to_owned();
        if cookie.contains(token) {
            return Err("the dashboard's cookie holds the ops token itself".into());
        }
        // A page elsewhere makes the browser post (text/plain, its own Origin, the cookie).
        // The body is a silence the API refuses anyway, so nothing changes if CSRF is open.
        let mut forged = Call::get(format!("{control}/api/v1/silences"));
        forged.method = hyper::Method::POST;
        forged.body =
            Some(br#"{"matcher":"down/audit","comment":"audit","duration_s":0}"#.to_vec());
        forged.extra_headers = vec![
            ("content-type", "text/plain".into()),
            ("origin", "https://attacker.example".into()),
            ("cookie", cookie.clone()),
        ];
        let answer = self.send(forged).await.map_err(|e| e.to_string())?;
        if answer.status != 403 {
            return Err(format!(
                "a cross-site change with the session cookie got {} (not 403 csrf)",
                answer.status
            ));
        }
        let mut logout = Call::get(format!("{control}/logout"));
        logout.method = hyper::Method::POST;
        logout.extra_headers = vec![("cookie", cookie.clone())];
        self.send(logout).await.map_err(|e| e.to_string())?;
        let mut after = Call::get(format!("{control}/api/v1/alerts"));
        after.extra_headers = vec![("cookie", cookie)];
        let answer = self.send(after).await.map_err(|e| e.to_string())?;
        if answer.status != 401 {
            return Err(format!(
                "after sign-out the cookie still got {}",
                answer.status
            ));
        }
        Ok(())
    }
}
