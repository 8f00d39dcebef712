//! The rows a batch's operations asked for and the batch had not loaded yet: what a discovery
//! or watched run notes (`tx`) and a prefetch reads (`prefetch`).

use std::collections::BTreeSet;

/// The rows the operations of a discovery or watched run asked for and the batch had not
/// loaded.
#[derive(Default)]
pub struct Needs {
    /// Players whose active seed is needed.
    pub active_seeds: BTreeSet<String>,
    pub seeds: BTreeSet<i64>,
    /// Player accounts whose balance is needed (the house and escrow are never locked).
    pub balances: BTreeSet<String>,
    pub rounds: BTreeSet<String>,
    /// Players whose existence is asked (claimed first, see `CLAIM_PLAYERS`).
    pub players: BTreeSet<String>,
}

impl Needs {
    pub fn is_empty(&self) -> bool {
        self.active_seeds.is_empty()
            && self.seeds.is_empty()
            && self.balances.is_empty()
            && self.rounds.is_empty()
            && self.players.is_empty()
    }

    /// Adds what `more` asks for.
    pub fn extend(&mut self, more: Needs) {
        self.active_seeds.extend(more.active_seeds);
        self.seeds.extend(more.seeds);
        self.balances.extend(more.balances);
        self.rounds.extend(more.rounds);
        self.players.extend(more.players);
    }
}
