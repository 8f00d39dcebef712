//! The reverse proxies in front of a public listener (the gateway's players' port, the
//! control plane's status page and dashboard) whose `X-Forwarded-For` is believed
//! (`croupier_web::client`). `croupier up` hands them to its gateway and control plane.

use clap::Args;
use croupier_web::client::TrustedProxies;

#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Reverse proxies in front of this server (an ingress, a CDN, HAProxy with `option
    /// forwardfor`): addresses or networks, comma-separated. A request from one of them is
    /// the client's that its X-Forwarded-For names (the right-most address that is no such
    /// proxy), for rate limits, blocks and logs, and their connections are not capped per
    /// address. None by default: every peer is its own client, whatever it sends.
    #[arg(long, env = "CROUPIER_TRUSTED_PROXIES", default_value = "", value_parser = ProxyList::parse)]
    pub trusted_proxies: ProxyList,
}

/// The proxies as given (for a child's command line) and as parsed, once, by clap.
#[derive(Debug, Clone)]
pub struct ProxyList {
    text: String,
    parsed: TrustedProxies,
}

impl ProxyList {
    fn parse(text: &str) -> Result<ProxyList, String> {
        Ok(ProxyList {
            text: text.to_owned(),
            parsed: TrustedProxies::parse(text)?,
        })
    }
}

impl ProxyArgs {
    pub fn proxies(&self) -> TrustedProxies {
        self.trusted_proxies.parsed.clone()
    }

    /// The same option for a child process (none when no proxy is set).
    pub fn to_args(&self) -> Vec<String> {
        let text = &self.trusted_proxies.text;
        if text.trim().is_empty() {
            return Vec::new();
        }
        vec!["--trusted-proxies".to_owned(), text.clone()]
    }
}
