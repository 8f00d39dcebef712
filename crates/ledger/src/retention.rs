//! What the ledger may forget, and when: a backend-independent policy for `Store::housekeep`.
//! The journal (and the balances, rounds, seeds and players it explains) is kept forever by
//! design; expired sessions are removed; idempotency records are kept for a stated period,
//! at least the operator's reconciliation window, then removed (a backup still holds them).
//! A replay of a key older than that period would run as a new request: clients retry within
//! seconds, and the period is days. The cashier's keys (`CASHIER_KEY_PREFIX`) are the
//! exception: each is one money movement of the operator's, looked up by its transaction id
//! for reconciliation, so they are kept as long as the journal.

use serde::Serialize;

pub const DAY_MS: i64 = 86_400_000;

/// Idempotency keys of the operator's cashier: never forgotten by housekeeping.
pub const CASHIER_KEY_PREFIX: &str = "cashier:";

/// The shortest idempotency period accepted: a reconciliation window is never shorter.
pub const MIN_IDEMPOTENCY_KEPT_MS: i64 = DAY_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Idempotency records younger than this are kept (default 35 days: a monthly
    /// reconciliation plus a margin).
    pub idempotency_kept_ms: i64,
    /// Sessions are removed once expired for this long (a grace for clocks that differ).
    pub session_grace_ms: i64,
    /// Most rows removed per transaction, so writers wait at most a few milliseconds.
    pub batch_rows: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            idempotency_kept_ms: 35 * DAY_MS,
            session_grace_ms: 60_000,
            batch_rows: 2_000,
        }
    }
}

impl RetentionPolicy {
    /// The policy with the idempotency period in days, refused below one day.
    pub fn with_idempotency_days(days: u32) -> Result<RetentionPolicy, String> {
        let kept = i64::from(days) * DAY_MS;
        if kept < MIN_IDEMPOTENCY_KEPT_MS {
            return Err(format!(
                "idempotency records must be kept at least one day (the reconciliation window), not {days}"
            ));
        }
        Ok(RetentionPolicy {
            idempotency_kept_ms: kept,
            ..RetentionPolicy::default()
        })
    }
}

/// What one housekeeping pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HousekeepReport {
    pub sessions_removed: u64,
    pub idempotency_removed: u64,
    /// The write-ahead log's size before and after the pass (0 where the backend has none).
    pub wal_bytes_before: u64,
    pub wal_bytes_after: u64,
}
