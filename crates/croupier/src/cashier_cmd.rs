//! `croupier cashier`: the cashier API of a node from a terminal, as the operator's platform
//! calls it — deposit, withdraw, balance, a transaction by its id, and the journal export for
//! reconciliation (JSON or CSV). Prints the API's answers; a refusal becomes an error carrying
//! the API's message. Like `croupier ctl`, on the shared `control_client::Client`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::control_client::Client;
use crate::node_cmd::ops_token_file;
use crate::operator_args::CASHIER_TOKEN_FILE;

#[derive(Args)]
pub struct CashierArgs {
    /// A node's address (any node: every call is idempotent by its transaction id).
    #[arg(
        long,
        env = "CROUPIER_CASHIER_URL",
        default_value = "http://127.0.0.1:7001"
    )]
    url: String,
    /// The cashier token (default: read from <data>/cashier-token).
    #[arg(long, env = "CROUPIER_CASHIER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The data folder holding cashier-token, when --token is not given.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// TLS towards an https:// node (its CA; a client certificate when it asks for one).
    #[command(flatten)]
    tls: crate::tls_args::TlsArgs,
    #[command(subcommand)]
    command: CashierCommand,
}

#[derive(Subcommand)]
enum CashierCommand {
    /// Move money from the operator into a player's game wallet.
    Deposit(Movement),
    /// Move money out of a player's game wallet back to the operator.
    Withdraw(Movement),
    /// A player's balance and open rounds.
    Balance { player: String },
    /// What a transaction answered, by the operator's transaction id.
    Lookup { transaction_id: String },
    /// The operator's journal entries in a time range, for reconciliation.
    Export {
        /// Start (inclusive): RFC 3339 (`2026-12-01T00:00:00Z`) or milliseconds since the epoch.
        #[arg(long)]
        from: String,
        /// End (exclusive), the same way.
        #[arg(long)]
        to: String,
        /// json or csv.
        #[arg(long, default_value = "json", value_parser = ["json", "csv"])]
        format: String,
    },
}

#[derive(Args)]
struct Movement {
    /// The operator's transaction id: sending it again never moves money twice.
    #[arg(long)]
    transaction_id: String,
    #[arg(long)]
    player: String,
    /// Minor units (100 = 1.00).
    #[arg(long)]
    amount: i64,
}

fn millis(text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let at = humantime::parse_rfc3339_weak(text)
        .map_err(|e| anyhow::anyhow!("'{text}' is neither RFC 3339 nor milliseconds: {e}"))?;
    let since = at.duration_since(std::time::UNIX_EPOCH)?;
    Ok(i64::try_from(since.as_millis())?)
}

fn body(m: &Movement) -> String {
    json!({"transaction_id": m.transaction_id, "player": m.player, "amount": m.amount}).to_string()
}

pub fn run(args: CashierArgs) -> anyhow::Result<()> {
    let token = match args.token {
        Some(token) => token,
        None => {
            let path = args.data.join(CASHIER_TOKEN_FILE);
            anyhow::ensure!(
                path.exists(),
                "no --token and no {} (set CROUPIER_CASHIER_TOKEN or --data)",
                path.display()
            );
            ops_token_file(&path)?
        }
    };
    let client = Client::new(args.url, token, "cashier".to_owned(), &args.tls.client())?;
    match args.command {
        CashierCommand::Deposit(m) => client.print("POST", "/cashier/v1/deposits", Some(body(&m))),
        CashierCommand::Withdraw(m) => {
            client.print("POST", "/cashier/v1/withdrawals", Some(body(&m)))
        }
        CashierCommand::Balance { player } => client.print(
            "GET",
            &format!("/cashier/v1/players/{player}/balance"),
            None,
        ),
        CashierCommand::Lookup { transaction_id } => client.print(
            "GET",
            &format!("/cashier/v1/transactions/{transaction_id}"),
            None,
        ),
        CashierCommand::Export { from, to, format } => {
            let path = format!(
                "/cashier/v1/journal?from_ms={}&to_ms={}&format={format}",
                millis(&from)?,
                millis(&to)?
            );
            client.print("GET", &path, None)
        }
    }
}
