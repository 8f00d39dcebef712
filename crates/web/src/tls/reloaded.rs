//! What a set of TLS files makes (a server's acceptor, a client's verifier and certificate),
//! made again when one of the files changes, for the servers and the clients alike: the files
//! are looked at no more than once per `RELOAD_CHECK_EVERY`, and files that do not make one
//! (a half-written renewal, a key others may read) keep the previous, said in the log.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::{RELOAD_CHECK_EVERY, TlsError};

pub struct Reloaded<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    value: T,
    stamp: Stamp,
    checked: Instant,
}

impl<T: Clone> Reloaded<T> {
    /// `make`'s value now: files that do not make one are an error here, so that a component
    /// with broken files does not start. `what` names it in the log.
    pub fn load(
        what: &'static str,
        paths: Vec<PathBuf>,
        make: impl FnOnce() -> Result<T, TlsError>,
    ) -> Result<Reloaded<T>, TlsError> {
        // Taken before the reading: a file changed while it is read is read again.
        let stamp = Stamp::of(&paths);
        Ok(Reloaded {
            what,
            value: make()?,
            paths,
            stamp,
            checked: Instant::now(),
        })
    }

    /// The value of the files' newest good contents, made again by `make` when one changed.
    pub fn current(&mut self, make: impl FnOnce() -> Result<T, TlsError>) -> T {
        if self.checked.elapsed() >= RELOAD_CHECK_EVERY {
            self.checked = Instant::now();
            let stamp = Stamp::of(&self.paths);
            if stamp != self.stamp {
                // Files that fail are not tried again until they change once more.
                self.stamp = stamp;
                match make() {
                    Ok(value) => {
                        self.value = value;
                        tracing::info!(files = ?self.paths, "{} reloaded", self.what);
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "{} changed but cannot be used; keeping the previous ones",
                        self.what
                    ),
                }
            }
        }
        self.value.clone()
    }
}

/// When each of a set of files was last modified (`None`: it could not be looked at), to
/// tell that one changed.
#[derive(PartialEq, Eq)]
struct Stamp(Vec<Option<SystemTime>>);

impl Stamp {
    fn of(paths: &[PathBuf]) -> Stamp {
        Stamp(
            paths
                .iter()
                .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
                .collect(),
        )
    }
}
