//! `croupier up` as a newcomer runs it: three nodes and a gateway come up, players play
//! through the gateway, a node killed with -9 is restarted by the supervisor while players see
//! no error, and SIGTERM stops everything.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `count` consecutive free ports.
fn free_ports(count: u16) -> u16 {
    for _ in 0..100 {
        let first = free_port();
        if first.checked_add(count).is_some()
            && (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", first + i)).is_ok())
        {
            return first;
        }
    }
    panic!("no {count} consecutive free ports");
}

/// The pid of the process whose command line holds all of `needles`.
fn find_process(needles: &[&str]) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            needles.iter().all(|n| cmdline.contains(n)).then_some(pid)
        })
}

/// `croupier up`, stopped with SIGTERM (then SIGKILL) if the test ends early.
struct Up(std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").arg(self.0.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_supervises_nodes_and_gateway_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (nodes, gateway) = (free_ports(3), free_ports(2));
    let mut up = Up(croupier()
        .arg("up")
        .arg("--data")
        .arg(&data)
        .args([
            "--first-node-port",
            &nodes.to_string(),
            "--gateway-port",
            &gateway.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let players = format!("http://127.0.0.1:{gateway}");
    wait_for("the gateway", || {
        get(&format!("http://127.0.0.1:{}/readyz", gateway + 1), None).map(|r| r.0) == Ok(200)
    });
    for i in 0..3 {
        wait_for("a node", || {
            get(&format!("http://127.0.0.1:{}/readyz", nodes + i), None).map(|r| r.0) == Ok(200)
        });
    }

    let (status, body, _) = post_via(
        &format!("{players}/api/v1/sessions"),
        None,
        None,
        &serde_json::json!({"player": "newcomer"}),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();

    let data_text = data.canonicalize().unwrap().display().to_string();
    let victim = find_process(&["--node-id node-2", &data_text]).expect("node-2 runs");
    Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    // Players keep playing through the gateway while node-2 is down and restarted.
    let until = Instant::now() + Duration::from_millis(1_500);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let (status, body, _) = post_via(
            &format!("{players}/api/v1/rounds"),
            Some(&token),
            Some(&format!("up-{n}")),
            &dice_bet(10),
        )
        .unwrap();
        assert_eq!(status, 201, "bet {n} failed: {body}");
        // A brisk player, well under the gateway's 200 requests/s per player.
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_for("node-2's restart", || {
        find_process(&["--node-id node-2", &data_text]).is_some_and(|pid| pid != victim)
            && get(&format!("http://127.0.0.1:{}/readyz", nodes + 1), None).map(|r| r.0) == Ok(200)
    });

    Command::new("kill")
        .arg(up.0.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Some(status) = up.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "croupier up did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "croupier up exited with {status}");
    for i in 0..3 {
        assert!(
            get(&format!("http://127.0.0.1:{}/healthz", nodes + i), None).is_err(),
            "a node outlived up"
        );
    }
    assert!(
        find_process(&["--node-id", &data_text]).is_none(),
        "a node process is left"
    );
    integrity_cli(&ledger_path(Path::new(&data)));
}
