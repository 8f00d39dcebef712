//! The load generator's HTTP/1.1 client, on `croupier_web::http1`'s connections (driven
//! inline by the task that sends: no connection task, no channel, no header map), so that a
//! simulated player's request costs about what wrk's does. Requests can leave from several
//! loopback source addresses (127.0.0.1, .2, …) so that simulated players look like many
//! clients to the gateway's per-address rate limit, as real players would. `encode` writes a
//! player's call as a request.

mod encode;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier_web::http1::conn::{self, Conn, Dial, tls_connector};
use croupier_web::http1::{ConnectFailure, Failure, Idle, Received, Target, wire};
use croupier_web::tls::ClientFiles;
use hyper::Method;
use hyper::body::Bytes;
use serde_json::Value;

use crate::error::LoadError;

/// Time to make a TCP connection (as hyper's connector had).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// An answer's body larger than this on the wire (chunk framing included) is refused as
/// malformed, before it is read whole: far above any answer the generator reads (a lobby, a
/// page of history, an alert list), it bounds what a target, hostile or broken, can make a
/// run hold in memory per connection.
const MAX_BODY: usize = 16 << 20;

/// An answer: status, headers and the body, read as JSON only when asked for (a load test
/// reading the lobby has no use for it, and parsing it costs more than the request).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The head as received and where its headers lie; a header is looked up only when
    /// asked for.
    head: Bytes,
    headers: Vec<wire::HeaderAt>,
    pub bytes: Bytes,
}

impl From<Received> for Answer {
    fn from(received: Received) -> Self {
        Answer {
            status: received.status,
            head: received.head,
            headers: received.headers,
            bytes: received.body,
        }
    }
}

impl Answer {
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.bytes).into_owned()))
    }

    /// The body read as `T` (a `croupier_web::wire` type), if it is one.
    pub fn read<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.bytes).ok()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header `name`, when its value is visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        wire::find_header(&self.head, &self.headers, name)
    }
}

/// One request; everything optional has a builder-like constructor.
pub struct Call<'a> {
    pub method: Method,
    pub url: String,
    pub token: Option<&'a str>,
    pub key: Option<&'a str>,
    pub body: Option<Vec<u8>>,
    pub extra_headers: Vec<(&'a str, String)>,
}

impl<'a> Call<'a> {
    pub fn get(url: impl Into<String>) -> Self {
        Call {
            method: Method::GET,
            url: url.into(),
            token: None,
            key: None,
            body: None,
            extra_headers: Vec::new(),
        }
    }

    pub fn post(url: impl Into<String>, body: &impl serde::Serialize) -> Self {
        Call {
            method: Method::POST,
            body: Some(serde_json::to_vec(body).expect("a request body serializes")),
            ..Call::get(url)
        }
    }

    pub fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    pub fn key(mut self, key: &'a str) -> Self {
        self.key = Some(key);
        self
    }

    /// Whether sending it twice does no harm (the gateway's rule for its retries): GET, HEAD,
    /// OPTIONS, or anything under an idempotency key.
    fn replayable(&self) -> bool {
        self.key.is_some() || matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS)
    }
}

#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    lanes: Vec<Lane>,
    timeout: Duration,
    /// The trust of `https://` requests, without ALPN, for WebSockets.
    tls: Arc<rustls::ClientConfig>,
}

/// One source address (with the TLS of `https://` requests, HTTP/1.1 by ALPN) and its idle
/// connections.
struct Lane {
    dial: Dial,
    idle: Idle,
}

impl HttpClient {
    /// A client with `source_addresses` lanes (127.0.0.1 upwards; 1 = the default address)
    /// for `http://` addresses and `https://` ones with certificates the system trusts.
    pub fn new(source_addresses: u8, timeout: Duration) -> Result<Self, LoadError> {
        Self::with_tls(source_addresses, timeout, &ClientFiles::default())
    }

    /// The same, trusting and presenting what `tls` says for `https://` addresses.
    pub fn with_tls(
        source_addresses: u8,
        timeout: Duration,
        tls: &ClientFiles,
    ) -> Result<Self, LoadError> {
        let config =
            croupier_web::tls::client_config(tls).map_err(|e| LoadError::Config(e.to_string()))?;
        let connector = tls_connector(&config);
        let lanes = (0..source_addresses.max(1))
            .map(|i| Lane {
                dial: Dial {
                    local: (source_addresses > 1).then(|| Ipv4Addr::new(127, 0, 0, i + 1)),
                    timeout: CONNECT_TIMEOUT,
                    tls: connector.clone(),
                },
                idle: Idle::default(),
            })
            .collect();
        Ok(HttpClient {
            inner: Arc::new(Inner {
                lanes,
                timeout,
                tls: Arc::new(config),
            }),
        })
    }

    /// The TLS this client uses, for WebSockets to the same addresses.
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.inner.tls.clone()
    }

    pub fn lanes(&self) -> usize {
        self.inner.lanes.len()
    }

    /// A TCP connection to `url`'s host and port from lane `lane`'s source address: a
    /// player's WebSocket leaves from the address their requests leave from, as a real
    /// client's would, so per-address caps see the same players behind each address.
    pub async fn tcp(&self, lane: usize, url: &str) -> Result<tokio::net::TcpStream, LoadError> {
        let failed = |reason: String, refused: bool| LoadError::Connect {
            url: url.to_owned(),
            reason,
            refused,
        };
        let target = wire::target(url).map_err(|reason| failed(reason, false))?;
        let lanes = &self.inner.lanes;
        conn::tcp(
            &target,
            lanes[lane % lanes.len()].dial.local,
            CONNECT_TIMEOUT,
        )
        .await
        .map_err(|ConnectFailure { reason, refused }| failed(reason, refused))
    }

    /// Sends `call` on lane `lane`; a transport failure or timeout is an error, any status is
    /// an answer.
    pub async fn send(&self, lane: usize, call: Call<'_>) -> Result<Answer, LoadError> {
        let target = wire::target(&call.url).map_err(|reason| http_error(&call, reason))?;
        let lanes = &self.inner.lanes;
        let deadline = Instant::now() + self.inner.timeout;
        self.exchange(&lanes[lane % lanes.len()], &call, &target, deadline)
            .await
    }

    /// Sends on an idle connection, or a new one. When an idle connection turns out closed
    /// under the request before one byte of answer came (the server closed it meanwhile),
    /// a request that may be sent twice goes once more on a new connection; any other is a
    /// cut, as it would be for a client that cannot tell whether the server acted on it.
    /// Everything, connections made included, by `deadline`.
    async fn exchange(
        &self,
        lane: &Lane,
        call: &Call<'_>,
        target: &Target<'_>,
        deadline: Instant,
    ) -> Result<Answer, LoadError> {
        let replayable = call.replayable();
        let (conn, reused) = match lane.idle.take(target.origin, !replayable) {
            Some(conn) => (conn, true),
            None => (self.connect(lane, call, target, deadline).await?, false),
        };
        let failure = match self.exchange_on(lane, conn, call, target, deadline).await? {
            Ok(answer) => return Ok(answer),
            Err(failure) => failure,
        };
        if !(reused && replayable && failure.unanswered) {
            return Err(exchange_error(call, failure));
        }
        let Ok(fresh) = self.connect(lane, call, target, deadline).await else {
            return Err(exchange_error(call, failure));
        };
        match self
            .exchange_on(lane, fresh, call, target, deadline)
            .await?
        {
            Ok(answer) => Ok(answer),
            Err(failure) => Err(exchange_error(call, failure)),
        }
    }

    /// One try on `conn`, which goes back idle if it may carry another request. The outer
    /// error is a request that cannot be written at all, or no answer by `deadline`.
    async fn exchange_on(
        &self,
        lane: &Lane,
        mut conn: Conn,
        call: &Call<'_>,
        target: &Target<'_>,
        deadline: Instant,
    ) -> Result<Result<Answer, Failure>, LoadError> {
        if let Err(reason) = encode::encode(&mut conn.write, call, target) {
            lane.idle.put(target.origin, conn);
            return Err(http_error(call, reason));
        }
        let head_request = call.method == Method::HEAD;
        match conn.exchange_until(deadline, head_request, MAX_BODY).await {
            Some(Ok((answer, reusable))) => {
                if reusable {
                    lane.idle.put(target.origin, conn);
                }
                Ok(Ok(answer.into()))
            }
            Some(Err(failure)) => Ok(Err(failure)),
            None => Err(self.late(call)),
        }
    }

    async fn connect(
        &self,
        lane: &Lane,
        call: &Call<'_>,
        target: &Target<'_>,
        deadline: Instant,
    ) -> Result<Conn, LoadError> {
        let connect = conn::connect(target, &lane.dial);
        match tokio::time::timeout_at(deadline.into(), connect).await {
            Ok(conn) => conn.map_err(|ConnectFailure { reason, refused }| LoadError::Connect {
                url: call.url.clone(),
                reason,
                refused,
            }),
            Err(_) => Err(self.late(call)),
        }
    }

    /// The error of a request with no answer within the client's timeout.
    fn late(&self, call: &Call<'_>) -> LoadError {
        http_error(call, format!("no answer within {:?}", self.inner.timeout))
    }
}

fn http_error(call: &Call<'_>, reason: String) -> LoadError {
    LoadError::Http {
        url: call.url.clone(),
        reason,
    }
}

/// A request sent that got no whole answer: a cut (reset or closed) or a malformed answer.
fn exchange_error(call: &Call<'_>, failure: Failure) -> LoadError {
    let url = call.url.clone();
    match failure.cut {
        true => LoadError::Reset {
            url,
            reason: failure.reason,
        },
        false => LoadError::Http {
            url,
            reason: failure.reason,
        },
    }
}

#[cfg(test)]
mod tests;
