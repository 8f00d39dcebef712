//! The players' availability SLO, fed from the gateway's request counters: every scrape adds
//! the requests answered since the last one (5xx answers are the bad ones) to the rolling
//! windows, and the burn-rate evaluation turns into alerts like any rule — a page or a ticket
//! fires, and resolves when the burn stops.

use crate::burn::{Slo, SloStatus, Urgency};
use crate::engine::AlertEvent;
use crate::promtext::Sample;
use crate::window::EventWindow;

/// The series the gateway exports per node and status.
const REQUESTS: &str = "croupier_gateway_requests_total";

pub struct SloTracker {
    pub slo: Slo,
    events: EventWindow,
    last: Option<(f64, f64)>,
    urgency: Urgency,
    since_s: u64,
}

/// (good, total) requests in one scrape of a gateway.
fn counts(samples: &[Sample]) -> (f64, f64) {
    samples
        .iter()
        .filter(|s| s.name == REQUESTS)
        .fold((0.0, 0.0), |(good, total), s| {
            let bad = s
                .labels
                .get("status")
                .is_some_and(|code| code.starts_with('5'));
            (if bad { good } else { good + s.value }, total + s.value)
        })
}

impl SloTracker {
    pub fn new(objective: f64) -> SloTracker {
        SloTracker {
            slo: Slo {
                name: "availability".into(),
                objective,
            },
            events: EventWindow::default(),
            last: None,
            urgency: Urgency::Ok,
            since_s: 0,
        }
    }

    /// Adds what the gateways answered since the last scrape (`None`: no gateway answered).
    pub fn observe(&mut self, now_s: u64, gateway_scrapes: &[&[Sample]]) {
        if gateway_scrapes.is_empty() {
            return;
        }
        let (good, total) = gateway_scrapes
            .iter()
            .map(|s| counts(s))
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
        // A counter that went down means a gateway restarted: start counting from here.
        self.last = Some((good, total));
    }

    pub fn status(&self, now_s: u64) -> SloStatus {
        self.slo.evaluate(&self.events, now_s)
    }

    fn event(&self, rule: &str, severity: &'static str, firing: bool, since_s: u64) -> AlertEvent {
        AlertEvent {
            key: format!("{rule}/{}", self.slo.name),
            rule: rule.into(),
            target: self.slo.name.clone(),
            severity,
            component: "games",
            firing,
            since_s,
            value: None,
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
            (Urgency::Page, "slo_burn_page", "major"),
            (Urgency::Ticket, "slo_burn_ticket", "minor"),
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

    fn scrape(ok: u64, failed: u64) -> Vec<Sample> {
        parse(&format!(
            "{REQUESTS}{{node=\"a\",status=\"200\"}} {ok}\n{REQUESTS}{{node=\"a\",status=\"503\"}} {failed}\n{REQUESTS}{{node=\"b\",status=\"201\"}} 0\n"
        ))
    }

    #[test]
    fn counter_deltas_feed_the_windows_and_restarts_are_skipped() {
        let mut tracker = SloTracker::new(0.999);
        tracker.observe(0, &[&scrape(1_000, 0)]);
        tracker.observe(1, &[&scrape(1_100, 10)]);
        tracker.observe(2, &[&scrape(50, 0)]); // the gateway restarted
        tracker.observe(3, &[&scrape(150, 0)]);
        let (good, total) = tracker.events.sum(3, 60);
        assert_eq!((good, total), (200, 210));
    }

    #[test]
    fn a_burst_of_errors_pages_and_resolves() {
        let mut tracker = SloTracker::new(0.999);
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
