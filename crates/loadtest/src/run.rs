//! Runs a load test: signs in the players, then drives them with the open model (arrivals on
//! a schedule, each its own task, never waiting for earlier answers) or the closed model (each
//! player plays, thinks, plays again), prints a progress line each second and returns the
//! summary and the history of acknowledged bets.
// libc calls for signals, process groups or descriptors; each block says why it is sound.
#![allow(unsafe_code)]

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use croupier_web::wire::player::RoundSummary;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::LoadError;
use crate::history::History;
use crate::http::HttpClient;
use crate::player::{self, Game, Player};
use crate::report::{self, Summary};
use crate::schedule::{OpenSchedule, closed_start};
use crate::stats::Stats;
use crate::threshold::Threshold;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// Rounds (or lobby reads) arrive at `rate` per second; new players sign in at
    /// `new_players_per_s` on top of the initial ones.
    Open { rate: f64, new_players_per_s: f64 },
    /// Each player plays a round, thinks, and plays again.
    Closed { think: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Rounds of every game (blackjack to the end), a WebSocket per player.
    Casino,
    /// `GET /api/v1/lobby` only: the simple target for comparing with oha or wrk.
    Lobby,
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The players' address (a gateway, or a node), e.g. http://127.0.0.1:8000.
    pub target: String,
    /// Other addresses of the same service (a second gateway: two gateways behind one name
    /// with two addresses). Players are spread over all of them; one whose connection is
    /// refused or cut moves to the next address, where a keyed request is sent again at once,
    /// as a client trying a name's next address does.
    pub also: Vec<String>,
    pub model: Model,
    pub scenario: Scenario,
    /// Players signed in before the clock starts (closed model: the virtual users).
    pub players: usize,
    pub ramp: Duration,
    pub duration: Duration,
    pub games: Vec<Game>,
    /// Stake of each bet in minor units (a multiple of 10).
    pub stake: i64,
    /// Every n-th acknowledged bet is sent again with its key (0 = never).
    pub replay_every: u64,
    /// Every n-th blackjack round is left open, as by a player who walks away mid-hand
    /// (0 = never); the bank checks resume them.
    pub abandon_every: u64,
    pub websockets: bool,
    /// Loopback source addresses to spread players over (1 = just 127.0.0.1).
    pub source_addresses: u8,
    /// Open model: arrivals beyond this many requests in flight are dropped and counted.
    pub max_in_flight: usize,
    pub timeout: Duration,
    /// Print a progress line on stderr each second.
    pub progress: bool,
    /// Player names start with this (unique per run, so histories never mix).
    pub player_prefix: String,
    pub thresholds: Vec<Threshold>,
    /// What the players trust for an `https://` target (default: the system's roots).
    pub tls: croupier_web::tls::ClientFiles,
}

impl LoadConfig {
    pub fn new(target: impl Into<String>, model: Model) -> Self {
        LoadConfig {
            target: target.into().trim_end_matches('/').to_owned(),
            also: Vec::new(),
            model,
            scenario: Scenario::Casino,
            players: 50,
            ramp: Duration::ZERO,
            duration: Duration::from_secs(10),
            games: Game::ALL.to_vec(),
            stake: 100,
            replay_every: 20,
            abandon_every: 0,
            websockets: true,
            source_addresses: 1,
            max_in_flight: 10_000,
            timeout: Duration::from_secs(15),
            progress: false,
            player_prefix: default_prefix(),
            thresholds: Vec::new(),
            tls: Default::default(),
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: &str| Err(LoadError::Config(m.to_owned()));
        let web = |t: &String| t.starts_with("http://") || t.starts_with("https://");
        if !std::iter::once(&self.target).chain(&self.also).all(web) {
            return bad("the target is an http:// or https:// address");
        }
        if self.players == 0 {
            return bad("at least one player is needed");
        }
        if self.games.is_empty() {
            return bad("at least one game is needed");
        }
        if self.stake < 10 || self.stake % 10 != 0 {
            return bad("the stake is a multiple of 10 minor units, at least 10");
        }
        if self.duration.is_zero() {
            return bad("the duration must be above zero");
        }
        if self.player_prefix.is_empty() || self.player_prefix.len() > 20 {
            return bad("the player prefix is 1 to 20 characters");
        }
        if let Model::Open {
            rate,
            new_players_per_s,
        } = self.model
        {
            OpenSchedule::new(rate, self.ramp, self.duration)?;
            if !(new_players_per_s.is_finite() && new_players_per_s >= 0.0) {
                return bad("new players per second must be zero or more");
            }
        }
        Ok(())
    }
}

/// A prefix unique to this run: "lt" and the time in seconds, base 36.
pub fn default_prefix() -> String {
    let mut n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut digits = Vec::new();
    while n > 0 {
        digits.push(char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
    }
    digits.reverse();
    format!("lt{}", digits.into_iter().collect::<String>())
}

/// What every task of a run shares.
pub struct Shared {
    pub config: LoadConfig,
    pub http: HttpClient,
    pub stats: Mutex<Stats>,
    pub history: Mutex<History>,
    pub stop: watch::Sender<bool>,
    in_flight: AtomicUsize,
    bets_acknowledged: AtomicU64,
    blackjack_rounds: AtomicU64,
    expected_interval: Option<Duration>,
}

impl Shared {
    pub fn record(&self, op: &'static str, due: Instant, outcome: &str, ok: bool) {
        let done = Instant::now();
        self.stats
            .lock()
            .record(op, due, done, outcome, ok, self.expected_interval);
    }

    /// Counts a bet never acknowledged.
    pub fn bet_failed(&self) {
        self.stats.lock().bets_failed += 1;
    }

    pub fn ws_event(&self, change: impl FnOnce(&mut Stats)) {
        change(&mut self.stats.lock());
    }

    /// Notes an acknowledged bet or action in the history; `new_bet` counts a bet.
    /// A bet or action under `key` was acknowledged; `round` is the round it answered, if it
    /// read as one.
    pub fn acknowledge(
        &self,
        player: &str,
        key: &str,
        round: Option<&RoundSummary>,
        new_bet: bool,
    ) {
        if let Some(round) = round {
            self.history.lock().acknowledged(player, key, round);
        }
        if new_bet {
            self.bets_acknowledged.fetch_add(1, Ordering::Relaxed);
            self.stats.lock().count_bet(Instant::now());
        }
    }

    /// Whether the bet just acknowledged should be replayed.
    pub fn replay_due(&self) -> bool {
        let every = self.config.replay_every;
        every > 0
            && self
                .bets_acknowledged
                .load(Ordering::Relaxed)
                .is_multiple_of(every)
    }

    /// Whether the blackjack round just dealt should be left open.
    pub fn abandon_due(&self) -> bool {
        let every = self.config.abandon_every;
        let n = self.blackjack_rounds.fetch_add(1, Ordering::Relaxed) + 1;
        every > 0 && n.is_multiple_of(every)
    }

    /// The players' addresses: `target`, then `also`.
    pub fn addresses(&self) -> usize {
        1 + self.config.also.len()
    }

    /// The `n`-th address (modulo their number).
    pub fn address(&self, n: usize) -> &str {
        match n % self.addresses() {
            0 => &self.config.target,
            i => &self.config.also[i - 1],
        }
    }

    /// `path` at the `n`-th address.
    pub fn url(&self, n: usize, path: &str) -> String {
        [self.address(n), path].concat()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// The outcome of a run.
pub struct LoadResult {
    pub summary: Summary,
    pub history: History,
}

/// A run in progress: its shared state (for drills watching it) and its task.
pub struct RunningLoad {
    pub shared: Arc<Shared>,
    task: tokio::task::JoinHandle<f64>,
}

impl RunningLoad {
    /// Waits for the run to end and summarises it.
    pub async fn finish(self) -> Result<LoadResult, LoadError> {
        let cpu_seconds = self
            .task
            .await
            .map_err(|e| LoadError::Config(format!("the load task failed: {e}")))?;
        let shared = self.shared;
        let _ = shared.stop.send(true);
        let stats = shared.stats.lock();
        let summary = report::summarise(&shared.config, &stats, cpu_seconds);
        let history = shared.history.lock().clone();
        if history.players.is_empty() {
            return Err(LoadError::NoPlayers(shared.config.target.clone()));
        }
        Ok(LoadResult { summary, history })
    }
}

/// CPU seconds (user + system) this process has used.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Starts a run on the current tokio runtime.
pub fn start(config: LoadConfig) -> Result<RunningLoad, LoadError> {
    config.validate()?;
    let expected_interval = match config.model {
        Model::Closed { think } if !think.is_zero() => Some(think),
        _ => None,
    };
    let shared = Arc::new(Shared {
        http: HttpClient::with_tls(config.source_addresses, config.timeout, &config.tls)?,
        stats: Mutex::new(Stats::new(Instant::now())),
        history: Mutex::new(History::default()),
        stop: watch::Sender::new(false),
        in_flight: AtomicUsize::new(0),
        bets_acknowledged: AtomicU64::new(0),
        blackjack_rounds: AtomicU64::new(0),
        expected_interval,
        config,
    });
    if matches!(shared.config.model, Model::Open { .. }) {
        shared.stats.lock().setting_up();
    }
    let runner = shared.clone();
    let task = tokio::spawn(async move {
        let cpu_before = cpu_seconds();
        let progress = runner
            .config
            .progress
            .then(|| spawn_progress(runner.clone()));
        match runner.config.model {
            Model::Open {
                rate,
                new_players_per_s,
            } => run_open(&runner, rate, new_players_per_s).await,
            Model::Closed { think } => run_closed(&runner, think).await,
        }
        let _ = runner.stop.send(true);
        if let Some(progress) = progress {
            progress.abort();
        }
        cpu_seconds() - cpu_before
    });
    Ok(RunningLoad { shared, task })
}

/// Runs a load test to the end.
pub async fn run(config: LoadConfig) -> Result<LoadResult, LoadError> {
    start(config)?.finish().await
}

/// Signs in, opens the lobby and the WebSocket: a player arriving.
async fn arrive(shared: &Arc<Shared>, index: usize) -> Option<Arc<Player>> {
    let name = format!("{}-{index}", shared.config.player_prefix);
    let lane = index % shared.http.lanes();
    let player = player::sign_in(shared, name, lane, index).await?;
    player::read(shared, &player, "lobby", "/api/v1/lobby", Instant::now()).await;
    if shared.config.websockets && shared.config.scenario == Scenario::Casino {
        player::keep_websocket(shared.clone(), player.clone());
    }
    Some(player)
}

async fn one_arrival(shared: &Shared, player: &Player, game: Game, due: Instant) {
    match shared.config.scenario {
        Scenario::Casino => player::play_round(shared, player, game, due).await,
        Scenario::Lobby => player::read(shared, player, "lobby", "/api/v1/lobby", due).await,
    }
}

async fn run_open(shared: &Arc<Shared>, rate: f64, new_players_per_s: f64) {
    let mut signing = JoinSet::new();
    for i in 0..shared.config.players {
        let s = shared.clone();
        signing.spawn(async move { arrive(&s, i).await });
    }
    let players: Vec<Arc<Player>> = signing.join_all().await.into_iter().flatten().collect();
    let start = Instant::now();
    shared.stats.lock().begin(start);
    if players.is_empty() {
        return;
    }
    let pool = Arc::new(Mutex::new(players));
    let config = &shared.config;
    let schedule =
        OpenSchedule::new(rate, config.ramp, config.duration).expect("validated schedule");
    let mut tasks = JoinSet::new();
    if new_players_per_s > 0.0 {
        let newcomers = OpenSchedule::new(new_players_per_s, Duration::ZERO, schedule.length())
            .expect("validated schedule");
        let (s, pool) = (shared.clone(), pool.clone());
        tasks.spawn(async move {
            let mut arrivals = JoinSet::new();
            for k in 0.. {
                let Some(offset) = newcomers.offset(k) else {
                    break;
                };
                tokio::time::sleep_until((start + offset).into()).await;
                let (s, pool) = (s.clone(), pool.clone());
                let index = s.config.players + k as usize;
                arrivals.spawn(async move {
                    if let Some(player) = arrive(&s, index).await {
                        pool.lock().push(player);
                    }
                });
            }
            arrivals.join_all().await;
        });
    }
    let games = config.games.clone();
    for k in 0.. {
        let Some(offset) = schedule.offset(k) else {
            break;
        };
        let due = start + offset;
        tokio::time::sleep_until(due.into()).await;
        if shared.in_flight() >= config.max_in_flight {
            shared.stats.lock().dropped += 1;
            continue;
        }
        let (player, game) = {
            let pool = pool.lock();
            let n = pool.len() as u64;
            (
                pool[(k % n) as usize].clone(),
                games[((k / n) % games.len() as u64) as usize],
            )
        };
        let s = shared.clone();
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            one_arrival(&s, &player, game, due).await;
            s.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        while tasks.try_join_next().is_some() {}
    }
    tasks.join_all().await;
}

async fn run_closed(shared: &Arc<Shared>, think: Duration) {
    let start = Instant::now();
    let end = start + shared.config.ramp + shared.config.duration;
    let mut tasks = JoinSet::new();
    for i in 0..shared.config.players {
        let s = shared.clone();
        let delay = closed_start(i, s.config.players, s.config.ramp);
        tasks.spawn(async move {
            tokio::time::sleep_until((start + delay).into()).await;
            let Some(player) = arrive(&s, i).await else {
                return;
            };
            let games = s.config.games.clone();
            let mut round = i;
            let mut due = Instant::now();
            while due < end && !*s.stop.borrow() {
                s.in_flight.fetch_add(1, Ordering::Relaxed);
                one_arrival(&s, &player, games[round % games.len()], due).await;
                s.in_flight.fetch_sub(1, Ordering::Relaxed);
                round += 1;
                think_for(think).await;
                due = Instant::now();
            }
        });
    }
    tasks.join_all().await;
}

/// A closed-model player's pause between requests. Without a think time, no timer (a timer
/// set and cleared per request, and the runtime woken for it, cost as much as a tenth of a
/// request): only a turn given up when the task's budget is spent, so a player whose requests
/// fail at once cannot hold the thread.
async fn think_for(think: Duration) {
    if think.is_zero() {
        tokio::task::coop::consume_budget().await;
    } else {
        tokio::time::sleep(think).await;
    }
}

fn spawn_progress(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let line = {
                let stats = shared.stats.lock();
                report::progress_line(&stats, shared.in_flight())
            };
            // A progress line that stderr cannot take is dropped, never a panic.
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    })
}
