//! What the benchmarks send a node over HTTP as its players and its operators: sign-ins, the
//! dice bet every benchmark places, and the ledger's integrity verdict that ends a run. Typed
//! with the node's own wire types, so a benchmark breaks at build time when the API changes.

use croupier_games::dice::{DiceBet, Direction};
use croupier_web::wire::player::{Play, SessionCreated, SignIn};
use serde::Deserialize;

use crate::procs::{OPS_TOKEN, agent};

/// Signs in one demo player per name at the node `base`; their bearer tokens, in order.
pub fn sign_in(base: &str, names: impl IntoIterator<Item = String>) -> anyhow::Result<Vec<String>> {
    let agent = agent();
    names
        .into_iter()
        .map(|name| {
            let mut response = agent
                .post(&format!("{base}/api/v1/sessions"))
                .send_json(SignIn::demo(name))?;
            let session: SessionCreated = response.body_mut().read_json()?;
            Ok(session.token)
        })
        .collect()
}

/// A 10-unit dice round, over 50.00: the bet every HTTP benchmark places.
pub fn dice_play() -> Play<DiceBet> {
    Play {
        game: "dice".to_owned(),
        stake: 10,
        bet: Some(DiceBet {
            target: 5000,
            direction: Direction::Over,
        }),
    }
}

/// What a run reads of `GET /ops/integrity`: the verdict and the journal's size.
#[derive(Debug, Deserialize)]
struct Integrity {
    ok: bool,
    entries: u64,
}

/// Fails unless the node at `base` finds its ledger's invariants held; the journal's entries
/// when they did. `after` names the run, for the error.
pub fn ensure_integrity(base: &str, after: &str) -> anyhow::Result<u64> {
    let mut response = agent()
        .get(&format!("{base}/ops/integrity"))
        .header("Authorization", &format!("Bearer {OPS_TOKEN}"))
        .call()?;
    let status = response.status();
    let body = response.body_mut().read_to_string()?;
    let report: Integrity = serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("integrity after {after}: {status}, {e}: {body}"))?;
    anyhow::ensure!(report.ok, "integrity violated after {after}: {body}");
    Ok(report.entries)
}
