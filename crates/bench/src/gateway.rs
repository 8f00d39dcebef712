//! The gateway against HAProxy, in front of the same three nodes with the same health checks
//! (`/readyz` every 200 ms, fall 2, rise 2, passive marking-down on connection errors,
//! least-connections balancing, redispatch on retry): throughput and latency under wrk
//! (64 connections, 64 players), CPU per request, and failover — failed player requests and
//! the stall after `kill -9` of a node under load.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use croupier_web::wire;

use crate::client::{dice_play, ensure_integrity, sign_in};
use crate::procs::{
    OPS_TOKEN, Process, agent, cpu_seconds, croupier_binary, free_port, start_node, wait_ok,
};
use crate::report::or_dash;

const PLAYERS: usize = 64;

struct WrkResult {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

/// Parses "1.23ms", "456.00us", "1.2s".
fn millis(text: &str) -> Option<f64> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(output: &str) -> anyhow::Result<WrkResult> {
    let field = |prefix: &str| {
        output
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.trim().to_owned())
    };
    Ok(WrkResult {
        requests_per_second: field("Requests/sec:")
            .context("wrk printed no Requests/sec")?
            .parse()?,
        p50_ms: field("50%")
            .and_then(|v| millis(&v))
            .context("wrk printed no p50")?,
        p99_ms: field("99%")
            .and_then(|v| millis(&v))
            .context("wrk printed no p99")?,
        non_2xx: field("Non-2xx or 3xx responses:")
            .map(|v| v.parse().unwrap_or(0))
            .unwrap_or(0),
    })
}

fn wrk(url: &str, script: &Path, seconds: u64) -> anyhow::Result<WrkResult> {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{PLAYERS}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .context("wrk is not installed (apt-get install wrk)")?;
    parse_wrk(&String::from_utf8_lossy(&output.stdout))
}

/// A wrk script that spreads requests over the players' tokens, as real traffic does.
fn wrk_script(dir: &Path, tokens: &[String]) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("players.lua");
    let list: Vec<String> = tokens.iter().map(|t| format!("\"{t}\"")).collect();
    let mut file = std::fs::File::create(&path)?;
    writeln!(
        file,
        "tokens = {{{}}}\ncounter = 0\nrequest = function()\n  counter = counter + 1\n  return wrk.format(\"GET\", \"/api/v1/wallet\", {{[\"Authorization\"] = \"Bearer \" .. tokens[(counter % #tokens) + 1]}})\nend",
        list.join(", ")
    )?;
    Ok(path)
}

fn haproxy_config(dir: &Path, port: u16, nodes: &[u16]) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("haproxy.cfg");
    let servers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  server n{i} 127.0.0.1:{p} check\n"))
        .collect();
    std::fs::write(
        &path,
        format!(
            "global\n  maxconn 4096\n\
             defaults\n  mode http\n  timeout connect 250ms\n  timeout client 30s\n  timeout server 10s\n\
             \x20 retries 2\n  option redispatch 1\n  retry-on conn-failure empty-response response-timeout\n\
             frontend players\n  bind 127.0.0.1:{port}\n  default_backend nodes\n\
             backend nodes\n  balance leastconn\n  option httpchk GET /readyz\n  http-check expect status 200\n\
             \x20 default-server inter 200ms fall 2 rise 2 observe layer4 error-limit 1 on-error mark-down\n{servers}"
        ),
    )?;
    Ok(path)
}

struct Failover {
    requests: u64,
    failed: u64,
    /// From the kill to the last failed request's end (0 when none failed).
    last_failure_ms: f64,
    /// Slowest request started within a second after the kill.
    worst_stall_ms: f64,
}

/// Players (GET wallet, POST keyed dice bets) against `base`; node `victim` is killed
/// 1.5 s in; 4 s in all.
fn failover(base: &str, tokens: &[String], victim: &mut Process) -> Failover {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = tokens
        .iter()
        .take(16)
        .enumerate()
        .map(|(p, token)| {
            let (stop, base, token) = (stop.clone(), base.to_owned(), token.clone());
            std::thread::spawn(move || play_until(&base, &token, p, started, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1_500));
    let killed = Instant::now();
    victim.kill_9();
    std::thread::sleep(Duration::from_millis(2_500));
    stop.store(true, Ordering::SeqCst);
    let seen: Vec<Request> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    Failover::of(&seen, killed)
}

/// A request of the failover run: when it started, how long it took, whether it succeeded.
type Request = (Instant, Duration, bool);

/// Player `p`'s requests against `base` until `stop`: a wallet read and a keyed dice bet in
/// turn (keys unique to the run begun at `started`).
fn play_until(
    base: &str,
    token: &str,
    p: usize,
    started: Instant,
    stop: &AtomicBool,
) -> Vec<Request> {
    let agent = agent();
    let auth = format!("Bearer {token}");
    let mut seen = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let at = Instant::now();
        let answered = if n.is_multiple_of(2) {
            agent
                .get(&format!("{base}/api/v1/wallet"))
                .header("Authorization", &auth)
                .call()
        } else {
            agent
                .post(&format!("{base}/api/v1/rounds"))
                .header("Authorization", &auth)
                .header(
                    wire::IDEMPOTENCY_KEY,
                    &format!("fo-{p}-{n}-{}", started.elapsed().as_nanos()),
                )
                .send_json(dice_play())
        };
        let ok = answered
            .map(|mut r| {
                let _ = r.body_mut().read_to_vec();
                r.status().is_success()
            })
            .unwrap_or(false);
        seen.push((at, at.elapsed(), ok));
    }
    seen
}

impl Failover {
    /// The failover's figures from every request `seen`, the node killed at `killed`.
    fn of(seen: &[Request], killed: Instant) -> Failover {
        let failures: Vec<_> = seen.iter().filter(|(_, _, ok)| !ok).collect();
        Failover {
            requests: seen.len() as u64,
            failed: failures.len() as u64,
            last_failure_ms: failures
                .iter()
                .map(|(at, took, _)| {
                    (*at + *took)
                        .saturating_duration_since(killed)
                        .as_secs_f64()
                        * 1000.0
                })
                .fold(0.0, f64::max),
            worst_stall_ms: seen
                .iter()
                .filter(|(at, _, _)| {
                    *at >= killed && at.duration_since(killed) < Duration::from_secs(1)
                })
                .map(|(_, took, _)| took.as_secs_f64() * 1000.0)
                .fold(0.0, f64::max),
        }
    }
}

pub fn run(seconds: u64, croupier: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let binary = croupier_binary(croupier)?;
    anyhow::ensure!(
        Command::new("haproxy").arg("-v").output().is_ok(),
        "haproxy is not installed (apt-get install haproxy)"
    );
    let dir = tempfile::tempdir()?;
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let mut nodes: Vec<Process> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| start_node(&binary, dir.path(), port, &format!("n{i}")))
        .collect::<Result<_, _>>()?;
    let direct = format!("http://127.0.0.1:{}", ports[0]);
    let tokens = sign_in(&direct, (0..PLAYERS).map(|p| format!("gw{p}")))?;
    let script = wrk_script(dir.path(), &tokens)?;
    let proxies = [
        start_gateway(&binary, &ports)?,
        start_haproxy(dir.path(), &ports)?,
    ];
    std::thread::sleep(Duration::from_millis(800));
    throughput(&direct, &proxies, &script, seconds)?;
    println!();
    println!(
        "| failover (kill -9 of a node under load) | requests | failed | last failure after kill ms | worst stall in the next second ms |"
    );
    println!("|---|---:|---:|---:|---:|");
    for proxy in &proxies {
        let result = failover(&proxy.url, &tokens, &mut nodes[1]);
        println!(
            "| {} | {} | {} | {:.0} | {:.0} |",
            proxy.name,
            result.requests,
            result.failed,
            result.last_failure_ms,
            result.worst_stall_ms
        );
        // The same node back on the same port for the next proxy, and seen up by both.
        nodes[1] = start_node(&binary, dir.path(), ports[1], "n1")?;
        std::thread::sleep(Duration::from_millis(1_500));
    }
    let entries = ensure_integrity(&direct, "the gateway benchmark")?;
    println!("\nledger integrity after all runs: ok ({entries} entries)");
    Ok(())
}

/// A proxy in front of the nodes, with the players' address.
struct Proxy {
    name: &'static str,
    url: String,
    process: Process,
}

impl Proxy {
    /// A row of the throughput table through this proxy (`measured`).
    fn measured(&self, script: &Path, seconds: u64) -> anyhow::Result<(WrkResult, Option<f64>)> {
        measured(
            self.name,
            &self.url,
            Some(self.process.pid()),
            script,
            seconds,
        )
    }
}

/// `croupier gateway` in front of the nodes on `ports`, once it says it is ready.
fn start_gateway(binary: &Path, ports: &[u16]) -> anyhow::Result<Proxy> {
    let (port, admin_port) = (free_port()?, free_port()?);
    let mut command = Command::new(binary);
    command
        .args(["gateway", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .args(["--rate-per-ip", "0", "--rate-per-player", "0"])
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (i, node) in ports.iter().enumerate() {
        command.args(["--node", &format!("n{i}=http://127.0.0.1:{node}")]);
    }
    let process = Process(command.spawn()?);
    wait_ok(&format!("http://127.0.0.1:{admin_port}/readyz"))?;
    Ok(Proxy {
        name: "croupier gateway",
        url: format!("http://127.0.0.1:{port}"),
        process,
    })
}

/// HAProxy in front of the nodes on `ports`, configured as `haproxy_config` says.
fn start_haproxy(dir: &Path, ports: &[u16]) -> anyhow::Result<Proxy> {
    let port = free_port()?;
    let process = Process(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(haproxy_config(dir, port, ports)?)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    Ok(Proxy {
        name: "haproxy",
        url: format!("http://127.0.0.1:{port}"),
        process,
    })
}

/// The throughput table: wrk against one node directly, then through each proxy (the
/// gateway first, HAProxy second), and what each proxy adds.
fn throughput(
    direct: &str,
    proxies: &[Proxy; 2],
    script: &Path,
    seconds: u64,
) -> anyhow::Result<()> {
    println!(
        "| path | requests/s | p50 ms | p99 ms | non-2xx | proxy CPU s | requests per proxy CPU-second |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let (node, _) = measured("one node, no proxy", direct, None, script, seconds)?;
    let [ours, theirs] = proxies;
    let (ours_wrk, ours_per_cpu) = ours.measured(script, seconds)?;
    let (theirs_wrk, theirs_per_cpu) = theirs.measured(script, seconds)?;
    println!();
    println!(
        "added latency p50/p99 ms: croupier {:.2}/{:.2}, haproxy {:.2}/{:.2}; throughput croupier/haproxy {:.2}x; requests per CPU-second croupier/haproxy {:.2}x",
        ours_wrk.p50_ms - node.p50_ms,
        ours_wrk.p99_ms - node.p99_ms,
        theirs_wrk.p50_ms - node.p50_ms,
        theirs_wrk.p99_ms - node.p99_ms,
        ours_wrk.requests_per_second / theirs_wrk.requests_per_second,
        ours_per_cpu.unwrap_or(0.0) / theirs_per_cpu.unwrap_or(1.0),
    );
    Ok(())
}

/// One wrk run against `base`'s wallet, printed as a row of the throughput table; with the
/// requests per CPU-second of the proxy `pid` when there is one.
fn measured(
    name: &str,
    base: &str,
    pid: Option<u32>,
    script: &Path,
    seconds: u64,
) -> anyhow::Result<(WrkResult, Option<f64>)> {
    let before = pid.map(cpu_seconds).transpose()?;
    let result = wrk(&format!("{base}/api/v1/wallet"), script, seconds)?;
    let cpu = match (pid, before) {
        (Some(pid), Some(before)) => Some(cpu_seconds(pid)? - before),
        _ => None,
    };
    let per_cpu = cpu.map(|c| result.requests_per_second * seconds as f64 / c);
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
        result.requests_per_second,
        result.p50_ms,
        result.p99_ms,
        result.non_2xx,
        or_dash(cpu, 2),
        or_dash(per_cpu, 0),
    );
    Ok((result, per_cpu))
}
