//! `croupier node`: opens the store and serves the game node until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use std::sync::Arc;
use std::time::Duration;

use croupier_ledger::retention::RetentionPolicy;
use croupier_ledger::{LedgerError, Store, StoreLocation};
use croupier_loadtest::layout::{LEDGER_FILE, OPS_TOKEN_FILE};
use croupier_node::rounds::random_hex;
use croupier_node::{AppState, Players};
use croupier_web::launch::LaunchKeys;

use crate::exit_status::RestartCannotHelp;

#[derive(Args)]
pub struct NodeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen: SocketAddr,
    /// Data folder: holds the SQLite ledger and the ops token unless given elsewhere.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// The ledger: `postgres://user@host:port/db` (several hosts allowed, with
    /// `?target_session_attrs=read-write`), `sqlite://PATH` or a SQLite file path (default:
    /// <data>/ledger.db). Several nodes may share one. Also read from CROUPIER_STORE, which
    /// keeps a password in the URL off the command line (`croupier up` passes it so).
    #[arg(long, alias = "db", env = "CROUPIER_STORE", hide_env_values = true)]
    store: Option<StoreLocation>,
    /// This node's name in metrics, rounds and logs (default: node-<port>).
    #[arg(long)]
    node_id: Option<String>,
    /// Token for the ops API (default: read from, or created in, <data>/ops-token).
    #[arg(long, env = "CROUPIER_OPS_TOKEN", hide_env_values = true)]
    ops_token: Option<String>,
    /// Currency of the ledger (ISO 4217 code); amounts are integer minor units.
    #[arg(long, default_value = "EUR")]
    currency: String,
    /// Test-only fault injection for the drills' tests: `skip-idempotency` makes replayed bets
    /// move money again. Refused unless CROUPIER_I_KNOW_THIS_BREAKS_MONEY=1 is also set.
    #[arg(long, env = "CROUPIER_FAULT", hide = true)]
    fault: Option<String>,
    /// Days idempotency records are kept (at least 1; keep it longer than your reconciliation
    /// window: a key replayed after that runs again as a new request).
    #[arg(long, default_value_t = 35)]
    idempotency_days: u32,
    /// Demo mode: players sign in by name alone and each new player gets 1 000.00 of play
    /// money. Off by default: then only the operator's launch tokens sign players in.
    #[arg(long)]
    demo: bool,
    /// Folder of the operator's launch-token keys (`<kid>.hs256`, `<kid>.ed25519.pem`), read
    /// again each second (default: <data>/launch-keys).
    #[arg(long)]
    launch_keys: Option<PathBuf>,
    /// Open sessions one player keeps at most (at least 1): signing in once more revokes the
    /// oldest (on other nodes within a minute, as their cache of it lapses).
    #[arg(long, default_value_t = croupier_node::rounds::MAX_SESSIONS_PER_PLAYER,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_sessions_per_player: u32,
    /// Seconds between housekeeping passes (expired sessions, old idempotency records, WAL).
    #[arg(long, default_value_t = 600)]
    housekeep_every_s: u64,
    #[command(flatten)]
    lockout: crate::lockout_args::LockoutArgs,
    /// The cashier API's credential (default: read from, or created in, <data>/cashier-token).
    /// Give the operator's platform this secret; it must differ from the ops token.
    #[arg(long, env = "CROUPIER_CASHIER_TOKEN", hide_env_values = true)]
    cashier_token: Option<String>,
    #[command(flatten)]
    operator: crate::operator_args::OperatorArgs,
    #[command(flatten)]
    seeds: crate::seed_key_args::SeedKeyArgs,
    #[command(flatten)]
    tls: crate::tls_args::TlsArgs,
}

/// The env var that must accompany `--fault`, so no deployment breaks its money by accident.
const FAULT_GUARD: &str = "CROUPIER_I_KNOW_THIS_BREAKS_MONEY";

/// Whether the deliberately broken idempotency is asked for (and allowed).
fn broken_idempotency(fault: Option<&str>) -> anyhow::Result<bool> {
    let Some(fault) = fault else {
        return Ok(false);
    };
    anyhow::ensure!(
        fault == "skip-idempotency",
        "unknown fault '{fault}' (the only one is skip-idempotency)"
    );
    anyhow::ensure!(
        std::env::var(FAULT_GUARD).as_deref() == Ok("1"),
        "--fault {fault} breaks the money on purpose and is for tests only; it also needs {FAULT_GUARD}=1"
    );
    Ok(true)
}

/// Reads the ops token from `path`, or creates one there readable only by its owner. Several
/// processes starting at once on one data folder agree on one token: each writes its own
/// candidate to a temporary file and links it into place only if no token is there yet
/// (`link` never replaces), so no process reads a half-written file.
pub fn ops_token_file(path: &Path) -> anyhow::Result<String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        let token = token.trim().to_owned();
        anyhow::ensure!(
            token.len() >= 32,
            "{} holds a token shorter than 32 characters",
            path.display()
        );
        return Ok(token);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let candidate = path.with_extension(format!("new-{}-{}", std::process::id(), random_hex(4)));
    write_private(&candidate, &random_hex(32))?;
    let linked = std::fs::hard_link(&candidate, path);
    let _ = std::fs::remove_file(&candidate);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    let token =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(token.trim().to_owned())
}

/// Writes `text` to a new file at `path` readable only by its owner.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// A SQLite ledger may live outside the data folder: its files are made private, not their
/// folder.
fn lock_down_ledger(store: &StoreLocation) -> anyhow::Result<()> {
    let StoreLocation::Sqlite(db) = store else {
        return Ok(());
    };
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        match crate::private_files::lock_down(&file) {
            // Not made yet, or removed by a sibling node closing the file: nothing to tighten.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            repaired => {
                repaired.with_context(|| format!("securing {}", file.display()))?;
            }
        }
    }
    Ok(())
}

/// `--ops-token` (at least 32 characters), else the data folder's.
fn ops_token(flag: Option<String>, data: &Path) -> anyhow::Result<String> {
    match flag {
        Some(token) => {
            anyhow::ensure!(
                token.len() >= 32,
                "the ops token must be at least 32 characters"
            );
            Ok(token)
        }
        None => ops_token_file(&data.join(OPS_TOKEN_FILE)),
    }
}

/// The folder whose filesystem must not fill: the one holding the ledger. (A PostgreSQL
/// server's disk is watched on its own host: here, the node's folder.)
fn watched_folder(store: &StoreLocation, data: &Path) -> PathBuf {
    let ledger_folder = match store {
        StoreLocation::Sqlite(db) => db.parent().filter(|p| !p.as_os_str().is_empty()),
        StoreLocation::Postgres(_) => None,
    };
    ledger_folder.unwrap_or(data).to_path_buf()
}

/// Why the ledger did not open. A PostgreSQL server's refusal that is no outage
/// (`LedgerError::Storage`: no such database, a login it does not accept, a migration it
/// does not permit) is marked as one that a restart cannot help (`exit_status`); an outage
/// (`Unavailable`: the server down, starting, full) is worth a restart. On SQLite every
/// failure stays worth one: a full disk fails the same way as a broken file, and is cured.
fn opening_failed(e: LedgerError, store: &StoreLocation) -> anyhow::Error {
    let for_good =
        matches!(store, StoreLocation::Postgres(_)) && matches!(e, LedgerError::Storage(_));
    let e = anyhow::Error::new(e).context(format!("opening the ledger {store}"));
    if for_good {
        e.context(RestartCannotHelp)
    } else {
        e
    }
}

pub fn run(mut args: NodeArgs) -> anyhow::Result<()> {
    let store_location = args
        .store
        .clone()
        .unwrap_or_else(|| StoreLocation::Sqlite(args.data.join(LEDGER_FILE)));
    crate::private_files::secure_data_folder(&args.data)?;
    lock_down_ledger(&store_location)?;
    let ops_token = ops_token(args.ops_token.take(), &args.data)?;
    let operator = args
        .operator
        .operator(args.cashier_token.take(), &args.data, &ops_token)?;
    let break_idempotency = broken_idempotency(args.fault.as_deref())?;
    let seeds = args.seeds.vault(&args.data)?;
    let retention = RetentionPolicy::with_idempotency_days(args.idempotency_days)
        .map_err(anyhow::Error::msg)?;
    let housekeep_every = Duration::from_secs(args.housekeep_every_s.max(1));
    let node_id = args
        .node_id
        .unwrap_or_else(|| format!("node-{}", args.listen.port()));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let tls = args.tls.acceptor()?;
        let store = store_location
            .open_with_seeds(&args.currency, seeds)
            .map_err(|e| opening_failed(e, &store_location))?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        spawn_housekeeping(store.clone(), retention, housekeep_every);
        let currency = store.read(|tx| Ok(tx.currency().to_owned())).await?;
        let launch_dir = args.launch_keys.unwrap_or_else(|| args.data.join(LAUNCH_KEYS_DIR));
        let mut players = players(args.demo, &launch_dir, currency);
        players.max_sessions = args.max_sessions_per_player;
        let lockout = args.lockout.config();
        let state = AppState::new(store, node_id.clone(), ops_token, players, lockout, operator);
        let folder = watched_folder(&store_location, &args.data);
        state.metrics.vitals.watch_folder(folder);
        if break_idempotency {
            state.break_idempotency();
        }
        tracing::info!(
            "croupier node {node_id} on {}://{}  (player API /api/v1, ops API /ops with the token in {}, cashier API /cashier/v1, ledger {})",
            args.tls.scheme(),
            listener.local_addr()?,
            args.data.join(OPS_TOKEN_FILE).display(),
            store_location
        );
        croupier_node::serve(listener, state, shutdown_signal(), tls).await?;
        Ok(())
    })
}

/// The launch keys' folder inside the data folder.
pub const LAUNCH_KEYS_DIR: &str = "launch-keys";

/// How players sign in, said in the log: demo mode loudly, else the launch keys found.
fn players(demo: bool, launch_dir: &Path, currency: String) -> Players {
    let (launch_keys, problems) = LaunchKeys::open(launch_dir);
    for problem in problems {
        tracing::warn!(%problem, "a launch key file was skipped");
    }
    if demo {
        tracing::warn!(
            "DEMO MODE: players sign in by name alone and new players get play money; never for real money"
        );
    }
    tracing::info!(
        keys = ?launch_keys.kids(),
        folder = %launch_dir.display(),
        "launch tokens verified with these keys (the folder is re-read each second)"
    );
    Players {
        demo,
        launch_keys,
        currency,
        max_sessions: croupier_node::rounds::MAX_SESSIONS_PER_PLAYER,
    }
}

/// Runs `Store::housekeep` every `every` (the first pass soon after start); several nodes on
/// one ledger each run it, which is harmless: the deletes are idempotent and short.
fn spawn_housekeeping(store: Arc<dyn Store>, policy: RetentionPolicy, every: Duration) {
    croupier_vitals::background::spawn_every("housekeeping", every, move || {
        let store = store.clone();
        async move {
            match store.housekeep(policy).await {
                Ok(report) if report.sessions_removed + report.idempotency_removed > 0 => {
                    tracing::info!(?report, "housekeeping removed expired rows");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "housekeeping failed; next pass as usual"),
            }
        }
    });
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Nodes started at once on one data folder (each making the cashier or ops token when
    /// missing) all get the one token written, private, with nothing left beside it.
    #[test]
    fn processes_starting_at_once_agree_on_one_token() {
        for round in 0..50 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("cashier-token");
            let start = std::sync::Barrier::new(8);
            let tokens: Vec<String> = std::thread::scope(|s| {
                let makers: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            ops_token_file(&path)
                        })
                    })
                    .collect();
                makers
                    .into_iter()
                    .map(|m| m.join().unwrap().unwrap())
                    .collect()
            });
            assert!(
                tokens.iter().all(|t| *t == tokens[0] && t.len() == 64),
                "round {round}: {tokens:?}"
            );
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }
}
