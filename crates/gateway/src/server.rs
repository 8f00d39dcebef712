//! The players' listener, served connection by connection so that stopping is gentle: first
//! stop accepting, then give connections accepted a moment ago the time to send their request,
//! then ask every connection to finish what it is doing and close. A request that reached the
//! gateway is answered; only a keep-alive connection idle at that moment is closed.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// How long a client has to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// After accepting stops: time for just-accepted connections to send their request.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);
/// Longest wait for requests in flight once the gateway stops.
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// Pause after a failed accept: out of descriptors (`ulimit -n`) the listener stays readable,
/// and accepting again at once would spin a core without serving anyone.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

pub async fn serve(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    // Each connection task holds a sender; when all are gone, every connection has closed.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    let (close_now, _) = watch::channel(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; pausing before the next accept");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone().layer(axum::Extension(ConnectInfo::<SocketAddr>(remote))));
                let alive = alive.clone();
                let mut closing = close_now.subscribe();
                tokio::spawn(async move {
                    let _alive = alive;
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => return,
                        _ = stopped(&mut closing) => {}
                    }
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                });
            }
            _ = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    drop(alive);
    tokio::time::sleep(FIRST_REQUEST_GRACE).await;
    close_now.send_replace(true);
    let _ = tokio::time::timeout(STOP_DEADLINE, all_closed.recv()).await;
}
