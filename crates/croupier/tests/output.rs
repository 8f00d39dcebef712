//! What a one-shot command prints cannot panic it. `println!` panics when its write fails:
//! `croupier integrity | head` (the reader goes away: a broken pipe) died with "failed
//! printing to stdout" and exit code 101, its verdict lost; output redirected to a full disk
//! did the same. Now a reader that went away costs the output only (the command's own status
//! stands), and a place that cannot take the output fails the command with a clear error.
//! On both backends (the ledger is the suite's).

mod common;

use std::fs::File;
use std::process::{Output, Stdio};

use common::{croupier, ledger};

/// `croupier integrity` on a real ledger, its stdout going to `stdout`.
fn integrity_into(stdout: Stdio) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let location = ledger(dir.path());
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { location.open("EUR") })
        .unwrap();
    croupier()
        .args(["integrity", "--store", &location.as_arg()])
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// A pipe whose reader is gone before anything is written into it.
fn a_pipe_nobody_reads() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Stdio::from(writer)
}

#[test]
fn a_reader_that_went_away_leaves_the_verdict_standing() {
    let out = integrity_into(a_pipe_nobody_reads());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}

#[test]
fn a_full_disk_fails_the_command_with_an_error_not_a_panic() {
    let full = File::options().write(true).open("/dev/full").unwrap();
    let out = integrity_into(Stdio::from(full));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("writing the output: No space left on device"),
        "{err}"
    );
}

#[test]
fn a_command_without_a_store_outlives_its_reader_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = croupier()
        .args(["tls", "init", "--dir"])
        .arg(dir.path().join("tls"))
        .stdout(a_pipe_nobody_reads())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(dir.path().join("tls").read_dir().unwrap().count() > 0);
}
