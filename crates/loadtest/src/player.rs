//! One simulated player's requests: sign in, open the lobby, keep a WebSocket open (and
//! reconnect after a 1012 or a cut), and play rounds of each game — blackjack to the end with
//! a simple hit-below-17 strategy. Money-moving requests carry an idempotency key and are
//! retried with the same key when the answer is lost, as a careful client does; every n-th
//! acknowledged bet is sent once more with its key, which must be answered as a replay, and
//! every n-th blackjack hand may be abandoned mid-round (the bank checks resume it). Given
//! several addresses of the players' service, a player moves to the next one when a
//! connection is refused or cut there.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use croupier_games::BetRequest;
use croupier_games::dice::{DiceBet, Direction};
use croupier_games::roulette::{BetKind, Chip, RouletteRequest};
use croupier_web::wire::player::{Act, Play, Played, RoundSummary, SessionCreated, SignIn};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::http::{Answer, Call};
use crate::run::Shared;

/// Tries of one money-moving request (same key each time).
const MAX_TRIES: u32 = 4;
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// WebSocket reconnects, as documented for clients: the first soon after a close (1012:
/// another node is ready), then doubling while attempts fail.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// A player longer than this without a socket is counted: they would miss notices.
const SOCKET_GAP: Duration = Duration::from_secs(1);
/// Blackjack actions before a round is left open (never reached with hit-below-17).
const MAX_ACTIONS: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Game {
    Dice,
    Roulette,
    Slot,
    Blackjack,
}

impl Game {
    pub const ALL: [Game; 4] = [Game::Dice, Game::Roulette, Game::Slot, Game::Blackjack];

    pub fn parse(name: &str) -> Option<Game> {
        Game::ALL.into_iter().find(|g| g.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Game::Dice => "dice",
            Game::Roulette => "roulette",
            Game::Slot => "slot",
            Game::Blackjack => "blackjack",
        }
    }

    /// The round asked for; `stake` is a multiple of 10 (the slot spreads it over 10 lines).
    pub fn bet(self, stake: i64) -> Play<BetRequest> {
        let bet = match self {
            Game::Dice => Some(BetRequest::Dice(DiceBet {
                target: 5000,
                direction: Direction::Over,
            })),
            Game::Roulette => Some(BetRequest::Roulette(RouletteRequest {
                bets: vec![Chip {
                    kind: BetKind::Red,
                    numbers: None,
                    which: None,
                    amount: stake,
                }],
            })),
            Game::Slot | Game::Blackjack => None,
        };
        Play {
            game: self.name().to_owned(),
            stake,
            bet,
        }
    }
}

pub struct Player {
    pub name: String,
    pub token: String,
    pub lane: usize,
    next_key: AtomicU64,
    /// Which of the players' addresses this player uses (`Shared::address`).
    at: AtomicUsize,
}

impl Player {
    /// After a refused or cut connection: moves to the next address, when there is one and
    /// no other request of this player moved already. Whether to send again there at once.
    fn fail_over(
        &self,
        shared: &Shared,
        result: &Result<Answer, crate::LoadError>,
        from: usize,
    ) -> bool {
        let cut = matches!(
            result,
            Err(crate::LoadError::Connect { .. } | crate::LoadError::Reset { .. })
        );
        if !cut || shared.addresses() < 2 {
            return false;
        }
        let _ = self
            .at
            .compare_exchange(from, from + 1, Ordering::Relaxed, Ordering::Relaxed);
        true
    }

    fn key(&self) -> String {
        format!(
            "{}-{}",
            self.name,
            self.next_key.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The outcome labels of a refused connection (nothing listening: never sent) and of a
/// connection reset or closed under a request (it may have been acted on).
pub const REFUSED: &str = "refused";
pub const RESET: &str = "reset";

fn outcome_label(result: &Result<Answer, crate::LoadError>) -> Cow<'static, str> {
    match result {
        Ok(answer) => crate::stats::status_label(answer.status),
        Err(crate::LoadError::Connect { refused: true, .. }) => REFUSED.into(),
        Err(crate::LoadError::Connect { .. }) => "connect".into(),
        Err(crate::LoadError::Reset { .. }) => RESET.into(),
        Err(_) => "transport".into(),
    }
}

/// Signs `name` in at the `first`-th address (the next ones while a connection is refused or
/// cut); `None` (and a counted error) if that fails.
pub async fn sign_in(
    shared: &Shared,
    name: String,
    lane: usize,
    first: usize,
) -> Option<Arc<Player>> {
    let due = Instant::now();
    let mut at = first;
    let result = loop {
        let url = format!("{}/api/v1/sessions", shared.address(at));
        let result = shared
            .http
            .send(lane, Call::post(url, &SignIn::demo(name.as_str())))
            .await;
        let cut = matches!(
            result,
            Err(crate::LoadError::Connect { .. } | crate::LoadError::Reset { .. })
        );
        if !cut || at + 1 - first >= shared.addresses() {
            break result;
        }
        at += 1;
    };
    let ok = matches!(&result, Ok(a) if a.status == 201);
    shared.record("sign_in", due, &outcome_label(&result), ok);
    let answer = result.ok().filter(|_| ok)?;
    let session: SessionCreated = answer.read()?;
    let (token, balance) = (session.token, session.signed_in.balance);
    shared.history.lock().signed_in(&name, &token, balance);
    Some(Arc::new(Player {
        name,
        token,
        lane,
        next_key: AtomicU64::new(0),
        at: AtomicUsize::new(at),
    }))
}

/// A GET as `player`, measured from `due`.
pub async fn read(shared: &Shared, player: &Player, op: &'static str, path: &str, due: Instant) {
    let at = player.at.load(Ordering::Relaxed);
    let url = shared.url(at, path);
    let result = shared
        .http
        .send(player.lane, Call::get(url).token(&player.token))
        .await;
    let ok = matches!(&result, Ok(a) if a.is_success());
    shared.record(op, due, &outcome_label(&result), ok);
    player.fail_over(shared, &result, at);
}

/// Counts a time without a socket that ended (or the run stopped) after `lost`.
fn socket_gap(shared: &Shared, lost: Option<Instant>) {
    let Some(lost) = lost else { return };
    let gap = lost.elapsed();
    shared.ws_event(|s| {
        s.ws_longest_gap_ms = s.ws_longest_gap_ms.max(gap.as_millis() as u64);
        if gap > SOCKET_GAP {
            s.ws_gaps_over_1s += 1;
        }
    });
}

/// Keeps a WebSocket open for `player` until the run stops, reconnecting with back-off when
/// it is closed; counts the times the player was without one.
pub fn keep_websocket(shared: Arc<Shared>, player: Arc<Player>) {
    tokio::spawn(async move {
        let mut stop = shared.stop.subscribe();
        let tls = tokio_tungstenite::Connector::Rustls(shared.http.tls());
        let mut first = true;
        let (mut lost, mut pause) = (None::<Instant>, RECONNECT_FIRST);
        while !*stop.borrow() {
            let at = player.at.load(Ordering::Relaxed);
            let Some(request) = websocket_request(&shared, &player, at) else {
                return;
            };
            let small_reads = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(croupier_web::WEBSOCKET_READ_BUFFER);
            let connect = async {
                let tcp = shared
                    .http
                    .tcp(player.lane, shared.address(at))
                    .await
                    .ok()?;
                let tls = Some(tls.clone());
                tokio_tungstenite::client_async_tls_with_config(
                    request,
                    tcp,
                    Some(small_reads),
                    tls,
                )
                .await
                .ok()
            };
            match connect.await {
                Some((socket, _)) => {
                    shared.ws_event(|s| {
                        s.ws_opened += 1;
                        if !first {
                            s.ws_reconnects += 1;
                        }
                    });
                    first = false;
                    socket_gap(&shared, lost.take());
                    pause = RECONNECT_FIRST;
                    if listen(&shared, socket, &mut stop).await == Listened::Stopped {
                        return;
                    }
                }
                None => {
                    shared.ws_event(|s| s.ws_failures += 1);
                    if shared.addresses() > 1 {
                        let _ = player.at.compare_exchange(
                            at,
                            at + 1,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                }
            }
            lost.get_or_insert_with(Instant::now);
            tokio::select! {
                _ = stop.changed() => {
                    socket_gap(&shared, lost);
                    return;
                }
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(RECONNECT_MAX);
        }
    });
}

/// The request that opens `player`'s WebSocket on address `at`, with their token.
fn websocket_request(
    shared: &Shared,
    player: &Player,
    at: usize,
) -> Option<tokio_tungstenite::tungstenite::handshake::client::Request> {
    let url = format!(
        "{}/api/v1/ws",
        croupier_web::websocket_base(shared.address(at))
    );
    let mut request = url.as_str().into_client_request().ok()?;
    if let Ok(value) = format!("Bearer {}", player.token).parse() {
        request.headers_mut().insert("authorization", value);
    }
    Some(request)
}

#[derive(PartialEq)]
enum Listened {
    /// The server closed the socket or it broke: reconnect.
    Closed,
    /// The run stopped (the socket was closed politely).
    Stopped,
}

/// Counts the socket's messages until it closes or the run stops.
async fn listen(
    shared: &Shared,
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Listened {
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = socket.close(None).await;
                return Listened::Stopped;
            }
            message = socket.next() => match message {
                Some(Ok(m)) if m.is_text() => shared.ws_event(|s| s.ws_messages += 1),
                Some(Ok(m)) if m.is_close() => return Listened::Closed,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Listened::Closed,
            },
        }
    }
}

/// POSTs a money-moving request under `key`, retrying with the same key while the answer is
/// lost or the service is briefly unavailable. `None` when refused or never answered.
async fn keyed_post(
    shared: &Shared,
    player: &Player,
    op: &'static str,
    path: &str,
    key: &str,
    body: &impl serde::Serialize,
    due: Instant,
) -> Option<Answer> {
    let mut due = due;
    for attempt in 1..=MAX_TRIES {
        let at = player.at.load(Ordering::Relaxed);
        let url = shared.url(at, path);
        let result = shared
            .http
            .send(
                player.lane,
                Call::post(url, body).token(&player.token).key(key),
            )
            .await;
        let label = outcome_label(&result);
        let moved = player.fail_over(shared, &result, at);
        match result {
            Ok(answer) if answer.is_success() => {
                shared.record(op, due, &label, true);
                return Some(answer);
            }
            // A refusal (bad request, conflict, not found): nothing moved.
            Ok(answer) if answer.status < 500 && answer.status != 429 => {
                shared.record(op, due, &label, false);
                return None;
            }
            Ok(answer) => {
                shared.record(op, due, &label, false);
                // 429 and 503 are refusals before anything moved; other 5xx may hide a commit.
                if ![429, 503].contains(&answer.status) {
                    shared.history.lock().unanswered(&player.name, key);
                }
            }
            // Never sent: nothing can have moved.
            Err(crate::LoadError::Connect { .. }) => shared.record(op, due, &label, false),
            Err(_) => {
                shared.record(op, due, &label, false);
                shared.history.lock().unanswered(&player.name, key);
            }
        }
        if attempt == MAX_TRIES || *shared.stop.borrow() {
            break;
        }
        if !moved {
            tokio::time::sleep(RETRY_PAUSE * attempt).await;
        }
        due = Instant::now();
    }
    None
}

/// Plays one round of `game`, meant to start at `due`.
pub async fn play_round(shared: &Shared, player: &Player, game: Game, due: Instant) {
    let body = game.bet(shared.config.stake);
    let key = player.key();
    let Some(answer) = keyed_post(shared, player, "bet", "/api/v1/rounds", &key, &body, due).await
    else {
        shared.bet_failed();
        return;
    };
    let played = answer.read::<Played<RoundSummary>>();
    shared.acknowledge(&player.name, &key, played.as_ref().map(|p| &p.round), true);
    if shared.replay_due() {
        let again = keyed_post(
            shared,
            player,
            "replay",
            "/api/v1/rounds",
            &key,
            &body,
            Instant::now(),
        )
        .await;
        if let Some(again) = again {
            let replayed = again.read::<Played<RoundSummary>>();
            shared.acknowledge(
                &player.name,
                &key,
                replayed.as_ref().map(|p| &p.round),
                false,
            );
        }
    }
    if let Some(played) = played.filter(|_| game == Game::Blackjack && !shared.abandon_due()) {
        finish_blackjack(shared, player, &key, played.round).await;
    }
}

/// Hits below 17, then stands, until the round is settled.
async fn finish_blackjack(shared: &Shared, player: &Player, key: &str, mut round: RoundSummary) {
    for n in 0..MAX_ACTIONS {
        if round.is_settled() {
            return;
        }
        let total = round.outcome.and_then(|o| o.player_total).unwrap_or(21);
        let action = if total < 17 { "hit" } else { "stand" };
        let action_key = format!("{key}-a{n}");
        let path = format!("/api/v1/rounds/{}/actions", round.id);
        let body = Act {
            action: action.to_owned(),
        };
        let Some(answer) = keyed_post(
            shared,
            player,
            "action",
            &path,
            &action_key,
            &body,
            Instant::now(),
        )
        .await
        else {
            return;
        };
        let Some(played) = answer.read::<Played<RoundSummary>>() else {
            return;
        };
        shared.acknowledge(&player.name, &action_key, Some(&played.round), false);
        round = played.round;
    }
}
