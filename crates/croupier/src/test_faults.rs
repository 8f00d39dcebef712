//! Test-only fault injection shared by the gateway and the control plane: `--fault
//! panic-under-lock` makes the component panic a few times while it holds a lock, so the
//! tests can prove that one panic never becomes a dead service. Refused unless
//! CROUPIER_TEST_FAULTS=1 is also set, so no deployment turns it on by accident.

/// Whether the injected panic is asked for (and allowed).
pub fn panic_under_lock(fault: Option<&str>) -> anyhow::Result<bool> {
    let Some(fault) = fault else {
        return Ok(false);
    };
    anyhow::ensure!(
        fault == "panic-under-lock",
        "unknown fault '{fault}' (the only one is panic-under-lock)"
    );
    anyhow::ensure!(
        std::env::var("CROUPIER_TEST_FAULTS").as_deref() == Ok("1"),
        "--fault is for tests only; it also needs CROUPIER_TEST_FAULTS=1"
    );
    Ok(true)
}
