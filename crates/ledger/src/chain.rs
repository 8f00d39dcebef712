//! The journal's hash chain: each entry's hash covers the previous hash and every field of the
//! entry, so changing, removing or reordering any entry breaks every hash after it.

use sha2::{Digest, Sha256};

use crate::model::JournalEntry;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash an entry must carry, computed from its fields and `prev_hash`.
pub fn entry_hash(entry: &JournalEntry) -> String {
    let mut h = Sha256::new();
    let round = entry.round_id.as_deref().unwrap_or("");
    h.update(
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}",
            entry.prev_hash,
            entry.seq,
            entry.ts_ms,
            entry.kind.as_str(),
            round,
            entry.debit,
            entry.credit,
            entry.amount,
            entry.currency
        )
        .as_bytes(),
    );
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Account, EntryKind};

    #[test]
    fn every_field_changes_the_hash() {
        let base = JournalEntry {
            seq: 1,
            ts_ms: 10,
            kind: EntryKind::Grant,
            round_id: None,
            debit: Account::House,
            credit: Account::player("a"),
            amount: 5,
            currency: "EUR".into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        let h = entry_hash(&base);
        let variants = [
            JournalEntry {
                seq: 2,
                ..base.clone()
            },
            JournalEntry {
                amount: 6,
                ..base.clone()
            },
            JournalEntry {
                credit: Account::player("b"),
                ..base.clone()
            },
            JournalEntry {
                round_id: Some("r".into()),
                ..base.clone()
            },
            JournalEntry {
                prev_hash: "x".into(),
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(entry_hash(&v), h);
        }
    }
}
