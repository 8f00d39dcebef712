//! Rate limits per client address, per player and on sign-ins per address (governor's keyed
//! GCRA limiters). A player is known by the token's key until the gateway has seen which
//! player a token was issued to (the node's answer to the sign-in); from then on every token
//! of that player shares one bucket, so signing in again gives no fresh allowance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

use crate::Gateway;
use crate::pool::PlayerKey;

/// How long the gateway remembers a token's player: a session's lifetime.
const TOKEN_MEMORY: Duration = Duration::from_secs(24 * 3600);

pub struct RateLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_player: Option<DefaultKeyedRateLimiter<PlayerKey>>,
    sign_ins: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Token key -> (player key, when learnt).
    players: Mutex<HashMap<PlayerKey, (PlayerKey, Instant)>>,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(
    per_second: Option<u32>,
) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_second?)?;
    // A burst of two seconds' worth.
    let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

fn per_minute_limiter(per_minute: Option<u32>) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    let rate = NonZeroU32::new(per_minute?)?;
    Some(RateLimiter::keyed(Quota::per_minute(rate)))
}

impl RateLimits {
    pub fn new(per_ip: Option<u32>, per_player: Option<u32>) -> Self {
        RateLimits {
            per_ip: limiter(per_ip),
            per_player: limiter(per_player),
            sign_ins: None,
            players: Mutex::new(HashMap::new()),
        }
    }

    /// Sign-ins (in demo mode, sign-ups) allowed per address and minute, in a burst too.
    pub fn with_sign_ins(mut self, per_minute: Option<u32>) -> Self {
        self.sign_ins = per_minute_limiter(per_minute);
        self
    }

    pub fn allow_sign_in(&self, ip: IpAddr) -> bool {
        self.sign_ins
            .as_ref()
            .is_none_or(|l| l.check_key(&ip).is_ok())
    }

    /// Remembers that `token` was issued to `player` (both as keys).
    pub fn learn(&self, token: PlayerKey, player: PlayerKey) {
        self.players.lock().insert(token, (player, Instant::now()));
    }

    /// The key a token's requests are limited by: its player's, once known.
    pub fn player_of(&self, token: PlayerKey) -> PlayerKey {
        self.players.lock().get(&token).map_or(token, |(p, _)| *p)
    }

    pub fn allow_ip(&self, ip: IpAddr) -> bool {
        self.per_ip
            .as_ref()
            .is_none_or(|l| l.check_key(&ip).is_ok())
    }

    pub fn allow_player(&self, player: PlayerKey) -> bool {
        self.per_player
            .as_ref()
            .is_none_or(|l| l.check_key(&player).is_ok())
    }

    fn sweep(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
        }
        if let Some(l) = &self.per_player {
            l.retain_recent();
        }
        if let Some(l) = &self.sign_ins {
            l.retain_recent();
        }
        self.players
            .lock()
            .retain(|_, (_, at)| at.elapsed() < TOKEN_MEMORY);
    }
}

/// Forgets idle keys now and then, so memory follows the active clients.
pub fn spawn_sweeper(gateway: Arc<Gateway>) {
    croupier_vitals::background::spawn_every("limits sweep", Duration::from_secs(10), move || {
        gateway.limits.sweep();
        gateway.lockout.sweep();
        gateway.scanning.sweep();
        std::future::ready(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_per_key_and_can_be_off() {
        let limits = RateLimits::new(Some(5), None);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let allowed = (0..50).filter(|_| limits.allow_ip(a)).count();
        assert!((10..=11).contains(&allowed), "{allowed}");
        assert!(limits.allow_ip(b));
        assert!((0..1000).all(|_| limits.allow_player(7)));
    }

    #[test]
    fn a_player_s_tokens_share_one_bucket_once_known_and_sign_ins_are_limited() {
        let limits = RateLimits::new(None, Some(5)).with_sign_ins(Some(3));
        let (first, second, player) = (1, 2, 99);
        limits.learn(first, player);
        limits.learn(second, player);
        let allowed = (0..50)
            .filter(|i| {
                limits.allow_player(limits.player_of(if i % 2 == 0 { first } else { second }))
            })
            .count();
        assert!((10..=11).contains(&allowed), "{allowed}");
        assert_eq!(limits.player_of(3), 3, "an unknown token is its own key");
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!((0..10).filter(|_| limits.allow_sign_in(ip)).count(), 3);
    }
}
