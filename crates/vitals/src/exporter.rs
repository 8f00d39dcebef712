//! The vitals as Prometheus metrics, registered into a server's own registry: the room on the
//! filesystem of its data folder (labelled with the folder, so an alert can name it) and the
//! bytes the folder takes, open descriptors against the limit, resident memory against the
//! cgroup's cap, panics caught, log lines dropped. Sampled about once a second.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

/// Registering a server's metric handles as a list: each `add` registers a clone of the
/// handle (the caller keeps the one it updates) and gives the registry back for the next.
pub trait Register {
    fn add<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: &M) -> &mut Self;
}

impl Register for Registry {
    fn add<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: &M) -> &mut Self {
        self.register(name, help, metric.clone());
        self
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FolderLabels {
    pub folder: String,
}

/// Entries looked at when adding up a data folder's bytes: a bound on the work per sample.
const MAX_ENTRIES: usize = 20_000;

#[derive(Default)]
pub struct Vitals {
    folder: Mutex<Option<PathBuf>>,
    fs_size: Family<FolderLabels, Gauge>,
    fs_available: Family<FolderLabels, Gauge>,
    folder_bytes: Family<FolderLabels, Gauge>,
    open_fds: Gauge,
    max_fds: Gauge,
    resident: Gauge,
    memory_cap: Gauge,
    panics: Gauge<u64, AtomicU64>,
    log_dropped: Gauge<u64, AtomicU64>,
}

impl Vitals {
    /// Registers every vital in `registry` (under its prefix).
    pub fn register(registry: &mut Registry) -> Vitals {
        let vitals = Vitals::default();
        let families = [
            (
                "data_filesystem_size_bytes",
                "Size of the filesystem holding the data folder",
                &vitals.fs_size,
            ),
            (
                "data_filesystem_available_bytes",
                "Bytes still writable on the filesystem holding the data folder",
                &vitals.fs_available,
            ),
            (
                "data_folder_bytes",
                "Bytes the data folder's files take",
                &vitals.folder_bytes,
            ),
        ];
        for (name, help, family) in families {
            registry.register(name, help, family.clone());
        }
        let gauges = [
            (
                "process_open_fds",
                "File descriptors open",
                &vitals.open_fds,
            ),
            (
                "process_max_fds",
                "Soft limit on open file descriptors (0: none)",
                &vitals.max_fds,
            ),
            (
                "process_resident_bytes",
                "Resident memory of this process",
                &vitals.resident,
            ),
            (
                "process_memory_cap_bytes",
                "Memory cap of this process's cgroup (0: none)",
                &vitals.memory_cap,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "panics_caught",
            "Panics caught (a 500 for one request, or one background round)",
            vitals.panics.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log writes lost (full disk, unwritable folder)",
            vitals.log_dropped.clone(),
        );
        vitals
    }

    /// The data folder to watch.
    pub fn watch_folder(&self, folder: PathBuf) {
        *self.folder.lock() = Some(std::fs::canonicalize(&folder).unwrap_or(folder));
    }

    pub fn sample(&self) {
        if let Some(folder) = self.folder.lock().clone() {
            let labels = FolderLabels {
                folder: folder.display().to_string(),
            };
            if let Ok(room) = crate::room::of(&folder) {
                self.fs_size
                    .get_or_create(&labels)
                    .set(room.size_bytes as i64);
                self.fs_available
                    .get_or_create(&labels)
                    .set(room.available_bytes as i64);
            }
            let bytes = crate::room::folder_bytes(&folder, MAX_ENTRIES);
            self.folder_bytes.get_or_create(&labels).set(bytes as i64);
        }
        let (open, limit) = crate::limits::descriptors();
        self.open_fds.set(open as i64);
        self.max_fds.set(limit.unwrap_or(0) as i64);
        self.resident.set(crate::limits::resident_bytes() as i64);
        self.memory_cap
            .set(crate::limits::memory_cap().unwrap_or(0) as i64);
        self.panics.set(crate::panics::count());
        self.log_dropped.set(crate::rotating::dropped());
    }
}
