//! Graceful restart of the gateway itself, the way nginx upgrades its binary: on SIGUSR2 the
//! running gateway starts the same program with the same arguments, handing over its two
//! listening sockets as file descriptors 3 and 4. The new process serves on them and signals
//! SIGUSR1 when ready; only then does the old one stop accepting and finish what it has. The
//! sockets never close, so no connection waiting to be accepted is refused. The same two
//! sockets may also come from systemd socket activation or `croupier up`'s supervisor
//! (`LISTEN_FDS=2`: players at descriptor 3, admin at 4), which hold them while the gateway
//! process is replaced: new connections wait in the kernel's backlog instead of being refused.
//! Under the supervisor, SIGUSR2 is passed on to it (`SUPERVISOR_ENV`): it starts the new
//! process and stops this one once the new one serves, so no gateway runs unsupervised.
// libc calls for signals, process groups or descriptors; each block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

const FDS_ENV: &str = "CROUPIER_GATEWAY_FDS";
/// The pid told (SIGUSR1) when this process serves: the gateway it replaces, or the supervisor.
pub const PARENT_ENV: &str = "CROUPIER_GATEWAY_PARENT";
/// Set by `croupier up`'s supervisor, which holds the sockets: SIGUSR2 is passed on to it, and
/// it starts the new process itself, so that it keeps track of the one gateway that runs.
pub const SUPERVISOR_ENV: &str = "CROUPIER_GATEWAY_SUPERVISOR";
const PLAYER_FD: RawFd = 3;
const ADMIN_FD: RawFd = 4;
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The player and admin listeners: inherited from the previous process, or bound anew.
pub fn listeners(player: SocketAddr, admin: SocketAddr) -> io::Result<(TcpListener, TcpListener)> {
    let (player, admin) = if std::env::var_os(FDS_ENV).is_some() || socket_activated() {
        // SAFETY: the parent (the previous gateway, systemd or the supervisor) placed
        // listening sockets at exactly these descriptors for us.
        unsafe {
            (
                TcpListener::from_raw_fd(PLAYER_FD),
                TcpListener::from_raw_fd(ADMIN_FD),
            )
        }
    } else {
        (TcpListener::bind(player)?, TcpListener::bind(admin)?)
    };
    player.set_nonblocking(true)?;
    admin.set_nonblocking(true)?;
    Ok((player, admin))
}

/// Whether systemd's socket activation protocol passed this process its two sockets:
/// `LISTEN_FDS=2`, and `LISTEN_PID` this process's pid (systemd) or absent (the supervisor,
/// which cannot know the pid before the child starts).
fn socket_activated() -> bool {
    let count = std::env::var("LISTEN_FDS").ok();
    let pid = std::env::var("LISTEN_PID").ok();
    count.as_deref() == Some("2")
        && pid.is_none_or(|pid| pid.parse::<u32>().ok() == Some(std::process::id()))
}

/// The supervisor that restarts this gateway on SIGUSR2, when there is one.
pub fn supervisor() -> Option<i32> {
    std::env::var(SUPERVISOR_ENV).ok()?.parse().ok()
}

/// Asks the supervisor `pid` for a graceful restart of this gateway.
pub fn ask_supervisor(pid: i32) -> io::Result<()> {
    // SAFETY: sending a signal has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGUSR2) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Tells the process that started this one (by `upgrade`) that this one now serves.
pub fn notify_parent_ready() {
    if let Some(pid) = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGUSR1);
        }
    }
}

/// Starts the replacement process on the same sockets and waits until it serves. Returns its
/// pid; on error the replacement is stopped and this process keeps serving.
pub async fn upgrade(player: &impl AsRawFd, admin: &impl AsRawFd) -> io::Result<u32> {
    let (player_fd, admin_fd) = (player.as_raw_fd(), admin.as_raw_fd());
    let mut ready = signal(SignalKind::user_defined1())?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .args(std::env::args_os().skip(1))
        .env(FDS_ENV, format!("{PLAYER_FD},{ADMIN_FD}"))
        .env(PARENT_ENV, std::process::id().to_string());
    // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // Move both out of the way first, so placing one cannot overwrite the other, and
            // so that dup2 always makes a new descriptor (which clears close-on-exec).
            let high_player = libc::fcntl(player_fd, libc::F_DUPFD, 100);
            let high_admin = libc::fcntl(admin_fd, libc::F_DUPFD, 100);
            if high_player < 0
                || high_admin < 0
                || libc::dup2(high_player, PLAYER_FD) < 0
                || libc::dup2(high_admin, ADMIN_FD) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    match tokio::time::timeout(READY_TIMEOUT, ready.recv()).await {
        Ok(Some(())) => Ok(child.id()),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            Err(io::Error::other("the new gateway did not become ready"))
        }
    }
}
