//! One keep-alive connection, plain TCP or TLS, driven inline by the task that sends on it:
//! the request leaves in one write, the answer is read into the connection's own buffer and
//! framed by `wire`. No connection task and no channel between the sender and its socket, so
//! a request costs one wake-up (its answer arriving), as in wrk.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::Received;
use super::wire::{self, Chunked, Framing, Target};
/// Room kept free in the read buffer for each read.
const READ_CHUNK: usize = 8 * 1024;
/// The read buffer's size. An answer is handed out as a piece of it (no copy), and the
/// buffer's room is taken back once no answer holds a piece of it any more.
const READ_BUFFER: usize = 32 * 1024;

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug)]
pub struct ConnectFailure {
    pub reason: String,
    /// Nothing listens there (the address answered with a reset).
    pub refused: bool,
}

/// Why an exchange failed.
#[derive(Debug)]
pub struct Failure {
    pub reason: String,
    /// The connection was reset or closed under the request.
    pub cut: bool,
    /// Not one byte of an answer came: on a connection that had been idle, the server may
    /// have closed it before the request arrived.
    pub unanswered: bool,
}

impl Failure {
    fn io(e: &io::Error, unanswered: bool) -> Self {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        Failure {
            reason: e.to_string(),
            cut: matches!(
                e.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ),
            unanswered,
        }
    }

    fn closed(unanswered: bool) -> Self {
        Failure {
            reason: "the connection closed before the answer was complete".to_owned(),
            cut: true,
            unanswered,
        }
    }

    fn malformed(reason: String) -> Self {
        Failure {
            reason,
            cut: false,
            unanswered: false,
        }
    }
}

/// A connection with its read and write buffers, kept between requests.
pub struct Conn {
    stream: Stream,
    read: BytesMut,
    pub write: Vec<u8>,
    /// When it was last put back idle.
    pub idle_since: Instant,
    /// The deadline of `exchange_until`, kept from one request to the next.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How to make a connection: from which source address (its port chosen by the system; the
/// default address when `None`), within how long, with which TLS for `https://`.
#[derive(Clone)]
pub struct Dial {
    pub local: Option<Ipv4Addr>,
    pub timeout: Duration,
    pub tls: TlsConnector,
}

/// Connects to `target` as `dial` says, then TLS for `https://`.
pub async fn connect(target: &Target<'_>, dial: &Dial) -> Result<Conn, ConnectFailure> {
    let tcp = tcp(target, dial.local, dial.timeout).await?;
    let tls = &dial.tls;
    let stream = if target.tls {
        let failed = |reason: String| ConnectFailure {
            reason,
            refused: false,
        };
        let name = rustls::pki_types::ServerName::try_from(target.host.to_owned())
            .map_err(|e| failed(e.to_string()))?;
        let tls = tls
            .connect(name, tcp)
            .await
            .map_err(|e| failed(format!("TLS: {e}")))?;
        Stream::Tls(Box::new(tls))
    } else {
        Stream::Plain(tcp)
    };
    Ok(Conn {
        stream,
        read: BytesMut::with_capacity(READ_BUFFER),
        write: Vec::with_capacity(512),
        idle_since: Instant::now(),
        timer: None,
    })
}

/// A TCP connection to `target`, from `local` when given, within `timeout` per address.
pub async fn tcp(
    target: &Target<'_>,
    local: Option<Ipv4Addr>,
    timeout: Duration,
) -> Result<TcpStream, ConnectFailure> {
    let failed = |e: io::Error| ConnectFailure {
        refused: e.kind() == io::ErrorKind::ConnectionRefused,
        reason: format!("tcp connect error: {e}"),
    };
    let addresses: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => tokio::net::lookup_host((target.host, target.port))
            .await
            .map_err(failed)?
            .collect(),
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for address in addresses {
        if local.is_some() && !address.is_ipv4() {
            continue;
        }
        let attempt = async {
            let socket = match address {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            if let Some(local) = local {
                socket.bind(SocketAddr::new(IpAddr::V4(local), 0))?;
            }
            let stream = socket.connect(address).await?;
            stream.set_nodelay(true)?;
            Ok::<_, io::Error>(stream)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = e,
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        }
    }
    Err(failed(last))
}

impl Conn {
    /// Whether the connection still looks usable after lying idle: nothing to read and not
    /// closed (a server closes idle keep-alive connections, and a draining one all of them).
    /// Costs no system call while the socket has not become readable.
    pub fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        matches!(
            Pin::new(&mut self.stream).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }

    /// Sends the request in `write` and reads its answer, refusing a body over `max_body`
    /// bytes on the wire: the answer, and whether the connection may carry another request.
    pub async fn exchange(
        &mut self,
        head_request: bool,
        max_body: usize,
    ) -> Result<(Received, bool), Failure> {
        self.read.clear();
        let sent = self.send().await;
        match self.receive(head_request, max_body).await {
            Ok(done) => Ok((done.0, done.1 && sent.is_ok())),
            // A server may answer before reading a whole body (413) and close: its answer
            // counts; without one, the failed write is what happened.
            Err(failure) => Err(match sent {
                Err(e) => Failure::io(&e, failure.unanswered),
                Ok(()) => failure,
            }),
        }
    }

    /// `exchange`, given up at `deadline`: `None` when no whole answer came by then (the
    /// connection is then unfit for another request). The connection keeps one timer for all
    /// its requests and moves it on for each: pushed later, a set timer takes an atomic store,
    /// where a timer of its own per request takes the runtime's timer wheel's lock to be set
    /// and again to be cleared (wrk, likewise, sweeps its connections for late answers rather
    /// than arming a timer per request).
    pub async fn exchange_until(
        &mut self,
        deadline: Instant,
        head_request: bool,
        max_body: usize,
    ) -> Option<Result<(Received, bool), Failure>> {
        let mut timer = match self.timer.take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline.into());
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline.into())),
        };
        let answer = tokio::select! {
            biased;
            answer = self.exchange(head_request, max_body) => Some(answer),
            () = &mut timer => None,
        };
        self.timer = Some(timer);
        answer
    }

    async fn send(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.write).await?;
        self.stream.flush().await
    }

    /// Reads more into the buffer; `false` at the end of the stream.
    async fn fill(&mut self) -> Result<bool, Failure> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 2 {
            // Takes the buffer's room back when no answer holds a piece of it.
            self.read.reserve(READ_CHUNK);
        }
        let unanswered = self.read.is_empty();
        match self.stream.read_buf(&mut self.read).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(Failure::io(&e, unanswered)),
        }
    }

    /// Refuses a body whose bytes read so far (from `body_at`) pass `max_body`.
    fn check_body_size(&self, body_at: usize, max_body: usize) -> Result<(), Failure> {
        let read = self.read.len().saturating_sub(body_at);
        if read > max_body {
            return Err(body_too_large(&format!("more than {read}"), max_body));
        }
        Ok(())
    }

    async fn receive(
        &mut self,
        head_request: bool,
        max_body: usize,
    ) -> Result<(Received, bool), Failure> {
        let mut start = 0;
        let head = loop {
            let parsed =
                wire::parse_head(&self.read[start..], head_request).map_err(Failure::malformed)?;
            match parsed {
                Some(head) if head.interim() => start += head.len,
                Some(head) => break head,
                None => {
                    if !self.fill().await? {
                        return Err(Failure::closed(self.read.is_empty()));
                    }
                }
            }
        };
        let body_at = start + head.len;
        let (end, decoded) = match head.framing {
            Framing::Empty => (body_at, None),
            Framing::Length(n) => {
                let end = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= max_body)
                    .and_then(|n| body_at.checked_add(n))
                    .ok_or_else(|| body_too_large(&n.to_string(), max_body))?;
                while self.read.len() < end {
                    if !self.fill().await? {
                        return Err(Failure::closed(false));
                    }
                }
                (end, None)
            }
            Framing::Chunked => {
                let mut chunked = Chunked::at(body_at);
                while !chunked.advance(&self.read).map_err(Failure::malformed)? {
                    self.check_body_size(body_at, max_body)?;
                    if !self.fill().await? {
                        return Err(Failure::closed(false));
                    }
                }
                (chunked.pos, Some(chunked.body))
            }
            Framing::UntilClose => {
                while self.fill().await? {
                    self.check_body_size(body_at, max_body)?;
                }
                (self.read.len(), None)
            }
        };
        // Bytes past the answer were never asked for: the connection is not trusted again.
        let reusable = head.keep_alive && end == self.read.len();
        let mut message = self.read.split_to(end);
        message.advance(start);
        let head_len = body_at - start;
        let message = match decoded {
            None => message.freeze(),
            Some(body) => {
                message.truncate(head_len);
                message.extend_from_slice(&body);
                message.freeze()
            }
        };
        let answer = Received {
            status: head.status,
            head: message.slice(..head_len),
            headers: head.headers,
            body: message.slice(head_len..),
        };
        Ok((answer, reusable))
    }
}

fn body_too_large(size: &str, max_body: usize) -> Failure {
    Failure::malformed(format!(
        "an answer's body of {size} bytes, over the {max_body} this client reads"
    ))
}

/// The TLS connector of `config`, speaking HTTP/1.1 (ALPN) as hyper's connector did.
pub fn tls_connector(config: &rustls::ClientConfig) -> TlsConnector {
    let mut config = config.clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}
