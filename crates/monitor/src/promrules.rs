//! The control plane's alerting as Prometheus rule files (`croupier control export
//! --prometheus-rules`), for operators who alert with their own Prometheus and Alertmanager:
//! the threshold rules (built-in or from the deployment file) over the same metric names, the
//! SLOs' multi-window multi-burn-rate alerts over recorded error ratios, the synthetic checks
//! (read from the leading control plane's `/metrics`), and the control plane's own lease.
//!
//! Prometheus scrapes every 15 s or so, not every second, and has no clear threshold: a rule's
//! `fire_after`/`resolve_after` evaluations become `for`/`keep_firing_for` seconds, and the
//! clear threshold is left out (the hysteresis is `keep_firing_for`). The jobs the
//! expressions select are `JOBS`: name the scrape jobs so.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::burn::{BurnCondition, PAGE, TICKET, windows};
use crate::engine::{Kind, Metric, RuleDef, component_of};
use crate::severity::Severity;
use crate::slo::{SloDef, Source};
use crate::threshold::Comparison;

/// The `job` label of each kind of target, as the exported rules expect them.
pub const JOBS: [(Kind, &str); 4] = [
    (Kind::Node, "croupier-node"),
    (Kind::Gateway, "croupier-gateway"),
    (Kind::Host, "node"),
    (Kind::Store, "postgres"),
];
/// The control planes' scrape job (their `/metrics`: the lease, the synthetic checks).
pub const CONTROL_JOB: &str = "croupier-control";

/// One rule of a group: an alert, or a recorded series.
#[derive(Debug, Clone, PartialEq)]
pub enum PromRule {
    Alert {
        alert: String,
        expr: String,
        for_s: u64,
        keep_firing_for_s: u64,
        labels: BTreeMap<String, String>,
        summary: String,
    },
    Record {
        record: String,
        expr: String,
        labels: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub rules: Vec<PromRule>,
}

/// Every group: thresholds, synthetic checks, SLOs, the control plane itself.
pub fn groups(rules: &[RuleDef], slos: &[SloDef]) -> Vec<Group> {
    let (mut thresholds, mut checks) = (Vec::new(), Vec::new());
    for def in rules {
        for (synthetic, alert) in threshold_alerts(def) {
            if synthetic {
                checks.push(alert);
            } else {
                thresholds.push(alert);
            }
        }
    }
    vec![
        Group {
            name: "croupier-thresholds".into(),
            rules: thresholds,
        },
        Group {
            name: "croupier-synthetic-checks".into(),
            rules: checks,
        },
        Group {
            name: "croupier-slo".into(),
            rules: slos.iter().flat_map(slo_rules).collect(),
        },
        Group {
            name: "croupier-control".into(),
            rules: control_rules(),
        },
    ]
}

fn job_of(kind: Kind) -> Option<&'static str> {
    JOBS.iter().find(|(k, _)| *k == kind).map(|(_, job)| *job)
}

fn jobs(kinds: &[Kind]) -> String {
    let names: Vec<&str> = kinds.iter().filter_map(|k| job_of(*k)).collect();
    format!("job=~\"{}\"", names.join("|"))
}

/// A rule's value on targets of `kind`, as PromQL keeping `job` and `instance`; None where
/// the control plane reads nothing for it on that kind.
fn value_expr(metric: Metric, kind: Kind) -> Option<String> {
    use Kind::{BetCheck, Gateway, Host, HttpCheck, LobbyCheck, Node, Store};
    let on = |kinds: &[Kind]| kinds.contains(&kind);
    let job = jobs(&[kind]);
    let expr = match metric {
        Metric::Up if on(&[LobbyCheck, BetCheck, HttpCheck]) => format!(
            "max by (target, kind) (croupier_control_target_up{{job=\"{CONTROL_JOB}\",kind=\"{}\"}} \
             and on (instance) (croupier_control_leader == 1))",
            kind_label(kind)
        ),
        Metric::Up => format!("up{{{job}}}"),
        Metric::Cpu if on(&[Node, Gateway]) => format!("croupier_host_cpu_usage_ratio{{{job}}}"),
        Metric::Cpu if kind == Host => format!(
            "1 - avg by (job, instance) (rate(node_cpu_seconds_total{{{job},mode=\"idle\"}}[1m]))"
        ),
        Metric::Memory if on(&[Node, Gateway]) => format!(
            "croupier_host_memory_used_bytes{{{job}}} / croupier_host_memory_total_bytes{{{job}}}"
        ),
        Metric::Memory if kind == Host => format!(
            "1 - node_memory_MemAvailable_bytes{{{job}}} / node_memory_MemTotal_bytes{{{job}}}"
        ),
        Metric::Disk if on(&[Node, Gateway]) => format!(
            "max by (job, instance) (1 - croupier_host_disk_available_bytes{{{job}}} \
             / croupier_host_disk_total_bytes{{{job}}})"
        ),
        Metric::Disk if kind == Host => format!(
            "max by (job, instance) (1 - node_filesystem_avail_bytes{{{job}}} \
             / node_filesystem_size_bytes{{{job}}})"
        ),
        Metric::NetworkReceiveBps | Metric::NetworkTransmitBps => {
            let way = if metric == Metric::NetworkReceiveBps {
                "receive"
            } else {
                "transmit"
            };
            let name = match kind {
                Node | Gateway => format!("croupier_host_network_{way}_bytes_total"),
                Host => format!("node_network_{way}_bytes_total"),
                _ => return None,
            };
            format!("sum by (job, instance) (rate({name}{{{job}}}[1m]))")
        }
        Metric::LatencyP99Ms | Metric::ErrorRatio => return traffic_expr(metric, kind),
        Metric::SecurityBlocked if on(&[Node, Gateway]) => {
            // Both kinds of block (the scanning one labelled apart, so `or` keeps it).
            format!(
                "sum by (job, instance) (croupier_security_blocked{{{job}}} or \
                 label_replace(croupier_security_scan_blocked{{{job}}}, \"port\", \"players\", \"\", \"\"))"
            )
        }
        Metric::PlayFlags if kind == Node => format!("croupier_play_flags{{{job}}}"),
        Metric::StoreUp if kind == Node => format!("croupier_store_up{{{job}}}"),
        Metric::StoreUp if kind == Store => format!("pg_up{{{job}}}"),
        // postgres_exporter's, read on each standby: now() - pg_last_xact_replay_timestamp().
        Metric::ReplicationLagS if kind == Store => {
            format!("max by (job) (pg_replication_lag_seconds{{{job}}})")
        }
        Metric::StoreCommitP99Ms if kind == Node => format!(
            "1000 * histogram_quantile(0.99, sum by (job, instance, le) \
             (rate(croupier_store_commit_seconds_bucket{{{job}}}[1m])))"
        ),
        Metric::StoreConnectionsUsed if kind == Store => format!(
            "sum by (job, instance) (pg_stat_database_numbackends{{{job}}}) \
             / max by (job, instance) (pg_settings_max_connections{{{job}}})"
        ),
        Metric::DataDisk if kind == Node => format!(
            "max by (job, instance, folder) (1 - croupier_data_filesystem_available_bytes{{{job}}} \
             / croupier_data_filesystem_size_bytes{{{job}}})"
        ),
        Metric::DataFullInS if kind == Node => {
            // Compared by the caller: predict_linear says when, not how long until.
            format!("croupier_data_filesystem_available_bytes{{{job}}}")
        }
        _ => return None,
    };
    Some(expr)
}

/// p99 latency (ms) and error ratio of what players asked: the gateway's answers, or a
/// node's `/api/` routes.
fn traffic_expr(metric: Metric, kind: Kind) -> Option<String> {
    let job = jobs(&[kind]);
    let (requests, duration) = match kind {
        Kind::Gateway => (
            format!("croupier_gateway_requests_total{{{job}"),
            format!("croupier_gateway_upstream_duration_seconds_bucket{{{job}"),
        ),
        Kind::Node => (
            format!("croupier_http_requests_total{{{job},route=~\"/api/.*\""),
            format!("croupier_http_request_duration_seconds_bucket{{{job},route=~\"/api/.*\""),
        ),
        _ => return None,
    };
    Some(if metric == Metric::LatencyP99Ms {
        format!(
            "1000 * histogram_quantile(0.99, sum by (job, instance, le) (rate({duration}}}[1m])))"
        )
    } else {
        format!(
            "sum by (job, instance) (rate({requests},status=~\"5..\"}}[1m])) \
             / sum by (job, instance) (rate({requests}}}[1m]))"
        )
    })
}

fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Node => "node",
        Kind::Gateway => "gateway",
        Kind::LobbyCheck => "lobby_check",
        Kind::BetCheck => "bet_check",
        Kind::HttpCheck => "http_check",
        Kind::Store => "store",
        Kind::Host => "host",
    }
}

const ALL_KINDS: [Kind; 7] = [
    Kind::Node,
    Kind::Gateway,
    Kind::Host,
    Kind::Store,
    Kind::LobbyCheck,
    Kind::BetCheck,
    Kind::HttpCheck,
];

/// One alert per component the rule's targets speak for (a rule without a component of its
/// own speaks for each kind's), each flagged when it reads the synthetic checks.
fn threshold_alerts(def: &RuleDef) -> Vec<(bool, PromRule)> {
    let kinds: Vec<Kind> = if def.kinds.is_empty() {
        ALL_KINDS.to_vec()
    } else {
        def.kinds.clone()
    };
    let rule = &def.rule;
    let op = match rule.comparison {
        Comparison::Above => ">",
        Comparison::Below => "<",
    };
    let mut by_component: BTreeMap<(bool, String), Vec<String>> = BTreeMap::new();
    for kind in kinds {
        let Some(value) = value_expr(def.metric, kind) else {
            continue;
        };
        let condition = if def.metric == Metric::DataFullInS {
            format!("predict_linear({value}[5m], {}) < 0", rule.threshold)
        } else {
            format!("({value}) {op} {}", rule.threshold)
        };
        let component = def
            .component
            .clone()
            .unwrap_or_else(|| component_of(kind).to_owned());
        by_component
            .entry((kind.is_synthetic(), component))
            .or_default()
            .push(condition);
    }
    by_component
        .into_iter()
        .map(|((synthetic, component), conditions)| {
            let source = if synthetic { "check" } else { "scrape" };
            let labels = BTreeMap::from([
                ("severity".into(), def.severity.on(&component).to_string()),
                ("component".into(), component),
                ("source".into(), source.into()),
            ]);
            let subject = if synthetic { "target" } else { "instance" };
            let alert = PromRule::Alert {
                alert: rule.name.clone(),
                expr: conditions.join(" or "),
                for_s: rule
                    .for_duration_s
                    .max(u64::from(rule.fire_after.saturating_sub(1))),
                keep_firing_for_s: u64::from(rule.resolve_after.saturating_sub(1)),
                labels,
                summary: format!(
                    "{} {op} {} on {{{{ $labels.{subject} }}}}",
                    rule.name, rule.threshold
                ),
            };
            (synthetic, alert)
        })
        .collect()
}

/// The bad and all requests an SLO counts, as selectors.
fn slo_selectors(source: &Source) -> (String, String) {
    match source {
        Source::Gateway => (
            "croupier_gateway_requests_total{job=\"croupier-gateway\",status=~\"5..\"}".into(),
            "croupier_gateway_requests_total{job=\"croupier-gateway\"}".into(),
        ),
        Source::NodeRoutes(prefixes) => {
            let routes: Vec<String> = prefixes.iter().map(|p| regex_escape(p)).collect();
            let routes = format!("route=~\"({}).*\"", routes.join("|"));
            (
                format!(
                    "croupier_http_requests_total{{job=\"croupier-node\",{routes},status=~\"5..\"}}"
                ),
                format!("croupier_http_requests_total{{job=\"croupier-node\",{routes}}}"),
            )
        }
    }
}

fn regex_escape(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if ".+*?()|[]{}^$\\".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
        out
    })
}

fn window(seconds: u64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s => format!("{}m", s / 60),
    }
}

/// Recorded error ratio and request count per window, then the page and ticket alerts over
/// them, as `burn` evaluates them (both windows of a pair over the factor, and enough
/// requests in the long one).
fn slo_rules(def: &SloDef) -> Vec<PromRule> {
    let (bad, all) = slo_selectors(&def.source);
    let slo_label = BTreeMap::from([("slo".to_owned(), def.name.clone())]);
    let windows = windows();
    let mut rules = Vec::new();
    for w in &windows {
        let w = window(*w);
        rules.push(PromRule::Record {
            record: format!("croupier_slo:error_ratio:rate{w}"),
            expr: format!("sum(rate({bad}[{w}])) / sum(rate({all}[{w}]))"),
            labels: slo_label.clone(),
        });
        rules.push(PromRule::Record {
            record: format!("croupier_slo:requests:increase{w}"),
            expr: format!("sum(increase({all}[{w}]))"),
            labels: slo_label.clone(),
        });
    }
    let budget = 1.0 - def.objective;
    for (alert, conditions, rule_severity) in [
        ("slo_burn_page", &PAGE, Severity::Major),
        ("slo_burn_ticket", &TICKET, Severity::Minor),
    ] {
        let expr = conditions
            .iter()
            .map(|c| burn_condition(&def.name, c, budget))
            .collect::<Vec<_>>()
            .join(" or ");
        let labels = BTreeMap::from([
            (
                "severity".into(),
                rule_severity.on(&def.component).to_string(),
            ),
            ("component".into(), def.component.clone()),
            ("slo".into(), def.name.clone()),
        ]);
        rules.push(PromRule::Alert {
            alert: alert.into(),
            expr,
            for_s: 0,
            keep_firing_for_s: 0,
            labels,
            summary: format!("the {} SLO burns its error budget too fast", def.name),
        });
    }
    rules
}

fn burn_condition(slo: &str, c: &BurnCondition, budget: f64) -> String {
    let (long, short) = (window(c.long_s), window(c.short_s));
    let limit = c.factor * budget;
    format!(
        "(croupier_slo:error_ratio:rate{long}{{slo=\"{slo}\"}} > {limit} \
         and croupier_slo:error_ratio:rate{short}{{slo=\"{slo}\"}} > {limit} \
         and croupier_slo:requests:increase{long}{{slo=\"{slo}\"}} >= {})",
        crate::burn::MIN_EVENTS
    )
}

/// No control plane leads, or two do (a lease that failed).
fn control_rules() -> Vec<PromRule> {
    let alert = |name: &str, expr: String, summary: &str| PromRule::Alert {
        alert: name.into(),
        expr,
        for_s: 30,
        keep_firing_for_s: 0,
        labels: BTreeMap::from([
            ("severity".into(), Severity::Critical.to_string()),
            ("component".into(), "control".into()),
        ]),
        summary: summary.into(),
    };
    vec![
        alert(
            "control_no_leader",
            format!("sum(croupier_control_leader{{job=\"{CONTROL_JOB}\"}}) < 1"),
            "no control plane leads: nothing alerts, backs up or checks",
        ),
        alert(
            "control_two_leaders",
            format!("sum(croupier_control_leader{{job=\"{CONTROL_JOB}\"}}) > 1"),
            "more than one control plane leads: alerts may be sent twice",
        ),
    ]
}

/// YAML, every scalar double-quoted the JSON way (a JSON string is a YAML double-quoted
/// scalar), so no value needs YAML's own quoting rules.
pub fn to_yaml(groups: &[Group]) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let mut out =
        String::from("# Written by `croupier control export --prometheus-rules`.\ngroups:\n");
    for group in groups {
        let _ = writeln!(out, "  - name: {}", q(&group.name));
        if group.rules.is_empty() {
            out.push_str("    rules: []\n");
            continue;
        }
        out.push_str("    rules:\n");
        for rule in &group.rules {
            write_rule(&mut out, rule, &q);
        }
    }
    out
}

fn write_rule(out: &mut String, rule: &PromRule, q: &dyn Fn(&str) -> String) {
    let labels = |out: &mut String, labels: &BTreeMap<String, String>| {
        if !labels.is_empty() {
            out.push_str("        labels:\n");
            for (k, v) in labels {
                let _ = writeln!(out, "          {k}: {}", q(v));
            }
        }
    };
    match rule {
        PromRule::Record {
            record,
            expr,
            labels: l,
        } => {
            let _ = writeln!(
                out,
                "      - record: {}\n        expr: {}",
                q(record),
                q(expr)
            );
            labels(out, l);
        }
        PromRule::Alert {
            alert,
            expr,
            for_s,
            keep_firing_for_s,
            labels: l,
            summary,
        } => {
            let _ = writeln!(
                out,
                "      - alert: {}\n        expr: {}",
                q(alert),
                q(expr)
            );
            if *for_s > 0 {
                let _ = writeln!(out, "        for: \"{for_s}s\"");
            }
            if *keep_firing_for_s > 0 {
                let _ = writeln!(out, "        keep_firing_for: \"{keep_firing_for_s}s\"");
            }
            labels(out, l);
            let _ = writeln!(
                out,
                "        annotations:\n          summary: {}",
                q(summary)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::default_rules;
    use crate::slo::default_slos;

    #[test]
    fn every_built_in_rule_and_slo_becomes_an_alert() {
        let groups = groups(&default_rules(), &default_slos(0.999));
        let alerts: Vec<&str> = groups
            .iter()
            .flat_map(|g| &g.rules)
            .filter_map(|r| match r {
                PromRule::Alert { alert, .. } => Some(alert.as_str()),
                PromRule::Record { .. } => None,
            })
            .collect();
        for def in default_rules() {
            assert!(
                alerts.contains(&def.rule.name.as_str()),
                "{} missing",
                def.rule.name
            );
        }
        let page = alerts.iter().filter(|a| **a == "slo_burn_page").count();
        assert_eq!(page, default_slos(0.999).len());
        let checks = &groups[1].rules;
        assert!(!checks.is_empty(), "the synthetic checks have their group");
        let yaml = to_yaml(&groups);
        assert!(yaml.contains("keep_firing_for: \"1s\""), "{yaml}");
    }

    #[test]
    fn a_route_prefix_is_matched_literally() {
        assert_eq!(regex_escape("/api/v1.x"), "/api/v1\\\\.x");
    }
}
