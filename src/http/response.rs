//! Writing response heads and small status pages (RFC 9112 §4, RFC 9110 §15).
//!
//! Everything appends straight into the caller's output buffer; nothing
//! here allocates beyond that buffer growing. Heads are always
//! `HTTP/1.1` (RFC 9110 §2.5: a server sends its own highest minor version
//! even to 1.0 clients).
//!
//! Framing rules applied: no `Content-Length` on 1xx and 204 responses
//! (RFC 9110 §8.6); a `Date` is sent when the caller passes one (RFC 9110
//! §6.6.1 makes it mandatory for servers with a clock); field lines
//! containing CR, LF or other control bytes are dropped rather than written,
//! so a caller's untrusted value can never split the response.
//!
//! No clock is read here: the date is an argument, typically
//! [`DateCache::date`](super::DateCache::date) of a cache the caller
//! refreshes once per event-loop cycle.

use super::date::ImfFixdate;

/// The standard reason phrase for `status`, or `""` for codes this module
/// does not know (the reason phrase is optional, RFC 9112 §4).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a response status has no content by definition (RFC 9110 §6.4.1),
/// so must carry neither body nor `Content-Length`.
fn forbids_content_length(status: u16) -> bool {
    (100..200).contains(&status) || status == 204
}

fn valid_status(status: u16) -> u16 {
    if (100..=999).contains(&status) {
        status
    } else {
        log::error!("invalid response status {status}; sending 500");
        500
    }
}

/// Writes the status line plus `Date` (if `date` is given) and
/// `Server: wsreactor`.
///
/// Statuses outside 100..=999 are a caller bug; they are logged and sent
/// as 500 so that the status line stays well-formed.
pub fn write_head_start(out: &mut Vec<u8>, status: u16, date: Option<&ImfFixdate>) {
    let status = valid_status(status);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(date) = date {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Server: wsreactor\r\n");
}

/// Writes one `name: value` field line. Returns `false`, writes nothing and
/// logs a warning if the name is not a token or the value holds control
/// bytes other than HTAB (RFC 9110 §5.5), which would allow response
/// splitting.
pub fn write_header(out: &mut Vec<u8>, name: &str, value: &str) -> bool {
    let name_ok = !name.is_empty() && name.bytes().all(is_tchar);
    let value_ok = value.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f));
    if !(name_ok && value_ok) {
        log::warn!("dropping invalid response header {name:?}: {value:?}");
        return false;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
    true
}

/// Writes `Content-Length` (when `body_len` is `Some` and the status may
/// have one), `Connection: close` when `!keep_alive`, and the blank line
/// ending the head.
///
/// With `body_len == None` on a status that has a body the response is
/// delimited by closing the connection, so pass `keep_alive = false`.
pub fn write_head_end(out: &mut Vec<u8>, status: u16, body_len: Option<u64>, keep_alive: bool) {
    if let Some(len) = body_len {
        if !forbids_content_length(status) {
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, len);
            out.extend_from_slice(b"\r\n");
        }
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete response head: status line, `Date` (if `date` is given),
/// `Server: wsreactor`, `headers` in order (invalid ones are dropped, see
/// [`write_header`]), `Content-Length` when `body_len` is `Some`,
/// `Connection: close` when `!keep_alive`, and the final blank line.
///
/// `Connection: keep-alive` for HTTP/1.0 clients, `Upgrade`, etc. are the
/// caller's to put in `headers`.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body_len: Option<u64>,
    keep_alive: bool,
    date: Option<&ImfFixdate>,
) {
    write_head_start(out, status, date);
    for (name, value) in headers {
        write_header(out, name, value);
    }
    write_head_end(out, status, body_len, keep_alive);
}

fn escape(b: u8) -> Option<&'static [u8]> {
    match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'"' => Some(b"&quot;"),
        b'\'' => Some(b"&#39;"),
        _ => None,
    }
}

fn escaped_len(text: &str) -> usize {
    text.bytes().map(|b| escape(b).map_or(1, <[u8]>::len)).sum()
}

/// Appends `text` with `& < > " '` replaced by character references, so
/// caller text cannot inject markup.
pub fn html_escape_into(out: &mut Vec<u8>, text: &str) {
    let mut plain = 0;
    for (i, b) in text.bytes().enumerate() {
        if let Some(rep) = escape(b) {
            out.extend_from_slice(&text.as_bytes()[plain..i]);
            out.extend_from_slice(rep);
            plain = i + 1;
        }
    }
    out.extend_from_slice(&text.as_bytes()[plain..]);
}

const PAGE_START: &[u8] = b"<html><body><h1>";
const PAGE_MID: &[u8] = b"</h1>";
const PAGE_END: &[u8] = b"</body></html>";

/// Appends a complete small `text/html` response for `status`, like
/// libwebsockets' `lws_return_http_status`: the body is
/// `<html><body><h1>404</h1>Not Found</body></html>`, with `text`
/// (HTML-escaped) in place of the reason phrase when given.
///
/// `extra_headers` go after `Content-Type` (e.g. `Allow` for 405, `Location`
/// for 301, `Upgrade` for 426). With `head_only` (answering `HEAD`) the body
/// is left out but `Content-Length` still gives its size
/// (RFC 9110 §9.3.2). 1xx, 204 and 304 get a head without body. `date` is
/// the `Date` field's value (`None`: no `Date`).
pub fn status_page(
    out: &mut Vec<u8>,
    status: u16,
    text: Option<&str>,
    extra_headers: &[(&str, &str)],
    keep_alive: bool,
    head_only: bool,
    date: Option<&ImfFixdate>,
) {
    let status = valid_status(status);
    write_head_start(out, status, date);
    if forbids_content_length(status) || status == 304 {
        for (name, value) in extra_headers {
            write_header(out, name, value);
        }
        write_head_end(out, status, None, keep_alive);
        return;
    }
    let text = text.unwrap_or(reason_phrase(status));
    // The status is three digits once validated.
    let len = PAGE_START.len() + 3 + PAGE_MID.len() + escaped_len(text) + PAGE_END.len();
    write_header(out, "Content-Type", "text/html; charset=utf-8");
    for (name, value) in extra_headers {
        write_header(out, name, value);
    }
    write_head_end(out, status, Some(len as u64), keep_alive);
    if head_only {
        return;
    }
    let body_start = out.len();
    out.extend_from_slice(PAGE_START);
    push_u64(out, u64::from(status));
    out.extend_from_slice(PAGE_MID);
    html_escape_into(out, text);
    out.extend_from_slice(PAGE_END);
    debug_assert_eq!(out.len() - body_start, len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::DateCache;
    use std::time::{Duration, UNIX_EPOCH};

    fn text(v: &[u8]) -> &str {
        std::str::from_utf8(v).unwrap()
    }

    /// Splits a response into (head without final CRLF, body) and checks
    /// the head is CRLF-terminated throughout.
    fn split(resp: &[u8]) -> (String, &[u8]) {
        let end = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = text(&resp[..end]).to_string();
        assert!(!head.replace("\r\n", "").contains('\n'));
        (head, &resp[end + 4..])
    }

    #[test]
    fn reason_phrases() {
        for (code, phrase) in [
            (101, "Switching Protocols"),
            (200, "OK"),
            (204, "No Content"),
            (206, "Partial Content"),
            (301, "Moved Permanently"),
            (302, "Found"),
            (304, "Not Modified"),
            (400, "Bad Request"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (411, "Length Required"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (416, "Range Not Satisfiable"),
            (426, "Upgrade Required"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (503, "Service Unavailable"),
            (505, "HTTP Version Not Supported"),
            (299, ""),
        ] {
            assert_eq!(reason_phrase(code), phrase);
        }
    }

    #[test]
    fn head_layout() {
        let mut out = b"prefix".to_vec();
        write_head(
            &mut out,
            200,
            &[("Content-Type", "text/plain"), ("X-A", "1")],
            Some(12345),
            true,
            None,
        );
        assert_eq!(
            text(&out),
            "prefixHTTP/1.1 200 OK\r\nServer: wsreactor\r\nContent-Type: text/plain\r\nX-A: 1\r\nContent-Length: 12345\r\n\r\n"
        );
    }

    /// The Date a cache gives for a fixed time: tests drive the clock.
    fn date_at(secs: u64) -> DateCache {
        let mut c = DateCache::new();
        c.update(UNIX_EPOCH + Duration::from_secs(secs));
        c
    }

    #[test]
    fn head_with_date_and_close() {
        let dates = date_at(784_111_777);
        let mut out = Vec::new();
        write_head(&mut out, 404, &[], None, false, Some(dates.date()));
        let (head, body) = split(&out);
        assert!(body.is_empty());
        let lines: Vec<_> = head.split("\r\n").collect();
        assert_eq!(
            lines,
            [
                "HTTP/1.1 404 Not Found",
                "Date: Sun, 06 Nov 1994 08:49:37 GMT",
                "Server: wsreactor",
                "Connection: close"
            ]
        );
    }

    #[test]
    fn status_page_date_follows_the_given_time() {
        let mut dates = date_at(784_111_777);
        let mut a = Vec::new();
        status_page(&mut a, 404, None, &[], true, false, Some(dates.date()));
        assert!(text(&a).contains("\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"));
        dates.update(UNIX_EPOCH + Duration::from_secs(784_111_777 + 86_400 + 61));
        let mut b = Vec::new();
        status_page(&mut b, 404, None, &[], true, false, Some(dates.date()));
        assert!(text(&b).contains("\r\nDate: Mon, 07 Nov 1994 08:50:38 GMT\r\n"));
        let mut c = Vec::new();
        status_page(&mut c, 404, None, &[], true, false, None);
        assert!(!text(&c).contains("Date:"));
    }

    #[test]
    fn no_content_length_on_1xx_204() {
        for status in [101, 204] {
            let mut out = Vec::new();
            write_head(&mut out, status, &[("Upgrade", "websocket")], Some(0), true, None);
            assert!(!text(&out).contains("Content-Length"), "{status}");
        }
        let mut out = Vec::new();
        write_head(&mut out, 200, &[], Some(0), true, None);
        assert!(text(&out).contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn refuses_header_injection() {
        let mut out = Vec::new();
        assert!(!write_header(&mut out, "X", "a\r\nSet-Cookie: evil"));
        assert!(!write_header(&mut out, "X", "a\nb"));
        assert!(!write_header(&mut out, "X", "a\0b"));
        assert!(!write_header(&mut out, "Bad Name", "v"));
        assert!(!write_header(&mut out, "X:Y", "v"));
        assert!(!write_header(&mut out, "", "v"));
        assert!(out.is_empty());
        assert!(write_header(&mut out, "X", "tab\tand ünïcode"));
        write_head(&mut out, 200, &[("X", "a\r\nY: z")], None, true, None);
        assert!(!text(&out).contains("Y: z"));
    }

    #[test]
    fn invalid_status_becomes_500() {
        let mut out = Vec::new();
        write_head(&mut out, 42, &[], None, true, None);
        assert!(text(&out).starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
        let mut out = Vec::new();
        status_page(&mut out, 1000, None, &[], true, false, None);
        let (head, body) = split(&out);
        let len: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        assert_eq!(
            text(body),
            "<html><body><h1>500</h1>Internal Server Error</body></html>"
        );
    }

    #[test]
    fn status_page_default_and_escaped() {
        let mut out = Vec::new();
        status_page(&mut out, 404, None, &[], true, false, None);
        let (head, body) = split(&out);
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(head.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
        assert!(!head.contains("Connection: close"));
        assert_eq!(body, b"<html><body><h1>404</h1>Not Found</body></html>");
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())));

        let mut out = Vec::new();
        status_page(
            &mut out,
            405,
            Some("<script>alert('x & y')</script>\""),
            &[("Allow", "GET, HEAD")],
            false,
            false,
            None,
        );
        let (head, body) = split(&out);
        assert!(head.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(head.contains("\r\nConnection: close"));
        assert_eq!(
            text(body),
            "<html><body><h1>405</h1>&lt;script&gt;alert(&#39;x &amp; y&#39;)&lt;/script&gt;&quot;</body></html>"
        );
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
    }

    #[test]
    fn status_page_head_only_keeps_length() {
        let dates = date_at(784_111_777);
        let mut full = Vec::new();
        status_page(&mut full, 403, Some("nope"), &[], true, false, Some(dates.date()));
        let mut head_only = Vec::new();
        status_page(
            &mut head_only,
            403,
            Some("nope"),
            &[],
            true,
            true,
            Some(dates.date()),
        );
        let (h1, body) = split(&full);
        let (h2, rest) = split(&head_only);
        assert!(rest.is_empty());
        assert!(!body.is_empty());
        // The same head, Date included: the time is the caller's.
        assert_eq!(h1, h2);
    }

    #[test]
    fn status_page_bodyless_statuses() {
        for status in [101, 204, 304] {
            let mut out = Vec::new();
            status_page(&mut out, status, None, &[("ETag", "\"x\"")], true, false, None);
            let (head, body) = split(&out);
            assert!(body.is_empty(), "{status}");
            assert!(!head.contains("Content-Length"), "{status}");
            assert!(head.contains("ETag: \"x\""));
        }
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 99, 12345, u64::MAX] {
            out.clear();
            push_u64(&mut out, n);
            assert_eq!(text(&out), n.to_string());
        }
    }
}
