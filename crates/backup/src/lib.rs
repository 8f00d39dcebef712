//! Backups of the ledger that are proven by restores (docs/design.md, Operations data).
//!
//! - `snapshot`: full backups with SQLite's online backup API at a consistent `cut` while
//!   nodes write; incremental backups as one `delta` since the last full.
//! - `ship`: a segment of changed rows every second, so the recovery point is seconds old.
//! - `pieces` + `seal`: zstd, XChaCha20-Poly1305, BLAKE3 checksums listed in the `manifest`.
//! - `target`: a local folder or S3-compatible storage through `object_store`.
//! - `restore`: into a new file only, to the newest state or any shipped cut (point in time).
//! - `verify`: restore into scratch, every invariant, manifest totals and chain head, RTO/RPO;
//!   with a `pin` (the newest state shipped, kept outside the repository) a rollback fails.
//! - `plan` + `scheduler`: weekly full / daily incremental, retention, scheduled verifies.
//! - `pgbackrest`: a ledger on PostgreSQL backed up by pgBackRest (stanza, WAL archiving,
//!   full/differential on the schedule, restore tests into a scratch cluster).
//! - `health`: the verdict the alerts read, the same for both backends.
//! - `daemon`: the one backup loop, for both backends, that `croupier backup run` and the
//!   control plane run (shipping each second, the schedule on a thread of its own).
#![forbid(unsafe_code)]

pub mod catalog;
pub mod cut;
pub mod daemon;
pub mod delta;
pub mod error;
pub mod health;
pub mod manifest;
pub mod pgbackrest;
pub mod pieces;
pub mod pin;
pub mod plan;
pub mod progress;
pub mod restore;
pub mod scheduler;
pub mod seal;
pub mod ship;
pub mod snapshot;
pub mod state;
pub mod target;
pub mod verify;

pub use catalog::Catalog;
pub use daemon::{BackupDaemon, DaemonHooks};
pub use error::BackupError;
pub use health::BackupHealth;
pub use manifest::{BackupKind, Manifest};
pub use pin::Pin;
pub use plan::Policy;
pub use progress::{Progress, Silent};
pub use restore::{Restored, restore};
pub use scheduler::{BackupScheduler, RunOutcome, SchedulerConfig};
pub use seal::BackupKey;
pub use ship::{Shipped, Shipper};
pub use snapshot::{take_full, take_incremental};
pub use state::LedgerState;
pub use target::Target;
pub use verify::{VerifyReport, verify};
