//! The seeds-at-rest contract (`seed_seal`), run by each backend's tests: with seed keys, an
//! unrevealed server seed is stored sealed and handed out in clear; a revealed one is stored
//! in clear; opening seals the clear seeds of an older build and those of a rotated key;
//! a seed whose key is lost stops the store from opening, or is retired when asked.

use std::sync::Arc;

use crate::error::LedgerError;
use crate::seed_seal::{SeedKeys, SeedVault, is_sealed};
use crate::store::Store;

const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn vault(text: &str, retire: bool) -> SeedVault {
    SeedVault::sealed(
        SeedKeys::from_text(text)
            .unwrap()
            .retiring_lost_seeds(retire),
    )
}

/// Opens the backend under test with seed keys; every call reaches the same ledger.
pub type OpenWith<'a> = &'a dyn Fn(SeedVault) -> Result<Arc<dyn Store>, LedgerError>;
/// A player's server seeds as stored (oldest first), read around the store.
pub type Stored<'a> = &'a dyn Fn(&str) -> Vec<String>;

async fn new_seed(store: &dyn Store, player: &str, server_seed: &str) -> i64 {
    let (player, server_seed) = (player.to_owned(), server_seed.to_owned());
    store
        .transact(None, move |tx| {
            if !tx.player_exists(&player)? {
                tx.create_player(&player)?;
            }
            tx.insert_seed(&player, &server_seed, &format!("h-{server_seed}"), "c")
        })
        .await
        .unwrap()
        .into_value()
}

async fn active(store: &dyn Store, player: &str) -> String {
    let player = player.to_owned();
    store
        .read(move |tx| tx.active_seed(&player))
        .await
        .unwrap()
        .unwrap()
        .server_seed
}

pub async fn seeds_are_sealed_at_rest(open: OpenWith<'_>, stored: Stored<'_>) {
    // An older build (no keys) stored a seed in clear.
    let old = open(SeedVault::default()).unwrap();
    new_seed(&*old, "ann", "ann-1").await;
    drop(old);
    assert_eq!(stored("ann"), ["ann-1"]);

    // Opened with a key: sealed at rest, in clear for the caller, nonces advance.
    let store = open(vault(K1, false)).unwrap();
    assert!(is_sealed(&stored("ann")[0]), "{:?}", stored("ann"));
    assert_eq!(active(&*store, "ann").await, "ann-1");
    let (old_id, dealt, nonce) = store
        .transact(None, |tx| {
            let (seed, nonce) = tx.take_nonce("ann")?.unwrap();
            Ok::<_, LedgerError>((seed.id, seed.server_seed, nonce))
        })
        .await
        .unwrap()
        .into_value();
    assert_eq!((dealt.as_str(), nonce), ("ann-1", 0));
    new_seed(&*store, "bob", "bob-1").await;
    assert!(
        stored("bob")
            .iter()
            .all(|s| is_sealed(s) && !s.contains("bob-1"))
    );

    // A rotation: the old seed revealed (in clear at rest), the new one sealed.
    store
        .transact(None, move |tx| {
            tx.reveal_seed(old_id)?;
            tx.insert_seed("ann", "ann-2", "h-ann-2", "c")
        })
        .await
        .unwrap();
    let ann = stored("ann");
    assert_eq!(ann[0], "ann-1", "a revealed seed is stored in clear");
    assert!(is_sealed(&ann[1]) && !ann[1].contains("ann-2"));
    assert_eq!(active(&*store, "ann").await, "ann-2");
    drop(store);

    // Without the key, a store does not open a sealed seed.
    let keyless = open(SeedVault::default()).unwrap();
    let refused = keyless.read(|tx| tx.active_seed("bob")).await;
    assert!(refused.is_err(), "{refused:?}");
    drop(keyless);

    // A rotated key file (new key first, old one after): opening seals again with the new key.
    let before = stored("bob");
    let rotated = open(vault(&format!("{K2}\n{K1}\n"), false)).unwrap();
    assert_ne!(stored("bob"), before);
    assert_eq!(active(&*rotated, "bob").await, "bob-1");
    drop(rotated);

    // The old key dropped from the file: still fine (everything is under the new key). A lost
    // new key: the store refuses to open, unless retiring is asked for.
    drop(open(vault(K2, false)).unwrap());
    assert!(
        open(vault(K1, false)).is_err(),
        "opened without the key of its seeds"
    );
    assert!(
        is_sealed(&stored("bob")[0]),
        "a refused open changed nothing"
    );
    let retired = open(vault(K1, true)).unwrap();
    let bob = stored("bob");
    assert_eq!(bob.len(), 2, "{bob:?}");
    let fresh = active(&*retired, "bob").await;
    assert_ne!(fresh, "bob-1");
    assert_eq!(fresh.len(), 64);
    assert!(retired.integrity().await.unwrap().ok);
}
