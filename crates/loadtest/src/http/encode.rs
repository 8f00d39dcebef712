//! A simulated player's call written as an HTTP/1.1 request, straight into its connection's
//! reused buffer with the shared `wire` helpers; a request the connection holds already (a
//! player reading the lobby again) is kept as it is.

use croupier_web::http1::wire::{Target, decimal, header, valid_name};

use super::Call;

/// Writes `call`'s request for `target` into `out`: the head (Host, token, idempotency key,
/// the JSON content type unless the call sets its own, extra headers, the body's length) and
/// the body, so that it leaves in one write. When `out` holds the same request already (a
/// player reading the lobby again on its connection), it is kept as it is.
pub(super) fn encode(
    out: &mut Vec<u8>,
    call: &Call<'_>,
    target: &Target<'_>,
) -> Result<(), String> {
    if holds(out, call, target) {
        return Ok(());
    }
    out.clear();
    out.extend_from_slice(call.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    header(out, "host", &[target.authority])?;
    if let Some(token) = call.token {
        header(out, "authorization", &["Bearer ", token])?;
    }
    if let Some(key) = call.key {
        header(out, croupier_web::wire::IDEMPOTENCY_KEY.as_str(), &[key])?;
    }
    let typed = call
        .extra_headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if call.body.is_some() && !typed {
        header(out, "content-type", &["application/json"])?;
    }
    for (name, value) in &call.extra_headers {
        if !valid_name(name) {
            return Err(format!("{name:?} is not a header name"));
        }
        header(out, name, &[value])?;
    }
    let body = call.body.as_deref().unwrap_or_default();
    let carries_body = matches!(call.method.as_str(), "POST" | "PUT" | "PATCH");
    if !body.is_empty() || carries_body {
        let mut digits = [0u8; 20];
        header(out, "content-length", &[decimal(body.len(), &mut digits)])?;
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(())
}

/// Whether `out` is `call`'s request for `target` as `encode` writes it, for a request with
/// nothing but a method without body, a path and perhaps a token.
fn holds(out: &[u8], call: &Call<'_>, target: &Target<'_>) -> bool {
    let plain = call.key.is_none() && call.body.is_none() && call.extra_headers.is_empty();
    if !plain || matches!(call.method.as_str(), "POST" | "PUT" | "PATCH") {
        return false;
    }
    let token: [&[u8]; 3] = match call.token {
        Some(token) => [b"authorization: Bearer ", token.as_bytes(), b"\r\n"],
        None => [b"", b"", b""],
    };
    let parts = [
        call.method.as_str().as_bytes(),
        b" ",
        target.path.as_bytes(),
        b" HTTP/1.1\r\nhost: ",
        target.authority.as_bytes(),
        b"\r\n",
    ]
    .into_iter()
    .chain(token)
    .chain([b"\r\n".as_slice()]);
    let mut rest = out;
    for part in parts {
        match rest.strip_prefix(part) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use croupier_web::http1::wire::target;
    use hyper::Method;

    #[test]
    fn a_request_is_written_with_its_token_key_type_and_length() {
        let call = Call::post(
            "http://127.0.0.1:8000/api/v1/rounds",
            &serde_json::json!({"a": 1}),
        )
        .token("tok")
        .key("k-1");
        let mut out = vec![b'x'; 3];
        encode(&mut out, &call, &target(&call.url).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /api/v1/rounds HTTP/1.1\r\nhost: 127.0.0.1:8000\r\nauthorization: Bearer tok\r\n\
             idempotency-key: k-1\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
        );
        let mut get = Call::get("http://h/x");
        get.extra_headers.push(("x-a", "b".into()));
        let mut out = Vec::new();
        encode(&mut out, &get, &target(&get.url).unwrap()).unwrap();
        assert_eq!(out, b"GET /x HTTP/1.1\r\nhost: h\r\nx-a: b\r\n\r\n");
        let mut put = Call::get("http://h/x");
        put.method = Method::PUT;
        encode(&mut out, &put, &target(&put.url).unwrap()).unwrap();
        assert!(out.ends_with(b"content-length: 0\r\n\r\n"));
    }

    #[test]
    fn a_request_written_again_is_the_same_as_written_anew() {
        let lobby = |token| Call::get("http://127.0.0.1:8000/api/v1/lobby").token(token);
        let mut other_path = lobby("a");
        other_path.url = "http://127.0.0.1:8000/api/v1/wallet".to_owned();
        let mut head = lobby("a");
        head.method = Method::HEAD;
        let mut put = lobby("a");
        put.method = Method::PUT;
        let calls = [
            lobby("a"),
            lobby("a"),
            lobby("ab"),
            lobby("a"),
            Call::get("http://127.0.0.1:8000/api/v1/lobby"),
            Call::get("http://127.0.0.1:8000/api/v1/lobby"),
            lobby("a").key("k"),
            lobby("a"),
            other_path,
            head,
            put,
            Call::post("http://127.0.0.1:8000/api/v1/lobby", &serde_json::json!({})).token("a"),
            lobby("a"),
        ];
        let mut reused = Vec::new();
        for call in &calls {
            let target = target(&call.url).unwrap();
            let mut fresh = Vec::new();
            encode(&mut fresh, call, &target).unwrap();
            encode(&mut reused, call, &target).unwrap();
            assert_eq!(reused, fresh, "{}", String::from_utf8_lossy(&fresh));
        }
    }

    #[test]
    fn header_injection_is_refused() {
        let call = Call::get("http://h/").token("a\r\nx-evil: 1");
        assert!(encode(&mut Vec::new(), &call, &target(&call.url).unwrap()).is_err());
        let mut call = Call::get("http://h/");
        call.extra_headers.push(("bad name", "v".into()));
        assert!(encode(&mut Vec::new(), &call, &target(&call.url).unwrap()).is_err());
    }
}
