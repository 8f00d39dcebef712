//! The players' availability SLO, fed from the gateway's request counters: every scrape adds
//! the requests answered since the last one (5xx answers are the bad ones) to the rolling
//! windows, and the burn-rate evaluation turns into alerts like any rule — a page or a ticket
//! fires, and resolves when the burn stops.

use serde::{Deserialize, Serialize};

use crate::burn::{Slo, SloStatus, Urgency};
use crate::engine::AlertEvent;
use crate::promtext::Sample;
use crate::severity::Severity;
use crate::window::EventWindow;

/// The series the gateway exports per node and status.
const GATEWAY_REQUESTS: &str = "croupier_gateway_requests_total";
/// The series each node exports per route and status.
const NODE_REQUESTS: &str = "croupier_http_requests_total";

/// Where an SLO's good and bad events come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Every request the gateways answered: what players see.
    Gateway,
    /// The nodes' requests on routes starting with one of these prefixes.
    NodeRoutes(Vec<String>),
}

/// An SLO as configured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloDef {
    pub name: String,
    /// The player-facing component whose alerts it raises.
    pub component: String,
    /// Share of requests that must not be answered 5xx over 30 days.
    pub objective: f64,
    pub source: Source,
}

/// The built-in SLOs: players' overall availability, and one per component.
pub fn default_slos(objective: f64) -> Vec<SloDef> {
    let routes =
        |prefixes: &[&str]| Source::NodeRoutes(prefixes.iter().map(|p| (*p).to_owned()).collect());
    vec![
        SloDef {
            name: "availability".into(),
            component: "games".into(),
            objective,
            source: Source::Gateway,
        },
        SloDef {
            name: "wallet".into(),
            component: "wallet".into(),
            objective,
            source: routes(&["/api/v1/wallet", "/api/v1/sessions"]),
        },
        SloDef {
            name: "games".into(),
            component: "games".into(),
            objective,
            source: routes(&["/api/v1/rounds"]),
        },
        SloDef {
            name: "lobby".into(),
            component: "lobby".into(),
            objective,
            source: routes(&["/api/v1/lobby"]),
        },
    ]
}

pub struct SloTracker {
    pub slo: Slo,
    pub def: SloDef,
    events: EventWindow,
    last: Option<(f64, f64)>,
    urgency: Urgency,
    since_s: u64,
}

/// (good, total) requests in one scrape that count for `source`.
fn counts(source: &Source, samples: &[Sample]) -> (f64, f64) {
    samples
        .iter()
        .filter(|s| match source {
            Source::Gateway => s.name == GATEWAY_REQUESTS,
            Source::NodeRoutes(prefixes) => {
                s.name == NODE_REQUESTS
                    && s.labels
                        .get("route")
                        .is_some_and(|r| prefixes.iter().any(|p| r.starts_with(p.as_str())))
            }
        })
        .fold((0.0, 0.0), |(good, total), s| {
            let bad = s
                .labels
                .get("status")
                .is_some_and(|code| code.starts_with('5'));
            (if bad { good } else { good + s.value }, total + s.value)
        })
}

impl SloTracker {
    pub fn new(def: SloDef) -> SloTracker {
        SloTracker {
            slo: Slo {
                name: def.name.clone(),
                objective: def.objective,
            },
            def,
            events: EventWindow::default(),
            last: None,
            urgency: Urgency::Ok,
            since_s: 0,
        }
    }

    /// Whether scrapes of gateways (rather than nodes) feed it.
    pub fn reads_gateways(&self) -> bool {
        self.def.source == Source::Gateway
    }

    /// Adds what was answered since the last scrape of the targets that feed it (all of them
    /// must have answered; otherwise the interval is skipped).
    pub fn observe(&mut self, now_s: u64, scrapes: &[&[Sample]]) {
        if scrapes.is_empty() {
            return;
        }
        let (good, total) = scrapes
            .iter()
            .map(|s| counts(&self.def.source, s))
            .fold((0.0, 0.0), |(g, t), (g2, t2)| (g + g2, t + t2));
        if let Some((last_good, last_total)) = self.last
            && total >= last_total
            && good >= last_good
        {
            self.events.add(
                now_s,
                (good - last_good) as u64,
                (total - last_total) as u64,
            );
        }
        // A counter that went down means a process restarted: start counting from here.
        self.last = Some((good, total));
    }

    /// Forgets the last counters (a feeding target did not answer).
    pub fn gap(&mut self) {
        self.last = None;
    }

    pub fn status(&self, now_s: u64) -> SloStatus {
        self.slo.evaluate(&self.events, now_s)
    }

    fn event(&self, rule: &str, severity: Severity, firing: bool, since_s: u64) -> AlertEvent {
        AlertEvent {
            detail: None,
            key: format!("{rule}/{}", self.slo.name),
            rule: rule.into(),
            target: self.slo.name.clone(),
            severity: severity.on(&self.def.component),
            component: self.def.component.clone(),
            firing,
            since_s,
            value: None,
        }
    }

    /// Takes on the urgency whose alert was sent (`sent` holds the keys of alerts sent as
    /// firing): what a new leader does before its first evaluation, so that the next
    /// evaluation sends only what the leader before it did not.
    pub fn assume(&mut self, sent: &std::collections::HashSet<String>, now_s: u64) {
        let urgency = if sent.contains(&format!("slo_burn_page/{}", self.slo.name)) {
            Urgency::Page
        } else if sent.contains(&format!("slo_burn_ticket/{}", self.slo.name)) {
            Urgency::Ticket
        } else {
            Urgency::Ok
        };
        if urgency != self.urgency {
            self.urgency = urgency;
            self.since_s = now_s;
        }
    }

    /// Evaluates the burn rates; the page and the ticket are two alerts, each firing and
    /// resolving on its own (a page that calms down to a ticket resolves the page and fires
    /// the ticket).
    pub fn evaluate(&mut self, now_s: u64) -> Vec<AlertEvent> {
        let urgency = self.status(now_s).urgency;
        let previous = std::mem::replace(&mut self.urgency, urgency);
        let mut events = Vec::new();
        for (level, rule, severity) in [
            (Urgency::Page, "slo_burn_page", Severity::Major),
            (Urgency::Ticket, "slo_burn_ticket", Severity::Minor),
        ] {
            match (previous == level, urgency == level) {
                (false, true) => {
                    self.since_s = now_s;
                    events.push(self.event(rule, severity, true, now_s));
                }
                (true, false) => events.push(self.event(rule, severity, false, self.since_s)),
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promtext::parse;

    fn gateway_slo() -> SloTracker {
        SloTracker::new(default_slos(0.999).remove(0))
    }

    fn scrape(ok: u64, failed: u64) -> Vec<Sample> {
        parse(&format!(
            "{GATEWAY_REQUESTS}{{node=\"a\",status=\"200\"}} {ok}\n{GATEWAY_REQUESTS}{{node=\"a\",status=\"503\"}} {failed}\n{GATEWAY_REQUESTS}{{node=\"b\",status=\"201\"}} 0\n"
        ))
    }

    #[test]
    fn counter_deltas_feed_the_windows_and_restarts_are_skipped() {
        let mut tracker = gateway_slo();
        tracker.observe(0, &[&scrape(1_000, 0)]);
        tracker.observe(1, &[&scrape(1_100, 10)]);
        tracker.observe(2, &[&scrape(50, 0)]); // the gateway restarted
        tracker.observe(3, &[&scrape(150, 0)]);
        let (good, total) = tracker.events.sum(3, 60);
        assert_eq!((good, total), (200, 210));
    }

    #[test]
    fn node_routes_feed_their_component_only() {
        let wallet = default_slos(0.999).remove(1);
        let samples = parse(
            "croupier_http_requests_total{route=\"/api/v1/wallet\",status=\"200\"} 7\n\
             croupier_http_requests_total{route=\"/api/v1/wallet/history\",status=\"500\"} 1\n\
             croupier_http_requests_total{route=\"/api/v1/rounds\",status=\"503\"} 9\n",
        );
        assert_eq!(counts(&wallet.source, &samples), (7.0, 8.0));
    }

    #[test]
    fn a_burst_of_errors_pages_and_resolves() {
        let mut tracker = gateway_slo();
        let (mut ok, mut failed) = (0u64, 0u64);
        tracker.observe(0, &[&scrape(ok, failed)]);
        // Seven hours of clean traffic (every window full), then 10% errors.
        const CLEAN: u64 = 7 * 3_600;
        for t in 1..=CLEAN {
            ok += 100;
            tracker.observe(t, &[&scrape(ok, failed)]);
        }
        assert!(tracker.evaluate(CLEAN).is_empty());
        let mut fired = None;
        let mut ticket_first = false;
        for t in CLEAN + 1..=CLEAN + 900 {
            ok += 90;
            failed += 10;
            tracker.observe(t, &[&scrape(ok, failed)]);
            let events = tracker.evaluate(t);
            ticket_first |= events
                .iter()
                .any(|e| e.rule == "slo_burn_ticket" && e.firing);
            if let Some(page) = events.into_iter().find(|e| e.rule == "slo_burn_page") {
                fired = Some((t, page));
                break;
            }
        }
        // The slower windows notice first: a ticket (2 h at 3x) before the page.
        assert!(ticket_first);
        let (at, event) = fired.expect("a page");
        assert!(event.firing);
        // 10% errors is a 100x burn: the 1 h window crosses 14.4x after about 8.6 minutes.
        assert!(
            (CLEAN + 500..=CLEAN + 560).contains(&at),
            "paged {} s in",
            at - CLEAN
        );
        for t in at + 1..at + 400 {
            ok += 100;
            tracker.observe(t, &[&scrape(ok, failed)]);
            let events = tracker.evaluate(t);
            if let Some(resolved) = events.iter().find(|e| e.rule == "slo_burn_page") {
                assert!(!resolved.firing);
                // Still over budget on the long windows: a ticket takes over.
                assert!(
                    events
                        .iter()
                        .any(|e| e.rule == "slo_burn_ticket" && e.firing),
                    "{events:?}"
                );
                return;
            }
        }
        panic!("the page did not clear once the errors stopped");
    }
}
