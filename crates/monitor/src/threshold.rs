//! Threshold rules like Prometheus alerting rules, with hysteresis: a rule goes pending at
//! the first breaching evaluation, fires once the breach has lasted `for_duration` and at
//! least `fire_after` evaluations in a row breached, and resolves only after `resolve_after`
//! evaluations in a row are back past the clear threshold (which may sit below the firing
//! threshold, so a value hovering at the line does not flap).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Comparison {
    /// Breach when the value is above the threshold (CPU, latency, error rate).
    Above,
    /// Breach when the value is below it (disk space left, healthy nodes).
    Below,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdRule {
    pub name: String,
    pub comparison: Comparison,
    pub threshold: f64,
    /// Where the value must come back to before the alert can resolve; defaults to
    /// `threshold`.
    #[serde(default)]
    pub clear_threshold: Option<f64>,
    #[serde(default)]
    pub for_duration_s: u64,
    #[serde(default = "one")]
    pub fire_after: u32,
    #[serde(default = "one")]
    pub resolve_after: u32,
    /// Whether a missing value (target down, no data) counts as a breach.
    #[serde(default)]
    pub missing_breaches: bool,
}

fn one() -> u32 {
    1
}

impl ThresholdRule {
    fn breaches(&self, value: Option<f64>) -> bool {
        match value {
            None => self.missing_breaches,
            Some(v) => match self.comparison {
                Comparison::Above => v > self.threshold,
                Comparison::Below => v < self.threshold,
            },
        }
    }

    fn cleared(&self, value: Option<f64>) -> bool {
        let clear = self.clear_threshold.unwrap_or(self.threshold);
        match value {
            None => !self.missing_breaches,
            Some(v) => match self.comparison {
                Comparison::Above => v <= clear,
                Comparison::Below => v >= clear,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending { since: u64 },
    Firing { since: u64 },
}

/// What an evaluation changed, for notifications and incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Fired { since: u64 },
    Resolved { fired_at: u64 },
}

/// One rule's state for one target.
#[derive(Debug, Clone)]
pub struct RuleState {
    pub state: AlertState,
    breaching_streak: u32,
    cleared_streak: u32,
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState {
            state: AlertState::Inactive,
            breaching_streak: 0,
            cleared_streak: 0,
        }
    }
}

impl RuleState {
    /// Takes on what the leader before this one told the world: firing when its alert was
    /// sent (so it is not sent again, and its resolution is), not firing when it was not (so
    /// it fires, and is sent, once this process sees the breach last). A pending state is
    /// kept when nothing was sent.
    pub fn assume(&mut self, sent: bool, now: u64) {
        match (sent, self.state) {
            (true, AlertState::Firing { .. })
            | (false, AlertState::Inactive | AlertState::Pending { .. }) => {}
            (true, _) => {
                self.state = AlertState::Firing { since: now };
                self.cleared_streak = 0;
            }
            (false, AlertState::Firing { .. }) => {
                self.state = AlertState::Inactive;
                self.breaching_streak = 0;
            }
        }
    }

    /// Evaluates `rule` on `value` at `now` (seconds).
    pub fn evaluate(
        &mut self,
        rule: &ThresholdRule,
        now: u64,
        value: Option<f64>,
    ) -> Option<Transition> {
        match self.state {
            AlertState::Inactive | AlertState::Pending { .. } => {
                if !rule.breaches(value) {
                    self.state = AlertState::Inactive;
                    self.breaching_streak = 0;
                    return None;
                }
                self.breaching_streak += 1;
                let since = match self.state {
                    AlertState::Pending { since } => since,
                    _ => now,
                };
                if now.saturating_sub(since) >= rule.for_duration_s
                    && self.breaching_streak >= rule.fire_after.max(1)
                {
                    self.state = AlertState::Firing { since: now };
                    self.cleared_streak = 0;
                    return Some(Transition::Fired { since });
                }
                self.state = AlertState::Pending { since };
                None
            }
            AlertState::Firing { since } => {
                if rule.cleared(value) {
                    self.cleared_streak += 1;
                } else {
                    self.cleared_streak = 0;
                }
                if self.cleared_streak >= rule.resolve_after.max(1) {
                    self.state = AlertState::Inactive;
                    self.breaching_streak = 0;
                    return Some(Transition::Resolved { fired_at: since });
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu_rule() -> ThresholdRule {
        ThresholdRule {
            name: "cpu high".into(),
            comparison: Comparison::Above,
            threshold: 0.9,
            clear_threshold: Some(0.8),
            for_duration_s: 10,
            fire_after: 3,
            resolve_after: 5,
            missing_breaches: false,
        }
    }

    /// Feeds one value a second from t = 0 and returns the transitions with their times.
    fn run(rule: &ThresholdRule, values: &[Option<f64>]) -> Vec<(u64, Transition)> {
        let mut state = RuleState::default();
        values
            .iter()
            .enumerate()
            .filter_map(|(t, v)| state.evaluate(rule, t as u64, *v).map(|tr| (t as u64, tr)))
            .collect()
    }

    #[test]
    fn for_duration_holds_the_alert_back() {
        let rule = cpu_rule();
        // 9 s over the line, then back: pending only, never fires.
        let mut values = vec![Some(0.95); 9];
        values.extend(vec![Some(0.5); 5]);
        assert!(run(&rule, &values).is_empty());
        // 11 s over the line: fires at t = 10, 10 s after the breach began at t = 0.
        assert_eq!(
            run(&rule, &[Some(0.95); 11]),
            vec![(10, Transition::Fired { since: 0 })]
        );
    }

    #[test]
    fn a_dip_restarts_the_pending_period() {
        let rule = cpu_rule();
        let mut values = vec![Some(0.95); 8];
        values.push(Some(0.5));
        values.extend(vec![Some(0.95); 11]);
        assert_eq!(
            run(&rule, &values),
            vec![(19, Transition::Fired { since: 9 })]
        );
    }

    #[test]
    fn hysteresis_keeps_a_hovering_value_from_flapping() {
        let rule = cpu_rule();
        let mut values = vec![Some(0.95); 11];
        // Hovering between the clear line (0.8) and the firing line (0.9): stays firing.
        values.extend([Some(0.85), Some(0.92), Some(0.86), Some(0.88)].repeat(5));
        let transitions = run(&rule, &values);
        assert_eq!(transitions, vec![(10, Transition::Fired { since: 0 })]);
        // Below the clear line, but four passes are not enough: five resolve it.
        values.extend(vec![Some(0.7); 4]);
        assert_eq!(run(&rule, &values).len(), 1);
        values.push(Some(0.7));
        let transitions = run(&rule, &values);
        assert_eq!(transitions.len(), 2);
        assert_eq!(
            transitions[1],
            (
                values.len() as u64 - 1,
                Transition::Resolved { fired_at: 10 }
            )
        );
    }

    #[test]
    fn n_failures_to_fire_and_missing_data_as_a_breach() {
        let node_down = ThresholdRule {
            name: "node down".into(),
            comparison: Comparison::Below,
            threshold: 1.0,
            clear_threshold: None,
            for_duration_s: 0,
            fire_after: 3,
            resolve_after: 2,
            missing_breaches: true,
        };
        // up = 1, then the scrape fails (None) three times: fires on the third.
        let values = [Some(1.0), None, None, None, Some(1.0), Some(1.0)];
        assert_eq!(
            run(&node_down, &values),
            vec![
                (3, Transition::Fired { since: 1 }),
                (5, Transition::Resolved { fired_at: 3 })
            ]
        );
    }
}
