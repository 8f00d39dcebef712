//! `croupier launch-token`: signs a launch token as the operator's platform would, for tests,
//! load tests, drills and a first look without demo mode. It also makes the first key of a
//! data folder (`up` calls `ensure_key` on its first run).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use croupier_node::rounds::random_hex;
use croupier_web::launch::{Claims, Limits, SigningKey, now_s};

use crate::console::outln;
use crate::node_cmd::LAUNCH_KEYS_DIR;

/// The key `up` makes in `<data>/launch-keys` when the folder has none.
pub const FIRST_KEY: &str = "operator.hs256";

#[derive(Args)]
pub struct LaunchTokenArgs {
    /// The player id (1 to 32 letters, digits, '_' or '-').
    #[arg(long)]
    player: String,
    /// The signing key: a `<kid>.hs256` secret file or an Ed25519 private key PEM [default:
    /// the first `*.hs256` in <data>/launch-keys].
    #[arg(long)]
    key: Option<PathBuf>,
    /// The key id, when not the key file's name up to its first dot.
    #[arg(long)]
    kid: Option<String>,
    /// Data folder whose launch keys to use.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// The ledger's currency.
    #[arg(long, default_value = "EUR")]
    currency: String,
    /// Seconds the token is valid (at most a day).
    #[arg(long, default_value_t = 600)]
    ttl_s: i64,
    /// The largest stake of one round the operator allows this player, in minor units.
    #[arg(long)]
    max_stake: Option<i64>,
}

/// The first `*.hs256` key of `<data>/launch-keys`, by name.
pub fn default_key(data: &Path) -> anyhow::Result<PathBuf> {
    let dir = data.join(LAUNCH_KEYS_DIR);
    let mut keys: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".hs256"))
        .collect();
    keys.sort();
    keys.into_iter()
        .next()
        .with_context(|| format!("no *.hs256 key in {}", dir.display()))
}

pub fn run(args: LaunchTokenArgs) -> anyhow::Result<()> {
    let path = match args.key {
        Some(path) => path,
        None => default_key(&args.data)?,
    };
    let key = SigningKey::from_file(&path, args.kid.as_deref())
        .with_context(|| format!("reading {}", path.display()))?;
    let claims = Claims {
        sub: args.player,
        currency: args.currency,
        exp: now_s() + args.ttl_s,
        jti: random_hex(16),
        limits: args.max_stake.map(|max| Limits {
            max_stake: Some(max),
        }),
    };
    outln!("{}", key.sign(&claims)?)?;
    Ok(())
}

/// Makes `<data>/launch-keys/operator.hs256` (mode 0600) when the folder holds no key; returns
/// the path of the HS256 key the deployment's own test player signs with.
pub fn ensure_key(data: &Path) -> anyhow::Result<PathBuf> {
    let dir = data.join(LAUNCH_KEYS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if let Ok(existing) = default_key(data) {
        return Ok(existing);
    }
    let path = dir.join(FIRST_KEY);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(random_hex(32).as_bytes())?;
    Ok(path)
}
