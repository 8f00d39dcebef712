//! Launch tokens against an attacker: every way to forge, stretch or reuse one is refused.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{Ed25519KeyPair, KeyPair};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hs";

/// A folder with an HS256 key `hs` and an Ed25519 key `ed`; the Ed25519 private key (PKCS#8).
fn folder() -> (tempfile::TempDir, Vec<u8>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("hs.hs256"), SECRET).expect("write secret");
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("keygen");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key pair");
    let mut spki = hex::decode("302a300506032b6570032100").expect("hex");
    spki.extend_from_slice(pair.public_key().as_ref());
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(&spki)
    );
    std::fs::write(dir.path().join("ed.ed25519.pem"), &pem).expect("write pem");
    (dir, pkcs8.as_ref().to_vec(), pem)
}

fn claims(ttl_s: i64) -> Claims {
    claims_for("alice", "EUR", ttl_s, format!("jti-{}", now_s()))
}

#[test]
fn both_algorithms_sign_players_in() {
    let (dir, pkcs8, _) = folder();
    let (keys, problems) = LaunchKeys::open(dir.path());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(keys.kids(), vec!["ed".to_owned(), "hs".to_owned()]);
    let hs = SigningKey::hs256("hs", SECRET)
        .sign(&claims(60))
        .expect("sign");
    assert_eq!(keys.verify(&hs, "EUR").expect("hs256").sub, "alice");
    let mut with_limits = claims(60);
    with_limits.limits = Some(Limits {
        max_stake: Some(500),
    });
    let ed = SigningKey::ed25519_der("ed", &pkcs8)
        .sign(&with_limits)
        .expect("sign");
    assert_eq!(keys.verify(&ed, "EUR").expect("eddsa"), with_limits);
}

#[test]
fn forged_tokens_are_refused() {
    let (dir, pkcs8, pem) = folder();
    let (keys, _) = LaunchKeys::open(dir.path());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(60)).expect("json"));
    // alg=none, no signature.
    let none = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"hs","typ":"JWT"}"#)
    );
    assert!(keys.verify(&none, "EUR").is_err());
    // Key confusion: HS256 keyed with the Ed25519 public key, sent to the Ed25519 key.
    let confused = SigningKey::hs256("ed", pem.as_bytes())
        .sign(&claims(60))
        .expect("sign");
    assert!(matches!(
        keys.verify(&confused, "EUR"),
        Err(LaunchError::WrongAlgorithm(_))
    ));
    // The other way: an EdDSA token sent to the HS256 key.
    let other = SigningKey::ed25519_der("hs", &pkcs8)
        .sign(&claims(60))
        .expect("sign");
    assert!(matches!(
        keys.verify(&other, "EUR"),
        Err(LaunchError::WrongAlgorithm(_))
    ));
    // Unknown kid, no kid, wrong secret.
    let unknown = SigningKey::hs256("old", SECRET)
        .sign(&claims(60))
        .expect("sign");
    assert_eq!(
        keys.verify(&unknown, "EUR"),
        Err(LaunchError::UnknownKey("old".into()))
    );
    let wrong = SigningKey::hs256("hs", &[b'x'; 40])
        .sign(&claims(60))
        .expect("sign");
    assert_eq!(keys.verify(&wrong, "EUR"), Err(LaunchError::BadSignature));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = None;
    let no_kid = jsonwebtoken::encode(&header, &claims(60), &EncodingKey::from_secret(SECRET))
        .expect("sign");
    assert_eq!(keys.verify(&no_kid, "EUR"), Err(LaunchError::MissingKid));
    // A valid token whose payload is swapped for another player's.
    let valid = SigningKey::hs256("hs", SECRET)
        .sign(&claims(60))
        .expect("sign");
    let mut other_claims = claims(60);
    other_claims.sub = "mallory".into();
    let swapped_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other_claims).expect("json"));
    let parts: Vec<&str> = valid.split('.').collect();
    let swapped = format!("{}.{swapped_payload}.{}", parts[0], parts[2]);
    assert_eq!(keys.verify(&swapped, "EUR"), Err(LaunchError::BadSignature));
    assert!(keys.verify("not a token", "EUR").is_err());
}

#[test]
fn expired_long_lived_and_foreign_tokens_are_refused() {
    let (dir, _, _) = folder();
    let (keys, _) = LaunchKeys::open(dir.path());
    let key = SigningKey::hs256("hs", SECRET);
    let expired = key.sign(&claims(-1)).expect("sign");
    assert_eq!(keys.verify(&expired, "EUR"), Err(LaunchError::Expired));
    let long = key.sign(&claims(MAX_LIFETIME_S + 60)).expect("sign");
    assert_eq!(keys.verify(&long, "EUR"), Err(LaunchError::TooLong));
    let valid = key.sign(&claims(60)).expect("sign");
    assert!(matches!(
        keys.verify(&valid, "USD"),
        Err(LaunchError::WrongCurrency { .. })
    ));
    let mut bad_name = claims(60);
    bad_name.sub = "bad name!".into();
    let bad = key.sign(&bad_name).expect("sign");
    assert!(matches!(
        keys.verify(&bad, "EUR"),
        Err(LaunchError::InvalidClaims(_))
    ));
}

#[test]
fn keys_rotate_without_a_restart_and_short_secrets_are_skipped() {
    let (dir, _, _) = folder();
    std::fs::write(dir.path().join("short.hs256"), b"too short").expect("write");
    let (keys, problems) = LaunchKeys::open(dir.path());
    assert_eq!(problems.len(), 1, "{problems:?}");
    let next = SigningKey::hs256("next", &[b'n'; 32])
        .sign(&claims(60))
        .expect("sign");
    assert!(keys.verify(&next, "EUR").is_err());
    std::fs::write(dir.path().join("next.hs256"), [b'n'; 32]).expect("write");
    std::fs::remove_file(dir.path().join("hs.hs256")).expect("retire");
    std::thread::sleep(RELOAD_EVERY + Duration::from_millis(50));
    assert!(
        keys.verify(&next, "EUR").is_ok(),
        "the new key works without a restart"
    );
    let old = SigningKey::hs256("hs", SECRET)
        .sign(&claims(60))
        .expect("sign");
    assert_eq!(
        keys.verify(&old, "EUR"),
        Err(LaunchError::UnknownKey("hs".into()))
    );
}
