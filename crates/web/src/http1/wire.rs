//! HTTP/1.1 on the wire, as pure functions over byte buffers: an address split into what a
//! connection needs, the pieces of a request head written straight into a reused buffer, and
//! an answer's head parsed with `httparse` into a fixed array of headers (no header map) with
//! its body's framing (length, chunked, until close). Kept apart from the sockets so that
//! answers split across reads, chunked bodies and odd framings are tested on bytes alone.

use std::mem::MaybeUninit;

/// Headers an answer may have; more is refused as malformed.
pub const MAX_HEADERS: usize = 64;
/// An answer's head larger than this is refused as malformed.
pub const MAX_HEAD: usize = 256 * 1024;
/// Where a request goes, borrowed from its address.
#[derive(Debug, PartialEq)]
pub struct Target<'a> {
    /// `scheme://authority`: the key of the idle connections that may serve it.
    pub origin: &'a str,
    pub tls: bool,
    /// `host[:port]` as written: the Host header.
    pub authority: &'a str,
    /// Without the brackets of an IPv6 address.
    pub host: &'a str,
    pub port: u16,
    /// Path and query, `/` when the address has none.
    pub path: &'a str,
}

/// Splits an `http://` or `https://` address.
pub fn target(url: &str) -> Result<Target<'_>, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err("not an http:// or https:// address".to_owned());
    };
    let end = rest
        .bytes()
        .position(|b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    let path = if end == rest.len() { "/" } else { &rest[end..] };
    if path.starts_with('?') {
        return Err("a query without a path".to_owned());
    }
    if authority.is_empty() || authority.bytes().any(|b| b == b'@') {
        return Err("no host, or credentials in the address".to_owned());
    }
    let (host, port) = split_authority(authority)?;
    if !visible(path.as_bytes(), false) {
        return Err("the path has spaces or control characters".to_owned());
    }
    Ok(Target {
        origin: &url[..url.len() - rest.len() + end],
        tls,
        authority,
        host,
        port: port.unwrap_or(if tls { 443 } else { 80 }),
        path,
    })
}

fn split_authority(authority: &str) -> Result<(&str, Option<u16>), String> {
    let bad_port = |_| "the port is not a number".to_owned();
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("an unclosed IPv6 address")?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port.parse().map_err(bad_port)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err("text after an IPv6 address".to_owned()),
        };
    }
    match authority.bytes().position(|b| b == b':') {
        Some(colon) => {
            let port = authority[colon + 1..].parse().map_err(bad_port)?;
            Ok((&authority[..colon], Some(port)))
        }
        None => Ok((authority, None)),
    }
}

/// Whether `bytes` has no ASCII control character: none of 0x00-0x1f and 0x7f (but tabs and
/// spaces when `blanks`), bytes past ASCII allowed. With `blanks`, what `http::HeaderValue`
/// accepts (never CR, LF or NUL); without, what a request target may hold besides bytes past
/// ASCII. Eight bytes at a time: a word with no byte below 0x21 (0x20 with `blanks`) nor
/// 0x7f passes at once, any other is looked at byte by byte.
pub fn visible(bytes: &[u8], blanks: bool) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let lowest: u8 = if blanks { 0x20 } else { 0x21 };
    let allowed = |b: &u8| (*b >= lowest || (blanks && *b == b'\t')) && *b != 0x7f;
    let mut words = bytes.chunks_exact(8);
    let clean = words.all(|word| {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        // Bytes below `lowest`, then bytes equal to 0x7f: never a false negative, and a
        // false positive only sends the word to the byte-by-byte check.
        let low = w.wrapping_sub(ONES * u64::from(lowest)) & !w & HIGH;
        let x = w ^ (ONES * 0x7f);
        let del = x.wrapping_sub(ONES) & !x & HIGH;
        low | del == 0 || word.iter().all(allowed)
    });
    clean && words.remainder().iter().all(allowed)
}

/// Whether a header name is an HTTP token.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Writes header `name` (a known good name, or one checked with `valid_name`) with the
/// parts of `value`, refusing a value HTTP does not allow.
pub fn header(out: &mut Vec<u8>, name: &str, value: &[&str]) -> Result<(), String> {
    if !value.iter().all(|v| visible(v.as_bytes(), true)) {
        return Err(format!(
            "header {name:?} has a character HTTP does not allow"
        ));
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for part in value {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `n` in decimal, written into `digits`.
pub fn decimal(mut n: usize, digits: &mut [u8; 20]) -> &str {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[at..]).unwrap_or("0")
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// An answer's head, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head, blank line included.
    pub len: usize,
    pub framing: Framing,
    /// Whether the connection may carry another request after this answer.
    pub keep_alive: bool,
    /// Where each header lies in the head, in order: whoever passes the headers on reads
    /// them from there instead of parsing the head a second time.
    pub headers: Vec<HeaderAt>,
}

/// Where one header of a head lies: its name's and its value's byte ranges (start, end) from
/// the head's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderAt {
    pub name: (usize, usize),
    pub value: (usize, usize),
}

impl HeaderAt {
    /// The header's name, in the `head` it was found in.
    pub fn name_in<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        &head[self.name.0..self.name.1]
    }

    /// The header's value, in the `head` it was found in.
    pub fn value_in<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        &head[self.value.0..self.value.1]
    }

    /// The ranges of `name` and `value`, pieces of `head`.
    fn of(head: &[u8], name: &[u8], value: &[u8]) -> HeaderAt {
        let at = |piece: &[u8]| {
            let start = piece.as_ptr() as usize - head.as_ptr() as usize;
            (start, start + piece.len())
        };
        HeaderAt {
            name: at(name),
            value: at(value),
        }
    }
}

impl Head {
    /// A 1xx other than 101: an interim answer, the real one follows.
    pub fn interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Parses the head at the start of `buf`: `None` while it is incomplete.
pub fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, String> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut headers,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(format!("an answer's head over {MAX_HEAD} bytes"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("a malformed answer: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let http10 = response.version == Some(0);
    let (mut length, mut chunked, mut coded) = (None, false, false);
    let (mut close, mut keep_alive_asked) = (false, false);
    let mut headers = Vec::with_capacity(response.headers.len());
    for h in response.headers.iter() {
        headers.push(HeaderAt::of(buf, h.name.as_bytes(), h.value));
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value)?;
            if length.is_some_and(|l| l != n) {
                return Err("two different content-length headers".to_owned());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            coded = true;
            chunked = last_token(h.value).eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_asked |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = match (no_body, chunked, coded, length) {
        (true, ..) => Framing::Empty,
        (_, true, ..) => Framing::Chunked,
        (_, _, true, _) => Framing::UntilClose,
        (_, _, _, Some(n)) => Framing::Length(n),
        _ => Framing::UntilClose,
    };
    let keep_alive = !close
        && (!http10 || keep_alive_asked)
        && framing != Framing::UntilClose
        // A length beside a transfer coding: the framing is suspect, use it once.
        && !(coded && length.is_some())
        && status != 101;
    Ok(Some(Head {
        status,
        len,
        framing,
        keep_alive,
        headers,
    }))
}

fn content_length(value: &[u8]) -> Result<u64, String> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err("a content-length that is not a number".to_owned());
    }
    Ok(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// A chunked body being decoded from a buffer that grows as it is read.
#[derive(Debug, Default)]
pub struct Chunked {
    /// Where in the buffer decoding goes on.
    pub pos: usize,
    state: ChunkState,
    pub body: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
    Done,
}

impl Chunked {
    /// Starts decoding at `pos` (just after the head).
    pub fn at(pos: usize) -> Self {
        Chunked {
            pos,
            ..Chunked::default()
        }
    }

    /// Decodes what `buf` holds from `pos` on: `true` once the body ended (`pos` is then
    /// just past it), `false` when more bytes are needed.
    pub fn advance(&mut self, buf: &[u8]) -> Result<bool, String> {
        loop {
            let rest = &buf[self.pos..];
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, 0))) => {
                        self.pos += used;
                        self.state = ChunkState::Trailers;
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.pos += used;
                        self.state = ChunkState::Data(size);
                    }
                    Ok(httparse::Status::Partial) => return Ok(false),
                    Err(_) => return Err("a malformed chunk size".to_owned()),
                },
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(false);
                    }
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.body.extend_from_slice(&rest[..take]);
                    self.pos += take;
                    let left = left - take as u64;
                    self.state = match left {
                        0 => ChunkState::DataEnd,
                        _ => ChunkState::Data(left),
                    };
                }
                ChunkState::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        self.pos += 2;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => return Ok(false),
                    _ => return Err("a chunk longer than its size".to_owned()),
                },
                ChunkState::Trailers => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        return Ok(false);
                    };
                    self.pos += end + 2;
                    if end == 0 {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(true),
            }
        }
    }
}

/// The value of the first header `name` of a parsed head (`headers`: where they lie in
/// `head`), when it is visible ASCII.
pub fn find_header<'a>(head: &'a [u8], headers: &[HeaderAt], name: &str) -> Option<&'a str> {
    let value = headers
        .iter()
        .find(|at| at.name_in(head).eq_ignore_ascii_case(name.as_bytes()))?
        .value_in(head);
    visible_ascii(value)
}

/// A header's value as text, when it is visible ASCII (tabs allowed).
fn visible_ascii(value: &[u8]) -> Option<&str> {
    let visible = value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    visible.then(|| std::str::from_utf8(value).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_split_into_origin_host_port_and_path() {
        let t = target("http://127.0.0.2:7401/api/v1/lobby?x=1").unwrap();
        assert_eq!(
            t,
            Target {
                origin: "http://127.0.0.2:7401",
                tls: false,
                authority: "127.0.0.2:7401",
                host: "127.0.0.2",
                port: 7401,
                path: "/api/v1/lobby?x=1",
            }
        );
        let t = target("https://[::1]").unwrap();
        assert_eq!((t.host, t.port, t.path, t.tls), ("::1", 443, "/", true));
        assert_eq!(
            target("https://localhost:8443").unwrap().origin,
            "https://localhost:8443"
        );
        for bad in [
            "ftp://x/",
            "http://",
            "http://a:b/",
            "http://h/a b",
            "http://u@h/",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn control_characters_are_found_wherever_they_are() {
        let clean = "Bearer abcdefghijklmnopqrstuvwxyz-ABC_0123456789.~+/= \u{e9}";
        assert!(visible(clean.as_bytes(), true));
        assert!(!visible(clean.as_bytes(), false));
        assert!(visible(b"a\tb", true) && !visible(b"a\tb", false));
        for at in 0..clean.len() {
            for bad in [0u8, b'\r', b'\n', 0x1f, 0x7f] {
                let mut bytes = clean.as_bytes().to_vec();
                bytes[at] = bad;
                assert!(!visible(&bytes, true), "{bad:#x} at {at}");
            }
        }
    }

    #[test]
    fn heads_give_status_framing_and_keep_alive() {
        let head = |text: &str, head_request| parse_head(text.as_bytes(), head_request).unwrap();
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{", false).unwrap();
        assert_eq!(
            (h.status, h.len, h.framing, h.keep_alive),
            (200, 39, Framing::Length(12), true)
        );
        assert_eq!(head("HTTP/1.1 200 OK\r\ncontent-len", false), None);
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        let h = head(
            "HTTP/1.1 503 No\r\nConnection: close\r\ncontent-length: 0\r\n\r\n",
            false,
        );
        assert!(!h.unwrap().keep_alive);
        let h = head("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", false).unwrap();
        assert!(!h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true).unwrap();
        assert_eq!(h.framing, Framing::Empty);
        let h = head("HTTP/1.1 100 Continue\r\n\r\n", false).unwrap();
        assert!(h.interim() && h.framing == Framing::Empty);
        let twice = "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n";
        assert!(parse_head(twice.as_bytes(), false).is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", false).is_err());
        assert!(parse_head(b"SMTP ready\r\n\r\n", false).is_err());
    }

    #[test]
    fn a_chunked_body_is_decoded_however_it_is_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let mut chunked = Chunked::at(0);
            let mut done = chunked.advance(&wire[..split]).unwrap();
            if !done {
                done = chunked.advance(wire).unwrap();
            }
            assert!(done, "split at {split}");
            assert_eq!(chunked.body, b"hello, world");
            assert_eq!(&wire[chunked.pos..], b"NEXT");
        }
        let mut chunked = Chunked::at(0);
        assert!(chunked.advance(b"2\r\nabc\r\n").is_err());
        assert!(Chunked::at(0).advance(b"zz\r\n").is_err());
    }

    #[test]
    fn a_header_is_found_in_a_kept_head() {
        let head = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nx-bin: \xff\r\n\r\n";
        let parsed = parse_head(head, false).unwrap().unwrap();
        let find = |name| find_header(head, &parsed.headers, name);
        assert_eq!(find("set-cookie"), Some("a=1"));
        assert_eq!(find("x-bin"), None);
        assert_eq!(find("x-none"), None);
    }

    #[test]
    fn a_parsed_head_says_where_each_header_lies() {
        let head = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nx-bin: \xff\r\n\r\n";
        let parsed = parse_head(head, false).unwrap().unwrap();
        let seen: Vec<(&[u8], &[u8])> = parsed
            .headers
            .iter()
            .map(|at| (at.name_in(head), at.value_in(head)))
            .collect();
        assert_eq!(
            seen,
            [
                (&b"Set-Cookie"[..], &b"a=1"[..]),
                (b"set-cookie", b"b=2"),
                (b"x-bin", b"\xff"),
            ]
        );
    }
}
