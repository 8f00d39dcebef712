//! `backup verify`: proves the newest backup by restoring it into a scratch store (every
//! piece checked, the manifest's totals and chain head compared, the segments applied, every
//! ledger invariant run) and records how long that took (the RTO) and how old the newest
//! restorable data is (the RPO).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cut::now_ms;
use crate::pin::Pin;
use crate::progress::Progress;
use crate::restore::restore;
use crate::seal::BackupKey;
use crate::state::LedgerState;
use crate::target::Target;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub ok: bool,
    /// Why it failed (the named error), when it did.
    pub reason: Option<String>,
    pub target: String,
    pub verified_at_ms: i64,
    pub backup_id: Option<String>,
    /// The cut the restore reached.
    pub cut_ms: Option<i64>,
    pub segments_applied: usize,
    /// Restore time: fetch, check, unseal, apply, every invariant.
    pub rto_ms: u64,
    /// Data age at the newest restorable cut, when the verify started.
    pub rpo_seconds: Option<f64>,
    pub state: Option<LedgerState>,
}

/// Restores the newest state (or the state at `at_ms`) into `scratch_dir` and checks it;
/// the scratch store is deleted afterwards. With a `pin`, the newest state must reach it
/// (`pin`: a rollback fails). Failure is a report, not an error.
pub fn verify(
    target: &Target,
    key: &BackupKey,
    scratch_dir: &Path,
    at_ms: Option<i64>,
    pin: Option<&Pin>,
    progress: &dyn Progress,
) -> VerifyReport {
    let verified_at_ms = now_ms();
    let started = std::time::Instant::now();
    let outcome = tempfile::Builder::new()
        .prefix(".croupier-verify-")
        .tempdir_in(scratch_dir)
        .map_err(crate::BackupError::from)
        .and_then(|dir| {
            let result = restore(target, key, &dir.path().join("ledger.db"), at_ms, progress);
            drop(dir);
            result
        })
        .and_then(|restored| match (pin, at_ms) {
            (Some(pin), None) => pin
                .check(restored.state.last_seq, restored.cut_ms)
                .map(|()| restored),
            _ => Ok(restored),
        });
    let rto_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(restored) => VerifyReport {
            ok: true,
            reason: None,
            target: target.location().to_owned(),
            verified_at_ms,
            backup_id: Some(restored.backup_id),
            cut_ms: Some(restored.cut_ms),
            segments_applied: restored.segments_applied,
            rto_ms,
            rpo_seconds: Some((verified_at_ms - restored.cut_ms).max(0) as f64 / 1000.0),
            state: Some(restored.state),
        },
        Err(e) => VerifyReport {
            ok: false,
            reason: Some(e.to_string()),
            target: target.location().to_owned(),
            verified_at_ms,
            backup_id: None,
            cut_ms: None,
            segments_applied: 0,
            rto_ms,
            rpo_seconds: None,
            state: None,
        },
    }
}
