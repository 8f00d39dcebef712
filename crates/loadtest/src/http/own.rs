//! A keep-alive connection that one simulated player owns and drives inside its own task, as
//! wrk drives each of its connections: a request needs no pool look-up and no hand-over to a
//! separate connection task and back (two task wake-ups per request), which is most of what
//! a pooled client costs beyond the system calls. A player does one thing at a time, so one
//! connection is what a real player's browser would keep open too.

use std::future::Future;
use std::pin::Pin;

use futures_util::FutureExt;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// An open connection to one origin (`scheme://authority`).
pub struct OwnConnection {
    origin: String,
    sender: SendRequest<Full<Bytes>>,
    /// Reads and writes the socket; `None` once the connection has ended.
    driver: Driver,
}

/// Why no connection could be opened: the connector's error (I/O, TLS, timeout).
pub type ConnectError = Box<dyn std::error::Error + Send + Sync>;

impl OwnConnection {
    /// Connects to `origin` through `connector` (TLS for `https://`).
    pub async fn open(
        connector: &HttpsConnector<HttpConnector>,
        origin: &str,
    ) -> Result<Self, ConnectError> {
        let uri: hyper::Uri = origin.parse()?;
        let stream = connector.clone().call(uri).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(stream).await?;
        Ok(OwnConnection {
            origin: origin.to_owned(),
            sender,
            driver: Some(Box::pin(connection)),
        })
    }

    /// Whether this connection can carry a request to `origin` now. Polls the connection
    /// once without waiting, so that a close the server sent while the player was idle (a
    /// drain, an idle timeout) is seen before a request is written into it.
    pub fn usable_for(&mut self, origin: &str) -> bool {
        if let Some(driver) = self.driver.as_mut()
            && driver.as_mut().now_or_never().is_some()
        {
            self.driver = None;
        }
        self.origin == origin && self.driver.is_some() && self.sender.is_ready()
    }

    /// Sends `request` and reads the whole answer, driving the connection meanwhile.
    pub async fn exchange(
        &mut self,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<(hyper::http::response::Parts, Bytes), hyper::Error> {
        use http_body_util::BodyExt;
        let sent = self.sender.send_request(request);
        let response = drive(&mut self.driver, sent).await?;
        let (parts, body) = response.into_parts();
        let bytes = drive(&mut self.driver, body.collect()).await?.to_bytes();
        Ok((parts, bytes))
    }
}

type Driver = Option<Pin<Box<Connection<Stream, Full<Bytes>>>>>;

/// Awaits `work` while polling the connection in the same task; once the connection has
/// ended, `work` settles by itself (with its answer or an error).
async fn drive<F: Future>(driver: &mut Driver, work: F) -> F::Output {
    let mut work = std::pin::pin!(work);
    if let Some(connection) = driver.as_mut() {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = connection.as_mut() => *driver = None,
        }
    }
    work.await
}
