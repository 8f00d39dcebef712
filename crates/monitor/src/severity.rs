//! How bad an alert or an incident is for players: one word of three, spelled once here for
//! the rules, the SLOs, the incidents, the pages and the exported Prometheus rules. The
//! order is the priority (`Minor < Major < Critical`): an incident takes the worst severity
//! of its alerts, and a page goes out for `Major` and worse.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Severity {
    /// A warning: nothing players see yet (no page, the component stays operational).
    Minor,
    /// Players see it (a partial outage).
    Major,
    /// Players cannot play or their money is at stake (a major outage).
    Critical,
}

/// What a bad severity word gets (the deployment file, the API).
pub const SEVERITY_WORDS: &str = "severity is critical, major or minor";

impl Severity {
    /// The word stored, sent and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    /// The severity a word names, if any.
    pub fn parse(word: &str) -> Option<Severity> {
        [Severity::Minor, Severity::Major, Severity::Critical]
            .into_iter()
            .find(|s| s.as_str() == word)
    }

    /// An outage's severity follows the component's priority: the wallet first (money), then
    /// live games and the lobby. Warnings (`Minor` rules) stay minor wherever they are.
    pub fn on(self, component: &str) -> Severity {
        match (self, component) {
            (Severity::Minor, _) => Severity::Minor,
            (_, "wallet") | (Severity::Critical, _) => Severity::Critical,
            _ => Severity::Major,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Severity {
    type Error = &'static str;

    fn try_from(word: String) -> Result<Severity, &'static str> {
        Severity::parse(&word).ok_or(SEVERITY_WORDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_order_is_priority() {
        for severity in [Severity::Minor, Severity::Major, Severity::Critical] {
            let json = serde_json::to_string(&severity).unwrap();
            assert_eq!(json, format!("\"{severity}\""));
            assert_eq!(serde_json::from_str::<Severity>(&json).unwrap(), severity);
        }
        let wrong = serde_json::from_str::<Severity>("\"huge\"").unwrap_err();
        assert!(wrong.to_string().contains(SEVERITY_WORDS), "{wrong}");
        assert!(Severity::Minor < Severity::Major && Severity::Major < Severity::Critical);
    }

    #[test]
    fn the_wallet_makes_an_outage_critical_but_a_warning_stays_minor() {
        assert_eq!(Severity::Major.on("wallet"), Severity::Critical);
        assert_eq!(Severity::Major.on("dice"), Severity::Major);
        assert_eq!(Severity::Minor.on("wallet"), Severity::Minor);
        assert_eq!(Severity::Critical.on("lobby"), Severity::Critical);
    }
}
