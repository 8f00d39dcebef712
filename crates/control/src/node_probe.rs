//! Whether a node that was just started is fit to serve players: its `/readyz` answers within
//! a deadline, then the smoke test passes on the node itself (the lobby, a real test bet,
//! the ledger's integrity check). A rolling update asks it of each node it replaced, and the
//! staging rehearsal of the node it started from the newest backup.

use std::time::{Duration, Instant};

use croupier_monitor::engine::Target;

use crate::Control;
use crate::ops_client::{call, request};
use croupier_web::wire::ops::{IntegrityVerdict, Readiness};

/// How long a started node has to answer `/readyz`.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// Polls `node`'s `/readyz` until it answers 200, for at most `READY_DEADLINE`; `gone` may
/// say why waiting is pointless (the process exited).
pub async fn until_ready(
    control: &Control,
    node: &Target,
    mut gone: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let url = format!("{}/readyz", node.base);
        let get = request(control, hyper::Method::GET, url);
        if call::<Readiness>(control, &node.name, get).await.is_ok() {
            return Ok(());
        }
        if let Some(why) = gone() {
            return Err(why);
        }
        if started.elapsed() > READY_DEADLINE {
            return Err(format!(
                "{} not ready within {} s",
                node.name,
                READY_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The lobby, a real test bet and the integrity check, on `node` itself.
pub async fn smoke_test(control: &Control, node: &Target) -> Result<String, String> {
    let checks = crate::checks::Checks::new(&node.base, control.config.test_players.clone());
    checks
        .lobby(&control.client)
        .await
        .ok_or("the lobby check failed")?;
    checks
        .bet(&control.client)
        .await
        .ok_or("the test bet failed")?;
    let url = format!("{}/ops/integrity", node.base);
    let get = request(control, hyper::Method::GET, url);
    let integrity: IntegrityVerdict = call(control, &node.name, get)
        .await
        .map_err(|e| format!("integrity: {e}"))?;
    Ok(format!(
        "lobby, test bet and integrity passed ({})",
        integrity.ok
    ))
}
