//! Idle keep-alive connections, by origin. A sending task takes one out and puts it back
//! itself once its answer is read (no connection task, no channel), so a client holds as many
//! connections as it has requests in flight, plus those lying idle: a load generator's player
//! holds none between requests, and a gateway holds per node what its peak needed.
//!
//! A connection is polled by the runtime it was made on. Made `for_lanes`, a task on a lane
//! (`crate::lanes`) takes and puts back connections of that lane's own shelf, so its
//! connections to the nodes are polled by its own thread, never woken from another.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::conn::Conn;

/// An idle connection older than this is closed rather than used (hyper's pool default).
const MAX_IDLE: Duration = Duration::from_secs(30);
/// An idle connection older than this is checked before use: a server may have closed it.
const CHECK_AFTER: Duration = Duration::from_secs(1);
/// Idle connections kept per origin; more are closed.
const MAX_IDLE_PER_ORIGIN: usize = 1024;

/// Idle connections per origin (`scheme://authority`): the most recently used at the back.
type Shelf = Mutex<Vec<(String, VecDeque<Conn>)>>;

pub struct Idle {
    /// The shelf of tasks on no lane first, then one per lane.
    shelves: Box<[Shelf]>,
}

impl Default for Idle {
    fn default() -> Self {
        Idle::for_lanes(0)
    }
}

impl Idle {
    /// Idle connections kept apart for each of `lanes` lanes, and for tasks on none.
    pub fn for_lanes(lanes: usize) -> Idle {
        Idle {
            shelves: (0..=lanes).map(|_| Shelf::default()).collect(),
        }
    }

    /// The calling task's shelf: its lane's, or (on no lane, or a lane past those counted)
    /// the first.
    fn shelf(&self) -> &Shelf {
        let index = crate::lanes::current().map_or(0, |lane| lane + 1);
        self.shelves.get(index).unwrap_or(&self.shelves[0])
    }

    /// The most recently used idle connection to `origin` still fit to use. `careful`: the
    /// request may not be sent twice, so even a connection idle for a moment is checked.
    pub fn take(&self, origin: &str, careful: bool) -> Option<Conn> {
        loop {
            let mut conn = {
                let mut origins = self.shelf().lock();
                let (_, idle) = origins.iter_mut().find(|(o, _)| o == origin)?;
                idle.pop_back()?
            };
            let idle = conn.idle_since.elapsed();
            if idle < MAX_IDLE && (!(careful || idle >= CHECK_AFTER) || conn.still_open()) {
                return Some(conn);
            }
        }
    }

    /// Puts `conn` back, idle from now; closes those idle too long.
    pub fn put(&self, origin: &str, mut conn: Conn) {
        let now = Instant::now();
        conn.idle_since = now;
        let mut origins = self.shelf().lock();
        let idle = match origins.iter().position(|(o, _)| o == origin) {
            Some(i) => &mut origins[i].1,
            None => {
                origins.push((origin.to_owned(), VecDeque::new()));
                &mut origins.last_mut().expect("just pushed").1
            }
        };
        while idle
            .front()
            .is_some_and(|c| now.duration_since(c.idle_since) >= MAX_IDLE)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE_PER_ORIGIN {
            idle.push_back(conn);
        }
    }
}
