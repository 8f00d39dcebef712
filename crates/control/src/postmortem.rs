//! A postmortem skeleton for an incident, in Markdown: the facts the control plane knows
//! (what, when, how long, severity, the timeline with every alert and update) filled in, and
//! the sections people write (impact, root cause, what went well, action items) left as
//! prompts.

use std::fmt::Write;

use crate::dates::utc;
use crate::state::Incident;

fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

pub fn skeleton(incident: &Incident, now_ms: i64) -> String {
    let mut out = String::new();
    let end = incident.resolved_ms.unwrap_or(now_ms);
    let _ = writeln!(
        out,
        "# Postmortem: {} (incident #{})\n",
        incident.title, incident.id
    );
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| Component | {} |", incident.component);
    let _ = writeln!(out, "| Severity | {} |", incident.severity);
    let _ = writeln!(out, "| Opened | {} |", utc(incident.opened_ms));
    match incident.resolved_ms {
        Some(resolved) => {
            let _ = writeln!(out, "| Resolved | {} |", utc(resolved));
        }
        None => {
            let _ = writeln!(out, "| Resolved | not yet ({}) |", incident.status.as_str());
        }
    }
    let _ = writeln!(out, "| Duration | {} |", duration(end - incident.opened_ms));
    let _ = writeln!(
        out,
        "| Triggered by | {} |\n",
        incident.alert_key.as_deref().unwrap_or("an operator")
    );
    let _ = writeln!(out, "## Timeline (UTC)\n");
    for update in &incident.timeline {
        let _ = writeln!(
            out,
            "- {} — **{}** — {}",
            utc(update.ts_ms),
            update.status,
            update.message
        );
    }
    for (section, prompt) in [
        (
            "Impact",
            "Which players, games and money flows were affected, for how long; player-visible errors; SLO budget spent.",
        ),
        (
            "Root cause",
            "What failed and why; how it was detected (the alert above, or a player report).",
        ),
        ("Resolution", "What brought service back, and when."),
        ("What went well", ""),
        ("What went badly", ""),
        ("Action items", "- [ ] owner — action — due date"),
    ] {
        let _ = writeln!(out, "\n## {section}\n\n{prompt}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Update;
    use croupier_monitor::severity::Severity;

    #[test]
    fn the_skeleton_carries_the_facts_and_the_timeline() {
        let incident = Incident {
            id: 7,
            title: "down on node-2".into(),
            component: "games".into(),
            severity: Severity::Major,
            status: crate::state::IncidentStatus::Resolved,
            alert_key: Some("down/node-2".into()),
            opened_ms: 1_000,
            resolved_ms: Some(96_000),
            eta_ms: None,
            timeline: vec![
                Update {
                    ts_ms: 1_000,
                    status: "investigating".into(),
                    message: "Alert down/node-2 fired.".into(),
                },
                Update {
                    ts_ms: 96_000,
                    status: "resolved".into(),
                    message: "Alert down/node-2 resolved.".into(),
                },
            ],
        };
        let text = skeleton(&incident, 100_000);
        assert!(text.starts_with("# Postmortem: down on node-2 (incident #7)"));
        assert!(text.contains("| Duration | 1 min 35 s |"), "{text}");
        assert!(text.contains("| Triggered by | down/node-2 |"));
        assert!(
            text.contains("1970-01-01 00:01:36 UTC — **resolved** — Alert down/node-2 resolved.")
        );
        assert!(text.contains("## Action items"));
    }
}
