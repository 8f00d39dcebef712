//! Bets through a real `croupier node` process over HTTP with keep-alive connections, one
//! client thread per player.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::report::{Row, new_histogram};

const OPS_TOKEN: &str = "bench-ops-token-0123456789abcdef0123456789";

struct NodeProcess(std::process::Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn run(
    players: &[usize],
    duration: Duration,
    croupier: Option<PathBuf>,
) -> anyhow::Result<Vec<Row>> {
    let binary = match croupier {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has a folder")?
            .join("croupier"),
    };
    anyhow::ensure!(
        binary.exists(),
        "{} not found: cargo build --release first",
        binary.display()
    );
    let mut rows = Vec::new();
    for &count in players {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let _node = NodeProcess(
            Command::new(&binary)
                .args(["node", "--listen", &format!("127.0.0.1:{port}")])
                .arg("--data")
                .arg(dir.path())
                .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()?,
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&base)?;
        rows.push(measure(&base, count, duration)?);
        let mut report = agent()
            .get(&format!("{base}/ops/integrity"))
            .header("Authorization", &format!("Bearer {OPS_TOKEN}"))
            .call()?;
        let report: Value = report.body_mut().read_json()?;
        anyhow::ensure!(
            report["ok"] == true,
            "integrity violated after the HTTP benchmark: {report}"
        );
    }
    Ok(rows)
}

fn wait_ready(base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = agent().get(&format!("{base}/readyz")).call()
            && r.status() == 200
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("the node at {base} did not become ready")
}

fn measure(base: &str, players: usize, duration: Duration) -> anyhow::Result<Row> {
    let mut tokens = Vec::new();
    for p in 0..players {
        let mut response = agent()
            .post(&format!("{base}/api/v1/sessions"))
            .send_json(json!({"player": format!("p{p}")}))?;
        let body: Value = response.body_mut().read_json()?;
        tokens.push(
            body["token"]
                .as_str()
                .context("a session token")?
                .to_owned(),
        );
    }
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
                let body = json!({"game": "dice", "stake": 10, "bet": {"target": 5000, "direction": "over"}});
                let (mut ok, mut errors, mut latency) = (0u64, 0u64, new_histogram());
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let began = Instant::now();
                    let sent = agent
                        .post(&url)
                        .header("Authorization", &auth)
                        .header("Idempotency-Key", &format!("{p}-{n}"))
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
