//! HTTP integration tests: the built-in file server, keep-alive and pipelining, request
//! errors, and the libwebsockets-style HTTP API through a protocol handler, all over real
//! TCP connections on 127.0.0.1 against a `Context` serviced in a background thread.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wsreactor::{Close, Context, ContextBuilder, Protocol, Reason, WriteProtocol, Wsi};

// ---- fixture: a document root ------------------------------------------------------------

const A_TXT: &[u8] = b"hello from a.txt\n";
const INDEX: &[u8] = b"<h1>root index</h1>\n";
const SUB_INDEX: &[u8] = b"<h1>sub index</h1>\n";
const SECRET: &[u8] = b"top secret, outside the root\n";
const FOUR_K: usize = 4096;
const BIG: usize = 3 << 20;
/// `a.txt`'s modification time: Wed, 01 Jan 2020 00:00:00 GMT.
const A_MTIME: u64 = 1_577_836_800;
const A_LAST_MODIFIED: &str = "Wed, 01 Jan 2020 00:00:00 GMT";
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A byte pattern that differs at every offset modulo 251 and is not periodic in
/// powers of two, so a misplaced chunk shows up.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i + seed) % 251) as u8 ^ ((i >> 12) as u8))
        .collect()
}

/// A document root plus a directory outside it, removed on drop.
struct Tree {
    root: PathBuf,
    outside: PathBuf,
}

impl Tree {
    fn new(name: &str) -> Tree {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "wsreactor-http-test-{}-{}-{}",
            std::process::id(),
            name,
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("index.html"), INDEX).unwrap();
        std::fs::write(root.join("sub/index.html"), SUB_INDEX).unwrap();
        std::fs::write(root.join("a.txt"), A_TXT).unwrap();
        std::fs::write(root.join("four_k.bin"), pattern(FOUR_K, 7)).unwrap();
        std::fs::write(root.join("big.bin"), pattern(BIG, 0)).unwrap();
        std::fs::File::options()
            .write(true)
            .open(root.join("a.txt"))
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(A_MTIME))
            .unwrap();
        std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("leak.txt")).unwrap();
        Tree { root, outside }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if let Some(base) = self.root.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
        let _ = std::fs::remove_dir_all(&self.outside);
    }
}

// ---- the handler -------------------------------------------------------------------------

/// Callback log shared with the test thread: one line per interesting reason.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the log (or panics after 5 s).
    fn wait_for(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let end = Instant::now() + IO_TIMEOUT;
        loop {
            let lines = self.lines();
            if pred(&lines) {
                return lines;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}: {lines:#?}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The first protocol. Routes (by path, ignoring the query):
///
/// * FILTER: `/filtered*` is refused.
/// * `/teapot`: `return_http_status(418, "teapot <b>")`.
/// * `/custom-file`: `serve_http_file(a.txt, "application/x-test", X-Extra: 1)`.
/// * `/own`: its own raw response plus `http_transaction_completed`.
/// * `/early`: `return_http_status(401)` straight from `HTTP`, before any body.
/// * `/echo-body`: after `HTTP_BODY_COMPLETION`, 200 with the body as the page text.
/// * anything else: left to the built-in file server.
struct Handler {
    log: Log,
    root: PathBuf,
}

#[derive(Default)]
struct Session {
    uri: String,
    body: Vec<u8>,
}

impl Protocol for Handler {
    type Session = Session;

    fn callback(&mut self, wsi: &mut Wsi<'_>, s: &mut Session, reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::FilterHttpConnection { uri } if uri.starts_with("/filtered") => {
                self.log.push(format!("filter-refused {uri}"));
                return Err(Close::new(1008, "filtered"));
            }
            Reason::Http { uri } => {
                s.uri = uri.to_owned();
                s.body.clear();
                self.log.push(format!("http {uri}"));
                match uri.split('?').next().unwrap_or("") {
                    "/teapot" => wsi.return_http_status(418, Some("teapot <b>"))?,
                    "/custom-file" => wsi.serve_http_file(
                        self.root.join("a.txt"),
                        "application/x-test",
                        &[("X-Extra", "1")],
                    )?,
                    "/own" => {
                        wsi.write(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
                            WriteProtocol::Http,
                        )?;
                        let closing = wsi.http_transaction_completed();
                        self.log.push(format!("own closing={closing}"));
                    }
                    "/early" => wsi.return_http_status(401, Some("early"))?,
                    _ => {}
                }
            }
            Reason::HttpBody { data } => {
                self.log.push(format!("body {} {}", s.uri, data.len()));
                s.body.extend_from_slice(data);
            }
            Reason::HttpBodyCompletion => {
                let body = String::from_utf8_lossy(&s.body).into_owned();
                self.log.push(format!("bodydone {} {body}", s.uri));
                if s.uri.starts_with("/echo-body") {
                    wsi.return_http_status(200, Some(&body))?;
                }
            }
            Reason::HttpFileCompletion => self.log.push(format!("filedone {}", s.uri)),
            Reason::ClosedHttp => self.log.push(format!("closedhttp {}", s.uri)),
            Reason::Closed { .. } => self.log.push(format!("closed {}", s.uri)),
            _ => {}
        }
        Ok(())
    }
}

// ---- the server --------------------------------------------------------------------------

struct Server {
    port: u16,
    log: Log,
    /// Kept for its removal on drop.
    _tree: Tree,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(name: &str) -> Server {
        Server::start_with(name, |b| b)
    }

    fn start_with(
        name: &str,
        configure: impl FnOnce(ContextBuilder) -> ContextBuilder + Send + 'static,
    ) -> Server {
        let tree = Tree::new(name);
        let log = Log::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let root = tree.root.clone();
            let log = log.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let builder = Context::builder()
                    .port(0)
                    .interface("127.0.0.1")
                    .resource_path(&root);
                let mut ctx = configure(builder)
                    .protocol("http-only", Handler { log, root })
                    .build()
                    .expect("build context");
                tx.send(ctx.local_addr().expect("listening").port()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    ctx.service(Duration::from_millis(20)).expect("service");
                }
            })
        };
        let port = rx.recv_timeout(IO_TIMEOUT).expect("server thread did not start");
        Server {
            port,
            log,
            _tree: tree,
            stop,
            thread: Some(thread),
        }
    }

    fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// One request on a fresh connection.
    fn get(&self, path: &str) -> Response {
        let mut c = self.connect();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        c.read_response()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if r.is_err() && !thread::panicking() {
                panic!("server thread panicked");
            }
        }
    }
}

// ---- the client --------------------------------------------------------------------------

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length")
            .map(|v| v.parse().expect("numeric Content-Length"))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

struct Client {
    s: TcpStream,
    /// Bytes read and not yet consumed by a parsed response.
    buf: Vec<u8>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Client { s, buf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write request");
    }

    /// One read of at most `max` bytes into the buffer; 0 at EOF. Panics on timeout.
    fn fill(&mut self, max: usize) -> usize {
        let mut tmp = vec![0; max];
        loop {
            match self.s.read(&mut tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read failed (timeout?): {e}"),
            }
        }
    }

    /// Reads and parses one response head.
    fn read_head(&mut self) -> Response {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(
                self.fill(64 << 10) > 0,
                "EOF before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("ASCII head");
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {status_line:?}");
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (n, v) = l
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad header line {l:?}"));
                (n.to_owned(), v.trim().to_owned())
            })
            .collect();
        Response {
            status,
            headers,
            body: Vec::new(),
        }
    }

    fn read_body(&mut self, r: &mut Response) {
        let no_body = (100..200).contains(&r.status) || r.status == 204 || r.status == 304;
        if no_body {
            return;
        }
        let len = r
            .content_length()
            .unwrap_or_else(|| panic!("response without Content-Length: {r:?}"));
        while self.buf.len() < len {
            assert!(
                self.fill(64 << 10) > 0,
                "EOF after {} of {len} body bytes",
                self.buf.len()
            );
        }
        r.body = self.buf.drain(..len).collect();
    }

    /// Reads one response with its body (framed by `Content-Length`).
    fn read_response(&mut self) -> Response {
        let mut r = self.read_head();
        self.read_body(&mut r);
        r
    }

    /// Reads the response to a `HEAD`: a head only.
    fn read_head_response(&mut self) -> Response {
        self.read_head()
    }

    /// Asserts the server closes the connection with nothing more to say.
    fn expect_eof(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let mut tmp = [0u8; 4096];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => return,
                Ok(n) => panic!("expected EOF, got {:?}", String::from_utf8_lossy(&tmp[..n])),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A reset is a close too (the server had unread input).
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) => panic!("expected EOF, got error (timeout?): {e}"),
            }
        }
    }
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

fn assert_date_header(r: &Response) {
    let date = r.header("date").expect("Date header");
    assert!(
        date.ends_with(" GMT") && date.len() == 29,
        "Date is not an IMF-fixdate: {date:?}"
    );
}

fn assert_status_page(r: &Response, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{r:?}"
    );
    assert_eq!(r.content_length(), Some(r.body.len()));
    assert!(
        r.text().contains(&format!("<h1>{status}</h1>")),
        "status page body: {:?}",
        r.text()
    );
}

// ---- 1. a plain file, GET and HEAD -------------------------------------------------------

#[test]
fn get_and_head_a_text_file() {
    let srv = Server::start("get-head");
    let mut c = srv.connect();
    c.send(&get_request("/a.txt"));
    let r = c.read_response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.content_length(), Some(A_TXT.len()));
    assert_date_header(&r);
    assert_eq!(r.header("last-modified"), Some(A_LAST_MODIFIED));
    let etag = r.header("etag").expect("ETag").to_owned();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag:?}"
    );
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(!r.closes());
    assert_eq!(r.body, A_TXT);

    // HEAD: the same head, no body; the next request on the connection still parses.
    c.send(b"HEAD /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let h = c.read_head_response();
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-type"), r.header("content-type"));
    assert_eq!(h.content_length(), Some(A_TXT.len()));
    assert_eq!(h.header("last-modified"), Some(A_LAST_MODIFIED));
    assert_eq!(h.header("etag"), Some(etag.as_str()));
    assert_date_header(&h);

    c.send(&get_request("/index.html"));
    let r = c.read_response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.body, INDEX);
    assert!(c.buf.is_empty(), "HEAD left body bytes behind");
}

// ---- 2. directories ----------------------------------------------------------------------

#[test]
fn directories_serve_their_index() {
    let srv = Server::start("dirs");
    for (path, body) in [("/", INDEX), ("/sub/", SUB_INDEX), ("/sub", SUB_INDEX)] {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.body, body, "{path}");
    }
}

// ---- 3. connection management ------------------------------------------------------------

#[test]
fn keep_alive_two_requests_on_one_connection() {
    let srv = Server::start("keepalive");
    let mut c = srv.connect();
    c.send(&get_request("/a.txt"));
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
    assert!(!r.closes());
    thread::sleep(Duration::from_millis(50));
    c.send(&get_request("/sub/"));
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, SUB_INDEX));
}

#[test]
fn pipelined_requests_answered_in_order() {
    let srv = Server::start("pipeline");
    let mut c = srv.connect();
    let mut all = get_request("/a.txt");
    all.extend_from_slice(b"HEAD /index.html HTTP/1.1\r\nHost: t\r\n\r\n");
    all.extend_from_slice(&get_request("/four_k.bin"));
    all.extend_from_slice(&get_request("/sub/"));
    c.send(&all);
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
    let r = c.read_head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), Some(INDEX.len()));
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, pattern(FOUR_K, 7));
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, SUB_INDEX));
    // Nothing else comes; the connection is still usable.
    c.send(&get_request("/a.txt"));
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
    assert!(c.buf.is_empty());
}

#[test]
fn connection_close_closes_after_the_response() {
    let srv = Server::start("conn-close");
    let mut c = srv.connect();
    c.send(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
    assert!(r.closes(), "{r:?}");
    c.expect_eof();
}

#[test]
fn http10_closes_unless_keep_alive() {
    let srv = Server::start("http10");
    let mut c = srv.connect();
    c.send(b"GET /a.txt HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
    assert!(r.closes(), "{r:?}");
    c.expect_eof();

    // With Connection: keep-alive, an HTTP/1.0 connection stays open.
    let mut c = srv.connect();
    c.send(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
    assert!(!r.closes(), "{r:?}");
    c.send(b"GET /index.html HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, INDEX));
    assert!(r.closes());
    c.expect_eof();
}

// ---- 4. conditional requests -------------------------------------------------------------

#[test]
fn conditional_requests() {
    let srv = Server::start("conditional");
    let mut c = srv.connect();
    c.send(&get_request("/a.txt"));
    let r = c.read_response();
    let etag = r.header("etag").unwrap().to_owned();
    let lm = r.header("last-modified").unwrap().to_owned();
    assert_eq!(lm, A_LAST_MODIFIED);

    c.send(format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 304, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-length"), None);
    assert_date_header(&r);

    c.send(format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {lm}\r\n\r\n").as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 304, "{r:?}");
    assert_eq!(r.header("last-modified"), Some(A_LAST_MODIFIED));

    // A weak tag matches too (weak comparison); another tag does not.
    c.send(format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"nope\", W/{etag}\r\n\r\n").as_bytes());
    assert_eq!(c.read_response().status, 304);
    c.send(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"nope\"\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));

    c.send(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
    // The connection survived every 304.
    assert!(c.buf.is_empty());
}

// ---- 5. ranges ---------------------------------------------------------------------------

#[test]
fn byte_ranges() {
    let srv = Server::start("ranges");
    let data = pattern(FOUR_K, 7);
    let mut c = srv.connect();
    let range = |c: &mut Client, spec: &str| {
        c.send(format!("GET /four_k.bin HTTP/1.1\r\nHost: t\r\nRange: {spec}\r\n\r\n").as_bytes());
        c.read_response()
    };

    let r = range(&mut c, "bytes=0-99");
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.header("content-range"), Some("bytes 0-99/4096"));
    assert_eq!(r.content_length(), Some(100));
    assert_eq!(r.body, &data[..100]);

    let r = range(&mut c, "bytes=-10");
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.header("content-range"), Some("bytes 4086-4095/4096"));
    assert_eq!(r.body, &data[4086..]);

    let r = range(&mut c, "bytes=100-");
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.header("content-range"), Some("bytes 100-4095/4096"));
    assert_eq!(r.body, &data[100..]);

    let r = range(&mut c, "bytes=999999999-");
    assert_eq!(r.status, 416, "{r:?}");
    assert_eq!(r.header("content-range"), Some("bytes */4096"));
    assert_eq!(r.content_length(), Some(0));
    assert!(r.body.is_empty());

    // Still in sync after the 416.
    let r = range(&mut c, "bytes=4095-5000");
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.body, &data[4095..]);
}

// ---- 6. a large file ---------------------------------------------------------------------

#[test]
fn large_file_streamed_byte_exact() {
    let srv = Server::start("large");
    let mut c = srv.connect();
    c.send(&get_request("/big.bin"));
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.content_length(), Some(BIG));
    assert!(r.body == pattern(BIG, 0), "3 MiB body differs");
    // Keep-alive after a streamed body.
    c.send(&get_request("/a.txt"));
    assert_eq!(c.read_response().body, A_TXT);
}

#[test]
fn slow_reader_does_not_block_the_loop() {
    let srv = Server::start("slow-reader");
    let mut slow = srv.connect();
    slow.s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    slow.send(&get_request("/big.bin"));
    let mut r = slow.read_head();
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), Some(BIG));
    // Trickle: small reads with pauses.
    while slow.buf.len() < 128 << 10 {
        slow.fill(2048);
        thread::sleep(Duration::from_millis(2));
    }
    // Stop reading so the server's socket fills up, then use another connection.
    thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let other = srv.get("/a.txt");
    let took = t.elapsed();
    assert_eq!((other.status, other.body.as_slice()), (200, A_TXT));
    assert!(took < Duration::from_secs(1), "second connection waited {took:?}");
    // The slow client still gets all of it.
    let mut reads = 0u32;
    while slow.buf.len() < BIG {
        assert!(slow.fill(16 << 10) > 0, "EOF after {} bytes", slow.buf.len());
        reads += 1;
        if reads % 32 == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    slow.read_body(&mut r);
    assert!(r.body == pattern(BIG, 0), "3 MiB body differs");
}

/// The handshake timeout is documented as the time to send a request head, but the
/// deadline set at accept (or after the previous response) is still armed while a response
/// streams, so a download that takes longer than it is cut off.
#[test]
fn slow_download_outlives_handshake_timeout() {
    let srv = Server::start_with("slow-download", |b| {
        b.handshake_timeout(Duration::from_millis(400))
    });
    let mut c = srv.connect();
    // Four pipelined 3 MiB responses: more than loopback socket buffers hold, so the
    // server must wait for the client while a body is in progress.
    for _ in 0..4 {
        c.send(&get_request("/big.bin"));
    }
    let mut r = c.read_head();
    assert_eq!(r.status, 200);
    // Stall for twice the timeout, then read at full speed.
    thread::sleep(Duration::from_millis(800));
    let want = pattern(BIG, 0);
    for i in 0..4 {
        if i > 0 {
            r = c.read_head();
            assert_eq!(r.status, 200);
        }
        while c.buf.len() < BIG {
            let n = c.fill(64 << 10);
            assert!(
                n > 0,
                "connection closed after {} of {BIG} bytes of response {i}",
                c.buf.len()
            );
        }
        c.read_body(&mut r);
        assert!(r.body == want, "response {i} differs");
    }
}

/// The same deadline applies while a request body is being received: an upload slower
/// than the handshake timeout is cut off although its head arrived at once.
#[test]
fn slow_upload_outlives_handshake_timeout() {
    let srv = Server::start_with("slow-upload", |b| b.handshake_timeout(Duration::from_millis(400)));
    let mut c = srv.connect();
    c.send(b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n");
    for b in b"0123456789" {
        thread::sleep(Duration::from_millis(100));
        if c.s.write_all(&[*b]).is_err() {
            break;
        }
    }
    let mut tmp = [0u8; 4096];
    let n = c.s.read(&mut tmp).unwrap_or(0);
    c.buf.extend_from_slice(&tmp[..n]);
    assert!(n > 0, "connection closed during a 1 s upload (timeout 400 ms)");
    let r = c.read_response();
    assert_status_page(&r, 200);
    assert!(r.text().contains("0123456789"));
}

// ---- 7. errors ---------------------------------------------------------------------------

/// Sends `request` on a fresh connection and returns the response; with `closes`, asserts
/// `Connection: close` and EOF after it.
fn error_case(srv: &Server, request: &[u8], closes: bool) -> Response {
    let mut c = srv.connect();
    c.send(request);
    let r = c.read_response();
    assert_date_header(&r);
    if closes {
        assert!(
            r.closes(),
            "{} should close: {r:?}",
            String::from_utf8_lossy(&request[..request.len().min(60)])
        );
        c.expect_eof();
    } else {
        assert!(!r.closes(), "{r:?}");
        c.send(&get_request("/a.txt"));
        let ok = c.read_response();
        assert_eq!((ok.status, ok.body.as_slice()), (200, A_TXT));
    }
    r
}

#[test]
fn malformed_requests_get_400_and_close() {
    let srv = Server::start("e400");
    // A connection opened before the errors, mid-request.
    let mut bystander = srv.connect();
    bystander.send(b"GET /a.txt HTTP/1.1\r\n");

    for req in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /a.txt HTTP/1.1\r\n\r\n", // no Host
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /a%00.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /a%zz.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let r = error_case(&srv, req, true);
        assert_status_page(&r, 400);
    }

    bystander.send(b"Host: t\r\n\r\n");
    let r = bystander.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
}

/// Bare-LF requests (RFC 9112 §2.2 lets a server accept them) used to wait out the 10 s
/// header timeout unanswered: now they are answered at once, keep-alive and pipelining
/// included, and a bare CR is still refused at once.
#[test]
fn lf_only_requests_are_answered_promptly() {
    let srv = Server::start("lf-only");
    let prompt = Duration::from_secs(2); // the header timeout is 10 s
    let mut c = srv.connect();
    c.s.set_read_timeout(Some(prompt)).unwrap();
    let t = Instant::now();
    c.send(b"GET /a.txt HTTP/1.1\nHost: x\n\n");
    let r = c.read_response();
    assert!(t.elapsed() < prompt, "answered after {:?}", t.elapsed());
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
    assert_date_header(&r);
    assert!(!r.closes(), "{r:?}");
    // Kept alive; two more pipelined in one write, mixing line ends.
    c.send(b"GET /sub/ HTTP/1.1\nHost: x\r\n\nHEAD /a.txt HTTP/1.1\r\nHost: x\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, SUB_INDEX));
    let r = c.read_head_response();
    assert_eq!((r.status, r.content_length()), (200, Some(A_TXT.len())));
    assert!(t.elapsed() < prompt, "answered after {:?}", t.elapsed());

    // A bare CR: 400 and close, also at once.
    let mut c = srv.connect();
    c.s.set_read_timeout(Some(prompt)).unwrap();
    let t = Instant::now();
    c.send(b"GET /a.txt HTTP/1.1\nHost: x\rX: y\n\n");
    let r = c.read_response();
    assert!(t.elapsed() < prompt, "answered after {:?}", t.elapsed());
    assert_status_page(&r, 400);
    assert!(r.closes(), "{r:?}");
    c.expect_eof();
}

#[test]
fn missing_file_is_404_and_keeps_the_connection() {
    let srv = Server::start("e404");
    let r = error_case(&srv, &get_request("/nope.txt"), false);
    assert_status_page(&r, 404);
    let r = error_case(&srv, &get_request("/sub/nope/"), false);
    assert_status_page(&r, 404);
    // HEAD of a missing file: head only, in sync afterwards.
    let mut c = srv.connect();
    c.send(b"HEAD /nope.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!(r.status, 404);
    c.send(&get_request("/a.txt"));
    assert_eq!(c.read_response().body, A_TXT);
}

#[test]
fn traversal_attempts_are_refused() {
    let srv = Server::start("traversal");
    let mut bystander = srv.connect();
    for path in [
        "/../x",
        "/../outside/secret.txt",
        "/%2e%2e/x",
        "/%2E%2E/outside/secret.txt",
        "/a%2fb",
        "/sub/..%2f..%2fetc/passwd",
        "/sub/%2e%2e/%2e%2e/outside/secret.txt",
        "/sub/..\\a.txt",
        "/leak.txt",
    ] {
        let mut c = srv.connect();
        c.send(&get_request(path));
        let r = c.read_response();
        assert!(matches!(r.status, 403 | 404), "{path}: {r:?}");
        assert!(!r.text().contains("secret"), "{path} leaked: {r:?}");
    }
    // The outside symlink is specifically forbidden.
    assert_status_page(&srv.get("/leak.txt"), 403);
    assert_status_page(&srv.get("/a%2fb"), 403);
    assert_status_page(&srv.get("/%2e%2e/x"), 403);
    // NUL is malformed: 400 and close.
    let r = error_case(&srv, &get_request("/sub/%00/index.html"), true);
    assert_status_page(&r, 400);

    bystander.send(&get_request("/a.txt"));
    assert_eq!(bystander.read_response().body, A_TXT);
}

#[test]
fn method_not_allowed_has_allow() {
    let srv = Server::start("e405");
    let r = error_case(&srv, b"DELETE /a.txt HTTP/1.1\r\nHost: t\r\n\r\n", true);
    assert_status_page(&r, 405);
    let allow = r.header("allow").expect("Allow header");
    assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow:?}");
    // Files are untouched.
    assert_eq!(srv.get("/a.txt").body, A_TXT);
}

#[test]
fn body_over_max_body_size_is_413() {
    let srv = Server::start_with("e413", |b| b.max_body_size(1000));
    let mut bystander = srv.connect();
    let mut req = b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'x'; 100]);
    let r = error_case(&srv, &req, true);
    assert_status_page(&r, 413);
    // A chunked body that grows past the limit is refused too.
    let mut c = srv.connect();
    c.send(b"POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(format!("{:x}\r\n", 1500).as_bytes());
    c.send(&[b'y'; 1500]);
    c.send(b"\r\n");
    let r = c.read_response();
    assert_status_page(&r, 413);
    assert!(r.closes());
    c.expect_eof();
    // A body within the limit is fine.
    let mut c = srv.connect();
    c.send(b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nsmall");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.text().contains("small"));

    bystander.send(&get_request("/a.txt"));
    assert_eq!(bystander.read_response().body, A_TXT);
}

#[test]
fn uri_too_long_is_414() {
    let srv = Server::start("e414");
    let path = format!("/{}", "a".repeat(4999));
    let r = error_case(&srv, &get_request(&path), true);
    assert_status_page(&r, 414);
    // A request line beyond the whole head limit is 414 too.
    let path = format!("/{}", "b".repeat(9000));
    let r = error_case(&srv, &get_request(&path), true);
    assert_status_page(&r, 414);
}

#[test]
fn head_too_large_is_431() {
    let srv = Server::start("e431");
    let mut bystander = srv.connect();
    let mut req = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..3 {
        req.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "p".repeat(3000)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    assert!(req.len() > 8192);
    let r = error_case(&srv, &req, true);
    assert_status_page(&r, 431);
    // Too many fields (default limit 64), in a small head.
    let mut req = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..80 {
        req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let r = error_case(&srv, &req, true);
    assert_status_page(&r, 431);

    bystander.send(&get_request("/a.txt"));
    assert_eq!(bystander.read_response().body, A_TXT);
}

#[test]
fn unsupported_versions_are_505() {
    let srv = Server::start("e505");
    for req in [
        &b"GET /a.txt HTTP/2.0\r\nHost: t\r\n\r\n"[..],
        b"GET /a.txt HTTP/1.2\r\nHost: t\r\n\r\n",
        b"GET /a.txt HTTP/3.0\r\nHost: t\r\n\r\n",
    ] {
        let r = error_case(&srv, req, true);
        assert_status_page(&r, 505);
    }
    // Not a version at all: 400.
    let r = error_case(&srv, b"GET /a.txt HTTX/1.1\r\nHost: t\r\n\r\n", true);
    assert_status_page(&r, 400);
}

// ---- 8. the HTTP API through a handler ---------------------------------------------------

#[test]
fn handler_return_http_status_escapes_text() {
    let srv = Server::start("api-status");
    let mut c = srv.connect();
    c.send(&get_request("/teapot"));
    let r = c.read_response();
    assert_status_page(&r, 418);
    assert!(r.text().contains("teapot &lt;b&gt;"), "{:?}", r.text());
    assert!(!r.text().contains("<b>"));
    assert!(!r.closes());
    // The built-in server did not also answer: the next response is the next request's.
    c.send(&get_request("/a.txt"));
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
    // HEAD: the page's head only.
    c.send(b"HEAD /teapot HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!(r.status, 418);
    c.send(&get_request("/a.txt"));
    assert_eq!(c.read_response().body, A_TXT);
}

#[test]
fn handler_serve_http_file() {
    let srv = Server::start("api-file");
    let mut c = srv.connect();
    c.send(&get_request("/custom-file"));
    let r = c.read_response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/x-test"));
    assert_eq!(r.header("x-extra"), Some("1"));
    assert_eq!(r.content_length(), Some(A_TXT.len()));
    assert_eq!(r.body, A_TXT);
    let lines = srv.log.wait_for("HTTP_FILE_COMPLETION", |l| {
        l.iter().any(|x| x == "filedone /custom-file")
    });
    let http = lines.iter().position(|x| x == "http /custom-file").unwrap();
    let done = lines.iter().position(|x| x == "filedone /custom-file").unwrap();
    assert!(http < done, "{lines:#?}");
    // Keep-alive continues.
    c.send(&get_request("/custom-file"));
    assert_eq!(c.read_response().body, A_TXT);
}

#[test]
fn handler_writes_its_own_response() {
    let srv = Server::start("api-own");
    let mut c = srv.connect();
    c.send(&get_request("/own"));
    let r = c.read_response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"hi");
    c.send(&get_request("/own"));
    assert_eq!(c.read_response().body, b"hi");
    c.send(&get_request("/a.txt"));
    assert_eq!(c.read_response().body, A_TXT);
    assert!(srv.log.lines().iter().any(|l| l == "own closing=false"));

    // Without keep-alive, http_transaction_completed says it will close, and it does.
    let mut c = srv.connect();
    c.send(b"GET /own HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(c.read_response().body, b"hi");
    c.expect_eof();
    assert!(srv.log.lines().iter().any(|l| l == "own closing=true"));
}

#[test]
fn filter_http_connection_refuses_with_403() {
    let srv = Server::start("api-filter");
    let mut c = srv.connect();
    c.send(&get_request("/filtered/a.txt"));
    let r = c.read_response();
    assert_status_page(&r, 403);
    assert!(r.closes());
    c.expect_eof();
    let lines = srv.log.lines();
    assert!(lines.iter().any(|l| l == "filter-refused /filtered/a.txt"));
    assert!(
        !lines.iter().any(|l| l == "http /filtered/a.txt"),
        "HTTP delivered after the filter refused: {lines:#?}"
    );
}

/// The `body …` and `bodydone …` log lines of `uri`, checked for order and sum.
fn check_body_log(lines: &[String], uri: &str, body: &str) {
    let http = lines
        .iter()
        .position(|l| l == &format!("http {uri}"))
        .expect("HTTP");
    let done_line = format!("bodydone {uri} {body}");
    let done = lines
        .iter()
        .position(|l| l == &done_line)
        .unwrap_or_else(|| panic!("no {done_line:?} in {lines:#?}"));
    let prefix = format!("body {uri} ");
    let pieces: Vec<(usize, usize)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((i, l.strip_prefix(&prefix)?.parse().ok()?)))
        .collect();
    assert!(!pieces.is_empty(), "no HTTP_BODY: {lines:#?}");
    assert!(pieces.iter().all(|&(i, _)| http < i && i < done), "{lines:#?}");
    assert_eq!(pieces.iter().map(|&(_, n)| n).sum::<usize>(), body.len());
}

#[test]
fn handler_receives_content_length_body() {
    let srv = Server::start("api-body");
    let mut c = srv.connect();
    c.send(b"POST /echo-body?1 HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello");
    thread::sleep(Duration::from_millis(50));
    c.send(b" world");
    let r = c.read_response();
    assert_status_page(&r, 200);
    assert!(r.text().contains("hello world"), "{:?}", r.text());
    check_body_log(&srv.log.lines(), "/echo-body?1", "hello world");
    // Keep-alive, and a body followed at once by a pipelined request.
    c.send(b"POST /echo-body?2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert!(r.text().contains("abc"), "{:?}", r.text());
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
    check_body_log(&srv.log.lines(), "/echo-body?2", "abc");
}

#[test]
fn handler_receives_chunked_body() {
    let srv = Server::start("api-chunked");
    let mut c = srv.connect();
    c.send(b"POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in [
        &b"5\r\nhel"[..],
        b"lo\r\n",
        b"6;ext=1\r\n wor",
        b"ld\r\n0\r\n",
        b"Trailer: x\r\n\r\n",
    ] {
        thread::sleep(Duration::from_millis(30));
        c.send(piece);
    }
    let r = c.read_response();
    assert_status_page(&r, 200);
    assert!(r.text().contains("hello world"), "{:?}", r.text());
    check_body_log(&srv.log.lines(), "/echo-body", "hello world");
    // Keep-alive after a chunked body.
    c.send(&get_request("/a.txt"));
    assert_eq!(c.read_response().body, A_TXT);
}

#[test]
fn closed_http_on_client_disconnect() {
    let srv = Server::start("api-closed");
    let mut c = srv.connect();
    c.send(&get_request("/a.txt?closed-test"));
    assert_eq!(c.read_response().body, A_TXT);
    drop(c);
    let lines = srv.log.wait_for("CLOSED_HTTP", |l| {
        l.iter()
            .any(|x| x.ends_with(" /a.txt?closed-test") && x.starts_with("closed"))
    });
    assert!(
        lines.iter().any(|x| x == "closedhttp /a.txt?closed-test"),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|x| x == "closed /a.txt?closed-test"));
}

/// An HTTP connection closed by the server after a `Connection: close` response goes
/// through the draining state, and `remove` then reports `Closed` (the WebSocket reason)
/// instead of `ClosedHttp`.
#[test]
fn closed_http_after_connection_close_response() {
    let srv = Server::start("api-closed-close");
    let mut c = srv.connect();
    c.send(b"GET /a.txt?close-test HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(c.read_response().body, A_TXT);
    c.expect_eof();
    drop(c);
    let lines = srv.log.wait_for("a close callback", |l| {
        l.iter()
            .any(|x| x.ends_with(" /a.txt?close-test") && x.starts_with("closed"))
    });
    assert!(
        lines.iter().any(|x| x == "closedhttp /a.txt?close-test"),
        "expected CLOSED_HTTP: {lines:#?}"
    );
}

/// A handler that answers in `HTTP` before the request body has arrived: once that
/// response is flushed the connection forgets the pending body, and the body's bytes are
/// then parsed as a new request (request smuggling).
#[test]
fn early_response_still_consumes_the_body() {
    let srv = Server::start("api-early");
    let mut c = srv.connect();
    let smuggled = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    c.send(
        format!(
            "POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            smuggled.len()
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_status_page(&r, 401);
    // The body arrives after the response went out.
    c.send(smuggled);
    c.send(&get_request("/index.html"));
    let r = c.read_response();
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, INDEX),
        "the request body was answered as a request"
    );
}

// ---- 9. slow and silent clients ----------------------------------------------------------

#[test]
fn slowloris_head_byte_by_byte_is_answered() {
    let srv = Server::start("slowloris");
    let mut c = srv.connect();
    for &b in get_request("/a.txt").iter() {
        c.send(&[b]);
        thread::sleep(Duration::from_millis(3));
    }
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, A_TXT));
    // And a second one on the same connection.
    for &b in get_request("/sub/").iter() {
        c.send(&[b]);
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.read_response().body, SUB_INDEX);
}

#[test]
fn silent_client_closed_after_handshake_timeout() {
    let srv = Server::start_with("silent", |b| {
        b.handshake_timeout(Duration::from_millis(300))
            .keepalive_timeout(Duration::from_millis(300))
    });
    let t = Instant::now();
    let mut silent = srv.connect();
    // A partial head does not extend the deadline either.
    let mut partial = srv.connect();
    partial.send(b"GET /a.txt HTTP/1.1\r\n");
    silent.expect_eof();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    partial.expect_eof();
    // An idle keep-alive connection is closed after its keep-alive timeout.
    let mut c = srv.connect();
    c.send(&get_request("/a.txt"));
    assert_eq!(c.read_response().body, A_TXT);
    let t = Instant::now();
    c.expect_eof();
    assert!(t.elapsed() < Duration::from_secs(3));
    // The server still serves.
    assert_eq!(srv.get("/a.txt").body, A_TXT);
}

#[test]
fn tree_fixture_is_as_described() {
    let tree = Tree::new("fixture");
    let meta = std::fs::metadata(tree.root.join("big.bin")).unwrap();
    assert_eq!(meta.len(), BIG as u64);
    let leak = std::fs::canonicalize(tree.root.join("leak.txt")).unwrap();
    assert!(!leak.starts_with(std::fs::canonicalize(&tree.root).unwrap()));
    let mtime = std::fs::metadata(tree.root.join("a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, UNIX_EPOCH + Duration::from_secs(A_MTIME));
    assert!(SystemTime::now() > mtime);
    assert!(Path::new(&tree.outside).join("secret.txt").exists());
}

// ---- 12. the file cache ------------------------------------------------------------------

/// Long enough for files written now to count as settled, so that the file server holds
/// their content (it does not for files changed within the last 2 s).
const SETTLE: Duration = Duration::from_millis(2300);

fn set_mtime(path: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// Everything but `Date`, in order, plus status and body.
fn comparable(r: &Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let headers = r
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
        .cloned()
        .collect();
    (r.status, headers, r.body.clone())
}

#[test]
fn file_cache_never_serves_stale() {
    let srv = Server::start("cache-stale");
    let root = srv._tree.root.clone();
    for name in ["len.txt", "same.txt", "restored.txt", "gone.txt"] {
        std::fs::write(root.join(name), b"version one").unwrap();
        set_mtime(&root.join(name), A_MTIME);
    }
    std::os::unix::fs::symlink("a.txt", root.join("link.txt")).unwrap();
    thread::sleep(SETTLE);
    let mut c = srv.connect();
    let mut get = |path: &str| {
        c.send(&get_request(path));
        c.read_response()
    };
    // Twice each: the first fills the cache, the second is served from it.
    for name in ["/len.txt", "/same.txt", "/restored.txt", "/gone.txt", "/link.txt"] {
        let first = get(name);
        assert_eq!(first.status, 200, "{name}: {first:?}");
        assert_eq!(comparable(&first), comparable(&get(name)), "{name}");
    }

    // A rewrite with another length.
    std::fs::write(root.join("len.txt"), b"version two, longer").unwrap();
    let r = get("/len.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "version two, longer"));
    assert_eq!(r.content_length(), Some(19));

    // Same length, another mtime: new body, new validators.
    let before = get("/same.txt");
    std::fs::write(root.join("same.txt"), b"version TWO").unwrap();
    set_mtime(&root.join("same.txt"), A_MTIME + 86_400);
    let r = get("/same.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "version TWO"));
    assert_eq!(r.header("last-modified"), Some("Thu, 02 Jan 2020 00:00:00 GMT"));
    assert_ne!(r.header("etag"), before.header("etag"));

    // Same length with the old mtime put back (as `cp -p` would): only the ctime tells,
    // and that is enough for the body (the ETag, from length and mtime, cannot tell).
    std::fs::write(root.join("restored.txt"), b"version TWO").unwrap();
    set_mtime(&root.join("restored.txt"), A_MTIME);
    let r = get("/restored.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "version TWO"));
    assert_eq!(r.header("last-modified"), Some(A_LAST_MODIFIED));

    // Deleted: 404 on the same connection; created again: served.
    std::fs::remove_file(root.join("gone.txt")).unwrap();
    assert_status_page(&get("/gone.txt"), 404);
    std::fs::write(root.join("gone.txt"), b"back again").unwrap();
    let r = get("/gone.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "back again"));

    // A symlink retargeted outside the root after it was cached is refused.
    std::fs::remove_file(root.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(srv._tree.outside.join("secret.txt"), root.join("link.txt")).unwrap();
    let r = get("/link.txt");
    assert_status_page(&r, 403);
    assert!(!r.text().contains("secret"));
    // And a file that was never cached but is created after a 404.
    assert_status_page(&get("/later.txt"), 404);
    std::fs::write(root.join("later.txt"), b"later").unwrap();
    assert_eq!(get("/later.txt").body, b"later");
    // The outside link stays refused on repeat (errors are not cached as successes).
    assert_status_page(&get("/leak.txt"), 403);
    assert_status_page(&get("/leak.txt"), 403);
}

#[test]
fn file_cache_responses_identical_to_uncached() {
    let cached = Server::start("cache-on");
    let root = cached._tree.root.clone();
    let uncached = {
        let root = root.clone();
        Server::start_with("cache-off", move |b| b.resource_path(root).file_cache_entries(0))
    };
    thread::sleep(SETTLE);
    let four_k = pattern(FOUR_K, 7);
    let tag = {
        let r = cached.get("/four_k.bin");
        assert_eq!(r.body, four_k);
        r.header("etag").unwrap().to_owned()
    };
    let requests = [
        get_request("/four_k.bin"),
        get_request("/a.txt?q=1"),
        get_request("/"),
        get_request("/sub"),
        get_request("/big.bin"),
        b"HEAD /four_k.bin HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"GET /four_k.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-199\r\n\r\n".to_vec(),
        b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=-5\r\n\r\n".to_vec(),
        b"GET /four_k.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=5000-\r\n\r\n".to_vec(),
        format!("GET /four_k.bin HTTP/1.1\r\nHost: t\r\nIf-None-Match: {tag}\r\n\r\n").into_bytes(),
        format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {A_LAST_MODIFIED}\r\n\r\n")
            .into_bytes(),
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-Match: \"nope\"\r\n\r\n".to_vec(),
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /a.txt HTTP/1.0\r\n\r\n".to_vec(),
    ];
    for req in &requests {
        let head_only = req.starts_with(b"HEAD");
        let fetch = |srv: &Server| {
            let mut c = srv.connect();
            // Twice on one connection where it stays open: fill, then hit.
            c.send(req);
            let r1 = if head_only {
                c.read_head_response()
            } else {
                c.read_response()
            };
            if r1.closes() {
                return vec![r1];
            }
            c.send(req);
            let r2 = if head_only {
                c.read_head_response()
            } else {
                c.read_response()
            };
            vec![r1, r2]
        };
        let a: Vec<_> = fetch(&cached).iter().map(comparable).collect();
        let b: Vec<_> = fetch(&uncached).iter().map(comparable).collect();
        assert_eq!(a, b, "{}", String::from_utf8_lossy(req));
    }
    // Pipelined, a cached body and a streamed one alternate in order.
    let mut c = cached.connect();
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend_from_slice(&get_request("/four_k.bin"));
        all.extend_from_slice(&get_request("/big.bin"));
    }
    c.send(&all);
    for _ in 0..3 {
        assert_eq!(c.read_response().body, four_k);
        assert!(c.read_response().body == pattern(BIG, 0));
    }
    // A body from memory still ends with HTTP_FILE_COMPLETION, as a streamed one does.
    cached
        .log
        .wait_for("filedone", |l| l.iter().any(|x| x == "filedone /four_k.bin"));
}
