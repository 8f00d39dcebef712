//! The cashier journal export for reconciliation, `GET /cashier/v1/journal?from_ms=&to_ms=
//! &format=json|csv`: every entry of the `operator` account in the time range (deposits and
//! withdrawals, with the operator's transaction id, the player, the amount and the entry's
//! place in the hash chain), oldest first. Read on a snapshot, off the writers' path.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use croupier_ledger::{Account, EntryKind, JournalEntry, LedgerError, LedgerTx};
use serde::{Deserialize, Serialize};

use super::auth::CashierAuth;
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::state::AppState;

/// Most entries one export holds: a longer range is refused (ask for shorter ones).
pub const MAX_ROWS: usize = 100_000;
/// Entries read per step, newest first.
const PAGE: u32 = 1_000;
/// How far before the range the scan goes on: writers on several nodes stamp entries with
/// their own clocks, so the chain's order and the clock's differ by a little.
const CLOCK_SLACK_MS: i64 = 60_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    from_ms: i64,
    to_ms: i64,
    #[serde(default)]
    format: Format,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Csv,
}

/// One movement as the operator reconciles it.
#[derive(Serialize)]
struct Row {
    seq: i64,
    ts_ms: i64,
    kind: EntryKind,
    transaction_id: String,
    player: String,
    amount: i64,
    currency: String,
    hash: String,
}

impl Row {
    fn of(entry: JournalEntry) -> Row {
        let player = match (&entry.debit, &entry.credit) {
            (Account::Player(p), _) | (_, Account::Player(p)) => p.clone(),
            _ => String::new(),
        };
        Row {
            seq: entry.seq,
            ts_ms: entry.ts_ms,
            kind: entry.kind,
            transaction_id: entry.round_id.unwrap_or_default(),
            player,
            amount: entry.amount,
            currency: entry.currency,
            hash: entry.hash,
        }
    }

    /// Every field is from a restricted alphabet (ids, names, hex), so none needs quoting.
    fn csv_line(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{}\n",
            self.seq,
            self.ts_ms,
            self.kind.as_str(),
            self.transaction_id,
            self.player,
            self.amount,
            self.currency,
            self.hash
        )
    }
}

#[derive(Serialize)]
struct Export {
    from_ms: i64,
    to_ms: i64,
    entries: Vec<Row>,
}

/// The operator's entries with `from_ms <= ts_ms < to_ms`, oldest first; `None` past `MAX_ROWS`.
fn entries_between(
    tx: &mut dyn LedgerTx,
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<Vec<JournalEntry>>, LedgerError> {
    let mut found = Vec::new();
    let mut before = None;
    loop {
        let page = tx.history(&Account::Operator, before, PAGE)?;
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        let past_range = page.iter().all(|e| e.ts_ms < from_ms - CLOCK_SLACK_MS);
        found.extend(
            page.into_iter()
                .filter(|e| (from_ms..to_ms).contains(&e.ts_ms)),
        );
        if found.len() > MAX_ROWS {
            return Ok(None);
        }
        if past_range {
            break;
        }
    }
    found.reverse();
    Ok(Some(found))
}

pub async fn journal(
    State(state): State<AppState>,
    _: CashierAuth,
    QueryParams(range): QueryParams<Range>,
) -> Result<Response, ApiError> {
    if range.from_ms < 0 || range.to_ms <= range.from_ms {
        return Err(ApiError::unprocessable(
            "invalid_range",
            "from_ms and to_ms are milliseconds since the epoch, from_ms before to_ms",
        ));
    }
    let (from_ms, to_ms) = (range.from_ms, range.to_ms);
    let entries = state
        .store
        .read(move |tx| entries_between(tx, from_ms, to_ms))
        .await?
        .ok_or_else(|| {
            ApiError::unprocessable(
                "range_too_large",
                format!("the range holds more than {MAX_ROWS} entries; export shorter ranges"),
            )
        })?;
    let rows = entries.into_iter().map(Row::of);
    Ok(match range.format {
        Format::Json => Json(Export {
            from_ms,
            to_ms,
            entries: rows.collect(),
        })
        .into_response(),
        Format::Csv => {
            let mut text =
                String::from("seq,ts_ms,kind,transaction_id,player,amount,currency,hash\n");
            rows.for_each(|row| text.push_str(&row.csv_line()));
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            response
        }
    })
}
