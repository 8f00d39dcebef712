//! Backups of a ledger on PostgreSQL through pgBackRest, the tool PostgreSQL operators already
//! trust: Croupier writes the stanza's configuration, runs the real `pgbackrest` process for
//! every step (never a reimplementation of it) as the cluster's owner, and proves each backup
//! the way it proves the SQLite ones: a restore into a scratch cluster that ends with every
//! ledger invariant and an RTO/RPO report.
//!
//! - `config`: the stanza (`pgbackrest.conf`) and the `postgresql.conf` lines of WAL archiving.
//! - `process`: one `pgbackrest` command, run as the data folder's owner.
//! - `info`: `pgbackrest info --output=json` as typed values.
//! - `restore_test`: restore, start on a free loopback port, `integrity::check`, RTO and RPO.
//! - `scheduler`: full and differential backups on the schedule, restore tests, health.

pub mod config;
pub mod info;
pub mod process;
pub mod restore_test;
pub mod scheduler;

pub use config::{PgBackrestConfig, Repo};
pub use info::{BackupSet, StanzaInfo};
pub use process::{PgBackrest, RestoreTarget};
pub use scheduler::PgBackrestScheduler;
