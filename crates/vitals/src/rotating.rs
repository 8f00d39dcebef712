//! A log file that cannot fill the disk: it is rotated when it passes a size or an age, and
//! only the newest `keep` rotated files stay (older ones gzipped), so the logs of one process
//! take at most about `(keep + 1) × max_bytes` and hold at most `(keep + 1) × max_age` of
//! history. The rotation itself is `file-rotate`'s; this wrapper adds rotation by age and
//! makes every failure (a full disk, a folder deleted under it, a panic inside the crate) a
//! dropped line, counted, never an error or a panic for the caller.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log writes lost since the process started (disk full, unwritable folder).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// When a log file is rotated and how many rotated files are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub max_age: Duration,
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 64 * 1024 * 1024,
            max_age: Duration::from_secs(86_400),
            keep: 7,
        }
    }
}

/// A rotated log file that never fails a write.
pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    inner: Option<FileRotate<AppendCount>>,
    started: Instant,
}

impl RotatingFile {
    /// Creates the folder and opens (appends to) `path`.
    pub fn open(path: PathBuf, rotation: Rotation) -> std::io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = RotatingFile {
            path,
            rotation,
            inner: None,
            started: Instant::now(),
        };
        file.reopen();
        Ok(file)
    }

    fn reopen(&mut self) {
        let (path, rotation) = (self.path.clone(), self.rotation.clone());
        self.inner = catch_unwind(move || {
            FileRotate::new(
                path,
                AppendCount::new(rotation.keep.max(1)),
                ContentLimit::BytesSurpassed(rotation.max_bytes.max(1) as usize),
                Compression::OnRotate(1),
                None,
            )
        })
        .ok();
    }

    fn try_write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.inner.is_none() {
            self.reopen();
        }
        let due = self.started.elapsed() >= self.rotation.max_age;
        let Some(inner) = self.inner.as_mut() else {
            return Err(std::io::Error::other("the log file cannot be opened"));
        };
        if due {
            self.started = Instant::now();
            inner.rotate()?;
        }
        inner.write_all(buf)
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.try_write(buf)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                // The crate's state is unknown after a panic: start it afresh next time.
                DROPPED.fetch_add(1, Ordering::Relaxed);
                self.inner = None;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(inner) = self.inner.as_mut() {
            let _ = catch_unwind(AssertUnwindSafe(|| inner.flush()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &std::path::Path) -> Vec<(String, u64)> {
        let mut found: Vec<(String, u64)> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, e.metadata().unwrap().len())
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn rotates_at_the_size_and_keeps_only_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 1_000,
            max_age: Duration::from_secs(3_600),
            keep: 3,
        };
        let mut log = RotatingFile::open(dir.path().join("gateway.log"), rotation).unwrap();
        let line = [b'x'; 99];
        for _ in 0..200 {
            log.write_all(&line).unwrap();
            log.write_all(b"\n").unwrap();
        }
        log.flush().unwrap();
        let found = files(dir.path());
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "gateway.log",
                "gateway.log.1",
                "gateway.log.2.gz",
                "gateway.log.3.gz"
            ]
        );
        let plain = found.iter().filter(|(n, _)| !n.ends_with(".gz"));
        for (name, size) in plain {
            assert!(
                *size <= 1_100,
                "{name} is {size} bytes, past the rotation size"
            );
        }
        let total: u64 = found.iter().map(|(_, s)| s).sum();
        assert!(total < 4 * 1_100, "the logs take {total} bytes");
    }

    #[test]
    fn rotates_by_age_too() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 1_000_000,
            max_age: Duration::from_millis(50),
            keep: 2,
        };
        let mut log = RotatingFile::open(dir.path().join("node.log"), rotation).unwrap();
        log.write_all(b"first\n").unwrap();
        std::thread::sleep(Duration::from_millis(80));
        log.write_all(b"second\n").unwrap();
        log.flush().unwrap();
        let current = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
        assert_eq!(current, "second\n");
        let rotated = std::fs::read_to_string(dir.path().join("node.log.1")).unwrap();
        assert_eq!(rotated, "first\n");
    }

    #[test]
    fn a_write_that_cannot_happen_is_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("logs");
        let mut log = RotatingFile::open(folder.join("x.log"), Rotation::default()).unwrap();
        // The folder is replaced by a file: nothing can be written there any more.
        std::fs::remove_dir_all(&folder).unwrap();
        std::fs::write(&folder, b"not a folder").unwrap();
        log.inner = None;
        let before = dropped();
        assert_eq!(log.write(b"lost\n").unwrap(), 5);
        assert!(dropped() > before);
    }
}
