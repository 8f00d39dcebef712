//! Alert rules applied to each scrape of each target: the target is down, its host's CPU or
//! memory is high. Each (rule, target) pair keeps its own `RuleState`; the engine returns the
//! transitions, and the caller turns them into notifications and incidents.

use std::collections::HashMap;

use serde::Serialize;

use crate::promtext::{Sample, find};
use crate::threshold::{Comparison, RuleState, ThresholdRule, Transition};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Node,
    Gateway,
    /// The synthetic lobby check.
    LobbyCheck,
    /// The synthetic test bet.
    BetCheck,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub kind: Kind,
    /// Base URL; metrics are at `/metrics`.
    pub base: String,
}

/// A rule with what the alert means for players.
pub struct RuleDef {
    pub rule: ThresholdRule,
    pub severity: &'static str,
    /// The player-facing component an alert on this target affects.
    pub component: fn(Kind) -> &'static str,
    pub value: fn(Option<&[Sample]>) -> Option<f64>,
}

fn component_of(kind: Kind) -> &'static str {
    match kind {
        // Every game runs on every node; with one node down the others carry on.
        Kind::Node => "games",
        // The gateway is every player's way in.
        Kind::Gateway | Kind::LobbyCheck => "lobby",
        Kind::BetCheck => "wallet",
    }
}

/// 1 when the target answered (or the check passed), missing otherwise.
fn up(scrape: Option<&[Sample]>) -> Option<f64> {
    scrape.map(|_| 1.0)
}

fn cpu(scrape: Option<&[Sample]>) -> Option<f64> {
    find(scrape?, "croupier_host_cpu_usage_ratio", &[]).map(|s| s.value)
}

fn memory(scrape: Option<&[Sample]>) -> Option<f64> {
    let scrape = scrape?;
    let used = find(scrape, "croupier_host_memory_used_bytes", &[])?.value;
    let total = find(scrape, "croupier_host_memory_total_bytes", &[])?.value;
    (total > 0.0).then(|| used / total)
}

/// The built-in rules, evaluated once a second.
pub fn default_rules() -> Vec<RuleDef> {
    vec![
        RuleDef {
            rule: ThresholdRule {
                name: "down".into(),
                comparison: Comparison::Below,
                threshold: 1.0,
                clear_threshold: None,
                for_duration_s: 0,
                // One slow scrape is not an outage; two in a row (2 s) are.
                fire_after: 2,
                resolve_after: 2,
                missing_breaches: true,
            },
            severity: "major",
            component: component_of,
            value: up,
        },
        RuleDef {
            rule: ThresholdRule {
                name: "cpu_high".into(),
                comparison: Comparison::Above,
                threshold: 0.9,
                clear_threshold: Some(0.8),
                for_duration_s: 60,
                fire_after: 3,
                resolve_after: 5,
                missing_breaches: false,
            },
            severity: "minor",
            component: component_of,
            value: cpu,
        },
        RuleDef {
            rule: ThresholdRule {
                name: "memory_high".into(),
                comparison: Comparison::Above,
                threshold: 0.9,
                clear_threshold: Some(0.85),
                for_duration_s: 60,
                fire_after: 3,
                resolve_after: 5,
                missing_breaches: false,
            },
            severity: "minor",
            component: component_of,
            value: memory,
        },
    ]
}

/// An outage's severity follows the component's priority: the wallet first (money), then
/// live games and the lobby. Warnings (`minor` rules) stay minor wherever they are.
fn severity(rule_severity: &'static str, component: &str) -> &'static str {
    match (rule_severity, component) {
        ("minor", _) => "minor",
        (_, "wallet") => "critical",
        _ => "major",
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    /// `rule/target`.
    pub key: String,
    pub rule: String,
    pub target: String,
    pub severity: &'static str,
    pub component: &'static str,
    pub firing: bool,
    pub since_s: u64,
    pub value: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveAlert {
    pub key: String,
    pub state: crate::threshold::AlertState,
}

pub struct Engine {
    pub targets: Vec<Target>,
    rules: Vec<RuleDef>,
    states: HashMap<(usize, usize), RuleState>,
}

impl Engine {
    pub fn new(targets: Vec<Target>, rules: Vec<RuleDef>) -> Engine {
        Engine {
            targets,
            rules,
            states: HashMap::new(),
        }
    }

    /// Evaluates every rule on every target's latest scrape (`None`: the scrape failed).
    pub fn evaluate(&mut self, now_s: u64, scrapes: &[Option<Vec<Sample>>]) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for (t, target) in self.targets.iter().enumerate() {
            let scrape = scrapes.get(t).and_then(|s| s.as_deref());
            for (r, def) in self.rules.iter().enumerate() {
                let value = (def.value)(scrape);
                let state = self.states.entry((r, t)).or_default();
                let Some(transition) = state.evaluate(&def.rule, now_s, value) else {
                    continue;
                };
                let (firing, since_s) = match transition {
                    Transition::Fired { since } => (true, since),
                    Transition::Resolved { fired_at } => (false, fired_at),
                };
                let component = (def.component)(target.kind);
                events.push(AlertEvent {
                    key: format!("{}/{}", def.rule.name, target.name),
                    rule: def.rule.name.clone(),
                    target: target.name.clone(),
                    severity: severity(def.severity, component),
                    component,
                    firing,
                    since_s,
                    value,
                });
            }
        }
        events
    }

    /// Alerts pending or firing now.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut active: Vec<ActiveAlert> = self
            .states
            .iter()
            .filter(|(_, s)| s.state != crate::threshold::AlertState::Inactive)
            .map(|((r, t), s)| ActiveAlert {
                key: format!("{}/{}", self.rules[*r].rule.name, self.targets[*t].name),
                state: s.state,
            })
            .collect();
        active.sort_by(|a, b| a.key.cmp(&b.key));
        active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_failed_scrapes_fire_down_and_two_good_ones_resolve_it() {
        let targets = vec![Target {
            name: "node-1".into(),
            kind: Kind::Node,
            base: "http://x".into(),
        }];
        let mut engine = Engine::new(targets, default_rules());
        let ok = Some(crate::promtext::parse(
            "croupier_host_cpu_usage_ratio 0.2\n",
        ));
        assert!(engine.evaluate(0, std::slice::from_ref(&ok)).is_empty());
        assert!(
            engine.evaluate(1, &[None]).is_empty(),
            "one failed scrape is not an outage"
        );
        let fired = engine.evaluate(2, &[None]);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].key.as_str(), fired[0].firing, fired[0].component),
            ("down/node-1", true, "games")
        );
        assert_eq!(engine.active().len(), 1);
        assert!(engine.evaluate(3, std::slice::from_ref(&ok)).is_empty());
        let resolved = engine.evaluate(4, std::slice::from_ref(&ok));
        assert_eq!((resolved.len(), resolved[0].firing), (1, false));
        assert!(engine.active().is_empty());
    }
}
