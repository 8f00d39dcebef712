//! Lanes: threads that each serve their share of a listener's connections on a
//! current-thread runtime of their own, as HAProxy's threads or nginx's workers do. One
//! accept loop hands each accepted connection to the lane with the fewest open, and the
//! connection lives there until it closes: its requests, its timers and the connections it
//! makes onward are polled by that lane's thread alone, with no work stealing and no wake-up
//! from another thread.
//!
//! Why: a proxy on a machine whose cores it shares (the nodes, the players' load) gets the
//! CPU the scheduler gives it, thread by thread. With one thread, every connection waited
//! for that one thread's turn; a multi-threaded runtime used a core's worth more CPU per
//! request in cross-thread wake-ups. Lanes give a proxy the threads without that cost.
//!
//! What stays shared: whatever the accept loop decides (connections per address, refusals)
//! and whatever the served connections share through `Arc`s. What a lane keeps for itself is
//! up to its users: `current` tells which lane a task runs on (see `http1::Idle`).

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Work handed to a lane: run on the lane's thread, inside its runtime (it spawns a task).
type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    static LANE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The lane the calling thread serves, or `None` on any other thread.
pub fn current() -> Option<usize> {
    LANE.with(Cell::get)
}

struct Lane {
    jobs: mpsc::UnboundedSender<Job>,
    counts: LaneCounts,
}

/// One lane's connections, as metrics, counted while the lanes run.
#[derive(Debug, Default, Clone)]
pub struct LaneCounts {
    /// Connections it serves now.
    pub open: Gauge,
    /// Connections it has been given since it started.
    pub accepted: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabel {
    lane: String,
}

/// Every lane's counts, made before the lanes start, one per lane.
pub type Counts = Arc<[LaneCounts]>;

/// Counts for `lanes` lanes (at least one), registered in `registry` as `lane_connections`
/// (open now) and `lane_connections_accepted`, by lane.
pub fn counts_in(registry: &mut Registry, lanes: usize) -> Counts {
    let open = Family::<LaneLabel, Gauge>::default();
    let accepted = Family::<LaneLabel, Counter>::default();
    let counts = (0..lanes.max(1))
        .map(|lane| {
            let label = LaneLabel {
                lane: lane.to_string(),
            };
            LaneCounts {
                open: open.get_or_create(&label).clone(),
                accepted: accepted.get_or_create(&label).clone(),
            }
        })
        .collect();
    registry.register(
        "lane_connections",
        "Players' connections open now, by the lane (thread) serving them",
        open,
    );
    registry.register(
        "lane_connections_accepted",
        "Players' connections handed to each lane since the start",
        accepted,
    );
    counts
}

/// A listener's lanes. Dropping them ends every lane: connections still open are closed, so
/// a server drops its lanes after its gentle stop. Each thread is joined, so they must not be
/// dropped on a lane.
pub struct Lanes {
    lanes: Vec<Lane>,
    threads: Vec<JoinHandle<()>>,
}

impl Lanes {
    /// Starts one lane per entry of `counts`, their threads named `<name>-<i>`.
    pub fn start(counts: &Counts, name: &str) -> std::io::Result<Lanes> {
        // Built in place: if a lane fails to start, dropping those started joins them.
        let mut started = Lanes {
            lanes: Vec::new(),
            threads: Vec::new(),
        };
        for (index, counts) in counts.iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    LANE.with(|lane| lane.set(Some(index)));
                    runtime.block_on(async move {
                        while let Some(job) = queue.recv().await {
                            job();
                        }
                    });
                })?;
            started.threads.push(thread);
            started.lanes.push(Lane {
                jobs,
                counts: counts.clone(),
            });
        }
        Ok(started)
    }

    /// Serves `stream` on the lane with the fewest connections open: `serve` runs as a task
    /// of that lane, given the connection registered with the lane's runtime. A connection
    /// that cannot be moved (its socket failed meanwhile) is closed.
    pub fn serve<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(lane) = self.lanes.iter().min_by_key(|lane| lane.counts.open.get()) else {
            return;
        };
        let Ok(stream) = stream.into_std() else {
            return;
        };
        lane.counts.accepted.inc();
        let open = Open::count(&lane.counts.open);
        let job: Job = Box::new(move || {
            // Registered with this lane's runtime: its readiness is this thread's to poll.
            let Ok(stream) = TcpStream::from_std(stream) else {
                return;
            };
            tokio::spawn(async move {
                let _open = open;
                serve(stream).await;
            });
        });
        // A lane's queue closes only when the lanes are dropped: the connection then closes.
        let _ = lane.jobs.send(job);
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        // Closing the queues ends each lane's loop; its runtime then drops what is left.
        self.lanes.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A connection counted open on its lane until dropped.
struct Open(Gauge);

impl Open {
    fn count(open: &Gauge) -> Open {
        open.inc();
        Open(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;
    use std::collections::HashSet;

    use super::*;

    /// Connections are spread over the lanes, each served on its lane's own thread, which
    /// `current` names; dropping the lanes joins their threads.
    #[tokio::test]
    async fn connections_spread_over_the_lanes_threads() {
        let mut registry = Registry::default();
        let counts = counts_in(&mut registry, 2);
        let lanes = Lanes::start(&counts, "test-lane").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(TcpStream::connect(address).await.unwrap());
            let (stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            lanes.serve(stream, move |stream| async move {
                let thread = std::thread::current().name().map(str::to_owned);
                seen.lock().push((current(), thread));
                // Held open until the client closes.
                let mut buffer = [0u8; 1];
                let _ = stream.readable().await;
                let _ = stream.try_read(&mut buffer);
            });
        }
        while seen.lock().len() < 4 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let open: Vec<i64> = counts.iter().map(|c| c.open.get()).collect();
        let accepted: Vec<u64> = counts.iter().map(|c| c.accepted.get()).collect();
        assert_eq!((open, accepted), (vec![2, 2], vec![2, 2]));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("lane_connections{lane=\"1\"} 2"), "{text}");
        let seen = seen.lock().clone();
        let lanes_seen: HashSet<_> = seen.iter().map(|(lane, _)| *lane).collect();
        assert_eq!(lanes_seen, HashSet::from([Some(0), Some(1)]));
        for (lane, thread) in &seen {
            assert_eq!(
                thread.as_deref(),
                Some(&*format!("test-lane-{}", lane.unwrap()))
            );
        }
        assert_eq!(current(), None, "the test's own thread is no lane");
        drop(clients);
        while counts.iter().any(|c| c.open.get() > 0) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(lanes);
    }
}
