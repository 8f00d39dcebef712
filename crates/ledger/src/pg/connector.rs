//! How the store's pools open their connections: as every other Croupier connection to the
//! server (`croupier_pgconn::Server::connect_driven`, its TLS included), so a connection the
//! server or the network ends is logged with why ("terminating connection due to
//! administrator command") and the connection's `application_name`, where deadpool's own
//! driver logs only "db error".

use croupier_pgconn::Server;
use deadpool_postgres::Connect;
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, Error};

/// A pool's connector for one server.
pub struct Connector {
    pub server: Server,
}

impl Connect for Connector {
    /// Connects with the server's own settings: the pool was built from the same ones.
    fn connect(&self, _config: &Config) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), Error>> {
        Box::pin(self.server.connect_driven())
    }
}
