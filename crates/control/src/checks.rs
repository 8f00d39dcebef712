//! Synthetic checks, like Gatus: through the players' address (the gateway) the control plane
//! opens the lobby every second and places a real 0.10 dice bet every five seconds, as a test
//! player. A check that fails is reported as a failed scrape of its own target, so the same
//! rules alert on it: the lobby check speaks for the lobby, the bet check for the wallet.
//! Deployments add their own HTTP checks (`[[check]]`: status, latency, body), like Gatus.
//! The test player signs in with a launch token signed by the operator's key, under a name
//! reserved for it (`synthetic-…`: nodes refuse it to sign-in by name), so no player can sign
//! in as it and lose its balance to page the operators; without a key (a demo casino's
//! control plane given none) it signs in by a name made random at start. A refusal for want
//! of funds (a wallet that answered) passes: the test player's balance is not an outage.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier_web::launch::{SigningKey, claims_for};
use croupier_web::wire::player::{Lobby, Play, Played, RoundSummary, SessionCreated, SignIn};
use croupier_web::wire::{self, ErrorBody};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::{HttpClient, now_ms};
use croupier_monitor::engine::HttpCheck;
use croupier_monitor::promtext::Sample;

const TIMEOUT: Duration = Duration::from_secs(2);
/// Seconds between test bets.
pub const BET_EVERY_S: i64 = 5;
/// The test player's stake, in minor units.
const TEST_STAKE: i64 = 10;

/// How the synthetic checks' test player signs in, and whether the casino is a demo.
#[derive(Clone)]
pub struct TestPlayers {
    /// The casino runs in demo mode (said on the status page).
    pub demo: bool,
    /// The operator's key for the test player's launch tokens; without it, sign-in by name.
    pub launch_key: Option<Arc<SigningKey>>,
    /// The ledger's currency, for those tokens.
    pub currency: String,
    /// The folder of the keys that verify them (given to the staging node).
    pub launch_keys_dir: Option<std::path::PathBuf>,
}

impl Default for TestPlayers {
    /// Sign-in by name, as in a demo casino.
    fn default() -> Self {
        TestPlayers {
            demo: false,
            launch_key: None,
            currency: "EUR".into(),
            launch_keys_dir: None,
        }
    }
}

impl TestPlayers {
    /// The sign-in arguments of a node these test players can sign in on.
    pub fn node_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = Vec::new();
        if self.demo {
            args.push("--demo".into());
        }
        if let Some(dir) = &self.launch_keys_dir {
            args.extend(["--launch-keys".into(), dir.clone().into_os_string()]);
        }
        args
    }

    /// The sign-in body for `player`: a fresh launch token, or the name alone.
    fn sign_in_body(&self, player: &str) -> Option<SignIn> {
        let Some(key) = &self.launch_key else {
            return Some(SignIn::demo(player));
        };
        let jti = format!("{player}-{}", now_ms());
        let claims = claims_for(player, &self.currency, 300, jti);
        let token = key
            .sign(&claims)
            .map_err(|e| tracing::warn!(error = %e, "cannot sign the test player's launch token"))
            .ok()?;
        Some(SignIn::launch(token))
    }
}

pub struct Checks {
    /// The players' address, e.g. http://127.0.0.1:8000.
    pub base: String,
    players: TestPlayers,
    /// The test player's name, before the day number.
    player_prefix: String,
    token: Mutex<Option<(String, i64)>>,
    last_bet: Mutex<(i64, Option<Vec<Sample>>)>,
}

/// The status and body of one request, within `TIMEOUT` each.
async fn fetch(client: &HttpClient, request: hyper::Request<Full<Bytes>>) -> Option<(u16, Bytes)> {
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .ok()?
        .ok()?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    Some((status, body))
}

/// `body` read as `T`, if it is one.
fn read<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

/// `body` as the JSON of a request.
fn json_body(body: &impl Serialize) -> Full<Bytes> {
    Full::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default()))
}

/// The test bet: over 50.00 on dice (`croupier_games::dice`'s bet, as the player API takes it).
#[derive(Serialize)]
struct DiceBet {
    direction: &'static str,
    target: u32,
}

fn result(ok: bool, started: Instant) -> Option<Vec<Sample>> {
    ok.then(|| {
        vec![Sample {
            name: "check_latency_seconds".into(),
            labels: Default::default(),
            value: started.elapsed().as_secs_f64(),
        }]
    })
}

/// The test player's name before its day number: reserved with a launch key, else random.
fn player_prefix(signed: bool) -> String {
    use std::hash::BuildHasher;
    if signed {
        return format!("{}check-", croupier_web::launch::RESERVED_PREFIX);
    }
    let random = std::hash::RandomState::new().hash_one(now_ms());
    format!("check{random:016x}-")
}

impl Checks {
    pub fn new(base: &str, players: TestPlayers) -> Checks {
        Checks {
            base: base.trim_end_matches('/').to_owned(),
            player_prefix: player_prefix(players.launch_key.is_some()),
            players,
            token: Mutex::new(None),
            last_bet: Mutex::new((0, None)),
        }
    }

    /// The test player's token; a new test player each day, so its balance never runs out.
    async fn token(&self, client: &HttpClient) -> Option<String> {
        let day = now_ms() / 86_400_000;
        if let Some((token, for_day)) = self.token.lock().clone()
            && for_day == day
        {
            return Some(token);
        }
        let request = hyper::Request::post(format!("{}/api/v1/sessions", self.base))
            .header("content-type", "application/json")
            .body(json_body(
                &self
                    .players
                    .sign_in_body(&format!("{}{day}", self.player_prefix))?,
            ))
            .ok()?;
        let (status, body) = fetch(client, request).await?;
        let session: SessionCreated = read(&body).filter(|_| status == 201)?;
        let token = session.token;
        *self.token.lock() = Some((token.clone(), day));
        Some(token)
    }

    /// Opens the lobby; `None` when it fails.
    pub async fn lobby(&self, client: &HttpClient) -> Option<Vec<Sample>> {
        let started = Instant::now();
        let token = self.token(client).await?;
        let request = hyper::Request::get(format!("{}/api/v1/lobby", self.base))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .ok()?;
        let (status, body) = fetch(client, request).await?;
        let lobby = read::<Lobby<IgnoredAny>>(&body).filter(|_| status == 200);
        result(lobby.is_some_and(|l| !l.games.is_empty()), started)
    }

    /// Places a test bet every `BET_EVERY_S`; in between, repeats the last result.
    pub async fn bet(&self, client: &HttpClient) -> Option<Vec<Sample>> {
        let now = now_ms();
        {
            let last = self.last_bet.lock();
            if now - last.0 < BET_EVERY_S * 1000 {
                return last.1.clone();
            }
        }
        let started = Instant::now();
        let outcome = async {
            let token = self.token(client).await?;
            let request = hyper::Request::post(format!("{}/api/v1/rounds", self.base))
                .header("authorization", format!("Bearer {token}"))
                .header(wire::IDEMPOTENCY_KEY, format!("synthetic-{now}"))
                .header("content-type", "application/json")
                .body(json_body(&Play {
                    game: "dice".into(),
                    stake: TEST_STAKE,
                    bet: Some(DiceBet {
                        direction: "over",
                        target: 5000,
                    }),
                }))
                .ok()?;
            let (status, body) = fetch(client, request).await?;
            let settled = status == 201
                && read::<Played<RoundSummary>>(&body).is_some_and(|p| p.round.is_settled());
            let unfunded = status == 422
                && read::<ErrorBody>(&body).is_some_and(|e| e.error == "insufficient_funds");
            result(settled || unfunded, started)
        }
        .await;
        *self.last_bet.lock() = (now, outcome.clone());
        outcome
    }
}

/// Runs one HTTP check; `None` when it fails.
pub async fn http(client: &HttpClient, url: &str, check: &HttpCheck) -> Option<Vec<Sample>> {
    let started = Instant::now();
    let request = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .ok()?;
    let (status, body) = fetch(client, request).await?;
    let passed = check.passes(status, started.elapsed(), &String::from_utf8_lossy(&body));
    result(passed, started)
}
