//! The control plane (`croupier control`, issue #4), built from its core outwards. What is
//! here: the alerting logic, pure and driven by the caller's clock so it can be tested on
//! synthetic series — threshold rules with for-durations and hysteresis (`threshold`), event
//! counts over rolling windows (`window`), and SLO error budgets with Google-SRE-style
//! multi-window multi-burn-rate alerts (`burn`). Scraping, storage, notifications, incidents
//! and the pages come next and will feed these.

pub mod burn;
pub mod threshold;
pub mod window;
