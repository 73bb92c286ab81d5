//! Interim request-head parsing (to be replaced by the full module).
#![allow(missing_docs)]

use std::ops::Range;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_uri_bytes: usize,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    Complete(usize),
    Partial,
    TooLarge,
}

#[derive(Debug, Default, Clone)]
pub struct HeadScanner {
    scanned: usize,
}

impl HeadScanner {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Scan {
        let start = self.scanned.saturating_sub(3);
        if let Some(i) = buf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Scan::Complete(start + i + 4);
        }
        self.scanned = buf.len();
        if buf.len() > limits.max_head_bytes {
            Scan::TooLarge
        } else {
            Scan::Partial
        }
    }
    pub fn reset(&mut self) {
        self.scanned = 0;
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HttpError {
    pub status: u16,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

#[derive(Debug, Clone)]
pub struct Request {
    head: Box<[u8]>,
    method: Range<usize>,
    uri: Range<usize>,
    minor: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
}

pub fn parse_head(head: &[u8], limits: &Limits) -> Result<Request, HttpError> {
    let mut hs = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut hs);
    let bad = HttpError {
        status: 400,
        reason: "Bad Request",
    };
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError {
                status: 431,
                reason: "Request Header Fields Too Large",
            })
        }
        Err(httparse::Error::Version) => {
            return Err(HttpError {
                status: 505,
                reason: "HTTP Version Not Supported",
            })
        }
        _ => return Err(bad),
    }
    let base = head.as_ptr() as usize;
    let range = |s: &[u8]| {
        let st = s.as_ptr() as usize - base;
        st..st + s.len()
    };
    let uri = req.path.ok_or(bad)?;
    if uri.len() > limits.max_uri_bytes {
        return Err(HttpError {
            status: 414,
            reason: "URI Too Long",
        });
    }
    Ok(Request {
        method: range(req.method.ok_or(bad)?.as_bytes()),
        uri: range(uri.as_bytes()),
        minor: req.version.ok_or(bad)?,
        headers: req
            .headers
            .iter()
            .map(|h| (range(h.name.as_bytes()), range(h.value)))
            .collect(),
        head: head.into(),
    })
}

impl Request {
    fn s(&self, r: &Range<usize>) -> &str {
        std::str::from_utf8(&self.head[r.clone()]).unwrap_or("")
    }
    pub fn method(&self) -> Method {
        match self.method_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            _ => Method::Other,
        }
    }
    pub fn method_str(&self) -> &str {
        self.s(&self.method)
    }
    pub fn uri(&self) -> &str {
        self.s(&self.uri)
    }
    pub fn path(&self) -> &str {
        let u = self.uri();
        u.split('?').next().unwrap_or(u)
    }
    pub fn version_minor(&self) -> u8 {
        self.minor
    }
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| self.head[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &self.head[v.clone()])
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header_bytes("upgrade").is_some()
    }
    pub fn keep_alive(&self) -> bool {
        let c = self.header_bytes("connection").unwrap_or(b"");
        if self.minor >= 1 {
            !crate::proto::handshake::has_token(c, "close")
        } else {
            crate::proto::handshake::has_token(c, "keep-alive")
        }
    }
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }
    pub fn is_chunked(&self) -> bool {
        self.header_bytes("transfer-encoding").is_some()
    }
}
