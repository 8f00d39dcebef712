//! Unusual play, flagged for the operators (flagged, not blocked: a lucky player is not a
//! cheat, and an operator looks before acting). Three signals, counted by each node for the
//! requests it serves (a player stays on one node while it is up, by the gateways' affinity):
//!
//! - **Winning far beyond the game's RTP.** A settled round returns r = payout / stake. Over a
//!   player's settled rounds of one game (at least `min_rounds`), the z-score of their mean
//!   return against the game's RTP is z = (mean − RTP) / (s / √n), with s the standard
//!   deviation of their returns (never taken below `min_sd`, so a run of equal wins is not an
//!   infinite z). This is a one-sample t-test of the mean return: by the central limit
//!   theorem z is about standard normal on a fair game, so z ≥ `z_threshold` (4 by default:
//!   a one-sided tail of 3·10⁻⁵; checked after every round, a few times that) flags the
//!   player. A game's returns are skewed (rare big wins), which makes a fair player's z
//!   lower, not higher, until the big win comes; then the spread grows with it.
//! - **Bursts of idempotency conflicts.** `conflicts` or more keys reused for a different
//!   request within a minute (a client replaying keys with new bodies, or probing them).
//! - **Many sessions.** `sign_ins` or more sign-ins within an hour (more than the session cap
//!   keeps: tokens being farmed or shared).
//!
//! Flags are listed at `GET /ops/flags` (the control plane gathers them from every node:
//! `GET /api/v1/flags`) and counted by `croupier_play_flags` (players flagged now), which the
//! control plane alerts on (`unusual_play`). They live in memory for a day.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use croupier_games::GameId;
use croupier_games::catalog::ALL_GAMES;
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};

/// When a signal flags a player.
#[derive(Debug, Clone)]
pub struct FlagConfig {
    pub min_rounds: u64,
    pub z_threshold: f64,
    /// Floor of the standard deviation of returns in the z-score.
    pub min_sd: f64,
    /// Idempotency conflicts within a minute.
    pub conflicts: usize,
    /// Sign-ins within an hour.
    pub sign_ins: usize,
}

impl Default for FlagConfig {
    fn default() -> Self {
        FlagConfig {
            min_rounds: 100,
            z_threshold: 4.0,
            min_sd: 0.1,
            conflicts: 20,
            sign_ins: 30,
        }
    }
}

const CONFLICT_WINDOW: Duration = Duration::from_secs(60);
const SIGN_IN_WINDOW: Duration = Duration::from_secs(3_600);
/// A flag, and a player's counts, are forgotten a day after they last changed.
const KEPT_FOR: Duration = Duration::from_secs(86_400);

/// A flag as operators see it (`GET /ops/flags`), its detail the signal's figures.
pub type Flag = croupier_web::wire::ops::Flag<Value>;

/// Mean and spread of a player's returns in one game (Welford's running form).
#[derive(Default, Clone, Copy)]
struct Returns {
    rounds: u64,
    mean: f64,
    m2: f64,
}

impl Returns {
    fn add(&mut self, r: f64) {
        self.rounds += 1;
        let delta = r - self.mean;
        self.mean += delta / self.rounds as f64;
        self.m2 += delta * (r - self.mean);
    }

    fn sd(&self) -> f64 {
        if self.rounds < 2 {
            return 0.0;
        }
        (self.m2 / (self.rounds - 1) as f64).sqrt()
    }

    /// The z-score of the mean return against `rtp`.
    fn z(&self, rtp: f64, min_sd: f64) -> f64 {
        (self.mean - rtp) / (self.sd().max(min_sd) / (self.rounds as f64).sqrt())
    }
}

#[derive(Default)]
struct Counts {
    returns: HashMap<(String, GameId), (Returns, Instant)>,
    conflicts: HashMap<String, VecDeque<Instant>>,
    sign_ins: HashMap<String, VecDeque<Instant>>,
    flags: HashMap<(String, &'static str), (Flag, Instant)>,
}

/// One node's counts and flags.
pub struct PlayFlags {
    config: FlagConfig,
    rtp: HashMap<GameId, f64>,
    counts: Mutex<Counts>,
    flagged: Gauge,
}

fn unix_ms() -> i64 {
    crate::extract::now_ms()
}

/// Pushes `now` and drops what is older than `window`; how many are left.
fn count_within(times: &mut VecDeque<Instant>, now: Instant, window: Duration) -> usize {
    times.push_back(now);
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) > window)
    {
        times.pop_front();
    }
    times.len()
}

impl PlayFlags {
    pub fn new(config: FlagConfig) -> PlayFlags {
        PlayFlags {
            config,
            rtp: ALL_GAMES.iter().map(|g| (*g, g.info().rtp)).collect(),
            counts: Mutex::new(Counts::default()),
            flagged: Gauge::default(),
        }
    }

    /// `croupier_play_flags`: players flagged now.
    pub fn gauge(&self) -> Gauge {
        self.flagged.clone()
    }

    fn raise(&self, counts: &mut Counts, player: &str, signal: &'static str, detail: Value) {
        let flag = Flag {
            at_ms: unix_ms(),
            detail,
            node: None,
            player: player.to_owned(),
            signal: signal.to_owned(),
        };
        let new = counts
            .flags
            .insert((player.to_owned(), signal), (flag.clone(), Instant::now()))
            .is_none();
        if new {
            tracing::warn!(player, signal, detail = %flag.detail, "unusual play flagged");
        }
        self.refresh(counts);
    }

    fn refresh(&self, counts: &Counts) {
        let mut players: Vec<&str> = counts.flags.keys().map(|(p, _)| p.as_str()).collect();
        players.sort_unstable();
        players.dedup();
        self.flagged
            .set(i64::try_from(players.len()).unwrap_or(i64::MAX));
    }

    /// A settled round of `player`: `stake` staked in all, `payout` paid.
    pub fn settled(&self, player: &str, game: GameId, stake: i64, payout: i64) {
        if stake <= 0 {
            return;
        }
        let Some(&rtp) = self.rtp.get(&game) else {
            return;
        };
        let mut counts = self.counts.lock();
        let entry = counts
            .returns
            .entry((player.to_owned(), game))
            .or_insert((Returns::default(), Instant::now()));
        entry.0.add(payout as f64 / stake as f64);
        entry.1 = Instant::now();
        let returns = entry.0;
        if returns.rounds < self.config.min_rounds {
            return;
        }
        let z = returns.z(rtp, self.config.min_sd);
        if z >= self.config.z_threshold {
            let detail = json!({
                "game": game.as_str(), "rounds": returns.rounds, "z": z,
                "mean_return": returns.mean, "rtp": rtp,
            });
            self.raise(&mut counts, player, "winning_beyond_rtp", detail);
        }
    }

    /// A request of `player` reused an idempotency key for a different request.
    pub fn conflict(&self, player: &str) {
        let mut counts = self.counts.lock();
        let now = Instant::now();
        let times = counts.conflicts.entry(player.to_owned()).or_default();
        let seen = count_within(times, now, CONFLICT_WINDOW);
        if seen >= self.config.conflicts {
            let detail = json!({"conflicts": seen, "within_s": CONFLICT_WINDOW.as_secs()});
            self.raise(&mut counts, player, "idempotency_conflicts", detail);
        }
    }

    /// `player` signed in.
    pub fn signed_in(&self, player: &str) {
        let mut counts = self.counts.lock();
        let now = Instant::now();
        let times = counts.sign_ins.entry(player.to_owned()).or_default();
        let seen = count_within(times, now, SIGN_IN_WINDOW);
        if seen >= self.config.sign_ins {
            let detail = json!({"sign_ins": seen, "within_s": SIGN_IN_WINDOW.as_secs()});
            self.raise(&mut counts, player, "many_sessions", detail);
        }
    }

    /// The flags raised within the last day, newest first.
    pub fn list(&self) -> Vec<Flag> {
        let mut flags: Vec<Flag> = self
            .counts
            .lock()
            .flags
            .values()
            .map(|(flag, _)| flag.clone())
            .collect();
        flags.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(a.player.cmp(&b.player)));
        flags
    }

    /// Forgets flags and counts untouched for a day.
    pub fn sweep(&self) {
        let mut counts = self.counts.lock();
        counts.returns.retain(|_, (_, at)| at.elapsed() < KEPT_FOR);
        counts.flags.retain(|_, (_, at)| at.elapsed() < KEPT_FOR);
        let now = Instant::now();
        counts.conflicts.retain(|_, t| {
            t.back()
                .is_some_and(|t| now.duration_since(*t) < CONFLICT_WINDOW)
        });
        counts.sign_ins.retain(|_, t| {
            t.back()
                .is_some_and(|t| now.duration_since(*t) < SIGN_IN_WINDOW)
        });
        self.refresh(&counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use croupier_games::dice::{DiceBet, Direction};
    use croupier_games::{BetRequest, FairRng};

    fn flags() -> PlayFlags {
        PlayFlags::new(FlagConfig::default())
    }

    /// Plays `rounds` dice bets of 100 on `target` (over) with the fair stream.
    fn dice(flags: &PlayFlags, player: &str, target: u32, rounds: u64) {
        let over = DiceBet {
            target,
            direction: Direction::Over,
        };
        let bet = croupier_games::validate(100, &BetRequest::Dice(over)).unwrap();
        for nonce in 0..rounds {
            let mut rng = FairRng::new("server", player, nonce);
            let outcome = croupier_games::play(&bet, 100, &mut rng);
            flags.settled(player, GameId::Dice, 100, outcome.payout.unwrap_or(0));
        }
    }

    #[test]
    fn fair_players_are_not_flagged_however_long_they_play() {
        let flags = flags();
        for (n, target) in [200, 5_000, 9_000, 9_800].into_iter().enumerate() {
            dice(&flags, &format!("fair-{n}"), target, 5_000);
        }
        assert_eq!(flags.list(), Vec::new());
    }

    #[test]
    fn a_player_winning_far_beyond_the_rtp_is_flagged_after_enough_rounds() {
        let flags = flags();
        // Wins of 1.98x at a 50% chance, every other round won twice as often as it should.
        for n in 0..99 {
            flags.settled("lucky", GameId::Dice, 100, if n % 4 == 3 { 0 } else { 198 });
        }
        assert_eq!(flags.list(), Vec::new(), "fewer rounds than the minimum");
        flags.settled("lucky", GameId::Dice, 100, 198);
        let listed = flags.list();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(
            (listed[0].player.as_str(), listed[0].signal.as_str()),
            ("lucky", "winning_beyond_rtp")
        );
        assert!(listed[0].detail["z"].as_f64().unwrap() >= 4.0);
        assert_eq!(flags.flagged.get(), 1);
    }

    #[test]
    fn conflict_bursts_and_sign_in_storms_are_flagged() {
        let flags = flags();
        for _ in 0..19 {
            flags.conflict("replayer");
            flags.signed_in("farmer");
        }
        assert_eq!(flags.list(), Vec::new());
        flags.conflict("replayer");
        for _ in 0..11 {
            flags.signed_in("farmer");
        }
        let signals: Vec<_> = flags.list().into_iter().map(|f| f.signal).collect();
        assert!(signals.iter().any(|s| s == "idempotency_conflicts"));
        assert!(signals.iter().any(|s| s == "many_sessions"));
        assert_eq!(flags.flagged.get(), 2);
    }
}
