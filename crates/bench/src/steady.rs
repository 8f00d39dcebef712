//! A steady bet load through a real node, for the RPO measurements of both backends (the
//! SQLite `backup ship` one and the pgBackRest one): each player a thread sending keyed dice
//! bets at its share of the rate, until stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use croupier_web::wire;

use crate::client::{dice_play, sign_in};
use crate::procs::agent;

/// What the players did.
pub struct Bets {
    pub sent: u64,
    /// Answered 201: the round is committed.
    pub acknowledged: u64,
}

pub struct SteadyBets {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Bets>>,
}

impl SteadyBets {
    /// Signs in `players` players named `<prefix><n>` on the node at `base` and starts them
    /// betting, `rate` bets per second all together.
    pub fn start(base: &str, prefix: &str, players: u64, rate: u64) -> anyhow::Result<Self> {
        let tokens = sign_in(base, (0..players).map(|p| format!("{prefix}{p}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let interval = Duration::from_secs_f64(players as f64 / rate.max(1) as f64);
        let workers = tokens
            .into_iter()
            .enumerate()
            .map(|(p, token)| {
                let (stop, url) = (stop.clone(), format!("{base}/api/v1/rounds"));
                let key = format!("{prefix}{p}");
                std::thread::spawn(move || play(&url, &token, &key, interval, &stop))
            })
            .collect();
        Ok(SteadyBets { stop, workers })
    }

    /// Stops the players; what they did.
    pub fn stop(self) -> Bets {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Bets {
            sent: 0,
            acknowledged: 0,
        };
        for worker in self.workers {
            if let Ok(bets) = worker.join() {
                all.sent += bets.sent;
                all.acknowledged += bets.acknowledged;
            }
        }
        all
    }
}

/// One player's bets, one every `interval`, until `stop`.
fn play(url: &str, token: &str, key: &str, interval: Duration, stop: &AtomicBool) -> Bets {
    let agent = agent();
    let body = dice_play();
    let mut bets = Bets {
        sent: 0,
        acknowledged: 0,
    };
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        bets.sent += 1;
        let sent = agent
            .post(url)
            .header("Authorization", &format!("Bearer {token}"))
            .header(wire::IDEMPOTENCY_KEY, &format!("{key}-{}", bets.sent))
            .send_json(&body);
        if let Ok(mut r) = sent {
            if r.status() == 201 {
                bets.acknowledged += 1;
            }
            let _ = r.body_mut().read_to_vec();
        }
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    bets
}
