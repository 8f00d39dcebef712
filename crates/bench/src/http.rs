//! Bets through a real `croupier node` process over HTTP with keep-alive connections, one
//! client thread per player.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use croupier_web::wire;

use crate::client::{dice_play, ensure_integrity, sign_in};
use crate::procs::{agent, croupier_binary, free_port, start_node};
use crate::report::{Row, new_histogram};

pub fn run(
    players: &[usize],
    duration: Duration,
    croupier: Option<PathBuf>,
) -> anyhow::Result<Vec<Row>> {
    let binary = croupier_binary(croupier)?;
    let mut rows = Vec::new();
    for &count in players {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let _node = start_node(&binary, dir.path(), port, "bench")?;
        let base = format!("http://127.0.0.1:{port}");
        rows.push(measure(&base, count, duration)?);
        ensure_integrity(&base, "the HTTP benchmark")?;
    }
    Ok(rows)
}

fn measure(base: &str, players: usize, duration: Duration) -> anyhow::Result<Row> {
    let tokens = sign_in(base, (0..players).map(|p| format!("p{p}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(p, token)| {
            let (stop, url) = (stop.clone(), format!("{base}/api/v1/rounds"));
            std::thread::spawn(move || {
                let agent = agent();
                let auth = format!("Bearer {token}");
                let body = dice_play();
                let (mut ok, mut errors, mut latency) = (0u64, 0u64, new_histogram());
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let began = Instant::now();
                    let sent = agent
                        .post(&url)
                        .header("Authorization", &auth)
                        .header(wire::IDEMPOTENCY_KEY, &format!("{p}-{n}"))
                        .send_json(&body);
                    match sent {
                        Ok(mut r) if r.status() == 201 => {
                            let _ = r.body_mut().read_to_vec();
                            ok += 1;
                        }
                        _ => errors += 1,
                    }
                    let _ = latency.record(began.elapsed().as_micros() as u64);
                }
                (ok, errors, latency)
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut row = Row {
        path: "http",
        players,
        ops: 0,
        errors: 0,
        seconds: 0.0,
        latency_us: new_histogram(),
        server_cpu_seconds: None,
        server_wal_bytes: None,
        batches: None,
    };
    for worker in workers {
        let (ok, errors, latency) = worker.join().expect("http worker");
        row.ops += ok;
        row.errors += errors;
        row.latency_us.add(latency)?;
    }
    row.seconds = started.elapsed().as_secs_f64();
    Ok(row)
}
