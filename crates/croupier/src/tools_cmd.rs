//! Offline tools: `croupier verify` recomputes a provably fair round; `croupier integrity`
//! checks a ledger file's invariants.

use anyhow::Context;
use clap::Args;
use croupier_games::blackjack::Action;
use croupier_games::{BetRequest, GameId, server_seed_hash};
use croupier_ledger::StoreLocation;
use serde_json::json;

use crate::console::outln;

#[derive(Args)]
pub struct VerifyArgs {
    #[arg(long)]
    game: String,
    /// The revealed server seed.
    #[arg(long)]
    server_seed: String,
    #[arg(long)]
    client_seed: String,
    #[arg(long)]
    nonce: u64,
    /// Stake in minor units (for blackjack, the first stake).
    #[arg(long)]
    stake: i64,
    /// The bet as JSON, as sent when playing (dice, roulette).
    #[arg(long, default_value = "null")]
    bet: String,
    /// Blackjack actions in order, comma-separated (hit,stand,double).
    #[arg(long, value_delimiter = ',')]
    actions: Vec<String>,
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let game: GameId = args.game.parse()?;
    let bet = serde_json::from_str(&args.bet).context("--bet is not JSON")?;
    let bet = BetRequest::from_json(game, bet)?;
    let actions = args
        .actions
        .iter()
        .map(|a| Action::parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = croupier_games::replay(
        args.stake,
        &bet,
        &actions,
        &args.server_seed,
        &args.client_seed,
        args.nonce,
    )?;
    let report = json!({
        "server_seed_hash": server_seed_hash(&args.server_seed),
        "outcome": outcome.detail,
        "payout": outcome.payout,
    });
    outln!("{}", serde_json::to_string_pretty(&report)?)?;
    Ok(())
}

#[derive(Args)]
pub struct IntegrityArgs {
    /// The ledger: a `postgres://` URL, `sqlite://PATH` or a SQLite file path (also read
    /// from CROUPIER_STORE).
    #[arg(
        long,
        alias = "db",
        default_value = "data/ledger.db",
        env = "CROUPIER_STORE",
        hide_env_values = true
    )]
    store: StoreLocation,
}

pub fn integrity(args: IntegrityArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        anyhow::ensure!(
            args.store.holds_a_ledger().await?,
            "{} holds no Croupier ledger (no journal table): nothing was checked, and nothing \
             was created there",
            args.store
        );
        let store = args.store.open("EUR")?;
        Ok(store.integrity().await?)
    })?;
    outln!("{}", serde_json::to_string_pretty(&report)?)?;
    if !report.ok {
        anyhow::bail!("{} invariant violation(s)", report.violation_count);
    }
    Ok(())
}
