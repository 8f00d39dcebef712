//! Croupier's proving ground: `loadtest` (simulated players at peak through a gateway, open and
//! closed models, HdrHistogram latency measured from each request's intended start, k6-style
//! thresholds, JSON and HTML reports), `drill` (real faults injected into a running stack under
//! load, then the money checks of a Jepsen bank test) and `audit` (a security sweep of a
//! running deployment).

pub mod audit;
pub mod bank;
pub mod disk_full;
pub mod drill;
pub mod error;
pub mod failover;
pub mod freeze;
pub mod history;
pub mod http;
pub mod layout;
pub mod pgcluster;
pub mod player;
mod proc_net;
pub mod report;
pub mod run;
pub mod schedule;
pub mod stack;
pub mod stats;
pub mod threshold;

pub use error::LoadError;
