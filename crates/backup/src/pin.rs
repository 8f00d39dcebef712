//! Rollback detection. Whoever can write the backup repository can also remove its newest
//! segments and backups; what is left still restores, chains and passes every invariant,
//! only older. So the newest state shipped (its last journal entry and cut) is pinned where
//! the repository cannot rewrite it (the control plane keeps it in its own state; an
//! operator can pass it to `croupier backup verify --pinned-seq`), and a restore of the
//! newest state that reaches less than the pin is a rollback, not a success.

use serde::{Deserialize, Serialize};

use crate::error::BackupError;

/// The newest state known to have been shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// Its last journal entry.
    pub last_seq: i64,
    /// Its cut (0 when only the entry is known).
    pub cut_ms: i64,
}

impl Pin {
    /// The later of two pins: a pin only ever moves forward.
    pub fn max(self, other: Pin) -> Pin {
        if (other.last_seq, other.cut_ms) > (self.last_seq, self.cut_ms) {
            other
        } else {
            self
        }
    }

    /// Whether a restore that reached `last_seq` at `cut_ms` holds everything pinned.
    pub fn check(&self, last_seq: i64, cut_ms: i64) -> Result<(), BackupError> {
        if last_seq < self.last_seq || cut_ms < self.cut_ms {
            return Err(BackupError::RolledBack {
                restored_seq: last_seq,
                restored_cut_ms: cut_ms,
                pinned_seq: self.last_seq,
                pinned_cut_ms: self.cut_ms,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn less_than_the_pin_is_a_rollback_and_the_pin_only_moves_forward() {
        let pin = Pin {
            last_seq: 100,
            cut_ms: 5_000,
        };
        assert!(pin.check(100, 5_000).is_ok());
        assert!(pin.check(120, 6_000).is_ok());
        assert!(matches!(
            pin.check(99, 6_000),
            Err(BackupError::RolledBack {
                pinned_seq: 100,
                ..
            })
        ));
        assert!(pin.check(100, 4_999).is_err());
        let older = Pin {
            last_seq: 90,
            cut_ms: 4_000,
        };
        assert_eq!(pin.max(older), pin);
        assert_eq!(older.max(pin), pin);
    }
}
