//! The process's allocator, and how long it keeps the memory it frees.
//!
//! mimalloc instead of glibc's malloc: the proxy, the nodes and the load generator allocate
//! small, short-lived buffers per request, where glibc's free lists and consolidation cost
//! about a tenth of the gateway's CPU (docs/benchmarks.md).
//!
//! mimalloc gives memory that has stayed free for its `purge_delay` (1 s) back to the system,
//! and the next allocation there faults the pages in again, each zeroed by the kernel. Work
//! that comes in waves a second or more apart (the backup shipper's cut every second, the
//! players' connections opening and closing) paid that on every wave: the whole stack at
//! 2 000 bets/s took 31 000–33 000 page faults in 12 s. Freed memory is kept 10 s instead,
//! as jemalloc's `dirty_decay_ms` does by default: 9 500–12 200 faults, and 1.5–8% less CPU
//! per process, the most in the control plane (docs/benchmarks.md). Memory an idle process no
//! longer uses still goes back, 10 s later. `MIMALLOC_PURGE_DELAY` in the environment, when
//! set, wins.
// mimalloc's option calls are C functions; each block says why it is sound.
#![allow(unsafe_code)]

use std::os::raw::c_long;

use libmimalloc_sys::{mi_option_set, mi_option_t, mi_option_use_numa_nodes};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: the option before `use_numa_nodes` in its list
/// (libmimalloc-sys names its neighbours, not it; the test checks its default).
const PURGE_DELAY: mi_option_t = mi_option_use_numa_nodes - 1;

/// How long freed memory is kept before it goes back to the system, in milliseconds.
const KEEP_FREED_MS: c_long = 10_000;

/// Keeps freed memory `KEEP_FREED_MS` before giving it back, unless the operator chose
/// otherwise with `MIMALLOC_PURGE_DELAY`. Called first thing in `main`.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's integer options; any value is valid for it.
        unsafe { mi_option_set(PURGE_DELAY, KEEP_FREED_MS) }
    }
}

#[cfg(test)]
mod tests {
    use libmimalloc_sys::mi_option_get;

    use super::*;

    #[test]
    fn freed_memory_is_kept_ten_seconds_instead_of_one() {
        // SAFETY: reads one of mimalloc's integer options.
        let before = unsafe { mi_option_get(PURGE_DELAY) };
        assert_eq!(
            before, 1_000,
            "PURGE_DELAY names mimalloc's purge delay (default 1 000 ms)"
        );
        keep_freed_memory();
        // SAFETY: as above.
        assert_eq!(unsafe { mi_option_get(PURGE_DELAY) }, KEEP_FREED_MS);
    }
}
