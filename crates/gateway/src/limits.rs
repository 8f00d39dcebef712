//! Rate limits per client address and per player (governor's keyed GCRA limiters).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::Gateway;
use crate::pool::PlayerKey;

pub struct RateLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_player: Option<DefaultKeyedRateLimiter<PlayerKey>>,
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

impl RateLimits {
    pub fn new(per_ip: Option<u32>, per_player: Option<u32>) -> Self {
        RateLimits {
            per_ip: limiter(per_ip),
            per_player: limiter(per_player),
        }
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
    }
}

/// Forgets idle keys now and then, so memory follows the active clients.
pub fn spawn_sweeper(gateway: Arc<Gateway>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            gateway.limits.sweep();
        }
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
}
