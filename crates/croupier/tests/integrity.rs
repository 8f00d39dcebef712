//! `croupier integrity` checks a ledger that is there, and only that. Opening a store creates
//! its schema, so a mistyped database name or file path used to be given an empty ledger,
//! whose every invariant holds: an "ok" for a ledger never looked at. On both backends (the
//! PostgreSQL pass gives an empty scratch database).

mod common;

use common::{croupier, ledger};
use croupier_ledger::StoreLocation;

#[test]
fn integrity_where_no_ledger_is_refuses_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let location = ledger(dir.path());
    let mut places = vec![location.clone()];
    if let StoreLocation::Sqlite(_) = &location {
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        places.push(StoreLocation::Sqlite(empty));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for place in places {
        let out = croupier()
            .args(["integrity", "--store", &place.as_arg()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{place}: {err}");
        assert!(err.contains("holds no Croupier ledger"), "{place}: {err}");
        let created = runtime.block_on(place.holds_a_ledger()).unwrap();
        assert!(!created, "{place}: the check created a ledger");
    }
}
