//! The control plane's monitoring core, pure computation on scraped metrics: `promtext`
//! reads Prometheus/OpenMetrics text, `series` turns each scrape into a 1 s point (with
//! `series::room`'s disk forecast), `engine` applies the alert rules (`threshold`:
//! for-duration and hysteresis) to every target, `slo` feeds the SLOs' rolling `window`s and
//! evaluates their `burn` rates, `severity` spells how bad an alert is, and `promrules` +
//! `grafana` export the same alerting for operators' own Prometheus and Grafana. No I/O, no
//! clock, no async runtime and no other croupier crate: the caller (`croupier-control`)
//! scrapes, passes the time in, and acts on the transitions, so every rule is tested here on
//! plain data.
#![forbid(unsafe_code)]

pub mod burn;
pub mod engine;
pub mod grafana;
pub mod promrules;
pub mod promtext;
pub mod series;
pub mod severity;
pub mod slo;
pub mod threshold;
pub mod window;
