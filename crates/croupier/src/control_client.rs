//! The control plane's API from the command line (`croupier ctl`, `croupier maintenance`):
//! where it is, the ops token, who is calling (for the audit log), and calls that turn a
//! refusal into an error carrying the API's message. `croupier cashier` uses the same client
//! with the cashier's address and token.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use croupier_loadtest::layout::OPS_TOKEN_FILE;
use croupier_web::tls::ClientFiles;
use croupier_web::wire::{self, ErrorBody};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::console::{out, outln};
use crate::node_cmd::ops_token_file;

#[derive(Args)]
pub struct Connection {
    /// The control plane's address.
    #[arg(
        long,
        env = "CROUPIER_CONTROL_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// The ops token (default: read from <data>/ops-token).
    #[arg(long, env = "CROUPIER_OPS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The data folder holding ops-token, when --token is not given.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Who you are, for the audit log.
    #[arg(long = "as", env = "USER", default_value = "operator")]
    actor: String,
    /// CA certificates (PEM) trusted for an https:// control plane (default: the system's).
    #[arg(long, env = "CROUPIER_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM): a control plane whose certificate is listed, or
    /// whose CA has no list in the file, is refused before the token is sent.
    #[arg(long, env = "CROUPIER_TLS_CRL")]
    tls_crl: Option<PathBuf>,
}

impl Connection {
    pub fn client(self) -> anyhow::Result<Client> {
        let token = match self.token {
            Some(token) => token,
            None => {
                let path = self.data.join(OPS_TOKEN_FILE);
                anyhow::ensure!(
                    path.exists(),
                    "no --token and no {} (set CROUPIER_OPS_TOKEN or --data)",
                    path.display()
                );
                ops_token_file(&path)?
            }
        };
        let tls = ClientFiles {
            ca: self.tls_ca,
            identity: None,
            crl: self.tls_crl,
        };
        Client::new(self.url, token, self.actor, &tls)
    }
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
    actor: String,
}

impl Client {
    /// A client of the API at `base` with the bearer `token`, calling as `actor`.
    pub fn new(
        base: String,
        token: String,
        actor: String,
        tls: &ClientFiles,
    ) -> anyhow::Result<Client> {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .build();
        Ok(Client {
            agent: croupier_web::tls::blocking::agent(config, tls)?,
            base,
            token,
            actor,
        })
    }

    /// The answer's text; `body` is a request's JSON (`json`).
    pub fn call(&self, method: &str, path: &str, body: Option<String>) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header(wire::OPERATOR, &self.actor)
            .header("content-type", "application/json");
        let body = body.unwrap_or_default();
        let mut response = self
            .agent
            .run(request.body(body)?)
            .with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let text = response.body_mut().read_to_string()?;
        if !status.is_success() {
            let message = serde_json::from_str::<ErrorBody>(&text)
                .map(|refusal| format!("{}: {}", refusal.error, refusal.message))
                .unwrap_or(text);
            bail!("{method} {path} refused ({status}): {message}");
        }
        Ok(text)
    }

    /// The answer read as `T`.
    pub fn read<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<T> {
        let text = self.call(method, path, body)?;
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: unexpected answer"))
    }

    /// Prints the answer: JSON indented, anything else (Markdown, CSV, HTML) as it came.
    pub fn print(&self, method: &str, path: &str, body: Option<String>) -> anyhow::Result<()> {
        let text = self.call(method, path, body)?;
        match serde_json::from_str::<Value>(&text) {
            Ok(json) => outln!("{}", serde_json::to_string_pretty(&json)?)?,
            Err(_) => out!("{text}")?,
        }
        Ok(())
    }
}

/// `body` as a request's JSON.
pub fn json(body: &impl Serialize) -> String {
    serde_json::to_string(body).expect("a wire type serializes")
}
