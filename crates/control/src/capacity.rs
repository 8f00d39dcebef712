//! How many nodes the current load needs, so that a rolling update never drains below it
//! (issue #13). The load is the players' request rate the control plane observes (through the
//! gateways, or the nodes when it watches no gateway), its peak over the last `WINDOW_S`
//! seconds so that a one-second dip does not hide it; a node's capacity is the operator's
//! figure (`node_capacity_rps` in the deployment file's `[update]`, measured with
//! `croupier loadtest`), since no node can tell how much more it could take. Without that
//! figure only the operator's `min_eligible` holds.

use crate::Control;
use croupier_monitor::engine::Kind;

/// Seconds of recent points the load is the peak of.
pub const WINDOW_S: usize = 10;

/// What the current load needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// Players' requests per second: the peak of the last `WINDOW_S` seconds.
    pub rps: f64,
    /// Requests per second one node serves.
    pub capacity_rps: f64,
    /// Nodes that load needs eligible: `rps / capacity_rps` rounded up.
    pub nodes: usize,
}

impl Need {
    pub fn of(rps: f64, capacity_rps: f64) -> Need {
        let nodes = if rps > 0.0 && capacity_rps > 0.0 {
            (rps / capacity_rps).ceil() as usize
        } else {
            0
        };
        Need {
            rps,
            capacity_rps,
            nodes,
        }
    }

    /// "the current load (… req/s) needs N node(s) of … req/s each".
    pub fn describe(&self) -> String {
        format!(
            "the current load ({:.0} player requests/s at its peak over the last {WINDOW_S} s) \
             needs {} node(s) of {:.0} requests/s each (node_capacity_rps)",
            self.rps, self.nodes, self.capacity_rps
        )
    }
}

/// The need now, when the deployment names a node's capacity.
pub fn need_now(control: &Control) -> Option<Need> {
    let capacity = control.config.update.node_capacity_rps?;
    Some(Need::of(observed_rps(control), capacity))
}

/// The minimum of eligible nodes a batch must leave: the operator's, or what the load needs
/// when that is more (and the reason, then).
pub fn minimum(control: &Control, min_eligible: usize) -> (usize, Option<Need>) {
    match need_now(control) {
        Some(need) if need.nodes > min_eligible => (need.nodes, Some(need)),
        _ => (min_eligible, None),
    }
}

/// The players' requests per second: summed over the gateways (or the nodes, without a
/// gateway), each target's peak over the last `WINDOW_S` points.
pub fn observed_rps(control: &Control) -> f64 {
    let series = control.series.lock();
    let targets = || control.config.targets.iter().zip(series.iter());
    let of_kind = |kind: Kind| -> Vec<f64> {
        targets()
            .filter(|(t, _)| t.kind == kind)
            .map(|(_, s)| peak(s.points.iter().rev().take(WINDOW_S).map(|p| p.requests_ps)))
            .collect()
    };
    let gateways = of_kind(Kind::Gateway);
    if gateways.is_empty() {
        of_kind(Kind::Node).iter().sum()
    } else {
        gateways.iter().sum()
    }
}

fn peak(rates: impl Iterator<Item = Option<f64>>) -> f64 {
    rates.flatten().fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_needs_its_rate_over_a_node_s_capacity_rounded_up() {
        assert_eq!(Need::of(150.0, 40.0).nodes, 4);
        assert_eq!(Need::of(120.0, 40.0).nodes, 3);
        assert_eq!(Need::of(0.5, 40.0).nodes, 1);
        assert_eq!(Need::of(0.0, 40.0).nodes, 0);
        assert!(Need::of(150.0, 40.0).describe().contains("needs 4 node(s)"));
    }

    #[test]
    fn the_rate_is_the_recent_peak_and_gaps_are_skipped() {
        let rates = [Some(10.0), None, Some(90.0), Some(20.0)];
        assert_eq!(peak(rates.into_iter()), 90.0);
        assert_eq!(peak([None, None].into_iter()), 0.0);
    }
}
