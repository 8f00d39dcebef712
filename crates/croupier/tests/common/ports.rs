//! Listening ports for the processes a test starts. They are picked below the kernel's
//! ephemeral range (`net.ipv4.ip_local_port_range`, 32768–60999 by default), not by binding
//! port 0: a port of that range that is free when checked can become the local port of any
//! outgoing connection (another test's client, a scrape, a health check) before the child
//! binds it, and the child then cannot listen (seen: a stack whose node never became ready,
//! one run in several). Below the range only explicit binds take ports, so each test process
//! walks its own stretch of it (from its pid) and checks every port before handing it out.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Below this are the machine's own services (PostgreSQL, brokers, caches).
const LOWEST: u32 = 10_000;

/// The first port the kernel may pick for an outgoing connection.
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `count` consecutive ports free for listening on 127.0.0.1; the first of them.
pub fn free_ports(count: u16) -> u16 {
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    let top = ephemeral_start().max(LOWEST + 1_000);
    let span = top - LOWEST;
    let start = std::process::id().wrapping_mul(97) % span;
    let count = u32::from(count);
    for _ in 0..1_000 {
        let offset = HANDED_OUT.fetch_add(count, Ordering::Relaxed);
        let first = LOWEST + (start + offset) % span;
        let free = first + count <= top
            && (first..first + count)
                .all(|port| TcpListener::bind(("127.0.0.1", port as u16)).is_ok());
        if free {
            return first as u16;
        }
    }
    panic!("no {count} consecutive free ports below {top}");
}

/// One free port (see `free_ports`).
pub fn free_port() -> u16 {
    free_ports(1)
}
