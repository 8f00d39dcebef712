//! The deployment file (`croupier control --config deploy.toml`): the nodes, gateways, stores
//! and hosts to watch on other machines, the players' address for synthetic checks, webhooks,
//! and optionally the alert rules and SLOs (the built-in ones otherwise). The documented
//! example is `deploy/croupier.example.toml`.

use serde::Deserialize;

use crate::AVAILABILITY_OBJECTIVE;
use crate::catalog::is_incident_component;
use crate::notify::{Format, Webhook};
use crate::oncall::OnCall;
use crate::rollout::UpdateConfig;
use crate::sla::CreditTier;
use crate::subscriptions::SubscriptionsConfig;
use croupier_monitor::engine::{HttpCheck, Kind, RuleDef, Target, default_rules};
use croupier_monitor::slo::{SloDef, default_slos};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedUrl {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    pub name: String,
    pub url: String,
    /// The component a failing check speaks for (default lobby).
    #[serde(default = "lobby")]
    pub component: String,
    #[serde(flatten)]
    pub expect: HttpCheck,
}

fn lobby() -> String {
    "lobby".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default = "generic")]
    pub format: Format,
}

fn generic() -> Format {
    Format::Generic
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Address of the control plane's API, status page and dashboard.
    pub listen: Option<String>,
    /// The control plane's data folder (control.db, ops-token).
    pub data: Option<String>,
    /// The players' address (a gateway) for the lobby check and the test bet.
    pub check_url: Option<String>,
    /// Game nodes: their own address (metrics at /metrics).
    #[serde(default)]
    pub node: Vec<NamedUrl>,
    /// Gateways: their admin address.
    #[serde(default)]
    pub gateway: Vec<NamedUrl>,
    /// Stores' exporters (postgres_exporter: `pg_up`), or the ledger's own `postgres://` URL
    /// (the control plane then reads the primary and its standbys' lag itself); a store that
    /// is down alerts on the wallet.
    #[serde(default)]
    pub store: Vec<NamedUrl>,
    /// The replay lag (seconds) of a standby above which `replication_lag` fires (10 by
    /// default; it resolves below half of it). Applies to the built-in rules.
    pub replication_lag_alert_s: Option<f64>,
    /// Hosts' node_exporter: CPU, memory and disk alerts.
    #[serde(default)]
    pub host: Vec<NamedUrl>,
    /// HTTP checks (like Gatus): a URL fetched every second and what its answer must be.
    #[serde(default)]
    pub check: Vec<CheckConfig>,
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
    /// Replaces the built-in rules when given.
    #[serde(default)]
    pub rule: Vec<RuleDef>,
    /// Replaces the built-in SLOs when given.
    #[serde(default)]
    pub slo: Vec<SloDef>,
    /// How rolling updates replace a node's build.
    #[serde(default)]
    pub update: UpdateConfig,
    /// The SLA contract's terms beyond the SLOs' targets.
    #[serde(default)]
    pub sla: SlaConfig,
    /// Who is paged for major and critical incidents: people, schedules, escalation.
    pub oncall: Option<OnCall>,
    /// Status-page subscriptions: SMTP server, sender, link base.
    pub subscriptions: Option<SubscriptionsConfig>,
}

/// `[sla]`: the service credit tiers (`[[sla.credits]] below = 99.9, credit_percent = 10`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    #[serde(default)]
    pub credits: Vec<CreditTier>,
}

/// `name` is not yet one of `names` (targets and checks share one namespace).
fn unique<'a>(
    names: &mut std::collections::HashSet<&'a str>,
    name: &'a str,
) -> Result<(), ConfigError> {
    if names.insert(name) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "the name {name} is used twice"
        )))
    }
}

impl Deployment {
    pub fn parse(text: &str) -> Result<Deployment, ConfigError> {
        let deployment: Deployment = toml::from_str(text)?;
        deployment.validate()?;
        Ok(deployment)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        self.validate_targets(&mut names)?;
        self.validate_checks(&mut names)?;
        for slo in &self.slo {
            if !(0.0 < slo.objective && slo.objective < 1.0) {
                return Err(ConfigError::Invalid(format!(
                    "slo {}: objective must be between 0 and 1 (e.g. 0.999)",
                    slo.name
                )));
            }
        }
        if let Some(oncall) = &self.oncall {
            oncall.rotations().map_err(ConfigError::Invalid)?;
            if oncall.mails() && self.page_smtp_url().is_none() {
                return Err(ConfigError::Invalid(
                    "oncall: a person has an email but neither [oncall] nor [subscriptions] has an smtp_url".into(),
                ));
            }
        }
        for tier in &self.sla.credits {
            let valid = tier.below > 0.0
                && tier.below <= 100.0
                && (0.0..=100.0).contains(&tier.credit_percent);
            if !valid {
                return Err(ConfigError::Invalid(format!(
                    "sla.credits: below ({}) is a percentage above 0 and at most 100, credit_percent ({}) between 0 and 100",
                    tier.below, tier.credit_percent
                )));
            }
        }
        Ok(())
    }

    /// Every target's URL is HTTP (or, for a store, PostgreSQL) and its name unique.
    fn validate_targets<'a>(
        &'a self,
        names: &mut std::collections::HashSet<&'a str>,
    ) -> Result<(), ConfigError> {
        for (kind, list) in [
            ("node", &self.node),
            ("gateway", &self.gateway),
            ("store", &self.store),
            ("host", &self.host),
        ] {
            for target in list {
                let http = target.url.starts_with("http://") || target.url.starts_with("https://");
                // A store may be the ledger's own PostgreSQL URL (`replication`).
                let postgres = kind == "store" && crate::replication::is_postgres(&target.url);
                if !http && !postgres {
                    return Err(ConfigError::Invalid(format!(
                        "{kind} {}: url must start with http:// or https://{}",
                        target.name,
                        if kind == "store" {
                            " (or postgres://)"
                        } else {
                            ""
                        }
                    )));
                }
                unique(names, &target.name)?;
            }
        }
        Ok(())
    }

    /// Every synthetic check's URL is HTTP, its name unique, its component a known one.
    fn validate_checks<'a>(
        &'a self,
        names: &mut std::collections::HashSet<&'a str>,
    ) -> Result<(), ConfigError> {
        for check in &self.check {
            if !check.url.starts_with("http://") && !check.url.starts_with("https://") {
                return Err(ConfigError::Invalid(format!(
                    "check {}: url must start with http:// or https://",
                    check.name
                )));
            }
            unique(names, &check.name)?;
            if !is_incident_component(&check.component) {
                return Err(ConfigError::Invalid(format!(
                    "check {}: component {} is not one of wallet, dice, roulette, slot, blackjack, lobby, games",
                    check.name, check.component
                )));
            }
        }
        Ok(())
    }

    /// The SMTP server pages are e-mailed through: `[oncall]`'s, else `[subscriptions]`'s.
    pub fn page_smtp_url(&self) -> Option<&str> {
        let oncall = self.oncall.as_ref().and_then(|o| o.smtp_url.as_deref());
        let subscriptions = self.subscriptions.as_ref();
        oncall.or_else(|| subscriptions.and_then(|s| s.smtp_url.as_deref()))
    }

    /// Every target to scrape.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        for (kind, list) in [
            (Kind::Node, &self.node),
            (Kind::Gateway, &self.gateway),
            (Kind::Store, &self.store),
            (Kind::Host, &self.host),
        ] {
            targets.extend(
                list.iter()
                    .map(|t| Target::new(&t.name, kind, t.url.trim_end_matches('/'))),
            );
        }
        targets.extend(self.check.iter().map(|c| Target {
            component: Some(c.component.clone()),
            http_check: Some(c.expect.clone()),
            ..Target::new(&c.name, Kind::HttpCheck, &c.url)
        }));
        targets
    }

    pub fn webhooks(&self) -> Vec<Webhook> {
        self.webhook
            .iter()
            .map(|w| Webhook {
                url: w.url.clone(),
                format: w.format,
            })
            .collect()
    }

    pub fn rules(&self) -> Vec<RuleDef> {
        if !self.rule.is_empty() {
            return self.rule.clone();
        }
        let mut rules = default_rules();
        if let Some(limit) = self.replication_lag_alert_s {
            for def in rules
                .iter_mut()
                .filter(|d| d.rule.name == "replication_lag")
            {
                def.rule.threshold = limit;
                def.rule.clear_threshold = Some(limit / 2.0);
            }
        }
        rules
    }

    pub fn slos(&self) -> Vec<SloDef> {
        if self.slo.is_empty() {
            default_slos(AVAILABILITY_OBJECTIVE)
        } else {
            self.slo.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../deploy/croupier.example.toml");

    #[test]
    fn the_documented_example_parses() {
        let deployment = Deployment::parse(EXAMPLE).unwrap();
        let targets = deployment.targets();
        assert!(targets.iter().any(|t| t.kind == Kind::Node));
        assert!(targets.iter().any(|t| t.kind == Kind::Store));
        let check = targets.iter().find(|t| t.kind == Kind::HttpCheck).unwrap();
        assert_eq!(check.component.as_deref(), Some("lobby"));
        assert_eq!(check.http_check.as_ref().unwrap().max_latency_ms, 500);
        assert!(!deployment.rules().is_empty());
        assert!(deployment.slos().iter().any(|s| s.name == "wallet"));
        assert_eq!(deployment.webhooks().len(), 2);
        assert_eq!(deployment.sla.credits[0].below, 99.9);
        let oncall = deployment.oncall.as_ref().unwrap();
        assert_eq!(oncall.rotations().unwrap().len(), 2);
        assert_eq!(
            deployment.page_smtp_url(),
            Some("smtp://mail.casino.example:587?tls=required"),
            "pages are mailed through the subscriptions' server"
        );
        assert!(
            deployment
                .subscriptions
                .as_ref()
                .unwrap()
                .smtp_url
                .is_some()
        );
    }

    #[test]
    fn mistakes_are_named() {
        let typo = Deployment::parse("[[nodes]]\nname = \"a\"\nurl = \"http://x\"\n");
        assert!(
            typo.unwrap_err()
                .to_string()
                .contains("unknown field `nodes`")
        );
        let twice = Deployment::parse(
            "[[node]]\nname = \"a\"\nurl = \"http://x\"\n[[gateway]]\nname = \"a\"\nurl = \"http://y\"\n",
        );
        assert_eq!(twice.unwrap_err().to_string(), "the name a is used twice");
        let scheme = Deployment::parse("[[store]]\nname = \"pg\"\nurl = \"10.0.0.1:9187\"\n");
        assert!(
            scheme
                .unwrap_err()
                .to_string()
                .contains("url must start with http://")
        );
        let rule = Deployment::parse(
            "[[rule]]\nname = \"x\"\nmetric = \"cpu\"\ncomparison = \"above\"\nthreshold = 0.5\nseverity = \"huge\"\n",
        );
        assert!(
            rule.unwrap_err()
                .to_string()
                .contains("severity is critical")
        );
        let tier = Deployment::parse("[[sla.credits]]\nbelow = 99.9\ncredit_percent = 150\n");
        assert!(tier.unwrap_err().to_string().contains("sla.credits"));
        let mail_without_server = EXAMPLE.replace(
            "smtp_url = \"smtp://mail.casino.example:587?tls=required\"",
            "",
        );
        assert!(
            Deployment::parse(&mail_without_server)
                .unwrap_err()
                .to_string()
                .contains("neither [oncall] nor [subscriptions] has an smtp_url")
        );
        let bad_address = EXAMPLE.replace("ana@casino.example", "ana at the casino");
        assert!(
            Deployment::parse(&bad_address)
                .unwrap_err()
                .to_string()
                .contains("email is not an e-mail address")
        );
    }

    #[test]
    fn rules_from_the_file_replace_the_built_in_ones() {
        let deployment = Deployment::parse(
            "[[rule]]\nname = \"slow\"\nmetric = \"latency_p99_ms\"\ncomparison = \"above\"\n\
             threshold = 100.0\nfor_duration_s = 10\nfire_after = 3\nseverity = \"major\"\nkinds = [\"gateway\"]\n",
        )
        .unwrap();
        let rules = deployment.rules();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            (rules[0].rule.fire_after, rules[0].rule.resolve_after),
            (3, 1)
        );
    }
}

/// Property tests of the deployment file's parser: the example file with any line replaced,
/// or any text at all, is a deployment or a typed `ConfigError`, never a panic; a deployment
/// that parses gives its targets, rules, SLOs and webhooks without one either.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const EXAMPLE: &str = include_str!("../../../deploy/croupier.example.toml");

    fn exercise(text: &str) {
        if let Ok(deployment) = Deployment::parse(text) {
            let _ = deployment.targets();
            let _ = deployment.rules();
            let _ = deployment.slos();
            let _ = deployment.webhooks();
            let _ = deployment.page_smtp_url();
        }
    }

    /// A TOML value of some kind, or text that is not one.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| f.to_string()),
            "\"\\PC{0,24}\"",
            Just("[]".to_owned()),
            Just("{}".to_owned()),
            Just("true".to_owned()),
            "\\PC{0,24}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn the_example_with_a_line_changed_parses_or_fails_typed(line in any::<prop::sample::Index>(), new in value()) {
            let lines: Vec<&str> = EXAMPLE.lines().collect();
            let at = line.index(lines.len());
            let changed: Vec<String> = lines
                .iter()
                .enumerate()
                .map(|(i, l)| match (i == at, l.split_once('=')) {
                    (true, Some((key, _))) => format!("{key}= {new}"),
                    (true, None) => new.clone(),
                    (false, _) => (*l).to_owned(),
                })
                .collect();
            exercise(&changed.join("\n"));
        }

        #[test]
        fn any_text_parses_or_fails_typed(text in "\\PC{0,400}") {
            exercise(&text);
        }
    }
}
