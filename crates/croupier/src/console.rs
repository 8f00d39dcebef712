//! What a command prints for the operator, written so that writing it never panics.
//!
//! `println!` panics when the write fails, and two failures are ordinary at a terminal: the
//! reader went away (`croupier integrity | head`: a broken pipe) and the place the output is
//! redirected to cannot take it (a full disk, a closed terminal: `ENOSPC`, `EIO`). A panic
//! there loses the command's verdict, and in `croupier up` it would take the whole stack down
//! for a banner nobody reads. So a reader that went away is not an error (the command carries on
//! and exits with its own status, as `rg` and `git` do); any other failure is returned to the
//! caller, which decides whether the output mattered. Stderr carries progress and warnings,
//! and has nowhere left to report its own failure: a failed write there is dropped.

use std::fmt::Arguments;
use std::io::{self, ErrorKind, Write};

/// `println!` to stdout through `write_out`.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::console::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` to stdout through `write_out`.
macro_rules! out {
    ($($arg:tt)*) => { $crate::console::write_out(format_args!($($arg)*)) };
}

/// `eprintln!` to stderr through `write_err`.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::console::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {errln, out, outln};

/// Writes `text` to stdout and flushes it; a broken pipe is not an error, any other failure
/// says it was the output that failed.
pub(crate) fn write_out(text: Arguments<'_>) -> io::Result<()> {
    tolerate_a_gone_reader(write_to(&mut io::stdout().lock(), text))
        .map_err(|e| io::Error::new(e.kind(), format!("writing the output: {e}")))
}

/// Writes `text` to stderr, the last place left to tell of a failure: one there is dropped.
pub(crate) fn write_err(text: Arguments<'_>) {
    let _dropped = write_to(&mut io::stderr().lock(), text);
}

fn write_to(out: &mut impl Write, text: Arguments<'_>) -> io::Result<()> {
    out.write_fmt(text)?;
    out.flush()
}

fn tolerate_a_gone_reader(written: io::Result<()>) -> io::Result<()> {
    match written {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails every write with `kind`.
    struct Failing(ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(self.0))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_went_away_is_not_an_error() {
        let written = write_to(&mut Failing(ErrorKind::BrokenPipe), format_args!("x\n"));
        assert!(tolerate_a_gone_reader(written).is_ok());
    }

    #[test]
    fn a_full_disk_is_an_error() {
        let written = write_to(&mut Failing(ErrorKind::StorageFull), format_args!("x\n"));
        let e = tolerate_a_gone_reader(written).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StorageFull);
    }
}
