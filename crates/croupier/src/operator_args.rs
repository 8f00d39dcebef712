//! The node's options for the operator's side: the cashier's credential and rate limit, and
//! the abandoned-round policy (idle limit, per game). `croupier up` hands them on to its nodes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use croupier_node::Operator;
use croupier_node::abandon::AbandonPolicy;
use croupier_node::cashier::auth::Cashier;

/// The cashier token's file inside the data folder.
pub const CASHIER_TOKEN_FILE: &str = "cashier-token";

#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// Cashier calls a node takes per second (as large a burst).
    #[arg(long, default_value_t = NonZeroU32::new(200).expect("non-zero"))]
    pub cashier_rate: NonZeroU32,
    /// How long an open round (a blackjack hand) may stay untouched before the nodes finish it
    /// for the player (stand or refund, the better for them): `24h`, `30m`, `5s`.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub abandon_after: Duration,
    /// The same for one game, `GAME=DURATION` (`blackjack=2h`); may be repeated.
    #[arg(long, value_parser = parse_game_limit)]
    pub abandon_after_game: Vec<(String, Duration)>,
}

fn parse_game_limit(text: &str) -> Result<(String, Duration), String> {
    let (game, limit) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not GAME=DURATION"))?;
    game.parse::<croupier_games::GameId>()
        .map_err(|e| e.to_string())?;
    let limit = humantime::parse_duration(limit).map_err(|e| format!("'{limit}': {e}"))?;
    Ok((game.to_owned(), limit))
}

impl OperatorArgs {
    /// The node's operator side: `cashier_token` as given, else the data folder's.
    pub fn operator(
        &self,
        cashier_token: Option<String>,
        data: &Path,
        ops_token: &str,
    ) -> anyhow::Result<Operator> {
        let token = match cashier_token {
            Some(token) => token,
            None => crate::node_cmd::ops_token_file(&data.join(CASHIER_TOKEN_FILE))?,
        };
        anyhow::ensure!(
            token.len() >= 32,
            "the cashier token must be at least 32 characters"
        );
        anyhow::ensure!(
            !croupier_web::same_token(&token, ops_token),
            "the cashier token must differ from the ops token"
        );
        let per_game: HashMap<String, Duration> = self.abandon_after_game.iter().cloned().collect();
        Ok(Operator {
            cashier: Cashier::new(token, self.cashier_rate),
            abandon: AbandonPolicy {
                idle: self.abandon_after,
                per_game,
            },
        })
    }

    /// The same options for a child node (the token stays in the data folder).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--cashier-rate".to_owned(),
            self.cashier_rate.to_string(),
            "--abandon-after".to_owned(),
            humantime::format_duration(self.abandon_after).to_string(),
        ];
        for (game, limit) in &self.abandon_after_game {
            args.push("--abandon-after-game".to_owned());
            args.push(format!("{game}={}", humantime::format_duration(*limit)));
        }
        args
    }
}
