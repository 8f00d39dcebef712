//! The exit status of a process that starting again cannot help, and `main`'s mapping of an
//! error to its exit status. A supervisor restarts a process that exits; a node whose
//! PostgreSQL server refuses its configuration (no such database, a login it does not
//! accept) would fail the same way at every restart, forever. Such a failure
//! exits with sysexits' `EX_CONFIG` (78): `croupier up` stops the stack's start on it with
//! the reason instead of restarting the node, and the systemd units name it in
//! `RestartPreventExitStatus=`, so the unit shows as failed rather than flapping.

use std::fmt;
use std::process::ExitCode;

/// sysexits.h: "something was found in an unconfigured or misconfigured state".
pub const EX_CONFIG: u8 = 78;

/// The outermost context of an error that the same configuration meets at every start.
#[derive(Debug)]
pub struct RestartCannotHelp;

impl fmt::Display for RestartCannotHelp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the configuration cannot work as given: starting again will not help")
    }
}

/// The exit status of a command that failed with `e`: `EX_CONFIG` for a failure marked
/// `RestartCannotHelp`, else 1.
pub fn of(e: &anyhow::Error) -> ExitCode {
    if e.downcast_ref::<RestartCannotHelp>().is_some() {
        ExitCode::from(EX_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}
