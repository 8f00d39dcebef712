//! Active health checks: each node's `/readyz` on an interval with a timeout; `rise`
//! successes in a row bring it up, `fall` failures take it down (a draining node answers 503
//! and so goes down too).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;

use crate::Gateway;

#[derive(Debug, Clone, Copy)]
pub struct HealthConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(150),
            rise: 2,
            fall: 2,
        }
    }
}

pub fn spawn_checks(gateway: Arc<Gateway>) {
    for index in 0..gateway.pool.backends.len() {
        let gateway = gateway.clone();
        tokio::spawn(async move { check_loop(gateway, index).await });
    }
}

async fn probe(gateway: &Gateway, index: usize) -> bool {
    let backend = &gateway.pool.backends[index];
    let Ok(uri) = format!("{}/readyz", backend.base).parse::<hyper::Uri>() else {
        return false;
    };
    let request = hyper::Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("a GET request builds");
    matches!(
        tokio::time::timeout(gateway.config.health.timeout, gateway.client.request(request)).await,
        Ok(Ok(response)) if response.status() == hyper::StatusCode::OK
    )
}

async fn check_loop(gateway: Arc<Gateway>, index: usize) {
    let config = gateway.config.health;
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let backend = &gateway.pool.backends[index];
        if probe(&gateway, index).await {
            successes += 1;
            failures = 0;
            if !backend.is_healthy() && successes >= config.rise {
                backend.set_healthy(true);
                tracing::info!(node = %backend.name, "node is up");
            }
        } else {
            failures += 1;
            successes = 0;
            if backend.is_healthy() && failures >= config.fall {
                backend.set_healthy(false);
                tracing::warn!(node = %backend.name, "node is down");
            }
        }
    }
}
