//! Flushing the ledger's database file to the disk through SQLite's own file handle.
//!
//! The checkpoints sync the database file themselves (`checkpoint::catch_up`). They used to
//! open it a second time with `std::fs::File` for that, and close it afterwards. But SQLite
//! locks its files with POSIX `fcntl` locks, which belong to the process and the file, not
//! to a descriptor: closing *any* descriptor of the file drops every lock the process holds
//! on it, SQLite's included. Housekeeping's WAL truncation did exactly that in every node,
//! every pass, and left the nodes' connections without the shared lock on the database
//! file that tells SQLite another connection is using it. A process closing its last
//! connection then took the exclusive lock, believed it was the only user, checkpointed and
//! deleted the WAL: the nodes went on appending to the deleted file, and every connection
//! opened afterwards (a bank check, `croupier integrity`, a restarted node) saw the ledger
//! as it was at the deletion, acknowledged bets missing (seen in the drills whenever no
//! control plane held the file open). SQLite's descriptor is never closed behind its back.
#![allow(unsafe_code)]

use std::ffi::c_void;

use rusqlite::{Connection, ffi};

use crate::error::LedgerError;

/// Syncs the main database file of `conn` to the disk on SQLite's own descriptor (`xSync`,
/// as a checkpoint does), so no other descriptor of the file is ever opened or closed.
pub fn sync_database_file(conn: &Connection) -> Result<(), LedgerError> {
    let failed = |why: String| LedgerError::Storage(format!("cannot sync the ledger: {why}"));
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the handle is `conn`'s open database; SQLITE_FCNTL_FILE_POINTER writes one
    // `sqlite3_file` pointer into `file`, which outlives the call.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast::<c_void>(),
        )
    };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return Err(failed(format!("no file handle (SQLite error {rc})")));
    }
    // SAFETY: `file` is the open main database file of `conn`, which this thread uses alone
    // for the call (a `Connection` is not `Sync`); its methods stay valid while it is open.
    let rc = unsafe {
        let methods = (*file).pMethods;
        match methods.as_ref().and_then(|m| m.xSync) {
            Some(sync) => sync(file, ffi::SQLITE_SYNC_NORMAL),
            None => return Err(failed("the file has no sync method".into())),
        }
    };
    if rc != ffi::SQLITE_OK {
        return Err(failed(format!("SQLite I/O error {rc}")));
    }
    Ok(())
}
