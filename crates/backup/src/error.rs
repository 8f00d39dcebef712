//! Everything a backup, restore or verify can fail with. Each kind of damage to the stored
//! pieces has its own variant naming the piece, so an operator knows what to fetch again.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BackupError {
    #[error("backup piece {name} is missing from the target")]
    MissingPiece { name: String },
    #[error("backup piece {name} is truncated: {actual} bytes, {expected} expected")]
    TruncatedPiece {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("backup piece {name} is corrupt: {reason}")]
    CorruptPiece { name: String, reason: String },
    #[error("backup piece {name} was sealed with another key (key id {found}, ours is {ours})")]
    WrongKey {
        name: String,
        found: String,
        ours: String,
    },
    #[error("shipped journal segments have a gap: {detail}")]
    SegmentGap { detail: String },
    #[error("restored store does not match {what}: expected {expected}, found {found}")]
    Mismatch {
        what: String,
        expected: String,
        found: String,
    },
    #[error("restored store breaks {count} ledger invariant(s), first: {first}")]
    Invariants { count: u64, first: String },
    #[error(
        "rollback: the repository restores up to journal entry {restored_seq} (cut {restored_cut_ms}), \
         but entry {pinned_seq} (cut {pinned_cut_ms}) was shipped: its newest pieces were removed \
         or replaced by older ones"
    )]
    RolledBack {
        restored_seq: i64,
        restored_cut_ms: i64,
        pinned_seq: i64,
        pinned_cut_ms: i64,
    },
    #[error("no backup covers {0}")]
    NotCovered(String),
    #[error("{0} already exists: a restore never writes over a store")]
    TargetExists(String),
    #[error("backup key: {0}")]
    Key(String),
    #[error("no ledger file at {0}")]
    NoLedger(String),
    #[error("the backup {task} pass panicked (a bug, logged); the next pass runs as usual")]
    Panicked { task: &'static str },
    #[error("{command} failed: {detail}")]
    Tool { command: String, detail: String },
    #[error("bad backup target {0}")]
    BadTarget(String),
    #[error("object storage: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("ledger: {0}")]
    Ledger(#[from] croupier_ledger::LedgerError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl BackupError {
    /// A restored ledger whose invariants `report` finds broken: how many, and the first.
    pub fn invariants(report: &croupier_ledger::IntegrityReport) -> Self {
        BackupError::Invariants {
            count: report.violation_count,
            first: report
                .violations
                .first()
                .map(|v| format!("{}: {}", v.invariant, v.detail))
                .unwrap_or_default(),
        }
    }
}
