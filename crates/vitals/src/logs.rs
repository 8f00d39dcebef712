//! Where a process's log goes and how it is written. Under systemd (`JOURNAL_STREAM`) or
//! Kubernetes (`KUBERNETES_SERVICE_HOST`) the log is plain lines on stderr and the platform
//! keeps and bounds it; otherwise a file may be asked for, rotated by size and age
//! (`rotating`). Either way lines go through a bounded queue to a writer thread that drops
//! what it cannot keep up with (counted): a slow or full disk never blocks a request, and a
//! failed write never panics (tracing-subscriber's own error report is switched off, since it
//! prints to stderr with a macro that panics when stderr itself cannot be written).

use std::path::PathBuf;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::rotating::{RotatingFile, Rotation};

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Plain lines on stderr (a terminal, journald, a container runtime).
    Stderr,
    /// A rotated file.
    File(PathBuf, Rotation),
}

/// Whether a service manager collects stderr: systemd sets `JOURNAL_STREAM` for a unit whose
/// output goes to the journal, and Kubernetes sets `KUBERNETES_SERVICE_HOST` in every pod.
pub fn managed_output() -> bool {
    ["JOURNAL_STREAM", "KUBERNETES_SERVICE_HOST"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// Lines waiting for the writer thread at most; more are dropped and counted.
const QUEUE_LINES: usize = 16_384;

/// Installs the global subscriber (`RUST_LOG` filter, `info` by default) and a panic hook
/// that logs panics too. Keep the guard until the process ends: it flushes the queue.
pub fn init(destination: Destination) -> std::io::Result<WorkerGuard> {
    let builder = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("log-writer");
    let (writer, guard) = match &destination {
        Destination::Stderr => builder.finish(std::io::stderr()),
        Destination::File(path, rotation) => {
            builder.finish(RotatingFile::open(path.clone(), rotation.clone())?)
        }
    };
    let ansi = matches!(destination, Destination::Stderr)
        && !managed_output()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(writer)
        .with_ansi(ansi)
        .log_internal_errors(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).map_err(std::io::Error::other)?;
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panicked");
        default_hook(info);
    }));
    Ok(guard)
}
