//! The opening handshake (RFC 6455 §4): key/accept computation, validation of a client's
//! upgrade request and the server's 101 response; for clients, the request and the checks
//! of the server's response.
//!
//! This module works on header values, not on sockets or on a particular HTTP parser:
//! pass a lookup function from header name (case-insensitive) to value.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

use crate::http::date::ImfFixdate;
use crate::http::response;

/// The GUID that RFC 6455 §1.3 appends to the key.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
///
/// ```
/// use wsreactor::proto::handshake::accept_key;
/// // the example of RFC 6455 §1.3
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID.as_bytes());
    STANDARD.encode(h.finalize())
}

/// Why an upgrade request was refused, with the HTTP status to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a GET (405).
    Method,
    /// Not HTTP/1.1 or later (400).
    HttpVersion,
    /// No `Upgrade: websocket` token (400).
    Upgrade,
    /// No `Connection: Upgrade` token (400).
    Connection,
    /// `Sec-WebSocket-Version` absent or not 13 (426, with `Sec-WebSocket-Version: 13`).
    Version,
    /// `Sec-WebSocket-Key` absent or not the base64 of 16 bytes (400).
    Key,
    /// `Host` absent (400).
    Host,
}

impl HandshakeError {
    /// The HTTP status code for the refusal.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::Method => 405,
            HandshakeError::Version => 426,
            _ => 400,
        }
    }

    /// A short explanation.
    pub fn reason(self) -> &'static str {
        match self {
            HandshakeError::Method => "WebSocket upgrade must use GET",
            HandshakeError::HttpVersion => "WebSocket upgrade needs HTTP/1.1",
            HandshakeError::Upgrade => "missing Upgrade: websocket",
            HandshakeError::Connection => "missing Connection: Upgrade",
            HandshakeError::Version => "unsupported Sec-WebSocket-Version (13 only)",
            HandshakeError::Key => "missing or malformed Sec-WebSocket-Key",
            HandshakeError::Host => "missing Host",
        }
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HandshakeError {}

/// True if the comma-separated header value contains `token` (ASCII case-insensitive).
///
/// ```
/// use wsreactor::proto::handshake::has_token;
/// assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
/// assert!(!has_token(b"upgraded", "upgrade"));
/// ```
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Iterates the sub-protocols offered in a `Sec-WebSocket-Protocol` value, in order.
pub fn offered_protocols(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Validates a client's upgrade request.
///
/// `header` looks a header up by name, case-insensitively, and returns its value.
/// On success, returns the `Sec-WebSocket-Key` to answer.
pub fn validate_request<'h>(
    method: &str,
    http_minor: u8,
    header: impl Fn(&str) -> Option<&'h [u8]>,
) -> Result<&'h [u8], HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::Method);
    }
    if http_minor < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    if header("host").is_none() {
        return Err(HandshakeError::Host);
    }
    if !header("upgrade").is_some_and(|v| has_token(v, "websocket")) {
        return Err(HandshakeError::Upgrade);
    }
    if !header("connection").is_some_and(|v| has_token(v, "upgrade")) {
        return Err(HandshakeError::Connection);
    }
    if header("sec-websocket-version").map(|v| v.trim_ascii()) != Some(b"13") {
        return Err(HandshakeError::Version);
    }
    let key = header("sec-websocket-key")
        .ok_or(HandshakeError::Key)?
        .trim_ascii();
    match STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => Ok(key),
        _ => Err(HandshakeError::Key),
    }
}

/// Appends the `101 Switching Protocols` response for `key` to `out`, through the one HTTP
/// head writer ([`crate::http::response`]): status line, `Date` (when `date` is given),
/// `Server`, `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, then
/// `Sec-WebSocket-Protocol` if `protocol` is given, then `extra` fields in order.
///
/// Field lines that could split the response (control bytes, a name that is not a token)
/// are dropped, as for every head that module writes.
///
/// ```
/// use wsreactor::http::DateCache;
/// use wsreactor::proto::handshake::write_response;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let mut dates = DateCache::new();
/// let date = dates.at(UNIX_EPOCH + Duration::from_secs(784_111_777));
/// let mut out = Vec::new();
/// write_response(&mut out, b"dGhlIHNhbXBsZSBub25jZQ==", Some("chat"), &[], Some(date));
/// assert_eq!(
///     String::from_utf8(out).unwrap(),
///     "HTTP/1.1 101 Switching Protocols\r\n\
///      Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
///      Server: wsreactor\r\n\
///      Upgrade: websocket\r\n\
///      Connection: Upgrade\r\n\
///      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
///      Sec-WebSocket-Protocol: chat\r\n\r\n"
/// );
/// ```
pub fn write_response(
    out: &mut Vec<u8>,
    key: &[u8],
    protocol: Option<&str>,
    extra: &[(&str, &str)],
    date: Option<&ImfFixdate>,
) {
    response::write_head_start(out, 101, date);
    response::write_header(out, "Upgrade", "websocket");
    response::write_header(out, "Connection", "Upgrade");
    response::write_header(out, "Sec-WebSocket-Accept", &accept_key(key));
    if let Some(p) = protocol {
        response::write_header(out, "Sec-WebSocket-Protocol", p);
    }
    for (name, value) in extra {
        response::write_header(out, name, value);
    }
    response::write_head_end(out, 101, None, true);
}

/// A fresh random `Sec-WebSocket-Key` for a client request, from 16 bytes of randomness.
pub fn client_key(random: [u8; 16]) -> String {
    STANDARD.encode(random)
}

/// Appends a client's opening handshake (RFC 6455 §4.1): `GET path`, `Host`, the upgrade
/// fields with `key`, `Origin` and `Sec-WebSocket-Protocol` when given, then `extra` fields
/// (cookies, authorization). Fields holding CR or LF are dropped, as in responses.
///
/// ```
/// use wsreactor::proto::handshake::write_request;
/// let mut out = Vec::new();
/// write_request(&mut out, "/chat?x=1", "example.com:8080", Some("http://example.com"),
///               Some("chat"), "dGhlIHNhbXBsZSBub25jZQ==", &[]);
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n"));
/// assert!(text.ends_with("Sec-WebSocket-Protocol: chat\r\n\r\n"));
/// ```
pub fn write_request(
    out: &mut Vec<u8>,
    path: &str,
    host: &str,
    origin: Option<&str>,
    protocols: Option<&str>,
    key: &str,
    extra: &[(&str, &str)],
) {
    let path = if path.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        "/"
    } else {
        path
    };
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    response::write_header(out, "Host", host);
    response::write_header(out, "Upgrade", "websocket");
    response::write_header(out, "Connection", "Upgrade");
    response::write_header(out, "Sec-WebSocket-Key", key);
    response::write_header(out, "Sec-WebSocket-Version", "13");
    if let Some(o) = origin {
        response::write_header(out, "Origin", o);
    }
    if let Some(p) = protocols.filter(|p| !p.is_empty()) {
        response::write_header(out, "Sec-WebSocket-Protocol", p);
    }
    for (name, value) in extra {
        response::write_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// Why a server's handshake response was refused by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// The status was not 101 (the status is given).
    Status(u16),
    /// No `Upgrade: websocket`.
    Upgrade,
    /// No `Connection: Upgrade`.
    Connection,
    /// `Sec-WebSocket-Accept` missing or not the one for our key.
    Accept,
    /// The server chose a sub-protocol we did not offer (or chose one when we offered none).
    Protocol(String),
    /// The server named an extension we did not offer.
    Extension(String),
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseError::Status(s) => write!(f, "the server answered {s}, not 101"),
            ResponseError::Upgrade => f.write_str("no Upgrade: websocket in the response"),
            ResponseError::Connection => f.write_str("no Connection: Upgrade in the response"),
            ResponseError::Accept => f.write_str("Sec-WebSocket-Accept does not match our key"),
            ResponseError::Protocol(p) => {
                write!(f, "the server chose sub-protocol {p:?}, which we did not offer")
            }
            ResponseError::Extension(e) => {
                write!(f, "the server named extension {e:?}, which we did not offer")
            }
        }
    }
}

impl std::error::Error for ResponseError {}

/// Checks a server's response to our handshake (RFC 6455 §4.1, the client's checks): status
/// 101, the upgrade tokens, the accept key for `key`, a sub-protocol among `offered` (a
/// comma-separated list, or `None`), and no extension (none are offered). Returns the
/// sub-protocol the server chose. `lookup` gives a header's values joined by commas.
pub fn validate_response<'h>(
    status: u16,
    key: &str,
    offered: Option<&str>,
    lookup: impl Fn(&str) -> Option<&'h [u8]>,
) -> Result<Option<String>, ResponseError> {
    if status != 101 {
        return Err(ResponseError::Status(status));
    }
    if !lookup("upgrade").is_some_and(|v| has_token(v, "websocket")) {
        return Err(ResponseError::Upgrade);
    }
    if !lookup("connection").is_some_and(|v| has_token(v, "upgrade")) {
        return Err(ResponseError::Connection);
    }
    let want = accept_key(key.as_bytes());
    if lookup("sec-websocket-accept").map(|v| v.trim_ascii()) != Some(want.as_bytes()) {
        return Err(ResponseError::Accept);
    }
    if let Some(ext) = lookup("sec-websocket-extensions").filter(|v| !v.trim_ascii().is_empty()) {
        return Err(ResponseError::Extension(
            String::from_utf8_lossy(ext).into_owned(),
        ));
    }
    match lookup("sec-websocket-protocol").map(|v| String::from_utf8_lossy(v.trim_ascii()).into_owned()) {
        None => Ok(None),
        Some(p) if offered.is_some_and(|o| offered_protocols(o).any(|x| x == p)) => Ok(Some(p)),
        Some(p) => Err(ResponseError::Protocol(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(hs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a [u8]> {
        move |name| {
            hs.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
        }
    }

    #[test]
    fn validates_and_refuses() {
        let good = [
            ("Host", "x"),
            ("Upgrade", "WebSocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(
            validate_request("GET", 1, lookup(&good)),
            Ok(&b"dGhlIHNhbXBsZSBub25jZQ=="[..])
        );
        assert_eq!(
            validate_request("POST", 1, lookup(&good)),
            Err(HandshakeError::Method)
        );
        assert_eq!(
            validate_request("GET", 0, lookup(&good)),
            Err(HandshakeError::HttpVersion)
        );
        let mut v8 = good;
        v8[3].1 = "8";
        assert_eq!(
            validate_request("GET", 1, lookup(&v8)),
            Err(HandshakeError::Version)
        );
        assert_eq!(HandshakeError::Version.status(), 426);
        let mut badkey = good;
        badkey[4].1 = "c2hvcnQ=";
        assert_eq!(
            validate_request("GET", 1, lookup(&badkey)),
            Err(HandshakeError::Key)
        );
        let mut noup = good;
        noup[1].1 = "h2c";
        assert_eq!(
            validate_request("GET", 1, lookup(&noup)),
            Err(HandshakeError::Upgrade)
        );
        let mut noconn = good;
        noconn[2].1 = "keep-alive";
        assert_eq!(
            validate_request("GET", 1, lookup(&noconn)),
            Err(HandshakeError::Connection)
        );
    }

    #[test]
    fn response_carries_accept_and_protocol() {
        let mut dates = crate::http::DateCache::new();
        let date = dates.at(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000));
        let mut out = Vec::new();
        write_response(
            &mut out,
            b"dGhlIHNhbXBsZSBub25jZQ==",
            Some("chat"),
            &[
                ("X-A", "1"),
                ("Bad\r\nName", "x"),
                ("X-B", "evil\r\nSet-Cookie: y"),
            ],
            Some(date),
        );
        let s = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = s.split("\r\n").collect();
        assert_eq!(
            lines,
            [
                "HTTP/1.1 101 Switching Protocols",
                "Date: Sun, 09 Sep 2001 01:46:40 GMT",
                "Server: wsreactor",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                "Sec-WebSocket-Protocol: chat",
                "X-A: 1",
                "",
                ""
            ]
        );
        // No Date when none is given, no Content-Length on a 101, no protocol line.
        let mut out = Vec::new();
        write_response(&mut out, b"dGhlIHNhbXBsZSBub25jZQ==", None, &[], None);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("HTTP/1.1 101 Switching Protocols\r\nServer: wsreactor\r\nUpgrade: websocket\r\n")
        );
        assert!(!s.contains("Date:") && !s.contains("Content-Length") && !s.contains("Protocol:"));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn client_request_and_response_checks() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "/x",
            "h:1",
            None,
            Some("a, b"),
            "dGhlIHNhbXBsZSBub25jZQ==",
            &[("Cookie", "c=1"), ("Bad", "x\r\ny")],
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(text.contains("Cookie: c=1\r\n"));
        assert!(!text.contains("Bad"), "a field with CR LF must be dropped");
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let good = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("Sec-WebSocket-Protocol", "b"),
        ];
        assert_eq!(
            validate_response(101, key, Some("a, b"), lookup(&good)),
            Ok(Some("b".into()))
        );
        assert_eq!(
            validate_response(200, key, Some("a, b"), lookup(&good)),
            Err(ResponseError::Status(200))
        );
        assert_eq!(
            validate_response(101, key, Some("a"), lookup(&good)),
            Err(ResponseError::Protocol("b".into()))
        );
        assert_eq!(
            validate_response(101, key, None, lookup(&good)),
            Err(ResponseError::Protocol("b".into()))
        );
        let bad_accept = [
            ("Upgrade", "websocket"),
            ("Connection", "upgrade"),
            ("Sec-WebSocket-Accept", "AAAA"),
        ];
        assert_eq!(
            validate_response(101, key, None, lookup(&bad_accept)),
            Err(ResponseError::Accept)
        );
        let ext = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ];
        assert!(matches!(
            validate_response(101, key, None, lookup(&ext)),
            Err(ResponseError::Extension(_))
        ));
        assert_eq!(validate_response(101, key, None, lookup(&good[..3])), Ok(None));
    }
}
