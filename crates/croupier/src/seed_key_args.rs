//! The node's seed key file: the keys that seal unrevealed server seeds in the ledger
//! (`croupier_ledger::seed_seal`), so a copy of the ledger or a backup does not tell the next
//! outcomes. It lives in the data folder (0600) or where `--seed-key-file` says, never in
//! the ledger nor in a backup; every node of one ledger needs the same file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use croupier_ledger::{SeedKeys, SeedVault};

/// The seed key's file inside the data folder.
pub const SEED_KEY_FILE: &str = "seed-key";

#[derive(Debug, Clone, Args)]
pub struct SeedKeyArgs {
    /// The keys sealing unrevealed server seeds at rest: 64 hex digits a line, the sealing
    /// key first, older keys after it (they still open) [default: <data>/seed-key, made on
    /// the first start; a file given here must exist]. Every node of one ledger needs the
    /// same file; a restore that goes on playing needs it too, and backups do not hold it.
    #[arg(long, env = "CROUPIER_SEED_KEY_FILE")]
    pub seed_key_file: Option<PathBuf>,
    /// Start even when unrevealed seeds are sealed with a key no longer in the file (a lost
    /// key): each is marked revealed (unreadable) and its player gets a fresh seed.
    #[arg(long)]
    pub retire_lost_seeds: bool,
}

impl SeedKeyArgs {
    /// The keys, from the file given or the data folder's (made there when missing).
    pub fn vault(&self, data: &Path) -> anyhow::Result<SeedVault> {
        let path = match &self.seed_key_file {
            Some(path) => path.clone(),
            None => ensure_seed_key(data)?,
        };
        let keys = SeedKeys::from_file(&path).with_context(|| {
            format!(
                "reading the seed key file {} (`croupier backup keygen --out FILE` makes one)",
                path.display()
            )
        })?;
        tracing::info!(key = keys.sealing_id(), file = %path.display(), "unrevealed seeds sealed with this key");
        Ok(SeedVault::sealed(
            keys.retiring_lost_seeds(self.retire_lost_seeds),
        ))
    }
}

/// `<data>/seed-key`, made (readable only by its owner) when missing; several processes
/// starting at once agree on one key.
pub fn ensure_seed_key(data: &Path) -> anyhow::Result<PathBuf> {
    let path = data.join(SEED_KEY_FILE);
    // 32 random bytes as 64 hex digits: the ops token's maker makes exactly a key.
    crate::node_cmd::ops_token_file(&path)?;
    Ok(path)
}
