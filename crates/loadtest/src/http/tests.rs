//! The client against scripted servers: answers split across reads, chunked bodies,
//! `Connection: close`, idle connections closed by the server, and what may be sent twice.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Call, HttpClient};
use crate::LoadError;

/// What the server does with the `n`-th request of its `c`-th connection (both from 0).
#[derive(Clone)]
enum Reply {
    /// Writes these pieces, pausing between them.
    Pieces(Vec<&'static [u8]>),
    /// Writes these bytes and closes.
    ThenClose(&'static [u8]),
    /// Closes without a word.
    Close,
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// What a scripted server saw: each request as "connection method path".
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<String>>,
}

impl Seen {
    fn requests(&self) -> Vec<String> {
        self.requests.lock().clone()
    }
}

/// A server on a free loopback port answering as `script` says; its address and log.
async fn server(
    script: impl Fn(usize, usize) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let (script, log) = (Arc::new(script), seen.clone());
    tokio::spawn(async move {
        for c in 0.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (script, log) = (script.clone(), log.clone());
            tokio::spawn(async move { serve_connection(stream, c, &*script, &log).await });
        }
    });
    (url, seen)
}

async fn serve_connection(
    mut stream: TcpStream,
    c: usize,
    script: &(dyn Fn(usize, usize) -> Reply + Send + Sync),
    seen: &Seen,
) {
    let mut buf = Vec::new();
    for n in 0.. {
        let Some(line) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        seen.requests.lock().push(format!("{c} {line}"));
        match script(c, n) {
            Reply::Pieces(pieces) => {
                for piece in pieces {
                    stream.write_all(piece).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            }
            Reply::ThenClose(bytes) => {
                let _ = stream.write_all(bytes).await;
                return;
            }
            Reply::Close => return,
        }
    }
}

/// Reads one request (head and content-length body): its "METHOD path".
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.parse::<usize>().unwrap());
            if buf.len() >= end + 4 + length {
                buf.drain(..end + 4 + length);
                let line = head.lines().next().unwrap_or_default();
                return Some(line.trim_end_matches(" HTTP/1.1").to_owned());
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn client() -> HttpClient {
    HttpClient::new(1, Duration::from_secs(2)).unwrap()
}

#[tokio::test]
async fn an_answer_split_across_reads_is_put_together() {
    let (url, _) = server(|_, _| {
        Reply::Pieces(vec![
            b"HTTP/1.1 201 Created\r\nx-a",
            b"nswer: split\r\ncontent-length: 10\r\n",
            b"\r\n{\"a\":",
            b" 1}\r\n",
        ])
    })
    .await;
    let answer = client()
        .send(0, Call::get(format!("{url}/x")))
        .await
        .unwrap();
    assert_eq!(answer.status, 201);
    assert_eq!(answer.header("X-Answer"), Some("split"));
    assert_eq!(answer.json(), json!({"a": 1}));
}

#[tokio::test]
async fn a_chunked_body_is_decoded_and_the_connection_kept() {
    let (url, seen) = server(|_, _| {
        Reply::Pieces(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n",
            b"3\r\n: 2\r\n1\r\n}\r\n0\r\n\r\n",
        ])
    })
    .await;
    let http = client();
    for _ in 0..2 {
        let answer = http.send(0, Call::get(format!("{url}/c"))).await.unwrap();
        assert_eq!(answer.json(), json!({"a": 2}));
    }
    assert_eq!(seen.requests(), ["0 GET /c", "0 GET /c"]);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let (url, seen) = server(|_, _| {
        Reply::ThenClose(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
    })
    .await;
    let http = client();
    for _ in 0..3 {
        let answer = http.send(0, Call::get(format!("{url}/"))).await.unwrap();
        assert_eq!(answer.bytes, "ok");
    }
    assert_eq!(seen.requests(), ["0 GET /", "1 GET /", "2 GET /"]);
}

#[tokio::test]
async fn a_body_without_length_ends_with_the_connection() {
    let (url, seen) = server(|_, _| Reply::ThenClose(b"HTTP/1.1 200 OK\r\n\r\nall of it")).await;
    let http = client();
    for _ in 0..2 {
        let answer = http.send(0, Call::get(format!("{url}/"))).await.unwrap();
        assert_eq!(answer.bytes, "all of it");
    }
    assert_eq!(seen.requests().len(), 2);
}

#[tokio::test]
async fn an_idle_connection_the_server_closed_is_not_used() {
    // The server closes each connection right after its first answer, saying nothing.
    let (url, seen) = server(|_, _| Reply::ThenClose(OK)).await;
    let http = client();
    let sign_in = || Call::post(format!("{url}/s"), &json!({}));
    http.send(0, sign_in()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A request that may not be sent twice looks at the idle connection first.
    assert_eq!(http.send(0, sign_in()).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // One that may is sent at once, and again on a new connection when nothing came back.
    assert_eq!(
        http.send(0, Call::get(format!("{url}/g")))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(seen.requests(), ["0 POST /s", "1 POST /s", "2 GET /g"]);
}

/// A server that answers each connection's first request, then reads the next and closes
/// without answering: the race of a server closing an idle connection as a request arrives.
async fn closing_after_one() -> (String, Arc<Seen>) {
    server(|_, n| match n {
        0 => Reply::Pieces(vec![OK]),
        _ => Reply::Close,
    })
    .await
}

#[tokio::test]
async fn a_replayable_request_cut_before_any_answer_goes_again_on_a_new_connection() {
    let (url, seen) = closing_after_one().await;
    let http = client();
    http.send(0, Call::get(format!("{url}/a"))).await.unwrap();
    let get = http.send(0, Call::get(format!("{url}/b"))).await.unwrap();
    assert_eq!(get.status, 200);
    let keyed = Call::post(format!("{url}/bet"), &json!({})).key("k1");
    assert_eq!(http.send(0, keyed).await.unwrap().status, 200);
    assert_eq!(
        seen.requests(),
        [
            "0 GET /a",
            "0 GET /b",
            "1 GET /b",
            "1 POST /bet",
            "2 POST /bet"
        ]
    );
}

#[tokio::test]
async fn a_post_without_key_cut_before_any_answer_is_not_sent_again() {
    let (url, seen) = closing_after_one().await;
    let http = client();
    http.send(0, Call::get(format!("{url}/a"))).await.unwrap();
    // Sent at once: the connection is still open when the request leaves.
    let result = http
        .send(0, Call::post(format!("{url}/s"), &json!({})))
        .await;
    assert!(matches!(result, Err(LoadError::Reset { .. })), "{result:?}");
    assert_eq!(seen.requests(), ["0 GET /a", "0 POST /s"]);
}

#[tokio::test]
async fn failures_are_told_apart() {
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = format!("http://{}/", free.local_addr().unwrap());
    drop(free);
    let http = client();
    let refused = http.send(0, Call::get(closed)).await;
    assert!(
        matches!(refused, Err(LoadError::Connect { refused: true, .. })),
        "{refused:?}"
    );
    let (url, _) =
        server(|_, _| Reply::ThenClose(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\npart")).await;
    let cut = http.send(0, Call::get(format!("{url}/"))).await;
    assert!(matches!(cut, Err(LoadError::Reset { .. })), "{cut:?}");
    let (url, _) = server(|_, _| Reply::Pieces(vec![b"HTTP/1.1 200 OK\r\n"])).await;
    let slow = HttpClient::new(1, Duration::from_millis(200)).unwrap();
    let late = slow.send(0, Call::get(format!("{url}/"))).await;
    assert!(matches!(late, Err(LoadError::Http { .. })), "{late:?}");
    let (url, _) = server(|_, _| Reply::ThenClose(b"SMTP ready\r\n\r\n")).await;
    let odd = http.send(0, Call::get(format!("{url}/"))).await;
    assert!(matches!(odd, Err(LoadError::Http { .. })), "{odd:?}");
}

#[tokio::test]
async fn an_early_answer_to_a_large_body_is_read() {
    // The server answers 413 on seeing the head and closes with the body unread.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/big", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = vec![0u8; 1024];
        let _ = stream.read(&mut head).await;
        let _ = stream
            .write_all(b"HTTP/1.1 413 Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
            .await;
    });
    let mut call = Call::post(url, &json!({})).key("big");
    call.body = Some(vec![b'x'; 8 << 20]);
    let answer = client().send(0, call).await.unwrap();
    assert_eq!(answer.status, 413);
}

#[tokio::test]
async fn each_lane_leaves_from_its_own_loopback_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = peers.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, peer)) = listener.accept().await {
            seen.lock().push(peer.ip().to_string());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while read_request(&mut stream, &mut buf).await.is_some() {
                    stream.write_all(OK).await.unwrap();
                }
            });
        }
    });
    let http = HttpClient::new(3, Duration::from_secs(2)).unwrap();
    for lane in [0, 1, 2, 3, 1] {
        http.send(lane, Call::get(&url)).await.unwrap();
    }
    // Lane 3 is lane 0 again, and each lane's connection is kept for its next request.
    assert_eq!(*peers.lock(), ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
}

/// A player's WebSocket leaves from their lane's address too. Before, every socket left from
/// 127.0.0.1, so a run of more than 256 players met the gateway's WebSockets-per-address
/// cap on one address while its requests were spread over sixteen: thousands of refused
/// handshakes and reconnects in every stack benchmark.
#[tokio::test]
async fn a_lane_s_raw_connections_leave_from_its_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let http = HttpClient::new(3, Duration::from_secs(2)).unwrap();
    for (lane, address) in [(1, "127.0.0.2"), (2, "127.0.0.3"), (3, "127.0.0.1")] {
        let _open = http.tcp(lane, &url).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip().to_string(), address);
    }
}

/// A server that answers its first request with `head`, then writes `piece` over and over
/// until the client goes away (or 256 MiB, so the test ends by itself); the bytes it wrote.
async fn endless(head: &'static [u8], piece: Vec<u8>) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let written = Arc::new(Mutex::new(0));
    let count = written.clone();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        read_request(&mut stream, &mut buf).await;
        let _ = stream.write_all(head).await;
        while *count.lock() < 256 << 20 {
            if stream.write_all(&piece).await.is_err() {
                return;
            }
            *count.lock() += piece.len();
        }
    });
    (url, written)
}

/// The most a loopback socket's buffer may grow to here (the third figure of
/// `/proc/sys/net/ipv4/{name}`): what the server wrote includes what sits in both kernels'
/// buffers, never read by the client.
fn tcp_buffer_max(name: &str) -> usize {
    let figures = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
    figures.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// An answer whose body would pass `MAX_BODY` fails as malformed: announced (refused before
/// a byte of it is read), chunked or until the connection closes (refused once that much has
/// come); the generator never holds more than about that much of it.
#[tokio::test]
async fn a_body_too_large_is_refused_before_it_is_held() {
    let piece = vec![b'x'; 64 * 1024];
    let chunk = [&b"10000\r\n"[..], &piece, b"\r\n"].concat();
    let announced = b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n";
    let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
    let until_close = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n";
    for (what, head, piece) in [
        ("announced", &announced[..], piece.clone()),
        ("chunked", &chunked[..], chunk),
        ("until close", &until_close[..], piece),
    ] {
        let (url, written) = endless(head, piece).await;
        let result = client().send(0, Call::get(url)).await;
        assert!(
            matches!(&result, Err(LoadError::Http { reason, .. }) if reason.contains("over the")),
            "{what}: {result:?}"
        );
        let sent = *written.lock();
        let held_by_kernels = tcp_buffer_max("tcp_rmem") + tcp_buffer_max("tcp_wmem");
        assert!(
            sent < super::MAX_BODY + held_by_kernels + (1 << 20),
            "{what}: the server wrote {sent} bytes before the client gave up"
        );
    }
}

/// The connection's one timer is moved on for each request: a request's deadline is its own,
/// whether the last request's deadline is still ahead (the timer pushed later) or passed while
/// the connection lay idle (the timer fired unseen and is set again).
#[tokio::test]
async fn each_request_on_a_kept_connection_has_its_own_deadline() {
    let stall = b"HTTP/1.1 200 OK\r\n".as_slice();
    let (url, seen) =
        server(move |_, n| Reply::Pieces(vec![if n == 0 { OK } else { stall }])).await;
    let http = HttpClient::new(1, Duration::from_millis(300)).unwrap();
    let timed_out_after = |idle: Duration| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            assert!(
                http.send(0, Call::get(format!("{url}/fast")))
                    .await
                    .unwrap()
                    .is_success()
            );
            tokio::time::sleep(idle).await;
            let asked = std::time::Instant::now();
            let late = http.send(0, Call::get(format!("{url}/stalled"))).await;
            assert!(matches!(late, Err(LoadError::Http { .. })), "{late:?}");
            asked.elapsed()
        }
    };
    let pending = timed_out_after(Duration::from_millis(200)).await;
    let fired = timed_out_after(Duration::from_millis(400)).await;
    for waited in [pending, fired] {
        assert!(
            waited >= Duration::from_millis(290) && waited < Duration::from_secs(1),
            "{waited:?}"
        );
    }
    let on_one_connection_each = [
        "0 GET /fast",
        "0 GET /stalled",
        "1 GET /fast",
        "1 GET /stalled",
    ];
    assert_eq!(seen.requests(), on_one_connection_each);
}
