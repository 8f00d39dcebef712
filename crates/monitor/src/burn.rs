//! SLO error budgets and multi-window multi-burn-rate alerts (Google SRE workbook): the burn
//! rate is the error ratio divided by the budget (1 - objective). Page when both the 1 h and
//! the 5 m windows burn at 14.4x or more, or both 6 h and 30 m at 6x; open a ticket when both
//! 1 d and 2 h burn at 3x, or both 3 d and 6 h at 1x. The long window says the burn matters;
//! the short one says it is still going on, so an alert resolves soon after the burn stops.

use serde::Serialize;

use crate::window::{COARSE_SPAN_S, EventWindow};

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BurnCondition {
    pub long_s: u64,
    pub short_s: u64,
    pub factor: f64,
}

pub const PAGE: [BurnCondition; 2] = [
    BurnCondition {
        long_s: HOUR,
        short_s: 5 * MINUTE,
        factor: 14.4,
    },
    BurnCondition {
        long_s: 6 * HOUR,
        short_s: 30 * MINUTE,
        factor: 6.0,
    },
];
pub const TICKET: [BurnCondition; 2] = [
    BurnCondition {
        long_s: DAY,
        short_s: 2 * HOUR,
        factor: 3.0,
    },
    BurnCondition {
        long_s: 3 * DAY,
        short_s: 6 * HOUR,
        factor: 1.0,
    },
];

/// Every window the page and ticket conditions look at, in seconds, shortest first.
pub fn windows() -> Vec<u64> {
    let mut windows: Vec<u64> = PAGE
        .iter()
        .chain(&TICKET)
        .flat_map(|c| [c.short_s, c.long_s])
        .collect();
    windows.sort_unstable();
    windows.dedup();
    windows
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    Ok,
    Ticket,
    Page,
}

#[derive(Debug, Clone, Serialize)]
pub struct SloStatus {
    pub urgency: Urgency,
    /// Burn rate per window length in seconds, for the dashboard.
    pub burn_rates: Vec<(u64, f64)>,
    /// Share of the 30-day error budget left (negative when overspent).
    pub budget_remaining: f64,
}

/// Fewer requests than this in a long window say too little to page on: one error among
/// ten is a 100x burn of a 99.9% objective, and a quiet casino at 4 a.m. is not an outage.
pub const MIN_EVENTS: u64 = 100;

#[derive(Debug, Clone, Serialize)]
pub struct Slo {
    pub name: String,
    /// Target share of good events, e.g. 0.999.
    pub objective: f64,
}

impl Slo {
    fn burn(&self, events: &EventWindow, now_s: u64, window_s: u64) -> f64 {
        let budget = 1.0 - self.objective;
        events
            .error_ratio(now_s, window_s)
            .map_or(0.0, |ratio| ratio / budget)
    }

    fn any_met(&self, events: &EventWindow, now_s: u64, conditions: &[BurnCondition]) -> bool {
        conditions.iter().any(|c| {
            events.sum(now_s, c.long_s).1 >= MIN_EVENTS
                && self.burn(events, now_s, c.long_s) >= c.factor
                && self.burn(events, now_s, c.short_s) >= c.factor
        })
    }

    pub fn evaluate(&self, events: &EventWindow, now_s: u64) -> SloStatus {
        let urgency = if self.any_met(events, now_s, &PAGE) {
            Urgency::Page
        } else if self.any_met(events, now_s, &TICKET) {
            Urgency::Ticket
        } else {
            Urgency::Ok
        };
        let burn_rates = windows()
            .iter()
            .map(|&w| (w, self.burn(events, now_s, w)))
            .collect();
        let (good, total) = events.sum(now_s, COARSE_SPAN_S);
        let allowed_bad = (1.0 - self.objective) * total as f64;
        let budget_remaining = if total == 0 {
            1.0
        } else {
            1.0 - (total - good) as f64 / allowed_bad
        };
        SloStatus {
            urgency,
            burn_rates,
            budget_remaining,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_error_among_a_few_requests_does_not_page() {
        let slo = Slo {
            name: "quiet".into(),
            objective: 0.999,
        };
        let mut events = EventWindow::default();
        events.add(10, 9, 10);
        assert_eq!(slo.evaluate(&events, 10).urgency, Urgency::Ok);
        events.add(20, 90, 100);
        assert_eq!(slo.evaluate(&events, 20).urgency, Urgency::Page);
    }

    const RATE: u64 = 100; // requests per second

    fn slo() -> Slo {
        Slo {
            name: "wallet availability".into(),
            objective: 0.999,
        }
    }

    /// Adds `seconds` of traffic from `start` with `error_ratio` of it failing, spreading
    /// fractional failures over the seconds so small ratios are exact over time.
    fn traffic(events: &mut EventWindow, start: u64, seconds: u64, error_ratio: f64) {
        let mut failed_so_far = 0u64;
        for (n, t) in (start..start + seconds).enumerate() {
            let due = ((n as u64 + 1) as f64 * RATE as f64 * error_ratio).round() as u64;
            let bad = due - failed_so_far;
            failed_so_far = due;
            events.add(t, RATE - bad, RATE);
        }
    }

    #[test]
    fn steady_small_error_rate_stays_quiet() {
        let mut events = EventWindow::default();
        traffic(&mut events, 0, 4 * DAY, 0.0005);
        let status = slo().evaluate(&events, 4 * DAY - 1);
        assert_eq!(status.urgency, Urgency::Ok);
        assert!(
            (status.budget_remaining - 0.5).abs() < 0.01,
            "{}",
            status.budget_remaining
        );
    }

    #[test]
    fn a_hard_outage_pages_when_the_hour_has_burnt_enough_and_stops_paging_soon_after() {
        let mut events = EventWindow::default();
        let start = DAY;
        traffic(&mut events, 0, start, 0.0);
        // 2% errors = 20x burn. The 1 h window reaches 14.4x after 43.2 minutes.
        traffic(&mut events, start, 40 * MINUTE, 0.02);
        assert_eq!(
            slo().evaluate(&events, start + 40 * MINUTE - 1).urgency,
            Urgency::Ok
        );
        traffic(&mut events, start + 40 * MINUTE, 5 * MINUTE, 0.02);
        let paging = slo().evaluate(&events, start + 45 * MINUTE - 1);
        assert_eq!(paging.urgency, Urgency::Page, "{paging:?}");
        // The errors stop: within the 5-minute short window the page clears.
        let end = start + 45 * MINUTE;
        traffic(&mut events, end, 6 * MINUTE, 0.0);
        let after = slo().evaluate(&events, end + 6 * MINUTE - 1);
        assert_ne!(after.urgency, Urgency::Page, "{after:?}");
    }

    #[test]
    fn a_slow_burn_opens_a_ticket_not_a_page() {
        let mut events = EventWindow::default();
        // 0.4% errors for a day and a half: 4x burn, over 3x for 1 d and 2 h.
        traffic(&mut events, 0, 36 * HOUR, 0.004);
        let status = slo().evaluate(&events, 36 * HOUR - 1);
        assert_eq!(status.urgency, Urgency::Ticket, "{status:?}");
        let one_hour = status
            .burn_rates
            .iter()
            .find(|(w, _)| *w == HOUR)
            .unwrap()
            .1;
        assert!((one_hour - 4.0).abs() < 0.01, "{one_hour}");
    }

    #[test]
    fn the_six_hour_window_pages_a_medium_burn() {
        let mut events = EventWindow::default();
        // 0.7% errors = 7x: under 14.4x, over 6x once 6 h and 30 m both show it.
        traffic(&mut events, 0, 6 * HOUR + 60, 0.007);
        assert_eq!(
            slo().evaluate(&events, 6 * HOUR + 59).urgency,
            Urgency::Page
        );
    }
}
