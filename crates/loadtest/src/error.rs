//! Errors of the load generator, drills and audit.

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("invalid threshold '{expr}': {reason}")]
    Threshold { expr: String, reason: String },
    #[error("request to {url} failed: {reason}")]
    Http { url: String, reason: String },
    /// The connection could not be made: the request was never sent. `refused`: the
    /// address answered with a reset (nothing listening), as opposed to a timeout.
    #[error("could not connect for {url}: {reason}")]
    Connect {
        url: String,
        reason: String,
        refused: bool,
    },
    /// The connection was reset or closed before the answer came: the request may have been
    /// acted on.
    #[error("connection cut for {url}: {reason}")]
    Reset { url: String, reason: String },
    #[error("no player could sign in at {0}: is it running, and is it the players' address?")]
    NoPlayers(String),
    #[error("the stack: {0}")]
    Stack(String),
    #[error("the ledger: {0}")]
    Ledger(#[from] croupier_ledger::LedgerError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl LoadError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LoadError::Io {
            context: context.into(),
            source,
        }
    }
}
