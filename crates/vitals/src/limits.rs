//! How close this process is to its limits: open file descriptors against `ulimit -n`, and
//! resident memory against the cgroup's memory cap (systemd's `MemoryMax`, a Kubernetes
//! memory limit), so both can be exported and alerted on before the kernel says no.

use std::path::Path;

/// Descriptors open now and the soft limit (`None`: unlimited).
pub fn descriptors() -> (u64, Option<u64>) {
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    (open, limit)
}

/// The memory cap of this process's cgroup (v2 `memory.max`, or v1 `memory.limit_in_bytes`),
/// `None` when there is none.
pub fn memory_cap() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // cgroup v2: one line "0::/path".
    if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
        let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        return read_cap(&dir.join("memory.max"));
    }
    read_cap(Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
}

fn read_cap(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let value: u64 = text.trim().parse().ok()?;
    // v1 reports "no limit" as a huge number near i64::MAX.
    (value < (1 << 60)).then_some(value)
}

/// This process's resident memory in bytes (from /proc/self/statm).
pub fn resident_bytes() -> u64 {
    let pages: u64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    pages * rustix::param::page_size() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_and_memory_are_measured() {
        let (open, limit) = descriptors();
        assert!(open >= 3, "stdin, stdout, stderr at least");
        assert!(limit.is_none_or(|l| l >= open));
        assert!(resident_bytes() > 0);
        assert!(memory_cap().is_none_or(|cap| cap > 0));
    }
}
