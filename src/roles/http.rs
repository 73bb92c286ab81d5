//! The HTTP/1.1 server role: reading request heads, the filter and `HTTP` callbacks,
//! request bodies, the built-in file server for what the handler leaves unanswered,
//! keep-alive, and the decision to hand an upgrade request to the
//! [WebSocket role](super::websocket).
//!
//! Parsing and response heads are the sans-IO [`http`](crate::http) module's; this module
//! drives them for one connection.

use super::Stop;
use crate::connection::{flag, Conn};
use crate::context::Context;
use crate::fileserver::FileStream;
use crate::http::chunked::{Chunk, ChunkedDecoder};
use crate::http::request::{self as req, HeadScanner, Request, Scan};
use crate::http::{files, response};
use crate::reason::Reason;
use crate::shared::Shared;
use crate::timers::{PendingTimeout, Timers};
use crate::tls::PlainHttp;

/// A request body being received.
#[derive(Debug, Default)]
pub(crate) enum Body {
    #[default]
    None,
    /// `Content-Length` bytes still to come.
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// HTTP-side state, boxed so that it costs one pointer once the connection is upgraded.
#[derive(Debug, Default)]
pub(crate) struct HttpState {
    /// The request head, while it is incomplete.
    pub(crate) head: Vec<u8>,
    pub(crate) scanner: HeadScanner,
    /// The current request, readable through the Wsi until after ESTABLISHED.
    pub(crate) request: Option<Request>,
    pub(crate) body: Body,
    /// Body bytes received so far (checked against the body limit).
    pub(crate) body_seen: u64,
    pub(crate) file: Option<FileStream>,
    /// An outgoing connection's handshake state (the client role's).
    pub(crate) client: Option<Box<super::client::ClientState>>,
}

impl Context {
    pub(crate) fn http_input(&mut self, k: usize, buf: &mut [u8]) -> (usize, Stop) {
        let limits = self.cfg.http_limits;
        let c = &mut self.conns[k];
        if c.has(flag::SHUTDOWN_AFTER_FLUSH) {
            return (buf.len(), Stop::Done);
        }
        if c.http.as_ref().is_some_and(|h| !matches!(h.body, Body::None)) {
            return self.body_input(k, buf);
        }
        if c.has(flag::HTTP_RESPONDED) {
            // A response is still going out: hold pipelined requests until it is done.
            return (0, Stop::Paused);
        }
        if c.timeout_reason() == PendingTimeout::HttpKeepaliveIdle as u8 {
            // The next request starts from bytes already read (pipelined, or stashed
            // behind the last response): it gets its own deadline, not what is left of
            // the idle one (a read would have done this, but there was none).
            let head = self.shared.timers.live.head;
            self.shared
                .timers
                .arm(c, k, head, PendingTimeout::HttpContent as u8);
        }
        let hs = c.http.get_or_insert_with(Box::default);
        let (parsed, consumed) = if hs.head.is_empty() {
            match hs.scanner.scan(buf, &limits) {
                Scan::Complete(n) => (req::parse_head(&buf[..n], &limits), n),
                Scan::Partial => {
                    hs.head.extend_from_slice(buf);
                    return (buf.len(), Stop::NeedMore);
                }
                Scan::TooLarge => {
                    let e = hs.scanner.too_large_error();
                    self.http_error(k, e.status, e.reason);
                    return (buf.len(), Stop::Done);
                }
            }
        } else {
            let before = hs.head.len();
            hs.head.extend_from_slice(buf);
            match hs.scanner.scan(&hs.head, &limits) {
                Scan::Complete(n) => {
                    let r = req::parse_head(&hs.head[..n], &limits);
                    hs.head = Vec::new();
                    (r, n - before)
                }
                Scan::Partial => return (buf.len(), Stop::NeedMore),
                Scan::TooLarge => {
                    let e = hs.scanner.too_large_error();
                    self.http_error(k, e.status, e.reason);
                    return (buf.len(), Stop::Done);
                }
            }
        };
        hs.scanner.reset();
        let request = match parsed {
            Ok(r) => r,
            Err(e) => {
                self.http_error(k, e.status, e.reason);
                return (buf.len(), Stop::Done);
            }
        };
        // Anything that looks like an upgrade attempt goes to the upgrade path, so that an
        // incomplete one is refused with the handshake's status instead of served as HTTP.
        let upgrade =
            request.has_token("upgrade", "websocket") || request.header_bytes("sec-websocket-key").is_some();
        hs.request = Some(request);
        // The head is in: what is left of the request's deadline (set at its start) is
        // decided once its body is known, in `http_request`.
        if c.has(flag::PLAIN_ON_TLS) {
            self.plain_on_tls(k);
            return (buf.len(), Stop::Done);
        }
        if upgrade {
            if self.upgrade(k) {
                (consumed, Stop::Switched)
            } else {
                (buf.len(), Stop::Done)
            }
        } else {
            self.http_request(k);
            (consumed, Stop::Switched)
        }
    }

    /// A plain HTTP request on a TLS listener: a 400 page saying so, or a redirect to the
    /// same URL over https (the choice of [`PlainHttp`]); either way the connection closes.
    fn plain_on_tls(&mut self, k: usize) {
        let redirect = self.cfg.plain_http == PlainHttp::Redirect;
        let c = &self.conns[k];
        let request = c.request().expect("held");
        let location = match (redirect, request.header("host")) {
            (true, Some(host)) if !host.is_empty() => Some(format!("https://{host}{}", request.uri())),
            _ => None,
        };
        match location {
            Some(l) => self.respond_and_close(k, 301, None, &[("Location", &l)]),
            None => self.respond_and_close(
                k,
                400,
                Some("This port speaks TLS: use https:// (or wss://)."),
                &[],
            ),
        }
    }

    /// Feeds request body bytes to `HTTP_BODY`; at the end, `HTTP_BODY_COMPLETION` and the
    /// default response if the handler gave none.
    fn body_input(&mut self, k: usize, buf: &mut [u8]) -> (usize, Stop) {
        let max_body = self.cfg.max_body;
        let mut pos = 0;
        loop {
            let Some(c) = self.conns.get_mut(k) else {
                return (buf.len(), Stop::Done);
            };
            let hs = c.http.as_mut().expect("body implies http state");
            let (n, data, done) = match &mut hs.body {
                Body::None => return (pos, Stop::Switched),
                Body::Length(left) => {
                    let n = (buf.len() - pos).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    (n, pos..pos + n, *left == 0)
                }
                Body::Chunked(dec) => match dec.decode(&buf[pos..]) {
                    Ok((n, Chunk::Data(d))) => {
                        let start = pos + n - d.len();
                        (n, start..start + d.len(), false)
                    }
                    Ok((n, Chunk::NeedMore)) => {
                        pos += n;
                        return (pos, Stop::NeedMore);
                    }
                    Ok((n, Chunk::Done)) => (n, pos..pos, true),
                    Err(e) => {
                        self.http_error(k, e.status, e.reason);
                        return (buf.len(), Stop::Done);
                    }
                },
            };
            pos += n;
            hs.body_seen += data.len() as u64;
            if hs.body_seen > max_body {
                self.http_error(k, 413, "request body too large");
                return (buf.len(), Stop::Done);
            }
            if !data.is_empty() && self.call(k, Reason::HttpBody { data: &buf[data] }).is_err() {
                self.remove(k);
                return (buf.len(), Stop::Done);
            }
            if done {
                if let Some(c) = self.conns.get_mut(k) {
                    if c.timeout_reason() == PendingTimeout::HttpContent as u8 {
                        Timers::disarm(c);
                    }
                    if let Some(hs) = c.http.as_mut() {
                        hs.body = Body::None;
                    }
                }
                if self.call(k, Reason::HttpBodyCompletion).is_err() {
                    self.remove(k);
                    return (buf.len(), Stop::Done);
                }
                self.default_response(k);
                // If the response went out before the body ended, the transaction ends now.
                self.flush(k);
                return (pos, Stop::Switched);
            }
            if pos == buf.len() {
                return (pos, Stop::NeedMore);
            }
        }
    }

    /// A plain HTTP request on the first protocol: `FILTER_HTTP_CONNECTION`, `HTTP`, then
    /// the body (if any), then the file server for what the handler left unanswered.
    fn http_request(&mut self, k: usize) {
        let c = &mut self.conns[k];
        let request = c.request().expect("held");
        let uri = request.uri().to_owned();
        // A context shutting down serves this request, then closes.
        let keep_alive = request.keep_alive() && !self.shutting_down;
        let body = if request.is_chunked() {
            Body::Chunked(ChunkedDecoder::new())
        } else {
            match request.content_length() {
                Some(n) if n > self.cfg.max_body => {
                    self.http_error(k, 413, "request body too large");
                    return;
                }
                Some(n) if n > 0 => Body::Length(n),
                _ => Body::None,
            }
        };
        if keep_alive {
            c.set(flag::KEEP_ALIVE);
        } else {
            c.clear(flag::KEEP_ALIVE);
        }
        let body_expected = !matches!(body, Body::None);
        if c.timeout_reason() == PendingTimeout::HttpContent as u8 {
            let live = self.shared.timers.live;
            match c.deadline {
                // The body has until the request's whole deadline, counted from the same
                // start as the head's.
                Some(d) if body_expected && live.request > 0 => {
                    c.deadline = std::num::NonZeroU64::new(d.get() + live.request - live.head);
                }
                _ => Timers::disarm(c),
            }
        }
        if let Some(hs) = c.http.as_mut() {
            // Known before the handler runs, so that an early response knows a body is
            // still unread.
            hs.body = body;
            hs.body_seen = 0;
        }
        self.shared.stats.http_requests += 1;
        if let Err(e) = self.call(k, Reason::FilterHttpConnection { uri: &uri }) {
            log::debug!("refused by FILTER_HTTP_CONNECTION: {} {}", e.code, e.reason);
            self.refuse(k, &e);
            return;
        }
        if let Err(e) = self.call(k, Reason::Http { uri: &uri }) {
            if e.is_back_pressure() {
                self.callback_failed(k, &e);
            } else if e.http_status_code().is_some()
                && self.conns.get(k).is_some_and(|c| !c.has(flag::HTTP_RESPONDED))
            {
                self.refuse(k, &e);
                return;
            } else {
                self.remove(k);
                return;
            }
        }
        if !body_expected {
            self.default_response(k);
        }
    }

    /// The built-in answer to a request the handler left: files for GET and HEAD, 405
    /// for other methods.
    fn default_response(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if c.has(flag::HTTP_RESPONDED) || c.unsent() > 0 || c.has(flag::SHUTDOWN_AFTER_FLUSH) {
            return;
        }
        let request = c.request().expect("held");
        let head_only = request.method() == req::Method::Head;
        if !matches!(request.method(), req::Method::Get | req::Method::Head) {
            self.respond_and_close(k, 405, None, &[("Allow", "GET, HEAD")]);
            return;
        }
        let Some(cache) = self.file_cache.as_mut() else {
            self.respond(k, 404, None, &[]);
            return;
        };
        let now = self.shared.date.time();
        let file = match cache.lookup(request.path(), now) {
            Ok(f) => f,
            Err(e) => {
                log::debug!("{}: {} {}: {e:?}", c.peer(), request.method_str(), request.path());
                if e.status() == 400 {
                    self.respond_and_close(k, 400, None, &[]);
                } else {
                    self.respond(k, e.status(), None, &[]);
                }
                return;
            }
        };
        // The common request has no preconditions and no Range: its head is precomputed.
        let plan = (!files::is_unconditional(request)).then(|| files::plan(request, file.resolved(), now));
        let date = Some(self.shared.date.date());
        let keep = c.has(flag::KEEP_ALIVE);
        let out = c.out_buf(&mut self.shared.bufs);
        let (range, body_len) = match &plan {
            None => {
                file.write_ok_head(out, keep, date);
                (None, file.resolved().len)
            }
            Some(plan) => {
                plan.write_head(out, keep, date);
                (plan.range, plan.body_len)
            }
        };
        if !head_only && body_len > 0 {
            let start = range.map_or(0, |(a, _)| a);
            if let Some(body) = file.body() {
                // Head and body in one buffer: one send for a small file.
                out.extend_from_slice(&body[start as usize..(start + body_len) as usize]);
                self.complete_http(k);
                let _ = self.call(k, Reason::HttpFileCompletion);
                return;
            }
            match FileStream::open(&file.resolved().path, start, body_len) {
                Ok(stream) => c.http.as_mut().expect("held").file = Some(stream),
                Err(e) => {
                    // Raced with a delete: the head is out already, so only closing is honest.
                    log::warn!("{}: open {}: {e}", c.peer(), file.resolved().path.display());
                    self.remove(k);
                    return;
                }
            }
        }
        self.complete_http(k);
    }

    fn complete_http(&mut self, k: usize) {
        if let Some(c) = self.conns.get_mut(k) {
            c.complete_http();
        }
    }

    fn http_error(&mut self, k: usize, status: u16, reason: &str) {
        if let Some(c) = self.conns.get(k) {
            log::debug!("{}: HTTP {status}: {reason}", c.peer());
        }
        self.respond_and_close(k, status, None, &[]);
    }

    pub(crate) fn respond_and_close(
        &mut self,
        k: usize,
        status: u16,
        text: Option<&str>,
        extra: &[(&str, &str)],
    ) {
        if let Some(c) = self.conns.get_mut(k) {
            c.clear(flag::KEEP_ALIVE);
            if let Some(hs) = c.http.as_mut() {
                hs.body = Body::None;
            }
        }
        self.respond(k, status, text, extra);
    }

    /// Refuses a request as a filter's (or `HTTP`'s) error says: its HTTP status and text,
    /// else a plain 403; then closes.
    pub(crate) fn refuse(&mut self, k: usize, e: &crate::reason::Close) {
        self.shared.stats.refused += 1;
        let status = e.http_status_code().unwrap_or(403);
        let text = (status == e.code && !e.reason.is_empty()).then_some(&*e.reason);
        self.respond_and_close(k, status, text, &[]);
    }

    /// Queues a small HTML status page (`lws_return_http_status`); the connection stays
    /// open only with keep-alive and no unread body.
    fn respond(&mut self, k: usize, status: u16, text: Option<&str>, extra: &[(&str, &str)]) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        queue_status_page(c, &mut self.shared, status, text, extra);
    }

    /// After a flush that emptied the out buffer: once the response is out and the request
    /// body consumed, a kept-alive connection reads its next request, which may already be
    /// stashed.
    pub(crate) fn http_flushed(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        // An early response does not end the transaction before the request body is
        // consumed: the body must never be read as the next request.
        if c.has(flag::HTTP_RESPONDED)
            && c.http
                .as_ref()
                .is_none_or(|h| h.file.is_none() && matches!(h.body, Body::None))
        {
            c.clear(flag::HTTP_RESPONDED);
            c.http = None;
            let idle = self.shared.timers.live.keepalive;
            self.shared
                .timers
                .arm(c, k, idle, PendingTimeout::HttpKeepaliveIdle as u8);
            if let Some(c) = self.conns.get_mut(k) {
                self.shared.schedule_resume(k, c);
            }
        }
    }

    /// Refills the (drained) out buffer with the next chunk of a file response. False when
    /// there is no file to stream, or the connection was dropped.
    pub(crate) fn next_file_chunk(&mut self, k: usize) -> bool {
        let Some(c) = self.conns.get_mut(k) else {
            return false;
        };
        if c.http.as_ref().is_none_or(|h| h.file.is_none()) {
            return false;
        }
        c.out_buf(&mut self.shared.bufs);
        c.out_pos = 0;
        let fs = c.http.as_mut().and_then(|h| h.file.as_mut()).expect("checked");
        match fs.next_chunk(&mut c.out) {
            Ok(false) => true,
            Ok(true) => {
                c.http.as_mut().expect("held").file = None;
                let _ = self.call(k, Reason::HttpFileCompletion);
                self.conns.contains(k)
            }
            Err(e) => {
                log::warn!("{}: file read failed or ended early: {e}", c.peer());
                self.remove(k);
                false
            }
        }
    }
}

/// Queues a small HTML status page as the response to the current request, framed for its
/// method (no body for HEAD) and keep-alive, and completes the transaction.
pub(crate) fn queue_status_page(
    c: &mut Conn,
    shared: &mut Shared,
    status: u16,
    text: Option<&str>,
    extra: &[(&str, &str)],
) {
    let head_only = c.request().is_some_and(|r| r.method() == req::Method::Head);
    let keep = c.has(flag::KEEP_ALIVE);
    let out = c.out_buf(&mut shared.bufs);
    response::status_page(
        out,
        status,
        text,
        extra,
        keep,
        head_only,
        Some(shared.date.date()),
    );
    c.complete_http();
}
