//! Launch tokens: how the operator's platform signs a player in. The operator owns player
//! identity; it launches the game with a JWT it signed (`sub` = player id, `currency`, `exp`,
//! `jti`, optional `limits`), and a node turns a valid one into a session. Keys live as files in
//! one folder, one key per file, its name the `kid`: `<kid>.hs256` holds a shared secret (at
//! least 32 bytes), `<kid>.ed25519.pem` the operator's Ed25519 public key (SPKI PEM). The
//! folder is read again at most once a second, so a key is added or retired without a restart
//! and two keys are valid at once during a rotation. The algorithm is the key's, never the
//! token's: a token naming another algorithm than its key's (`none`, HS256 against a public
//! key) is refused. Replays (a `jti` seen before) are refused by the node, which remembers each
//! `jti` in the ledger's idempotency records; so a token may live at most `MAX_LIFETIME_S`, less
//! than those records are kept.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The longest a launch token may live (its `exp` at most this far ahead): one day, the
/// shortest time the ledger keeps idempotency records, which is where replays are caught.
pub const MAX_LIFETIME_S: i64 = 24 * 3600;
/// The shortest HS256 secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// How often the key folder is looked at again.
const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// File suffixes of the two kinds of key.
const HS256_SUFFIX: &str = ".hs256";
const ED25519_SUFFIX: &str = ".ed25519.pem";

/// What the operator vouches for in a launch token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The player id.
    pub sub: String,
    /// The wallet's currency (ISO 4217); must be the ledger's.
    pub currency: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// The token's unique id: each token signs in once.
    pub jti: String,
    /// Limits the operator sets for this player, if any (told back at sign-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// Optional limits carried by a launch token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The largest stake of one round, in minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stake: Option<i64>,
}

/// Why a launch token was refused. Each is a 401 for the caller, with `code()` as its error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LaunchError {
    #[error("the launch token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the launch token names no key (kid)")]
    MissingKid,
    #[error("no launch key '{0}' is configured")]
    UnknownKey(String),
    #[error("the launch token's algorithm is not its key's ({0:?})")]
    WrongAlgorithm(Algorithm),
    #[error("the launch token's signature does not verify")]
    BadSignature,
    #[error("the launch token has expired")]
    Expired,
    #[error("the launch token lives longer than {MAX_LIFETIME_S} s")]
    TooLong,
    #[error("the launch token is for {token}, this casino plays in {ledger}")]
    WrongCurrency { token: String, ledger: String },
    #[error("the launch token's claims are invalid: {0}")]
    InvalidClaims(String),
    #[error("the launch token was used before")]
    Replayed,
    #[error("cannot sign: {0}")]
    Signing(String),
}

impl LaunchError {
    /// The error code of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            LaunchError::Expired => "token_expired",
            LaunchError::Replayed => "token_replayed",
            LaunchError::WrongCurrency { .. } => "wrong_currency",
            LaunchError::UnknownKey(_) | LaunchError::MissingKid => "unknown_key",
            LaunchError::WrongAlgorithm(_) | LaunchError::BadSignature => "bad_signature",
            _ => "invalid_launch_token",
        }
    }
}

/// One verifying key and the only algorithm it accepts.
struct Key {
    algorithm: Algorithm,
    key: DecodingKey,
}

struct Loaded {
    at: Instant,
    keys: HashMap<String, Key>,
}

/// The launch keys of a folder, read again at most once a second.
pub struct LaunchKeys {
    dir: PathBuf,
    loaded: RwLock<Loaded>,
}

/// Reads every key file of `dir` (a missing folder is no keys). A file that cannot be read as
/// its kind of key is skipped, and named in the returned problems.
fn read_keys(dir: &Path) -> (HashMap<String, Key>, Vec<String>) {
    let mut keys = HashMap::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (keys, problems);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let parsed = if let Some(kid) = name.strip_suffix(HS256_SUFFIX) {
            read_secret(&entry.path())
                .map(|s| (kid, Algorithm::HS256, DecodingKey::from_secret(&s)))
        } else if let Some(kid) = name.strip_suffix(ED25519_SUFFIX) {
            std::fs::read(entry.path())
                .map_err(|e| e.to_string())
                .and_then(|pem| DecodingKey::from_ed_pem(&pem).map_err(|e| e.to_string()))
                .map(|key| (kid, Algorithm::EdDSA, key))
        } else {
            continue;
        };
        match parsed {
            Ok((kid, algorithm, key)) => {
                keys.insert(kid.to_owned(), Key { algorithm, key });
            }
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    (keys, problems)
}

/// An HS256 secret file's bytes (surrounding whitespace trimmed), refused when short.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    let secret = text.trim_ascii().to_vec();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!("a secret shorter than {MIN_SECRET_BYTES} bytes"));
    }
    Ok(secret)
}

/// Seconds since the Unix epoch.
pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl LaunchKeys {
    /// The keys of `dir`, read now; the problems with unreadable key files, for the log.
    pub fn open(dir: &Path) -> (LaunchKeys, Vec<String>) {
        let (keys, problems) = read_keys(dir);
        let loaded = Loaded {
            at: Instant::now(),
            keys,
        };
        let keys = LaunchKeys {
            dir: dir.to_path_buf(),
            loaded: RwLock::new(loaded),
        };
        (keys, problems)
    }

    /// The key ids configured now, sorted.
    pub fn kids(&self) -> Vec<String> {
        self.refresh();
        let loaded = self.loaded.read();
        let mut kids: Vec<String> = loaded.keys.keys().cloned().collect();
        kids.sort();
        kids
    }

    fn refresh(&self) {
        let stale = self.loaded.read().at.elapsed() >= RELOAD_EVERY;
        if stale {
            let (keys, _) = read_keys(&self.dir);
            *self.loaded.write() = Loaded {
                at: Instant::now(),
                keys,
            };
        }
    }

    /// The claims of a valid token for a casino playing in `currency`: signed by a configured
    /// key with that key's algorithm, not expired, living at most `MAX_LIFETIME_S`, for this
    /// currency. Replays are the caller's to refuse (by `jti`).
    pub fn verify(&self, token: &str, currency: &str) -> Result<Claims, LaunchError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| LaunchError::Malformed(e.to_string()))?;
        let kid = header.kid.ok_or(LaunchError::MissingKid)?;
        self.refresh();
        let loaded = self.loaded.read();
        let key = loaded
            .keys
            .get(&kid)
            .ok_or_else(|| LaunchError::UnknownKey(kid.clone()))?;
        if header.alg != key.algorithm {
            return Err(LaunchError::WrongAlgorithm(header.alg));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => LaunchError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidSignature => LaunchError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    LaunchError::WrongAlgorithm(header.alg)
                }
                _ => LaunchError::InvalidClaims(e.to_string()),
            })?
            .claims;
        check_claims(&claims, currency, now_s())?;
        Ok(claims)
    }
}

/// The checks beyond the signature: lifetime, currency, names.
fn check_claims(claims: &Claims, currency: &str, now: i64) -> Result<(), LaunchError> {
    if claims.exp <= now {
        return Err(LaunchError::Expired);
    }
    if claims.exp - now > MAX_LIFETIME_S {
        return Err(LaunchError::TooLong);
    }
    if claims.currency != currency {
        return Err(LaunchError::WrongCurrency {
            token: claims.currency.clone(),
            ledger: currency.to_owned(),
        });
    }
    if !valid_player(&claims.sub) {
        return Err(LaunchError::InvalidClaims(
            "sub must be 1 to 32 letters, digits, '_' or '-'".into(),
        ));
    }
    if claims.jti.is_empty() || claims.jti.len() > 128 {
        return Err(LaunchError::InvalidClaims(
            "jti must be 1 to 128 characters".into(),
        ));
    }
    if let Some(max) = claims.limits.as_ref().and_then(|l| l.max_stake)
        && max <= 0
    {
        return Err(LaunchError::InvalidClaims(
            "limits.max_stake must be positive".into(),
        ));
    }
    Ok(())
}

/// Whether `name` is a valid player id: 1 to 32 letters, digits, `_` or `-`.
/// Names of the control plane's synthetic-check players: reserved, so no one signs in as
/// them by name (demo mode) and loses their balance to page the operators. Only a launch
/// token signed with the operator's key opens their sessions.
pub const RESERVED_PREFIX: &str = "synthetic-";

/// Whether `name` is reserved for the synthetic checks.
pub fn reserved_player(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with(RESERVED_PREFIX)
}

pub fn valid_player(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A signing key read from a file: `<kid>.hs256` (a shared secret) or an Ed25519 private key
/// in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
pub struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
}

impl SigningKey {
    /// An HS256 key from its secret.
    pub fn hs256(kid: &str, secret: &[u8]) -> SigningKey {
        SigningKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::HS256,
            key: EncodingKey::from_secret(secret),
        }
    }

    /// An EdDSA key from a PKCS#8 private key, DER.
    pub fn ed25519_der(kid: &str, pkcs8: &[u8]) -> SigningKey {
        SigningKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::EdDSA,
            key: EncodingKey::from_ed_der(pkcs8),
        }
    }

    /// The key of `path`: a `<kid>.hs256` secret file, or else an Ed25519 private key PEM
    /// whose kid is `kid` (or the file name up to its first dot).
    pub fn from_file(path: &Path, kid: Option<&str>) -> Result<SigningKey, LaunchError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.split('.').next().unwrap_or_default().to_owned();
        let kid = kid.map(str::to_owned).unwrap_or(stem);
        if name.ends_with(HS256_SUFFIX) {
            let secret = read_secret(path).map_err(LaunchError::Signing)?;
            return Ok(SigningKey::hs256(&kid, &secret));
        }
        let pem = std::fs::read(path).map_err(|e| LaunchError::Signing(e.to_string()))?;
        let key =
            EncodingKey::from_ed_pem(&pem).map_err(|e| LaunchError::Signing(e.to_string()))?;
        Ok(SigningKey {
            kid,
            algorithm: Algorithm::EdDSA,
            key,
        })
    }

    /// A signed launch token carrying `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, LaunchError> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| LaunchError::Signing(e.to_string()))
    }
}

/// Claims for `player` in `currency`, valid `ttl_s` from now, with a fresh random-looking
/// `jti` made by the caller (`jti`), and no limits.
pub fn claims_for(player: &str, currency: &str, ttl_s: i64, jti: String) -> Claims {
    Claims {
        sub: player.to_owned(),
        currency: currency.to_owned(),
        exp: now_s() + ttl_s,
        jti,
        limits: None,
    }
}

#[cfg(test)]
mod tests;
