//! Shared test support: a blocking WebSocket test client over `std::net::TcpStream` and a
//! server harness that runs a [`Context`] in a background thread with a recording protocol.
//!
//! Everything is bounded in time: sockets have read/write timeouts, waits have deadlines.
#![allow(dead_code)]

pub mod redis;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wsreactor::proto::{encoder, FrameHeader, OpCode};
use wsreactor::{
    CancelHandle, Close, ConnId, Context, ContextBuilder, Protocol, ProtocolContext, ProtocolEvent, Reason,
    WriteProtocol, Wsi,
};

/// Socket read/write timeout of the test client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

// ---- recording ------------------------------------------------------------------------------

/// One callback, as owned values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Init,
    Destroy,
    Cancelled,
    NetFilter(SocketAddr),
    WsiCreate,
    NewClient,
    Filter {
        uri: Option<String>,
        origin: Option<String>,
        cookie: Option<String>,
        host: Option<String>,
        protocol: String,
    },
    Established {
        uri: Option<String>,
    },
    Receive {
        data: Vec<u8>,
        binary: bool,
        first: bool,
        last: bool,
        remaining: u64,
        /// `(frame_is_binary, is_final_fragment, remaining_packet_payload)` read from the Wsi.
        acc: (bool, bool, u64),
    },
    Pong(Vec<u8>),
    Writeable,
    Closed {
        code: Option<u16>,
        reason: Vec<u8>,
    },
    WsiDestroy,
    User(u32),
    Other(String),
}

impl Ev {
    /// A short name of the variant, for sequence assertions.
    pub fn kind(&self) -> &'static str {
        match self {
            Ev::Init => "INIT",
            Ev::Destroy => "DESTROY",
            Ev::Cancelled => "CANCELLED",
            Ev::NetFilter(_) => "FILTER_NETWORK",
            Ev::WsiCreate => "WSI_CREATE",
            Ev::NewClient => "NEW_CLIENT",
            Ev::Filter { .. } => "FILTER_PROTOCOL",
            Ev::Established { .. } => "ESTABLISHED",
            Ev::Receive { .. } => "RECEIVE",
            Ev::Pong(_) => "RECEIVE_PONG",
            Ev::Writeable => "WRITEABLE",
            Ev::Closed { .. } => "CLOSED",
            Ev::WsiDestroy => "WSI_DESTROY",
            Ev::User(_) => "USER",
            Ev::Other(_) => "OTHER",
        }
    }
}

/// A recorded callback: which protocol, which connection (None for protocol events).
#[derive(Debug, Clone)]
pub struct Rec {
    pub proto: String,
    pub conn: Option<ConnId>,
    pub ev: Ev,
    pub at: Instant,
}

/// The shared callback log.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Rec>>>);

impl Log {
    pub fn new() -> Log {
        Log::default()
    }

    pub fn push(&self, r: Rec) {
        self.0.lock().unwrap().push(r);
    }

    pub fn snapshot(&self) -> Vec<Rec> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self, f: impl Fn(&Rec) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|r| f(r)).count()
    }

    /// Waits (polling) until `f` holds for the log, up to `timeout`. Returns whether it did.
    pub fn wait(&self, timeout: Duration, f: impl Fn(&[Rec]) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if f(&self.0.lock().unwrap()) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until at least `n` records match `f`; panics with the log on timeout.
    pub fn wait_count(&self, n: usize, timeout: Duration, f: impl Fn(&Rec) -> bool) {
        if !self.wait(timeout, |l| l.iter().filter(|r| f(r)).count() >= n) {
            panic!(
                "timed out waiting for {n} matching callbacks; log:\n{:#?}",
                self.kinds()
            );
        }
    }

    /// Kind names of all records, for messages.
    pub fn kinds(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .map(|r| format!("{}:{:?}:{}", r.proto, r.conn, r.ev.kind()))
            .collect()
    }

    /// The records of one connection.
    pub fn of_conn(&self, id: ConnId) -> Vec<Rec> {
        self.snapshot()
            .into_iter()
            .filter(|r| r.conn == Some(id))
            .collect()
    }

    /// The received payload pieces of a connection (or all), concatenated per message.
    pub fn messages(&self, conn: Option<ConnId>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        for r in self.snapshot() {
            if conn.is_some() && r.conn != conn {
                continue;
            }
            if let Ev::Receive {
                data, first, last, ..
            } = r.ev
            {
                if first {
                    cur.clear();
                }
                cur.extend_from_slice(&data);
                if last {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
        out
    }
}

/// A hook run after each connection callback has been recorded; its result is the callback's.
pub type Hook = Box<dyn FnMut(&mut Wsi<'_>, Reason<'_>) -> Result<(), Close> + Send>;
/// A hook for protocol events (FILTER_NETWORK_CONNECTION and friends).
pub type PHook = Box<dyn FnMut(&mut ProtocolContext<'_>, ProtocolEvent) -> Result<(), Close> + Send>;

/// A protocol that records every reason into a [`Log`] and then runs an optional hook.
pub struct Recorder {
    name: String,
    log: Log,
    hook: Option<Hook>,
    phook: Option<PHook>,
}

impl Recorder {
    pub fn new(name: &str, log: &Log) -> Recorder {
        Recorder {
            name: name.to_owned(),
            log: log.clone(),
            hook: None,
            phook: None,
        }
    }

    pub fn hook(
        mut self,
        h: impl FnMut(&mut Wsi<'_>, Reason<'_>) -> Result<(), Close> + Send + 'static,
    ) -> Self {
        self.hook = Some(Box::new(h));
        self
    }

    pub fn phook(
        mut self,
        h: impl FnMut(&mut ProtocolContext<'_>, ProtocolEvent) -> Result<(), Close> + Send + 'static,
    ) -> Self {
        self.phook = Some(Box::new(h));
        self
    }

    /// A recorder that echoes every message.
    pub fn echo(name: &str, log: &Log) -> Recorder {
        Recorder::new(name, log).hook(echo)
    }
}

/// Echoes each received piece (fragment by fragment).
pub fn echo(wsi: &mut Wsi<'_>, reason: Reason<'_>) -> Result<(), Close> {
    if let Reason::Receive {
        data,
        binary,
        first,
        last,
        ..
    } = reason
    {
        let wp = match (first, binary) {
            (false, _) => WriteProtocol::Continuation,
            (true, false) => WriteProtocol::Text,
            (true, true) => WriteProtocol::Binary,
        };
        wsi.write_fragment(data, wp, last)?;
    }
    Ok(())
}

impl Protocol for Recorder {
    type Session = ();

    fn callback(&mut self, wsi: &mut Wsi<'_>, _session: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        let s = |v: Option<&str>| v.map(str::to_owned);
        let ev = match reason {
            Reason::WsiCreate => Ev::WsiCreate,
            Reason::ServerNewClientInstantiated => Ev::NewClient,
            Reason::FilterProtocolConnection => Ev::Filter {
                uri: s(wsi.uri()),
                origin: s(wsi.header("origin")),
                cookie: s(wsi.cookie()),
                host: s(wsi.host()),
                protocol: wsi.protocol_name().to_owned(),
            },
            Reason::Established => Ev::Established { uri: s(wsi.uri()) },
            Reason::Receive {
                data,
                binary,
                first,
                last,
                remaining,
            } => Ev::Receive {
                data: data.to_vec(),
                binary,
                first,
                last,
                remaining,
                acc: (
                    wsi.frame_is_binary(),
                    wsi.is_final_fragment(),
                    wsi.remaining_packet_payload(),
                ),
            },
            Reason::ReceivePong { data } => Ev::Pong(data.to_vec()),
            Reason::ServerWriteable => Ev::Writeable,
            Reason::Closed { code, reason } => Ev::Closed {
                code,
                reason: reason.to_vec(),
            },
            Reason::WsiDestroy => Ev::WsiDestroy,
            Reason::User { event, .. } => Ev::User(event),
            other => Ev::Other(format!("{other:?}")),
        };
        self.log.push(Rec {
            proto: self.name.clone(),
            conn: Some(wsi.id()),
            ev,
            at: Instant::now(),
        });
        match &mut self.hook {
            Some(h) => h(wsi, reason),
            None => Ok(()),
        }
    }

    fn protocol_callback(
        &mut self,
        ctx: &mut ProtocolContext<'_>,
        event: ProtocolEvent,
    ) -> Result<(), Close> {
        let ev = match event {
            ProtocolEvent::Init => Ev::Init,
            ProtocolEvent::Destroy => Ev::Destroy,
            ProtocolEvent::EventWaitCancelled => Ev::Cancelled,
            ProtocolEvent::FilterNetworkConnection { peer, .. } => Ev::NetFilter(peer),
            other => Ev::Other(format!("{other:?}")),
        };
        self.log.push(Rec {
            proto: self.name.clone(),
            conn: None,
            ev,
            at: Instant::now(),
        });
        match &mut self.phook {
            Some(h) => h(ctx, event),
            None => Ok(()),
        }
    }
}

// ---- server harness -------------------------------------------------------------------------

type Cmd = Box<dyn FnOnce(&mut Context) + Send>;

/// A context serving in a background thread; dropped (joined) at the end of the test.
pub struct Server {
    pub port: u16,
    pub log: Log,
    /// Number of `service()` calls made so far.
    pub iterations: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    cancel: CancelHandle,
    cmds: mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
}

/// Service timeout of the harness loop.
pub const TICK: Duration = Duration::from_millis(20);

pub fn init_logger() {
    let _ = env_logger::builder().is_test(true).try_init();
}

impl Server {
    /// Starts a context on 127.0.0.1, port 0; `build` adds protocols and settings. The
    /// context is created in the server thread.
    pub fn start(log: &Log, build: impl FnOnce(ContextBuilder) -> ContextBuilder + Send + 'static) -> Server {
        init_logger();
        let stop = Arc::new(AtomicBool::new(false));
        let iterations = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let (ctx_tx, ctx_rx) = mpsc::channel::<Cmd>();
        let stop2 = stop.clone();
        let iters = iterations.clone();
        let thread = std::thread::spawn(move || {
            let b = Context::builder().port(0).interface("127.0.0.1");
            let mut ctx = build(b).build().expect("context builds");
            let port = ctx.local_addr().expect("listening").port();
            tx.send((port, ctx.cancel_handle())).unwrap();
            while !stop2.load(Ordering::SeqCst) {
                ctx.service(TICK).expect("service");
                iters.fetch_add(1, Ordering::SeqCst);
                while let Ok(cmd) = ctx_rx.try_recv() {
                    cmd(&mut ctx);
                }
            }
            drop(ctx);
        });
        let (port, cancel) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("server thread started");
        Server {
            port,
            log: log.clone(),
            iterations,
            stop,
            cancel,
            cmds: ctx_tx,
            thread: Some(thread),
        }
    }

    /// Runs `f` on the context in the server thread (between two `service()` calls) and
    /// returns its result.
    pub fn with_ctx<R: Send + 'static>(&self, f: impl FnOnce(&mut Context) -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        self.cmds
            .send(Box::new(move |ctx: &mut Context| {
                let _ = tx.send(f(ctx));
            }))
            .expect("server thread alive");
        rx.recv_timeout(Duration::from_secs(5))
            .expect("server thread ran the command")
    }

    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Stops the loop, drops the context (PROTOCOL_DESTROY) and joins the thread.
    pub fn stop(mut self) {
        self.shutdown(true);
    }

    fn shutdown(&mut self, check: bool) {
        self.stop.store(true, Ordering::SeqCst);
        self.cancel.cancel();
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if check && r.is_err() {
                panic!("server thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        self.shutdown(!panicking);
    }
}

// ---- client ---------------------------------------------------------------------------------

/// A parsed HTTP response head.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub raw: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A frame received from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: OpCode,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code and reason of a close frame.
    pub fn close(&self) -> (Option<u16>, String) {
        assert_eq!(self.opcode, OpCode::Close, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return (None, String::new());
        }
        (
            Some(u16::from_be_bytes([self.payload[0], self.payload[1]])),
            String::from_utf8(self.payload[2..].to_vec()).expect("close reason is UTF-8"),
        )
    }
}

/// A whole message (or control frame) from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

/// A request builder with the standard upgrade headers, any of which can be replaced or
/// removed.
pub struct Req {
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

/// The key of RFC 6455 §1.3 and its accept value.
pub const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

impl Req {
    pub fn upgrade(port: u16) -> Req {
        Req {
            method: "GET".into(),
            path: "/".into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), format!("127.0.0.1:{port}")),
                ("Upgrade".into(), "websocket".into()),
                ("Connection".into(), "Upgrade".into()),
                ("Sec-WebSocket-Key".into(), RFC_KEY.into()),
                ("Sec-WebSocket-Version".into(), "13".into()),
            ],
        }
    }

    pub fn method(mut self, m: &str) -> Req {
        self.method = m.into();
        self
    }

    pub fn path(mut self, p: &str) -> Req {
        self.path = p.into();
        self
    }

    /// Sets (replacing) a header.
    pub fn set(mut self, name: &str, value: &str) -> Req {
        if let Some(h) = self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            h.1 = value.into();
        } else {
            self.headers.push((name.into(), value.into()));
        }
        self
    }

    pub fn remove(mut self, name: &str) -> Req {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut s = format!("{} {} {}\r\n", self.method, self.path, self.version);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

/// Blocking WebSocket test client.
pub struct Client {
    pub stream: TcpStream,
    rbuf: Vec<u8>,
    rng: u64,
    /// Control frames that arrived inside a fragmented message, returned next.
    pending: std::collections::VecDeque<Msg>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        Client::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let rng = SEED.fetch_add(0x2545_F491_4F6C_DD1D, Ordering::Relaxed) ^ t | 1;
        Client {
            stream,
            rbuf: Vec::new(),
            rng,
            pending: Default::default(),
        }
    }

    /// Connects and completes an upgrade with `req`; panics unless 101.
    pub fn open_with(port: u16, req: Req) -> (Client, Response) {
        let mut c = Client::connect(port);
        c.send(&req.bytes());
        let r = c.read_response().expect("a response");
        assert_eq!(r.status, 101, "upgrade refused: {}", r.raw);
        (c, r)
    }

    /// Connects and upgrades with the default request (no sub-protocol).
    pub fn open(port: u16) -> Client {
        Client::open_with(port, Req::upgrade(port)).0
    }

    /// Connects and upgrades offering `proto`.
    pub fn open_proto(port: u16, proto: &str) -> Client {
        Client::open_with(port, Req::upgrade(port).set("Sec-WebSocket-Protocol", proto)).0
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    pub fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let k = (v >> 32) as u32;
        // make sure the mask really changes bytes
        (k | 0x0101_0101).to_be_bytes()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("client write");
    }

    /// A masked frame's bytes.
    pub fn frame(&mut self, op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let m = self.next_mask();
        encoder::encode_frame(&mut v, op, fin, Some(m), payload);
        v
    }

    pub fn send_frame(&mut self, op: OpCode, fin: bool, payload: &[u8]) {
        let f = self.frame(op, fin, payload);
        self.send(&f);
    }

    pub fn send_text(&mut self, s: &str) {
        self.send_frame(OpCode::Text, true, s.as_bytes());
    }

    pub fn send_binary(&mut self, b: &[u8]) {
        self.send_frame(OpCode::Binary, true, b);
    }

    pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        p
    }

    pub fn send_close(&mut self, code: u16, reason: &str) {
        self.send_frame(OpCode::Close, true, &Self::close_payload(code, reason));
    }

    /// Reads more bytes into the read buffer; Ok(0) at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 << 10];
        let n = self.stream.read(&mut tmp)?;
        self.rbuf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads exactly `out.len()` bytes, from the read-ahead buffer first.
    pub fn read_exact_buffered(&mut self, out: &mut [u8]) {
        while self.rbuf.len() < out.len() {
            match self.fill() {
                Ok(0) => panic!("EOF with {} of {} bytes", self.rbuf.len(), out.len()),
                Ok(_) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        out.copy_from_slice(&self.rbuf[..out.len()]);
        self.rbuf.drain(..out.len());
    }

    /// Reads an HTTP response head; `None` if the server closed without sending anything.
    pub fn read_response(&mut self) -> Option<Response> {
        loop {
            if let Some(r) = parse_response(&mut self.rbuf) {
                return Some(r);
            }
            match self.fill() {
                Ok(0) | Err(_) if self.rbuf.is_empty() => return None,
                Ok(0) => panic!(
                    "EOF inside a response head: {:?}",
                    String::from_utf8_lossy(&self.rbuf)
                ),
                Ok(_) => {}
                Err(e) => panic!("reading response: {e}"),
            }
        }
    }

    /// Reads one server frame; `Ok(None)` at EOF (or reset) before any byte of it. Asserts
    /// that server frames are unmasked.
    pub fn try_read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(f) = take_frame(&mut self.rbuf) {
                return Ok(Some(f));
            }
            match self.fill() {
                Ok(0) => {
                    assert!(
                        self.rbuf.is_empty(),
                        "EOF inside a frame: {} bytes left",
                        self.rbuf.len()
                    );
                    return Ok(None);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset && self.rbuf.is_empty() => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn read_frame(&mut self) -> Frame {
        match self.try_read_frame() {
            Ok(Some(f)) => f,
            Ok(None) => panic!("connection closed while a frame was expected"),
            Err(e) => panic!("reading a frame: {e}"),
        }
    }

    /// Reads the next message (reassembling fragments) or control frame. Control frames
    /// that arrive inside a fragmented message are returned after it.
    pub fn read_msg(&mut self) -> Msg {
        if let Some(m) = self.pending.pop_front() {
            return m;
        }
        let mut acc: Option<(bool, Vec<u8>)> = None;
        loop {
            let f = self.read_frame();
            assert_eq!(f.rsv, 0, "server frame with RSV bits");
            let control = match f.opcode {
                OpCode::Ping => Some(Msg::Ping(f.payload.clone())),
                OpCode::Pong => Some(Msg::Pong(f.payload.clone())),
                OpCode::Close => {
                    let (c, r) = f.close();
                    Some(Msg::Close(c, r))
                }
                _ => None,
            };
            if let Some(m) = control {
                assert!(f.fin, "fragmented control frame from the server");
                if acc.is_none() {
                    return m;
                }
                self.pending.push_back(m);
                continue;
            }
            match f.opcode {
                OpCode::Text | OpCode::Binary => {
                    assert!(acc.is_none(), "new message inside a fragmented one");
                    acc = Some((f.opcode == OpCode::Binary, f.payload));
                }
                OpCode::Continuation => {
                    acc.as_mut()
                        .expect("continuation without a message")
                        .1
                        .extend_from_slice(&f.payload);
                }
                _ => unreachable!(),
            }
            if f.fin {
                let (bin, data) = acc.take().unwrap();
                return if bin {
                    Msg::Binary(data)
                } else {
                    Msg::Text(String::from_utf8(data).expect("server text is UTF-8"))
                };
            }
        }
    }

    pub fn expect_text(&mut self, want: &str) {
        assert_eq!(self.read_msg(), Msg::Text(want.to_owned()));
    }

    /// Reads frames until a close frame; returns its code and reason. Data frames before it
    /// are skipped.
    pub fn expect_close(&mut self) -> (Option<u16>, String) {
        loop {
            let f = self.read_frame();
            if f.opcode == OpCode::Close {
                return f.close();
            }
        }
    }

    /// Reads and discards until EOF (or reset); panics if it does not come within the
    /// socket timeout. Returns the time it took.
    pub fn expect_eof(&mut self) -> Duration {
        let t = Instant::now();
        let mut tmp = [0u8; 64 << 10];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return t.elapsed(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return t.elapsed(),
                Err(e) => panic!("expected EOF, got {e} after {:?}", t.elapsed()),
            }
        }
    }

    /// True if nothing arrives (and no EOF) within `d`.
    pub fn quiet_for(&mut self, d: Duration) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(d)).unwrap();
        let mut b = [0u8; 1];
        let r = self.stream.peek(&mut b);
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        matches!(r, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut)
    }

    /// Answers the close handshake and closes the socket.
    pub fn finish(mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let _ = self.expect_eof();
    }
}

/// The kind names of `recs`, in order.
pub fn kinds_of(recs: &[Rec]) -> Vec<&'static str> {
    recs.iter().map(|r| r.ev.kind()).collect()
}

/// A Receive event with default accessor values matching a whole single-frame message.
pub fn whole(data: &[u8], binary: bool) -> Ev {
    Ev::Receive {
        data: data.to_vec(),
        binary,
        first: true,
        last: true,
        remaining: 0,
        acc: (binary, true, 0),
    }
}

/// Polls `f` until true or timeout.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Takes one whole server frame off the front of `rbuf`, if it holds one. Asserts that
/// server frames are unmasked.
pub fn take_frame(rbuf: &mut Vec<u8>) -> Option<Frame> {
    let (h, n) = FrameHeader::parse(rbuf).expect("valid server frame header")?;
    assert!(h.mask.is_none(), "server frame is masked: {h:?}");
    let total = n + h.payload_len as usize;
    if rbuf.len() < total {
        return None;
    }
    let payload = rbuf[n..total].to_vec();
    rbuf.drain(..total);
    Some(Frame {
        fin: h.fin,
        rsv: h.rsv,
        opcode: h.opcode,
        payload,
    })
}

/// Takes one whole HTTP/1.1 response head off the front of `rbuf` (parsed by httparse, the
/// parser the server uses for requests), if it holds one.
pub fn parse_response(rbuf: &mut Vec<u8>) -> Option<Response> {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut hs);
    let n = match r.parse(rbuf).expect("a valid HTTP response head") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    assert_eq!(r.version, Some(1), "HTTP/1.1 response expected");
    let status = r.code.expect("status code");
    let headers = r
        .headers
        .iter()
        .map(|h| {
            let v = std::str::from_utf8(h.value).expect("header value is UTF-8");
            (h.name.to_owned(), v.trim().to_owned())
        })
        .collect();
    let raw = String::from_utf8(rbuf[..n].to_vec()).expect("response head is UTF-8");
    rbuf.drain(..n);
    Some(Response { status, headers, raw })
}

/// The server still serves a well-behaved client: a text echo on a fresh connection with
/// the library's own blocking client (`ws://127.0.0.1:PORT/`), closed with 1000.
pub fn blocking_echo(port: u16, text: &str) {
    use wsreactor::blocking::{BlockingClient, Message};
    let mut c = BlockingClient::options()
        .timeout(IO_TIMEOUT)
        .connect_url(&format!("ws://127.0.0.1:{port}/"))
        .expect("blocking client connects");
    c.send_text(text).expect("send");
    assert_eq!(
        c.receive().expect("receive"),
        Some(Message::Text(text.to_owned()))
    );
    c.close().expect("close");
}

/// An example program, built beside this test binary (`cargo test --all-targets` builds
/// the examples; CI runs `cargo build --examples` first).
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        p.exists(),
        "{} not built: run cargo test --all-targets",
        p.display()
    );
    p
}
