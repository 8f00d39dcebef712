//! A small HTTP/1.1 JSON client on hyper-util's pooled client. Requests can leave from several
//! loopback source addresses (127.0.0.1, .2, …) so that simulated players look like many
//! clients to the gateway's per-address rate limit, as real players would.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use croupier_web::tls::ClientFiles;
use croupier_web::wire;

use crate::error::LoadError;

mod own;
pub use own::OwnConnection;

type Pooled = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An answer: status, headers and the body, read as JSON only when asked for (a load test
/// reading the lobby has no use for it, and parsing it costs more than the request).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub bytes: Bytes,
}

impl Answer {
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.bytes).into_owned()))
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
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

    pub fn post(url: impl Into<String>, body: &Value) -> Self {
        Call {
            method: Method::POST,
            body: Some(body.to_string().into_bytes()),
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
}

#[derive(Clone)]
pub struct HttpClient {
    lanes: Vec<Pooled>,
    /// Per lane, what opens a player's own connection (`send_as`).
    connectors: Vec<HttpsConnector<HttpConnector>>,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
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
        let connectors: Vec<_> = (0..source_addresses.max(1))
            .map(|i| {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(Duration::from_secs(2)));
                if source_addresses > 1 {
                    connector.set_local_address(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i + 1))));
                }
                croupier_web::tls::https_connector(connector, config.clone())
            })
            .collect();
        let lanes = connectors
            .iter()
            .map(|connector| {
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .pool_max_idle_per_host(1024)
                    .build(connector.clone())
            })
            .collect();
        Ok(HttpClient {
            lanes,
            connectors,
            timeout,
            tls: Arc::new(config),
        })
    }

    /// The TLS this client uses, for WebSockets to the same addresses.
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Sends `call` on lane `lane`; a transport failure or timeout is an error, any status is
    /// an answer.
    pub async fn send(&self, lane: usize, call: Call<'_>) -> Result<Answer, LoadError> {
        let uri: hyper::Uri = call.url.parse().map_err(|e| call.failed(e))?;
        let request = call.request(uri)?;
        let client = &self.lanes[lane % self.lanes.len()];
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| call.failed_under_way(&e, e.is_connect()))?;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| call.failed_under_way(&e, false))?
                .to_bytes();
            Ok(Answer::new(parts, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| call.failed(format!("no answer within {:?}", self.timeout)))?
    }

    /// Sends `call` on the connection kept in `own` (opened on lane `lane` when there is none
    /// to the call's origin, or it was closed), and keeps it there for the next call when it
    /// stays open. Answers and errors as `send`.
    pub async fn send_as(
        &self,
        own: &parking_lot::Mutex<Option<OwnConnection>>,
        lane: usize,
        call: Call<'_>,
    ) -> Result<Answer, LoadError> {
        let uri: hyper::Uri = call.url.parse().map_err(|e| call.failed(e))?;
        let origin = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => return Err(call.failed("not an absolute http(s) address")),
        };
        let host = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let path = uri
            .path_and_query()
            .cloned()
            .map_or_else(|| hyper::Uri::from_static("/"), hyper::Uri::from);
        let mut request = call.request(path)?;
        if let Ok(host) = hyper::header::HeaderValue::from_str(&host) {
            request.headers_mut().insert(hyper::header::HOST, host);
        }
        let kept = own
            .lock()
            .take()
            .and_then(|mut c| c.usable_for(&origin).then_some(c));
        let exchange = async {
            let mut connection = match kept {
                Some(connection) => connection,
                None => {
                    let connector = &self.connectors[lane % self.connectors.len()];
                    OwnConnection::open(connector, &origin)
                        .await
                        .map_err(|e| call.not_connected(&*e))?
                }
            };
            let (parts, bytes) = connection
                .exchange(request)
                .await
                .map_err(|e| call.failed_under_way(&e, false))?;
            Ok::<_, LoadError>((Answer::new(parts, bytes), connection))
        };
        let (answer, mut connection) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| call.failed(format!("no answer within {:?}", self.timeout)))??;
        if connection.usable_for(&origin) {
            own.lock().get_or_insert(connection);
        }
        Ok(answer)
    }
}

impl Answer {
    fn new(parts: hyper::http::response::Parts, bytes: Bytes) -> Self {
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            bytes,
        }
    }
}

impl Call<'_> {
    /// The request for `uri` (absolute for a pooled client, a path on an own connection).
    fn request(&self, uri: hyper::Uri) -> Result<Request<Full<Bytes>>, LoadError> {
        let mut builder = Request::builder().method(self.method.clone()).uri(uri);
        if let Some(token) = self.token {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(key) = self.key {
            builder = builder.header(wire::IDEMPOTENCY_KEY, key);
        }
        let typed = self
            .extra_headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if self.body.is_some() && !typed {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in &self.extra_headers {
            builder = builder.header(*name, value);
        }
        builder
            .body(Full::new(Bytes::from(
                self.body.clone().unwrap_or_default(),
            )))
            .map_err(|e| self.failed(e))
    }

    fn failed(&self, reason: impl ToString) -> LoadError {
        LoadError::Http {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    /// Never sent: no connection could be made.
    fn not_connected(&self, error: &(dyn std::error::Error + 'static)) -> LoadError {
        LoadError::Connect {
            url: self.url.clone(),
            reason: format!("{error:?}"),
            refused: io_kind(error) == Some(std::io::ErrorKind::ConnectionRefused),
        }
    }

    /// Failed once sent (or, for `connecting`, while connecting): cut or otherwise.
    fn failed_under_way(
        &self,
        error: &(dyn std::error::Error + 'static),
        connecting: bool,
    ) -> LoadError {
        if connecting {
            self.not_connected(error)
        } else if was_cut(error) {
            LoadError::Reset {
                url: self.url.clone(),
                reason: error.to_string(),
            }
        } else {
            self.failed(format!("{error:?}"))
        }
    }
}

/// The kind of the first I/O error in `error`'s chain of causes.
fn io_kind(error: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cause = e.source();
    }
    None
}

/// Whether the connection was reset or closed under a request (by a peer that died or
/// stopped), rather than the request failing some other way.
fn was_cut(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    if matches!(
        io_kind(error),
        Some(ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof)
    ) {
        return true;
    }
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_canceled())
        {
            return true;
        }
        cause = e.source();
    }
    false
}
