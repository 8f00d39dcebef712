//! The control plane's cost of scraping and evaluating rules, against Prometheus doing the
//! same work on the same targets in the same run: 10, 100 and 1000 simulated game nodes (each
//! page shaped like a real node's `/metrics`: host gauges, requests by route and status,
//! latency histograms, bets), scraped once a second, with alert rules evaluated once a second
//! (ours: the built-in rules and SLOs; Prometheus: the same rules written in PromQL). Reports
//! CPU cores used per 1000 series scraped each second, and the ratio.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Deserialize;

use crate::procs::{OPS_TOKEN, Process, agent, cpu_seconds, croupier_binary, free_port};

const ROUTES: [&str; 8] = [
    "/api/v1/rounds",
    "/api/v1/rounds/{id}/actions",
    "/api/v1/wallet",
    "/api/v1/wallet/history",
    "/api/v1/lobby",
    "/api/v1/sessions",
    "/api/v1/seeds",
    "/api/v1/ws",
];
const BUCKETS: [&str; 12] = [
    "0.00025", "0.0005", "0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128",
    "0.256", "+Inf",
];
const GAMES: [&str; 4] = ["dice", "roulette", "slot", "blackjack"];

/// One simulated node's page; counters grow with `tick` (the clock's seconds).
fn page(target: usize, tick: u64) -> String {
    let mut out = String::with_capacity(24_000);
    let n = tick + target as u64;
    let _ = write!(
        out,
        "croupier_host_cpu_usage_ratio 0.{}\ncroupier_host_memory_used_bytes {}\n\
         croupier_host_memory_total_bytes 25000000000\ncroupier_host_process_resident_memory_bytes 50000000\n\
         croupier_host_network_receive_bytes_total{{interface=\"eth0\"}} {}\n\
         croupier_host_network_transmit_bytes_total{{interface=\"eth0\"}} {}\n\
         croupier_host_disk_total_bytes{{mount=\"/\"}} 250000000000\n\
         croupier_host_disk_available_bytes{{mount=\"/\"}} 80000000000\n\
         croupier_rounds_in_flight {}\ncroupier_draining 0\ncroupier_store_up 1\ncroupier_websocket_connections 12\n",
        n % 9,
        1_000_000_000 + n % 1000,
        n * 1500,
        n * 1400,
        n % 5,
    );
    for route in ROUTES {
        for (status, share) in [("200", 50), ("422", 2), ("503", 0)] {
            let _ = writeln!(
                out,
                "croupier_http_requests_total{{method=\"POST\",route=\"{route}\",status=\"{status}\"}} {}",
                n * share
            );
        }
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "croupier_http_request_duration_seconds_bucket{{le=\"{le}\",method=\"POST\",route=\"{route}\"}} {}",
                n * 52 * (i as u64 + 1) / BUCKETS.len() as u64
            );
        }
        let _ = writeln!(
            out,
            "croupier_http_request_duration_seconds_sum{{method=\"POST\",route=\"{route}\"}} {}\n\
             croupier_http_request_duration_seconds_count{{method=\"POST\",route=\"{route}\"}} {}",
            n as f64 * 0.05,
            n * 52
        );
    }
    for game in GAMES {
        for name in ["bets", "staked_minor_units", "paid_minor_units"] {
            let _ = writeln!(out, "croupier_{name}_total{{game=\"{game}\"}} {}", n * 7);
        }
    }
    out
}

/// Serves `/t/{i}/metrics` for every simulated target until the process ends.
fn serve_targets(runtime: &tokio::runtime::Runtime) -> anyhow::Result<u16> {
    let port = free_port()?;
    let app = axum::Router::new().route(
        "/t/{target}/metrics",
        axum::routing::get(
            |axum::extract::Path(target): axum::extract::Path<usize>| async move {
                let tick = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                page(target, tick)
            },
        ),
    );
    let listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))?;
    runtime.spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}

/// Series on one simulated page.
fn series_per_target() -> usize {
    page(0, 1).lines().count()
}

/// CPU cores a process uses over `seconds`, after `warmup`.
fn cores_used(pid: u32, warmup: Duration, seconds: Duration) -> anyhow::Result<f64> {
    std::thread::sleep(warmup);
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    std::thread::sleep(seconds);
    Ok((cpu_seconds(pid)? - cpu0) / t0.elapsed().as_secs_f64())
}

fn run_croupier(
    binary: &Path,
    dir: &Path,
    sim: u16,
    targets: usize,
    seconds: Duration,
) -> anyhow::Result<f64> {
    let mut config = String::new();
    for i in 0..targets {
        let _ = writeln!(
            config,
            "[[node]]\nname = \"t{i}\"\nurl = \"http://127.0.0.1:{sim}/t/{i}\"\n"
        );
    }
    let path = dir.join(format!("croupier-{targets}.toml"));
    std::fs::write(&path, config)?;
    let port = free_port()?;
    let data = dir.join(format!("control-{targets}"));
    let process = Process(
        Command::new(binary)
            .arg("control")
            .arg("--config")
            .arg(&path)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(&data)
            .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let cores = cores_used(process.pid(), Duration::from_secs(4), seconds)?;
    all_up("croupier control", targets, || {
        let answer: ControlTargets = agent()
            .get(&format!("http://127.0.0.1:{port}/api/v1/targets"))
            .header("Authorization", &format!("Bearer {OPS_TOKEN}"))
            .call()?
            .body_mut()
            .read_json()?;
        Ok(answer.targets.iter().filter(|t| t.up).count())
    })?;
    Ok(cores)
}

/// Waits until `count` says each of `targets` was scraped, 10 s at most: a short measurement
/// can end before a scraper has reached every target once (the first scrapes are spread
/// over the interval), which says nothing of what it costs.
fn all_up(
    scraper: &str,
    targets: usize,
    mut count: impl FnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut up = count()?;
    while up < targets && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        up = count()?;
    }
    anyhow::ensure!(up == targets, "{scraper} saw {up} of {targets} targets up");
    Ok(())
}

/// The same rules as the built-in ones, in PromQL.
const PROMETHEUS_RULES: &str = r#"groups:
- name: croupier
  interval: 1s
  rules:
  - alert: down
    expr: up == 0
    for: 2s
  - alert: store_down
    expr: croupier_store_up < 1
    for: 2s
  - alert: cpu_high
    expr: croupier_host_cpu_usage_ratio > 0.9
    for: 60s
  - alert: memory_high
    expr: croupier_host_memory_used_bytes / croupier_host_memory_total_bytes > 0.9
    for: 60s
  - alert: disk_full
    expr: max by (instance) (1 - croupier_host_disk_available_bytes / croupier_host_disk_total_bytes) > 0.9
    for: 60s
  - alert: network_receive_high
    expr: sum by (instance) (rate(croupier_host_network_receive_bytes_total[3s])) > 100e6
    for: 60s
  - alert: network_transmit_high
    expr: sum by (instance) (rate(croupier_host_network_transmit_bytes_total[3s])) > 100e6
    for: 60s
  - alert: latency_high
    expr: histogram_quantile(0.99, sum by (instance, le) (rate(croupier_http_request_duration_seconds_bucket{route=~"/api/.*"}[3s]))) > 0.25
    for: 30s
  - alert: error_rate_high
    expr: sum by (instance) (rate(croupier_http_requests_total{status=~"5.."}[3s])) / sum by (instance) (rate(croupier_http_requests_total[3s])) > 0.05
    for: 30s
"#;

fn run_prometheus(dir: &Path, sim: u16, targets: usize, seconds: Duration) -> anyhow::Result<f64> {
    let mut config = String::from(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 800ms\n\
         rule_files: [rules.yml]\nscrape_configs:\n- job_name: nodes\n  static_configs:\n",
    );
    for i in 0..targets {
        let _ = writeln!(
            config,
            "  - targets: ['127.0.0.1:{sim}']\n    labels: {{__metrics_path__: '/t/{i}/metrics', node: 't{i}'}}"
        );
    }
    let home = dir.join(format!("prometheus-{targets}"));
    std::fs::create_dir_all(&home)?;
    std::fs::write(home.join("prometheus.yml"), config)?;
    std::fs::write(home.join("rules.yml"), PROMETHEUS_RULES)?;
    let port = free_port()?;
    let process = Process(
        Command::new("prometheus")
            .current_dir(&home)
            .arg("--config.file=prometheus.yml")
            .arg(format!(
                "--storage.tsdb.path={}",
                home.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus (apt-get install prometheus)")?,
    );
    let cores = cores_used(process.pid(), Duration::from_secs(4), seconds)?;
    all_up("prometheus", targets, || targets_up(port))?;
    Ok(cores)
}

/// How many of its active targets Prometheus on `port` last scraped successfully.
fn targets_up(port: u16) -> anyhow::Result<usize> {
    let answer: PrometheusTargets = agent()
        .get(&format!(
            "http://127.0.0.1:{port}/api/v1/targets?state=active"
        ))
        .call()?
        .body_mut()
        .read_json()?;
    Ok(answer
        .data
        .active_targets
        .iter()
        .filter(|t| t.health == "up")
        .count())
}

/// What the benchmark reads of the control plane's `GET /api/v1/targets`.
#[derive(Deserialize)]
struct ControlTargets {
    targets: Vec<ControlTarget>,
}

#[derive(Deserialize)]
struct ControlTarget {
    up: bool,
}

/// What the benchmark reads of Prometheus's `GET /api/v1/targets?state=active`.
#[derive(Deserialize)]
struct PrometheusTargets {
    data: PrometheusActive,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrometheusActive {
    active_targets: Vec<PrometheusTarget>,
}

#[derive(Deserialize)]
struct PrometheusTarget {
    /// `up`, `down` or `unknown`.
    health: String,
}

pub fn run(
    target_counts: &[usize],
    seconds: Duration,
    croupier: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let binary = croupier_binary(croupier)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sim = serve_targets(&runtime)?;
    let dir = tempfile::tempdir()?;
    let series = series_per_target();
    println!(
        "| targets | series | croupier control: cores | per 1000 series/s | Prometheus: cores | per 1000 series/s | croupier / Prometheus |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &targets in target_counts {
        let total = (targets * series) as f64;
        let ours = run_croupier(&binary, dir.path(), sim, targets, seconds)?;
        let theirs = run_prometheus(dir.path(), sim, targets, seconds)?;
        println!(
            "| {targets} | {} | {ours:.4} | {:.5} | {theirs:.4} | {:.5} | {:.2}x |",
            targets * series,
            ours / total * 1000.0,
            theirs / total * 1000.0,
            ours / theirs
        );
        std::io::stdout().flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_simulated_page_looks_like_a_node() {
        let page = super::page(3, 10);
        assert_eq!(page.lines().count(), super::series_per_target());
        assert!(page.contains("croupier_http_request_duration_seconds_bucket{le=\"+Inf\""));
        assert!(page.lines().all(|l| l.starts_with("croupier_")));
    }
}
