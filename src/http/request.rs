//! Request heads: finding the end of the head incrementally and parsing it.
//!
//! Reading a request is two steps. [`HeadScanner`] is fed the growing
//! receive buffer after every read and reports when the blank line that ends
//! the head (RFC 9112 §2.1) has arrived; it examines each byte exactly once,
//! so a client trickling a large head in one byte at a time costs linear
//! work (reparsing the buffer on every read made tungstenite quadratic,
//! RUSTSEC-2023-0065). Then [`parse_head`] parses the complete head once
//! with `httparse` and applies the framing rules that keep request
//! smuggling out:
//!
//! * start-line and field syntax errors → 400 (RFC 9112 §3, §5);
//! * a request-target longer than [`Limits::max_uri_bytes`] → 414
//!   (RFC 9112 §3);
//! * more than [`Limits::max_headers`] fields, or a head longer than
//!   [`Limits::max_head_bytes`] → 431 (RFC 6585 §5);
//! * a version other than HTTP/1.0 or HTTP/1.1 → 505 (RFC 9110 §15.6.6);
//! * a bare LF ends a line like CRLF does (RFC 9112 §2.2 lets a recipient
//!   recognise it, ignoring a preceding CR), everywhere in the head: the
//!   scanner and `httparse` then agree on every line boundary and on where
//!   the head ends, so `GET / HTTP/1.1\nHost: x\n\n` is answered at once
//!   rather than left waiting for a CRLFCRLF that never comes;
//! * a bare CR (not followed by LF) anywhere → 400 (RFC 9112 §2.2 allows
//!   no other reading that cannot disagree with some intermediary's);
//! * `Content-Length` that is not a decimal number, or repeated with
//!   different values → 400 (RFC 9112 §6.3 item 5);
//! * both `Content-Length` and `Transfer-Encoding` → 400 (RFC 9112 §6.1
//!   allows rejecting; accepting is the classic smuggling vector);
//! * `Transfer-Encoding` whose final coding is not `chunked`, or with
//!   `chunked` twice → 400 (RFC 9112 §6.3 item 4); any other coding before
//!   `chunked` (e.g. `gzip, chunked`) → 501, since this server does not
//!   implement it (RFC 9112 §6.1); `Transfer-Encoding` in an HTTP/1.0
//!   request → 400 (RFC 9112 §6.1 calls such a message faulty);
//! * an HTTP/1.1 request without exactly one `Host` field, or any request
//!   with more than one → 400 (RFC 9112 §3.2).

use std::fmt;

/// Size limits applied while reading a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted head, request line through the final CRLFCRLF
    /// (default 8192). Longer heads get 431, or 414 while still inside the
    /// request line.
    pub max_head_bytes: usize,
    /// Longest accepted request-target (default 4096); longer → 414.
    pub max_uri_bytes: usize,
    /// Most header fields accepted (default 64); more → 431.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 8192,
            max_uri_bytes: 4096,
            max_headers: 64,
        }
    }
}

/// A request that must be refused, with the status code to refuse it with.
///
/// `reason` is a short diagnostic for logs, not the status line's reason
/// phrase (use [`crate::http::response::reason_phrase`] for that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    /// HTTP status code to answer with (400, 414, 431, 501, 505, ...).
    pub status: u16,
    /// What was wrong, for logging.
    pub reason: &'static str,
}

impl HttpError {
    /// Builds an error from a status code and a diagnostic.
    pub const fn new(status: u16, reason: &'static str) -> Self {
        HttpError { status, reason }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.reason)
    }
}

impl std::error::Error for HttpError {}

const fn bad(reason: &'static str) -> HttpError {
    HttpError::new(400, reason)
}

/// Result of [`HeadScanner::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The head is complete; it is `buf[..n]`, including the empty line that
    /// ends it (CRLF or a bare LF).
    /// Anything after it is body or the next pipelined request.
    Complete(usize),
    /// No end of head yet; read more and call again.
    Partial,
    /// [`Limits::max_head_bytes`] bytes arrived without the end of the
    /// head. Answer with [`HeadScanner::too_large_error`] and close.
    TooLarge,
}

/// Incremental search for the end of a request head: the first empty line
/// after the request line, where a line ends with LF, optionally preceded
/// by CR (`\r\n\r\n`, `\n\n`, `\r\n\n` and `\n\r\n` all end a head, as
/// they do for `httparse`).
///
/// Each call resumes where the previous one stopped: the scanner keeps the
/// offset already examined and where in a line it is, so a terminator split
/// across reads is still found and no byte is looked at twice. Empty lines before the request line are skipped
/// (RFC 9112 §2.2), so a stray CRLF after a previous request's body does
/// not look like an empty head.
#[derive(Debug, Clone)]
pub struct HeadScanner {
    /// Bytes of the buffer already examined.
    examined: usize,
    /// Where the last byte examined left us in the line structure.
    at: LinePos,
    /// Still inside the empty lines that may precede the request line.
    leading: bool,
    /// Still inside the request line (to tell 414 from 431).
    in_request_line: bool,
    /// Set once complete, so repeated calls give the same answer.
    done: Option<usize>,
    /// Bytes examined in total, to prove scanning is linear.
    #[cfg(test)]
    work: usize,
}

/// A [`HeadScanner`]'s position relative to line ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinePos {
    /// Inside a line (a CR there is either the first half of its end or
    /// a bare CR; only the LF matters).
    Mid,
    /// At the start of a line (just after its predecessor's LF).
    Start,
    /// At the start of a line, just after a CR: an LF now ends the head.
    StartCr,
}

impl Default for HeadScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl HeadScanner {
    /// A scanner at the start of a request.
    pub fn new() -> Self {
        HeadScanner {
            examined: 0,
            at: LinePos::Mid,
            leading: true,
            in_request_line: true,
            done: None,
            #[cfg(test)]
            work: 0,
        }
    }

    /// Forgets all progress, for the next request on the connection (after
    /// the caller has drained the previous head from its buffer).
    pub fn reset(&mut self) {
        #[cfg(test)]
        let work = self.work;
        *self = Self::new();
        #[cfg(test)]
        {
            self.work = work;
        }
    }

    /// Looks for the end of the head in `buf`, the whole head buffer
    /// received so far. Between calls `buf` may only grow (same prefix);
    /// call [`reset`](Self::reset) before reusing the scanner for a buffer
    /// with other contents.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Scan {
        if let Some(n) = self.done {
            return Scan::Complete(n);
        }
        if buf.len() < self.examined {
            // The caller broke the grow-only contract; starting over is
            // better than reporting an offset past the end of `buf`.
            log::debug!("HeadScanner: buffer shrank without reset");
            self.reset();
        }
        let start = self.examined;
        // `max(start)` keeps the slice valid if the limit was lowered
        // between calls; the check below then reports TooLarge.
        let end = buf.len().min(limits.max_head_bytes).max(start);
        for (i, &b) in buf[start..end].iter().enumerate() {
            if self.leading {
                if b == b'\r' || b == b'\n' {
                    continue;
                }
                self.leading = false;
            }
            if b == b'\n' {
                self.in_request_line = false;
            }
            // A CR not followed by LF is a bare CR, which parse_head refuses;
            // here it only must not end a line or the head.
            self.at = match (self.at, b) {
                (LinePos::Start | LinePos::StartCr, b'\n') => {
                    let n = start + i + 1;
                    self.examined = n;
                    #[cfg(test)]
                    {
                        self.work += i + 1;
                    }
                    self.done = Some(n);
                    return Scan::Complete(n);
                }
                (_, b'\n') => LinePos::Start,
                (LinePos::Start, b'\r') => LinePos::StartCr,
                _ => LinePos::Mid,
            };
        }
        #[cfg(test)]
        {
            self.work += end.saturating_sub(start);
        }
        self.examined = end;
        if self.examined >= limits.max_head_bytes {
            Scan::TooLarge
        } else {
            Scan::Partial
        }
    }

    /// The status to refuse an over-long head with: 414 if the request
    /// line itself never ended, else 431.
    pub fn too_large_error(&self) -> HttpError {
        if self.in_request_line {
            HttpError::new(414, "request line too long")
        } else {
            HttpError::new(431, "request head too large")
        }
    }
}

/// Request methods this server distinguishes (RFC 9110 §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `PATCH`
    Patch,
    /// `CONNECT`
    Connect,
    /// `TRACE`
    Trace,
    /// Any other (syntactically valid) method; see [`Request::method_str`].
    Other,
}

impl Method {
    /// Maps a method token; methods are case-sensitive (RFC 9110 §9.1).
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }
}

/// Byte range inside [`Request`]'s copy of the head. `u32` keeps a field
/// entry at 16 bytes; heads are far below 4 GiB.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Debug, Clone, Copy)]
struct Field {
    name: Span,
    value: Span,
}

/// A parsed request head.
///
/// Holds one copy of the head bytes plus offsets into it, so a request
/// costs two allocations however many fields it has. Field values have
/// surrounding whitespace removed (RFC 9112 §5.1).
#[derive(Clone)]
pub struct Request {
    head: Box<[u8]>,
    method: Method,
    method_span: Span,
    target: Span,
    version_minor: u8,
    fields: Vec<Field>,
    content_length: Option<u64>,
    chunked: bool,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method_str())
            .field("uri", &self.uri())
            .field("version_minor", &self.version_minor)
            .field("headers", &self.fields.len())
            .finish()
    }
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Iterates the non-empty elements of a comma-separated list
/// (RFC 9110 §5.6.1), with whitespace trimmed.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// `1*DIGIT` as u64, rejecting signs, whitespace and overflow.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Whether the (failed) request line ends in something shaped like an
/// HTTP version, so that `HTTP/2.0` earns 505 but garbage earns 400.
fn has_version_syntax(head: &[u8]) -> bool {
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let line = &head[start..];
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = match line.iter().rposition(|&b| b == b' ') {
        Some(i) => &line[i + 1..],
        None => return false,
    };
    // A well-formed 1.0/1.1 here means httparse tripped over something
    // else on the line (e.g. a doubled space), which is a plain 400.
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
        && version != b"HTTP/1.0"
        && version != b"HTTP/1.1"
}

/// Parses a complete request head, such as `buf[..n]` after
/// [`HeadScanner::scan`] returned `Scan::Complete(n)`.
///
/// Bytes after the head's final CRLFCRLF are ignored (not copied);
/// [`Request::head_len`] tells where the head ended. See the module docs for
/// the checks applied and the status each failure maps to.
pub fn parse_head(head: &[u8], limits: &Limits) -> Result<Request, HttpError> {
    // Most requests fit the stack array; only a raised limit needs the heap.
    const STACK_HEADERS: usize = 64;
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut heap
    };
    let mut req = httparse::Request::new(slots);
    let len = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(bad("incomplete request head")),
        Err(e) => {
            return Err(match e {
                httparse::Error::TooManyHeaders => HttpError::new(431, "too many header fields"),
                httparse::Error::Version if has_version_syntax(head) => {
                    HttpError::new(505, "unsupported HTTP version")
                }
                httparse::Error::Version => bad("malformed HTTP version"),
                httparse::Error::HeaderName => bad("invalid header field name"),
                httparse::Error::HeaderValue => bad("invalid header field value"),
                httparse::Error::Token => bad("invalid method or request-target"),
                _ => bad("malformed request head"),
            })
        }
    };
    if len > limits.max_head_bytes || len > u32::MAX as usize {
        return Err(HttpError::new(431, "request head too large"));
    }
    let head = &head[..len];
    // httparse only returns Complete with all three set.
    let (Some(method), Some(target), Some(version_minor)) = (req.method, req.path, req.version) else {
        return Err(bad("malformed request line"));
    };
    if target.len() > limits.max_uri_bytes {
        return Err(HttpError::new(414, "request-target too long"));
    }

    let base = head.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        Span {
            start,
            end: start + s.len() as u32,
        }
    };
    let method_span = span(method.as_bytes());
    let target_span = span(target.as_bytes());

    // httparse accepts a bare LF as a line end, as the scanner does, and
    // refuses a bare CR where it parses; this check makes the latter
    // independent of httparse's internals (a CR is only ever part of a line
    // end).
    let mut crs = head.iter().enumerate().filter(|&(_, &b)| b == b'\r');
    if crs.any(|(i, _)| head.get(i + 1) != Some(&b'\n')) {
        return Err(bad("bare CR in request head"));
    }

    let mut fields = Vec::with_capacity(req.headers.len());
    let mut content_length: Option<u64> = None;
    let mut te_seen = false;
    let mut te_last_chunked = false;
    let mut te_codings = 0usize;
    let mut te_chunked_count = 0usize;
    let mut hosts = 0usize;
    for h in req.headers.iter() {
        let value = trim_ows(h.value);
        let name = h.name.as_bytes();
        let name_span = span(name);
        fields.push(Field {
            name: name_span,
            // An empty slice's address need not lie inside the head, so
            // anchor empty values at the end of the name instead.
            value: if value.is_empty() {
                Span {
                    start: name_span.end,
                    end: name_span.end,
                }
            } else {
                span(value)
            },
        });
        if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9110 §8.6 lets a recipient accept a list of identical
            // values ("42, 42"); anything else is ambiguous framing.
            let mut any = false;
            for element in value.split(|&b| b == b',').map(trim_ows) {
                let n = parse_decimal(element).ok_or(bad("invalid Content-Length"))?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(bad("conflicting Content-Length values"));
                }
                content_length = Some(n);
                any = true;
            }
            if !any {
                return Err(bad("invalid Content-Length"));
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te_seen = true;
            for coding in list_elements(value) {
                te_codings += 1;
                te_last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                if te_last_chunked {
                    te_chunked_count += 1;
                }
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        }
    }

    if hosts > 1 {
        return Err(bad("multiple Host fields"));
    }
    if hosts == 0 && version_minor == 1 {
        return Err(bad("missing Host field"));
    }
    let mut chunked = false;
    if te_seen {
        if content_length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if version_minor == 0 {
            return Err(bad("Transfer-Encoding in HTTP/1.0 request"));
        }
        if te_codings == 0 || !te_last_chunked || te_chunked_count > 1 {
            return Err(bad("chunked is not the single final transfer coding"));
        }
        if te_codings > 1 {
            return Err(HttpError::new(501, "unsupported transfer coding"));
        }
        chunked = true;
    }

    Ok(Request {
        head: head.into(),
        method: Method::from_bytes(method.as_bytes()),
        method_span,
        target: target_span,
        version_minor,
        fields,
        content_length,
        chunked,
    })
}

impl Request {
    fn bytes(&self, s: Span) -> &[u8] {
        &self.head[s.range()]
    }

    /// Text that `parse_head` already proved is UTF-8 (method, target and
    /// field names are ASCII tokens); the check is repeated because there is
    /// no safe unchecked conversion, and costs little on short ASCII.
    fn text(&self, s: Span) -> &str {
        std::str::from_utf8(self.bytes(s)).unwrap_or("")
    }

    /// The request method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method token as sent, e.g. `"GET"` or `"PROPFIND"`.
    pub fn method_str(&self) -> &str {
        self.text(self.method_span)
    }

    /// The raw request-target as sent (RFC 9112 §3.2), e.g. `/a%20b?x=1`.
    pub fn uri(&self) -> &str {
        self.text(self.target)
    }

    /// The target's path without the query, still percent-encoded.
    ///
    /// For absolute-form targets (`http://host/p?q`, RFC 9112 §3.2.2) the
    /// scheme and authority are removed, giving `/p` (or `/` if there is no
    /// path). The asterisk-form `*` is returned as is.
    pub fn path(&self) -> &str {
        let t = self.uri();
        let t = &t[..t.find('?').unwrap_or(t.len())];
        if t.starts_with('/') || t == "*" {
            return t;
        }
        match t.find("://") {
            Some(i) => {
                let after = &t[i + 3..];
                match after.find('/') {
                    Some(j) => &after[j..],
                    None => "/",
                }
            }
            None => t,
        }
    }

    /// The query (after the first `?`), if any; may be empty.
    pub fn query(&self) -> Option<&str> {
        let t = self.uri();
        t.find('?').map(|i| &t[i + 1..])
    }

    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn version_minor(&self) -> u8 {
        self.version_minor
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |f| self.bytes(f.name).eq_ignore_ascii_case(name.as_bytes()))
            .map(move |f| self.bytes(f.value))
    }

    /// The first value of field `name` (case-insensitive), or `None` if it
    /// is absent or not valid UTF-8 (see [`header_bytes`](Self::header_bytes)).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of field `name` (case-insensitive) as raw bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| self.bytes(f.name).eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| self.bytes(f.value))
    }

    /// Every value of field `name`, in order; list-valued fields such as
    /// `Sec-WebSocket-Protocol` may be split over several lines.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.values(name)
    }

    /// All fields in received order as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.fields
            .iter()
            .map(move |f| (self.text(f.name), self.bytes(f.value)))
    }

    /// The body length from `Content-Length`, if given (already validated).
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Whether the body uses `Transfer-Encoding: chunked` (the only coding
    /// accepted).
    pub fn is_chunked(&self) -> bool {
        self.chunked
    }

    /// Whether `name` (possibly on several lines) has list element `token`,
    /// compared case-insensitively: `Connection: keep-alive, Upgrade` has
    /// `upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(list_elements)
            .any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Whether the connection may stay open after this request
    /// (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`; HTTP/1.0 only
    /// with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.version_minor >= 1 || self.has_token("connection", "keep-alive")
    }

    /// Whether this is a WebSocket opening handshake (RFC 6455 §4.2.1): an
    /// HTTP/1.1 `GET` with `Upgrade: websocket` and `Connection: upgrade`
    /// tokens. The `Sec-WebSocket-*` fields are left to the caller.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.method == Method::Get
            && self.version_minor >= 1
            && self.has_token("upgrade", "websocket")
            && self.has_token("connection", "upgrade")
    }

    /// Length of the head in bytes, from the first byte given to
    /// [`parse_head`] through the final CRLFCRLF.
    pub fn head_len(&self) -> usize {
        self.head.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMPLE: &[u8] = b"GET /index.html?x=1&y HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";

    fn parse(s: &[u8]) -> Result<Request, HttpError> {
        parse_head(s, &Limits::default())
    }

    fn status(s: &[u8]) -> u16 {
        parse(s).expect_err("should be rejected").status
    }

    fn feed_all(scanner: &mut HeadScanner, data: &[u8], limits: &Limits) -> Scan {
        scanner.scan(data, limits)
    }

    #[test]
    fn scanner_whole_buffer() {
        let mut s = HeadScanner::new();
        let mut data = SIMPLE.to_vec();
        data.extend_from_slice(b"BODY");
        assert_eq!(
            feed_all(&mut s, &data, &Limits::default()),
            Scan::Complete(SIMPLE.len())
        );
        // Asking again is stable.
        assert_eq!(s.scan(&data, &Limits::default()), Scan::Complete(SIMPLE.len()));
    }

    #[test]
    fn scanner_byte_at_a_time() {
        let limits = Limits::default();
        let mut s = HeadScanner::new();
        for n in 0..SIMPLE.len() {
            assert_eq!(s.scan(&SIMPLE[..n], &limits), Scan::Partial, "at {n}");
        }
        assert_eq!(s.scan(SIMPLE, &limits), Scan::Complete(SIMPLE.len()));
        assert_eq!(s.work, SIMPLE.len());
    }

    #[test]
    fn scanner_terminator_split_everywhere() {
        let limits = Limits::default();
        // Every two-way split of the buffer, which covers each position
        // inside the final CRLFCRLF (and inside every earlier CRLF).
        for cut in 0..=SIMPLE.len() {
            let mut s = HeadScanner::new();
            let first = s.scan(&SIMPLE[..cut], &limits);
            if cut < SIMPLE.len() {
                assert_eq!(first, Scan::Partial, "cut {cut}");
            }
            assert_eq!(s.scan(SIMPLE, &limits), Scan::Complete(SIMPLE.len()), "cut {cut}");
        }
        // Three-way splits around the terminator.
        let t = SIMPLE.len() - 4;
        for a in t - 2..=SIMPLE.len() {
            for b in a..=SIMPLE.len() {
                let mut s = HeadScanner::new();
                s.scan(&SIMPLE[..a], &limits);
                s.scan(&SIMPLE[..b], &limits);
                assert_eq!(s.scan(SIMPLE, &limits), Scan::Complete(SIMPLE.len()));
            }
        }
    }

    #[test]
    fn scanner_near_misses() {
        let limits = Limits::default();
        for partial in [
            &b"GET / HTTP/1.1\r\nA: b\r\n\r"[..],
            b"GET / HTTP/1.1\r\nA: b\n\r",
            b"GET / HTTP/1.1\r\nA: b\r\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n\r\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n\rX\n",
            b"GET / HTTP/1.1\rA: b\r\r",
        ] {
            assert_eq!(
                HeadScanner::new().scan(partial, &limits),
                Scan::Partial,
                "{partial:?}"
            );
        }
        // \r\r\n\r\n still ends with a proper CRLFCRLF.
        let s = b"GET / HTTP/1.1\r\nA: b\r\r\n\r\n";
        assert_eq!(HeadScanner::new().scan(s, &limits), Scan::Complete(s.len()));
    }

    /// Heads whose lines end in bare LF, or mix LF and CRLF.
    const LF_HEADS: [&[u8]; 6] = [
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\n\n",
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        b"GET / HTTP/1.1\nHost: x\n\r\n",
        b"\n\r\nGET / HTTP/1.1\nHost: x\nA: 1\r\nB: 2\n\n",
    ];

    #[test]
    fn scanner_accepts_bare_lf_line_ends() {
        let limits = Limits::default();
        for head in LF_HEADS {
            let mut data = head.to_vec();
            data.extend_from_slice(b"GET /next HTTP/1.1\n");
            // Whole, and a byte at a time: the same end, examined once.
            assert_eq!(
                HeadScanner::new().scan(&data, &limits),
                Scan::Complete(head.len()),
                "{head:?}"
            );
            let mut s = HeadScanner::new();
            for n in 0..head.len() {
                assert_eq!(s.scan(&data[..n], &limits), Scan::Partial, "{head:?} at {n}");
            }
            assert_eq!(s.scan(&data, &limits), Scan::Complete(head.len()));
            assert_eq!(s.work, head.len());
        }
    }

    #[test]
    fn bare_lf_heads_parse_where_the_scanner_ends_them() {
        let limits = Limits::default();
        for head in LF_HEADS {
            let mut data = head.to_vec();
            data.extend_from_slice(b"BODY");
            let Scan::Complete(n) = HeadScanner::new().scan(&data, &limits) else {
                panic!("{head:?} not complete");
            };
            // httparse ends the head exactly where the scanner did.
            let req = parse(&data[..n]).unwrap();
            assert_eq!(req.head_len(), n, "{head:?}");
            assert_eq!(parse(&data).unwrap().head_len(), n, "{head:?}");
            assert_eq!(
                (req.method(), req.uri(), req.version_minor()),
                (Method::Get, "/", 1)
            );
            assert_eq!(req.header("host"), Some("x"), "{head:?}");
        }
        // Each LF is a line end of its own: no field swallows the next one.
        let req = parse(b"GET / HTTP/1.1\nHost: x\nX: a\nContent-Length: 3\n\n").unwrap();
        assert_eq!(req.header("x"), Some("a"));
        assert_eq!(req.content_length(), Some(3));
        // The framing checks apply as with CRLF.
        assert_eq!(
            status(b"GET / HTTP/1.1\nHost: x\nContent-Length: 1\nContent-Length: 2\n\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\nHost: x\nContent-Length: 1\nTransfer-Encoding: chunked\n\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\nHost: b\n\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\n folded\n\n"), 400);
    }

    #[test]
    fn bare_cr_is_400_even_where_the_scanner_ends_a_head() {
        let limits = Limits::default();
        for head in [
            &b"GET / HTTP/1.1\nHost: x\r\r\n\n"[..],
            b"GET / HTTP/1.1\nHost: x\rEvil: 1\n\n",
            b"GET / HTTP/1.1\nHost: x\n\r\r\n\n",
            b"GET /\r HTTP/1.1\nHost: x\n\n",
        ] {
            let Scan::Complete(n) = HeadScanner::new().scan(head, &limits) else {
                panic!("{head:?} not complete");
            };
            assert_eq!(parse(&head[..n]).unwrap_err().status, 400, "{head:?}");
        }
        // A CR at line start that is not part of CRLF does not end the head.
        assert_eq!(
            HeadScanner::new().scan(b"GET / HTTP/1.1\nHost: x\n\rA\n", &limits),
            Scan::Partial
        );
    }

    #[test]
    fn scanner_skips_leading_empty_lines() {
        let limits = Limits::default();
        let mut data = b"\r\n\r\n\r\n".to_vec();
        data.extend_from_slice(SIMPLE);
        let mut s = HeadScanner::new();
        assert_eq!(s.scan(&data[..4], &limits), Scan::Partial);
        assert_eq!(s.scan(&data, &limits), Scan::Complete(data.len()));
        let req = parse(&data).unwrap();
        assert_eq!(req.uri(), "/index.html?x=1&y");
        assert_eq!(req.head_len(), data.len());
    }

    #[test]
    fn scanner_too_large() {
        let limits = Limits {
            max_head_bytes: 64,
            ..Limits::default()
        };
        // A head of exactly the limit is fine.
        let mut exact = b"GET / HTTP/1.1\r\nX: ".to_vec();
        exact.resize(60, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(HeadScanner::new().scan(&exact, &limits), Scan::Complete(64));
        // One byte more is not, even when the terminator is in the buffer.
        let mut over = exact[..59].to_vec();
        over.extend_from_slice(b"aa\r\n\r\n");
        let mut s = HeadScanner::new();
        assert_eq!(s.scan(&over, &limits), Scan::TooLarge);
        assert_eq!(s.too_large_error().status, 431);
        // Endless request line → 414.
        let long = vec![b'a'; 100];
        let mut s = HeadScanner::new();
        assert_eq!(s.scan(&long[..30], &limits), Scan::Partial);
        assert_eq!(s.scan(&long, &limits), Scan::TooLarge);
        assert_eq!(s.too_large_error().status, 414);
        // Endless leading empty lines also hit the limit.
        assert_eq!(HeadScanner::new().scan(&[b'\n'; 64], &limits), Scan::TooLarge);
    }

    #[test]
    fn scanner_is_linear() {
        // Grow an 8 KiB head one byte per call: the bytes examined must be
        // exactly the buffer length, not ~n²/2 as a rescanning parser does.
        let limits = Limits::default();
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(8188, b'x');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head.len(), 8192);
        let mut s = HeadScanner::new();
        let mut last = Scan::Partial;
        for n in 1..=head.len() {
            last = s.scan(&head[..n], &limits);
        }
        assert_eq!(last, Scan::Complete(8192));
        assert_eq!(s.work, 8192);
    }

    /// Small deterministic PRNG so the randomised tests need no crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// What the scanner must answer, computed the obvious quadratic way.
    fn reference_scan(buf: &[u8], max: usize) -> Scan {
        let start = buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(buf.len());
        let seen = &buf[..buf.len().min(max)];
        // The first LF right after an LF of the head, or after an LF and a CR.
        let lf_at = |i: usize| i > start && seen[i] == b'\n';
        let ends =
            |j: usize| seen[j] == b'\n' && (lf_at(j - 1) || (j >= 2 && seen[j - 1] == b'\r' && lf_at(j - 2)));
        match (start + 1..seen.len()).find(|&j| ends(j)) {
            Some(j) => Scan::Complete(j + 1),
            None if seen.len() >= max => Scan::TooLarge,
            None => Scan::Partial,
        }
    }

    #[test]
    fn scanner_matches_reference_on_random_input() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"\r\n\r\na: ";
        for _ in 0..3000 {
            let len = rng.below(60);
            let buf: Vec<u8> = (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            let limits = Limits {
                max_head_bytes: 1 + rng.below(70),
                ..Limits::default()
            };
            // Feed it in random growing prefixes.
            let mut s = HeadScanner::new();
            let mut have = 0;
            while have < len {
                have = (have + 1 + rng.below(8)).min(len);
                let got = s.scan(&buf[..have], &limits);
                let want = reference_scan(&buf[..have], limits.max_head_bytes);
                assert_eq!(
                    got,
                    want,
                    "{:?} limit {}",
                    String::from_utf8_lossy(&buf[..have]),
                    limits.max_head_bytes
                );
                if got != Scan::Partial {
                    break;
                }
            }
        }
    }

    #[test]
    fn scanner_reset_for_pipelining() {
        let limits = Limits::default();
        let mut buf = SIMPLE.to_vec();
        buf.extend_from_slice(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut s = HeadScanner::new();
        let Scan::Complete(n) = s.scan(&buf, &limits) else { panic!() };
        buf.drain(..n);
        s.reset();
        assert_eq!(s.scan(&buf, &limits), Scan::Complete(buf.len()));
        assert_eq!(parse(&buf).unwrap().uri(), "/2");
    }

    #[test]
    fn parses_simple_request() {
        let mut data = SIMPLE.to_vec();
        data.extend_from_slice(b"trailing body");
        let r = parse(&data).unwrap();
        assert_eq!(r.method(), Method::Get);
        assert_eq!(r.method_str(), "GET");
        assert_eq!(r.uri(), "/index.html?x=1&y");
        assert_eq!(r.path(), "/index.html");
        assert_eq!(r.query(), Some("x=1&y"));
        assert_eq!(r.version_minor(), 1);
        assert_eq!(r.header("HOST"), Some("example.com"));
        assert_eq!(r.header("accept"), Some("*/*"));
        assert_eq!(r.header("missing"), None);
        assert_eq!(r.head_len(), SIMPLE.len());
        assert_eq!(r.content_length(), None);
        assert!(!r.is_chunked());
        assert!(r.keep_alive());
        assert!(!r.is_websocket_upgrade());
        let names: Vec<_> = r.headers().map(|(n, _)| n).collect();
        assert_eq!(names, ["Host", "Accept"]);
        assert!(format!("{r:?}").contains("/index.html"));
    }

    #[test]
    fn methods_and_targets() {
        let r = parse(b"PROPFIND /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(r.method(), Method::Other);
        assert_eq!(r.method_str(), "PROPFIND");
        for (m, want) in [
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("PATCH", Method::Patch),
            ("TRACE", Method::Trace),
            ("get", Method::Other),
        ] {
            let head = format!("{m} / HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(parse(head.as_bytes()).unwrap().method(), want);
        }
        let r = parse(b"GET http://h:80/p/q?z HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!((r.path(), r.query()), ("/p/q", Some("z")));
        let r = parse(b"GET http://h?z HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!((r.path(), r.query()), ("/", Some("z")));
        let r = parse(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!((r.path(), r.query()), ("*", None));
        let r = parse(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!((r.method(), r.path()), (Method::Connect, "h:443"));
        let r = parse(b"GET /?  HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(r.is_err());
        let r = parse(b"GET /a? HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!(r.query(), Some(""));
    }

    #[test]
    fn header_values_trimmed_and_non_utf8() {
        let r = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-A:  \t v a l \t \r\nX-Bin: caf\xe9\r\nX-Empty:\r\nX-A: second\r\n\r\n").unwrap();
        assert_eq!(r.header("x-a"), Some("v a l"));
        assert_eq!(r.header("x-bin"), None);
        assert_eq!(r.header_bytes("x-bin"), Some(&b"caf\xe9"[..]));
        assert_eq!(r.header("x-empty"), Some(""));
        let all: Vec<_> = r.header_values("X-A").collect();
        assert_eq!(all, [&b"v a l"[..], b"second"]);
        assert_eq!(r.headers().count(), 5);
    }

    #[test]
    fn tokens_keep_alive_and_upgrade() {
        let r = parse(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
        )
        .unwrap();
        assert!(r.has_token("connection", "upgrade"));
        assert!(r.has_token("Connection", "KEEP-ALIVE"));
        assert!(!r.has_token("connection", "keep"));
        assert!(r.is_websocket_upgrade());
        assert!(r.keep_alive());

        // Tokens split over several field lines still count.
        let r = parse(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: foo\r\nConnection: ,upgrade ,\r\n\r\n").unwrap();
        assert!(r.is_websocket_upgrade());

        let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
            .unwrap();
        assert!(!r.is_websocket_upgrade());
        let r = parse(b"GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n").unwrap();
        assert!(!r.is_websocket_upgrade());
        let r = parse(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocketx\r\nConnection: upgrade\r\n\r\n")
            .unwrap();
        assert!(!r.is_websocket_upgrade());

        let r = parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n").unwrap();
        assert!(!r.keep_alive());
        let r = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(r.version_minor(), 0);
        assert!(!r.keep_alive());
        let r = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(r.keep_alive());
    }

    #[test]
    fn malformed_is_400() {
        for head in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\n", // incomplete
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", // target not UTF-8
            b"GET / HTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", // bare CR
            b"GET / HTTP/1.1\rHost: a\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\r\r\n\n",
            b"GET / HTTP/1.1\nHost: a\n\rX: b\n\n",
            b"\rGET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\n\r\n", // no Host
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
        ] {
            assert_eq!(status(head), 400, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn long_target_is_414() {
        let limits = Limits {
            max_uri_bytes: 10,
            ..Limits::default()
        };
        let ok = parse_head(b"GET /123456789 HTTP/1.1\r\nHost: a\r\n\r\n", &limits);
        assert!(ok.is_ok());
        let e = parse_head(b"GET /1234567890 HTTP/1.1\r\nHost: a\r\n\r\n", &limits).unwrap_err();
        assert_eq!(e.status, 414);
    }

    #[test]
    fn too_many_headers_is_431() {
        let limits = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let ok = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(parse_head(ok, &limits).is_ok());
        let e = parse_head(
            b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
            &limits,
        )
        .unwrap_err();
        assert_eq!(e.status, 431);

        // Limits above the stack array use the heap path.
        let limits = Limits {
            max_headers: 100,
            ..Limits::default()
        };
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..99 {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&head, &limits).unwrap().headers().count(), 100);
        let e = parse_head(&head, &Limits::default()).unwrap_err();
        assert_eq!(e.status, 431);

        // The head length itself is also enforced.
        let limits = Limits {
            max_head_bytes: 20,
            ..Limits::default()
        };
        assert_eq!(parse_head(SIMPLE, &limits).unwrap_err().status, 431);
    }

    #[test]
    fn bad_version_is_505() {
        for head in [
            &b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            b"GET / HTTP/0.9\r\nHost: a\r\n\r\n",
            b"\r\nGET / HTTP/3.0\r\n\r\n",
        ] {
            assert_eq!(status(head), 505, "{:?}", String::from_utf8_lossy(head));
        }
        assert_eq!(status(b"GET / HTTP/11\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTPS/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn content_length_rules() {
        let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n").unwrap();
        assert_eq!(r.content_length(), Some(42));
        let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\ncontent-length: 42, 42\r\n\r\n")
            .unwrap();
        assert_eq!(r.content_length(), Some(42));
        let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n").unwrap();
        assert_eq!(r.content_length(), Some(u64::MAX));
        for cl in [
            &b"Content-Length: 42\r\nContent-Length: 43"[..],
            b"Content-Length: 42, 43",
            b"Content-Length: -1",
            b"Content-Length: +1",
            b"Content-Length: 0x10",
            b"Content-Length: 1 2",
            b"Content-Length: ",
            b"Content-Length: ,",
            b"Content-Length: 42,",
            b"Content-Length: 18446744073709551616",
        ] {
            let mut head = b"POST / HTTP/1.1\r\nHost: a\r\n".to_vec();
            head.extend_from_slice(cl);
            head.extend_from_slice(b"\r\n\r\n");
            assert_eq!(status(&head), 400, "{:?}", String::from_utf8_lossy(cl));
        }
    }

    #[test]
    fn transfer_encoding_rules() {
        let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert!(r.is_chunked());
        assert_eq!(r.content_length(), None);

        let te = |v: &str| {
            let head = format!("POST / HTTP/1.1\r\nHost: a\r\n{v}\r\n\r\n");
            parse(head.as_bytes()).map(|r| r.is_chunked())
        };
        // Smuggling: both framings.
        assert_eq!(
            te("Content-Length: 5\r\nTransfer-Encoding: chunked")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            te("Transfer-Encoding: chunked\r\nContent-Length: 5")
                .unwrap_err()
                .status,
            400
        );
        // chunked not last, twice, or empty.
        assert_eq!(te("Transfer-Encoding: chunked, gzip").unwrap_err().status, 400);
        assert_eq!(te("Transfer-Encoding: gzip").unwrap_err().status, 400);
        assert_eq!(te("Transfer-Encoding: chunked, chunked").unwrap_err().status, 400);
        assert_eq!(
            te("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(te("Transfer-Encoding: ").unwrap_err().status, 400);
        assert_eq!(te("Transfer-Encoding: xchunked").unwrap_err().status, 400);
        // A real coding we do not implement before chunked.
        assert_eq!(te("Transfer-Encoding: gzip, chunked").unwrap_err().status, 501);
        assert_eq!(
            te("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked")
                .unwrap_err()
                .status,
            501
        );
        // HTTP/1.0 must not use Transfer-Encoding.
        let e = parse(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn error_display() {
        let e = HttpError::new(431, "too many header fields");
        assert_eq!(e.to_string(), "HTTP 431: too many header fields");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().contains("431"));
    }
}
