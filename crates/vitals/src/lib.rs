//! What keeps a long-running Croupier process alive, and what tells how close it is to
//! running out of something. The policy (ARCHITECTURE.md, "Failure policy"): one panic never
//! becomes a dead service. Shared state sits behind locks that cannot poison (`parking_lot`),
//! because every such state stays valid after a panic half-way through an update; a panic
//! inside a request is a 500 for that request alone (`panics`); a background loop survives a
//! panic in one of its rounds (`background`); a process that can no longer serve exits so that its
//! supervisor restarts it. Logging never blocks a request nor panics when the disk is full
//! (`logs`, `rotating`). `room` measures the filesystem under a data folder, `limits` the
//! descriptors and memory a process may still use.
#![forbid(unsafe_code)]

pub mod background;
pub mod exporter;
pub mod limits;
pub mod logs;
pub mod panics;
pub mod reserve;
pub mod room;
pub mod rotating;
