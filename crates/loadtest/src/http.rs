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

    /// The body read as `T` (a `croupier_web::wire` type), if it is one.
    pub fn read<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.bytes).ok()
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
}

#[derive(Clone)]
pub struct HttpClient {
    lanes: Vec<Pooled>,
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
        let lanes = (0..source_addresses.max(1))
            .map(|i| {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(Duration::from_secs(2)));
                if source_addresses > 1 {
                    connector.set_local_address(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i + 1))));
                }
                let connector = croupier_web::tls::https_connector(connector, config.clone());
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .pool_max_idle_per_host(1024)
                    .build(connector)
            })
            .collect();
        Ok(HttpClient {
            lanes,
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
        let fail = |reason: String| LoadError::Http {
            url: call.url.clone(),
            reason,
        };
        let request = call.request().map_err(|e| fail(e.to_string()))?;
        let client = &self.lanes[lane % self.lanes.len()];
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| request_error(&call.url, e))?;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| {
                    if was_cut(&e) {
                        LoadError::Reset {
                            url: call.url.clone(),
                            reason: e.to_string(),
                        }
                    } else {
                        fail(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                bytes,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))?
    }
}

impl Call<'_> {
    /// The HTTP request: token, idempotency key, JSON content type unless the call sets its
    /// own, extra headers, body.
    fn request(&self) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(&self.url);
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
        builder.body(Full::new(Bytes::from(
            self.body.clone().unwrap_or_default(),
        )))
    }
}

/// A request that got no answer: a refused or failed connection, a cut, or another failure.
fn request_error(url: &str, e: hyper_util::client::legacy::Error) -> LoadError {
    let (url, reason) = (url.to_owned(), format!("{e:?}"));
    if e.is_connect() {
        let refused = io_kind(&e) == Some(std::io::ErrorKind::ConnectionRefused);
        LoadError::Connect {
            url,
            reason,
            refused,
        }
    } else if was_cut(&e) {
        LoadError::Reset { url, reason }
    } else {
        LoadError::Http { url, reason }
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
