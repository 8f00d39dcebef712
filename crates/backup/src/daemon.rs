//! The one backup daemon, for both backends, that `croupier backup run` and the control
//! plane both run (they used to have a loop each, at different paces). The schedule (take,
//! prune, restore-test what is due) runs on the caller's thread every `schedule_every`; a
//! SQLite ledger's new rows are shipped each second on a thread of their own, so a long
//! backup or restore test never holds shipping back. What happens is told to `DaemonHooks`
//! (the control plane records it in its state and alerts on the health; the command logs it).
//! A pass that panics is a failed pass, told like any other, and the next one runs as usual.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use croupier_vitals::background::survive_blocking;
use parking_lot::Mutex;

use crate::cut::now_ms;
use crate::error::BackupError;
use crate::health::BackupHealth;
use crate::pgbackrest::PgBackrestScheduler;
use crate::pin::Pin;
use crate::scheduler::{BackupScheduler, RunOutcome};
use crate::seal::BackupKey;
use crate::ship::{Shipped, Shipper};
use crate::target::Target;

/// How often the schedule is asked what is due, unless told otherwise.
pub const SCHEDULE_EVERY: Duration = Duration::from_secs(10);

/// What the daemon tells its owner. Every method has a default that does nothing.
pub trait DaemonHooks: Send + Sync {
    /// Whether to work now (the control plane: while it leads).
    fn active(&self) -> bool {
        true
    }
    /// A schedule run finished without error.
    fn ran(&self, _outcome: &RunOutcome) {}
    /// A segment was shipped; `since_ms` is the newest shipped cut.
    fn shipped(&self, _shipped: &Shipped, _since_ms: i64) {}
    /// `what` (`schedule`, `shipping`) failed.
    fn failed(&self, _what: &'static str, _error: &BackupError) {}
    /// The verdict, after each pass.
    fn health(&self, _health: BackupHealth) {}
}

/// What the SQLite ledger's shipping needs.
#[derive(Clone)]
pub struct Shipping {
    pub db: PathBuf,
    pub target: String,
    pub key: BackupKey,
    pub session_ttl_ms: i64,
}

enum Ledger {
    Sqlite {
        scheduler: Box<BackupScheduler>,
        shipping: Shipping,
    },
    Postgres(Box<PgBackrestScheduler>),
}

pub struct BackupDaemon {
    ledger: Ledger,
    schedule_every: Duration,
}

impl BackupDaemon {
    /// A SQLite ledger: its schedule, and shipping each second.
    pub fn sqlite(scheduler: BackupScheduler, shipping: Shipping) -> BackupDaemon {
        BackupDaemon {
            ledger: Ledger::Sqlite {
                scheduler: Box::new(scheduler),
                shipping,
            },
            schedule_every: SCHEDULE_EVERY,
        }
    }

    /// A PostgreSQL ledger: pgBackRest's schedule (WAL is archived by the server itself).
    pub fn postgres(scheduler: PgBackrestScheduler) -> BackupDaemon {
        BackupDaemon {
            ledger: Ledger::Postgres(Box::new(scheduler)),
            schedule_every: SCHEDULE_EVERY,
        }
    }

    pub fn schedule_every(mut self, every: Duration) -> BackupDaemon {
        self.schedule_every = every;
        self
    }

    /// Runs until `stop` is set (checked between passes; a pass in progress finishes);
    /// returns the health at the end. The first pass runs at once.
    pub fn run(self, hooks: Arc<dyn DaemonHooks>, stop: Arc<AtomicBool>) -> BackupHealth {
        let pins = Arc::new(Mutex::new(None::<Pin>));
        // Shipping goes on from a backup: it starts once the first pass had its chance to
        // take one.
        let first_pass = Arc::new(AtomicBool::new(false));
        let (mut schedule, shipper) = match self.ledger {
            Ledger::Sqlite {
                scheduler,
                shipping,
            } => {
                let (hooks, stop, pins) = (hooks.clone(), stop.clone(), pins.clone());
                let first = first_pass.clone();
                let thread = std::thread::Builder::new()
                    .name("backup-ship".into())
                    .spawn(move || {
                        while !first.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        ship(&shipping, &*hooks, &stop, &pins)
                    })
                    .ok();
                (Schedule::Sqlite(scheduler), thread)
            }
            Ledger::Postgres(scheduler) => (Schedule::Postgres(scheduler), None),
        };
        let mut last: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            if hooks.active() && last.is_none_or(|at| at.elapsed() >= self.schedule_every) {
                last = Some(Instant::now());
                if let Some(pin) = pins.lock().take() {
                    schedule.pin(pin);
                }
                let pass =
                    survive_blocking("backup schedule", || match schedule.run_due(now_ms()) {
                        Ok(outcome) => hooks.ran(&outcome),
                        Err(e) => hooks.failed("schedule", &e),
                    });
                if pass.is_none() {
                    let panicked = BackupError::Panicked { task: "schedule" };
                    survive_blocking("backup news", || hooks.failed("schedule", &panicked));
                }
                first_pass.store(true, Ordering::Relaxed);
            }
            if let Some(health) = survive_blocking("backup health", || schedule.health(now_ms())) {
                hooks.health(health);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(thread) = shipper {
            let _ = thread.join();
        }
        schedule.health(now_ms())
    }
}

enum Schedule {
    Sqlite(Box<BackupScheduler>),
    Postgres(Box<PgBackrestScheduler>),
}

impl Schedule {
    fn run_due(&mut self, now_ms: i64) -> Result<RunOutcome, BackupError> {
        match self {
            Schedule::Sqlite(s) => s.run_due(now_ms),
            Schedule::Postgres(s) => s.run_due(now_ms),
        }
    }

    fn health(&self, now_ms: i64) -> BackupHealth {
        match self {
            Schedule::Sqlite(s) => s.health(now_ms),
            Schedule::Postgres(s) => s.health(now_ms),
        }
    }

    fn pin(&mut self, pin: Pin) {
        if let Schedule::Sqlite(s) = self {
            s.pin(pin);
        }
    }
}

/// Ships every second while active, until `stop`; each shipped state is handed to the
/// schedule's restore tests through `pins`.
fn ship(
    shipping: &Shipping,
    hooks: &dyn DaemonHooks,
    stop: &AtomicBool,
    pins: &Mutex<Option<Pin>>,
) {
    let mut shipper: Option<(Shipper, Target)> = None;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if !hooks.active() {
            // Another process ships now (a control plane that lost its lease).
            shipper = None;
        } else if let Err(e) = survive_blocking("backup shipping", || {
            ship_once(shipping, &mut shipper, hooks, pins)
        })
        .unwrap_or(Err(BackupError::Panicked { task: "shipping" }))
        {
            // Resumed from the target on the next pass, whatever the failed one left.
            hooks.failed("shipping", &e);
            shipper = None;
        }
        next += Duration::from_secs(1);
        let now = Instant::now();
        match next.checked_duration_since(now) {
            Some(wait) => std::thread::sleep(wait),
            None => next = now,
        }
    }
}

fn ship_once(
    shipping: &Shipping,
    shipper: &mut Option<(Shipper, Target)>,
    hooks: &dyn DaemonHooks,
    pins: &Mutex<Option<Pin>>,
) -> Result<(), BackupError> {
    if shipper.is_none() {
        let target = Target::open(&shipping.target)?;
        let resumed = Shipper::resume(
            &shipping.db,
            &target,
            &shipping.key,
            shipping.session_ttl_ms,
        )?;
        *shipper = Some((resumed, target));
    }
    let Some((active, target)) = shipper else {
        return Ok(());
    };
    if let Some(shipped) = active.ship_once(target, &shipping.key)? {
        let pin = Pin {
            last_seq: shipped.last_seq,
            cut_ms: shipped.cut_ms,
        };
        let mut slot = pins.lock();
        *slot = Some(slot.map_or(pin, |old| old.max(pin)));
        drop(slot);
        hooks.shipped(&shipped, active.since_ms());
    }
    Ok(())
}
