//! The context: a mio poll loop owning the listeners, the connection table and the
//! protocols, and the `service()` call that drives them all.
//!
//! Data path, in order: a readiness event → [`Context::read_conn`] reads into the one
//! context-wide buffer → [`Context::input`] hands the bytes to the HTTP head parser or to
//! the WebSocket [`Receiver`](crate::proto::Receiver) → events become callbacks → writes
//! made by callbacks land in the connection's out buffer → [`Context::flush`] sends them
//! in one `write` when the read batch is done.

use crate::connection::{flag, Body, Conn, State};
use crate::dispatch::{ErasedProtocol, Registered, Slot};
use crate::fileserver::cache::{self as file_cache, FileCache};
use crate::fileserver::FileStream;
use crate::http::chunked::{Chunk, ChunkedDecoder};
use crate::http::request::{self as req, Scan};
use crate::http::{files, response, DateCache};
use crate::listener;
use crate::proto::{self, close::code, encoder, handshake, Event, Receiver, Role};
use crate::protocol::{Close, Protocol, ProtocolEvent, ProtocolId, Reason};
use crate::timers::Timers;
use crate::wsi::{CtxRequest, ProtocolContext, Shared, Wsi};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 64;

/// Why input processing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The bytes end inside a unit (header, control frame): keep the rest, read more.
    NeedMore,
    /// Reading is paused: keep the rest and deliver it on resume.
    Paused,
    /// The connection changed state (upgrade): go on with the rest in the new state.
    Switched,
    /// No further input is wanted (closing, failed, removed): drop the rest.
    Done,
}

/// Settings of one protocol beyond its handler (the other fields of libwebsockets'
/// `struct libwebsocket_protocols`).
///
/// ```
/// # use wsreactor::{Context, ProtocolSpec, Protocol, Reason, Wsi, Close};
/// # #[derive(Default)] struct Chat;
/// # impl Protocol for Chat { type Session = ();
/// #   fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> { Ok(()) } }
/// let ctx = Context::builder()
///     .no_listen()
///     .protocol_spec(ProtocolSpec::new("chat", Chat).rx_buffer_size(4096).id(7))
///     .build()
///     .unwrap();
/// ```
pub struct ProtocolSpec<P> {
    name: String,
    handler: P,
    rx_buffer_size: usize,
    id: u32,
}

impl<P: Protocol> ProtocolSpec<P> {
    /// A protocol answering to `name` with `handler`.
    pub fn new(name: impl Into<String>, handler: P) -> Self {
        ProtocolSpec {
            name: name.into(),
            handler,
            rx_buffer_size: 0,
            id: 0,
        }
    }

    /// Largest piece of payload delivered in one `RECEIVE` (0: as much as was read).
    pub fn rx_buffer_size(mut self, n: usize) -> Self {
        self.rx_buffer_size = n;
        self
    }

    /// A number of the user's, readable with [`Context::protocol_user_id`] (libwebsockets'
    /// protocol `id` field, for versioning).
    pub fn id(mut self, id: u32) -> Self {
        self.id = id;
        self
    }
}

/// Configuration of a [`Context`]; see [`Context::builder`].
pub struct ContextBuilder {
    port: Option<u16>,
    interface: Option<String>,
    protocols: Vec<Registered>,
    limits: proto::Limits,
    http_limits: req::Limits,
    max_unsent: usize,
    rx_buffer_size: usize,
    read_budget: usize,
    handshake_timeout: Duration,
    close_timeout: Duration,
    any_protocol: bool,
    backlog: i32,
    resource_path: Option<std::path::PathBuf>,
    max_body: u64,
    file_cache_entries: usize,
    file_cache_bytes: usize,
}

impl ContextBuilder {
    /// TCP port to listen on; 0 picks a free one (see [`Context::local_addr`]). Default 7681.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Do not listen at all, for client-only use (libwebsockets' `CONTEXT_PORT_NO_LISTEN`).
    pub fn no_listen(mut self) -> Self {
        self.port = None;
        self
    }

    /// Listen only on this IPv4 or IPv6 address, or interface name. Default: all.
    pub fn interface(mut self, iface: &str) -> Self {
        self.interface = Some(iface.to_owned());
        self
    }

    /// Registers a protocol under `name`. The first registered protocol is the default one
    /// (no sub-protocol offered) and also receives the HTTP reasons.
    pub fn protocol<P: Protocol>(self, name: &str, handler: P) -> Self {
        self.protocol_spec(ProtocolSpec::new(name, handler))
    }

    /// Registers a protocol with its settings.
    pub fn protocol_spec<P: Protocol>(mut self, spec: ProtocolSpec<P>) -> Self {
        self.protocols.push(Registered {
            name: spec.name,
            rx_buffer_size: spec.rx_buffer_size,
            id: spec.id,
            handler: Box::new(Slot::new(spec.handler)),
        });
        self
    }

    /// Largest message accepted, in bytes; larger ones fail with 1009. Default 64 MiB.
    pub fn max_message_size(mut self, n: u64) -> Self {
        self.limits.max_message_size = n;
        self
    }

    /// Largest frame accepted, in bytes; larger ones fail with 1009. Default 16 MiB.
    pub fn max_frame_size(mut self, n: u64) -> Self {
        self.limits.max_frame_size = n;
        self
    }

    /// Largest HTTP request head (request line and headers), in bytes; larger ones get
    /// 431. Default 8 KiB.
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.http_limits.max_head_bytes = n;
        self
    }

    /// Bound on the bytes queued and unsent per connection; a write beyond it returns
    /// [`WriteError::BackPressure`](crate::WriteError). Default 4 MiB.
    pub fn max_unsent(mut self, n: usize) -> Self {
        self.max_unsent = n.max(1);
        self
    }

    /// Size of the context-wide receive buffer (one per context, not per connection).
    /// Default 256 KiB: a 64 KiB message and its header then usually arrive in one read,
    /// and are echoed as one frame rather than split at a read boundary (scenario c of
    /// BENCHMARKS.md: about 5 % less server CPU per MB than with 64 KiB).
    pub fn rx_buffer_size(mut self, n: usize) -> Self {
        self.rx_buffer_size = n.max(256);
        self
    }

    /// How long a new connection may take to send its request head. Default 10 s.
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// How long to wait for the peer's close frame after sending ours, and for its EOF
    /// after our last byte. Default 5 s.
    pub fn close_timeout(mut self, t: Duration) -> Self {
        self.close_timeout = t;
        self
    }

    /// Accept upgrades that offer only unknown sub-protocols, binding them to the first
    /// protocol and selecting the client's first offer (default: refuse with 400). Meant
    /// for echo and test servers that speak any sub-protocol.
    pub fn accept_any_protocol(mut self, yes: bool) -> Self {
        self.any_protocol = yes;
        self
    }

    /// Serves the files under `dir` over HTTP for requests the first protocol's `HTTP`
    /// callback leaves unanswered (a directory, `/` included, is served by its
    /// `index.html`). Default: no file serving (404).
    ///
    /// The directory is canonicalised once, at the first request that finds it, and the
    /// symlink check (the file must stay inside it) is made when a file enters the file
    /// cache; see [`file_cache_entries`](Self::file_cache_entries).
    pub fn resource_path(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.resource_path = Some(dir.into());
        self
    }

    /// Largest HTTP request body accepted (413 beyond). Default 1 MiB.
    pub fn max_body_size(mut self, n: u64) -> Self {
        self.max_body = n;
        self
    }

    /// How many files of the [`resource_path`](Self::resource_path) the file server keeps
    /// resolved (path checks done, headers formatted, content too for small files), like
    /// nginx's `open_file_cache` but checked with one `stat` per request, so a changed,
    /// replaced or deleted file is never served stale. 0 resolves every request afresh.
    /// Default 1024.
    pub fn file_cache_entries(mut self, n: usize) -> Self {
        self.file_cache_entries = n;
        self
    }

    /// Total bytes of file content the file server holds in memory; only files of at most
    /// 64 KiB (and at most this) are held, larger ones are read from disk per request.
    /// Default 16 MiB.
    pub fn file_cache_bytes(mut self, n: usize) -> Self {
        self.file_cache_bytes = n;
        self
    }

    /// Creates the context: opens the listener and sends `PROTOCOL_INIT` to each
    /// protocol.
    pub fn build(self) -> io::Result<Context> {
        if self.protocols.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no protocol registered",
            ));
        }
        if self.protocols.len() > u16::MAX as usize {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many protocols"));
        }
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listeners = Vec::new();
        if let Some(port) = self.port {
            let mut l = listener::bind(self.interface.as_deref(), port, self.backlog)?;
            poll.registry()
                .register(&mut l, Token(LISTENER_BASE), Interest::READABLE)?;
            log::info!("listening on {}", l.local_addr()?);
            listeners.push(l);
        }
        let shared = Shared {
            requests: Vec::new(),
            writable: Vec::new(),
            resume: Vec::new(),
            free_bufs: Vec::new(),
            protocol_names: self
                .protocols
                .iter()
                .map(|p| p.name.clone().into_boxed_str())
                .collect(),
            max_unsent: self.max_unsent,
            date: DateCache::new(),
        };
        let mut ctx = Context {
            poll,
            events: Some(Events::with_capacity(1024)),
            listeners,
            conns: Slab::new(),
            protocols: self.protocols,
            shared,
            timers: Timers::default(),
            rxbuf: vec![0; self.rx_buffer_size],
            waker,
            limits: self.limits,
            http_limits: self.http_limits,
            read_budget: self.read_budget,
            handshake_timeout: self.handshake_timeout,
            close_timeout: self.close_timeout,
            any_protocol: self.any_protocol,
            file_cache: self.resource_path.map(|root| {
                FileCache::new(
                    root,
                    file_cache::Limits {
                        max_entries: self.file_cache_entries,
                        max_bytes: self.file_cache_bytes,
                        max_file: file_cache::MAX_CACHED_FILE,
                        settle: file_cache::SETTLE,
                    },
                )
            }),
            max_body: self.max_body,
            next_gen: 1,
        };
        ctx.protocol_event_all(ProtocolEvent::Init);
        Ok(ctx)
    }
}

/// A thread-safe handle that wakes a blocked [`Context::service`]
/// (`libwebsocket_cancel_service`); the protocols then get
/// [`ProtocolEvent::EventWaitCancelled`].
#[derive(Clone)]
pub struct CancelHandle(Arc<Waker>);

impl CancelHandle {
    /// Makes the context's current or next `service()` return promptly.
    pub fn cancel(&self) {
        if let Err(e) = self.0.wake() {
            log::warn!("cancel_service: {e}");
        }
    }
}

/// The reactor (libwebsockets' `struct libwebsocket_context`).
///
/// ```no_run
/// use wsreactor::{Close, Context, Protocol, Reason, Wsi, WriteProtocol};
/// use std::time::Duration;
///
/// #[derive(Default)]
/// struct Echo;
/// impl Protocol for Echo {
///     type Session = ();
///     fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
///         if let Reason::Receive { data, binary, .. } = reason {
///             wsi.write(data, if binary { WriteProtocol::Binary } else { WriteProtocol::Text })?;
///         }
///         Ok(())
///     }
/// }
///
/// let mut ctx = Context::builder().port(7681).protocol("echo", Echo).build()?;
/// loop {
///     ctx.service(Duration::from_millis(50))?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Context {
    poll: Poll,
    events: Option<Events>,
    listeners: Vec<TcpListener>,
    conns: Slab<Conn>,
    protocols: Vec<Registered>,
    shared: Shared,
    timers: Timers,
    rxbuf: Vec<u8>,
    waker: Arc<Waker>,
    limits: proto::Limits,
    http_limits: req::Limits,
    read_budget: usize,
    handshake_timeout: Duration,
    close_timeout: Duration,
    any_protocol: bool,
    file_cache: Option<FileCache>,
    max_body: u64,
    next_gen: u32,
}

impl Context {
    /// A builder with the defaults: port 7681 on all interfaces, no protocols.
    pub fn builder() -> ContextBuilder {
        ContextBuilder {
            port: Some(7681),
            interface: None,
            protocols: Vec::new(),
            limits: proto::Limits::default(),
            http_limits: req::Limits::default(),
            max_unsent: 4 << 20,
            rx_buffer_size: 256 << 10,
            read_budget: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            any_protocol: false,
            backlog: 1024,
            resource_path: None,
            max_body: 1 << 20,
            file_cache_entries: 1024,
            file_cache_bytes: 16 << 20,
        }
    }

    /// The address of the (first) listener, e.g. to learn the port chosen for port 0.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listeners.first().and_then(|l| l.local_addr().ok())
    }

    /// A handle for waking `service()` from another thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.waker.clone())
    }

    /// The number of open connections (HTTP and WebSocket).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The id of the protocol registered under `name`.
    pub fn protocol_by_name(&self, name: &str) -> Option<ProtocolId> {
        self.shared.protocol_id(name)
    }

    /// The user id given with [`ProtocolSpec::id`].
    pub fn protocol_user_id(&self, protocol: ProtocolId) -> Option<u32> {
        self.protocols.get(protocol.index()).map(|p| p.id)
    }

    /// The handler of `protocol`, if it is of type `P`, for the main loop to reach its
    /// state between `service()` calls.
    pub fn protocol_mut<P: Protocol>(&mut self, protocol: ProtocolId) -> Option<&mut P> {
        self.protocols
            .get_mut(protocol.index())
            .and_then(|p| p.handler.as_any_mut().downcast_mut::<P>())
    }

    /// Number of sessions (bound connections) of a protocol.
    pub fn protocol_sessions(&self, protocol: ProtocolId) -> usize {
        self.protocols
            .get(protocol.index())
            .map_or(0, |p| p.handler.sessions())
    }

    /// Asks for a WRITEABLE callback on every connection of `protocol`
    /// (`libwebsocket_callback_on_writable_all_protocol`); served by the next `service()`.
    pub fn callback_on_writable_all_protocol(&mut self, protocol: ProtocolId) {
        self.shared.requests.push(CtxRequest::Writable(protocol));
    }

    /// Re-enables reading on every paused connection of `protocol`
    /// (`libwebsocket_rx_flow_allow_all_protocol`).
    pub fn rx_flow_allow_all_protocol(&mut self, protocol: ProtocolId) {
        self.shared.requests.push(CtxRequest::RxFlowAllow(protocol));
    }

    /// Calls every connection of `protocol` with `reason` (`libwebsocket_callback_all_protocol`);
    /// done by the next `service()`.
    pub fn callback_all_protocol(&mut self, protocol: ProtocolId, reason: Reason<'static>) {
        self.shared.requests.push(CtxRequest::Callback(protocol, reason));
    }

    /// Runs `service()` forever (until it fails).
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            self.service(Duration::from_secs(1))?;
        }
    }

    /// Waits up to `timeout` for events and services them: accepts, reads, callbacks,
    /// writes, timeouts (`libwebsocket_service`). Returns early when there is work already
    /// pending, or when [`CancelHandle::cancel`] is called.
    pub fn service(&mut self, timeout: Duration) -> io::Result<()> {
        let now = Instant::now();
        let mut timeout = if self.has_pending() {
            Duration::ZERO
        } else {
            timeout
        };
        if let Some(at) = self.timers.next() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        let mut events = self.events.take().unwrap_or_else(|| Events::with_capacity(1024));
        let polled = self.poll.poll(&mut events, Some(timeout));
        if let Err(e) = polled {
            self.events = Some(events);
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        // One clock read per cycle: every response of this cycle gets this Date, and
        // preconditions and the file cache are judged at this time.
        self.shared.date.update(SystemTime::now());
        let mut cancelled = false;
        for ev in events.iter() {
            match ev.token() {
                WAKER => cancelled = true,
                Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
                Token(k) => {
                    let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                    let writable = ev.is_writable() || ev.is_error();
                    self.conn_event(k, readable, ev.is_read_closed(), writable);
                }
            }
        }
        self.events = Some(events);
        if cancelled {
            self.protocol_event_all(ProtocolEvent::EventWaitCancelled);
        }
        self.run_pending();
        self.expire(Instant::now());
        Ok(())
    }

    fn has_pending(&self) -> bool {
        !self.shared.requests.is_empty() || !self.shared.writable.is_empty() || !self.shared.resume.is_empty()
    }

    fn protocol_event_all(&mut self, event: ProtocolEvent) {
        for (i, p) in self.protocols.iter_mut().enumerate() {
            let mut pc = ProtocolContext {
                shared: &mut self.shared,
                protocol: ProtocolId(i as u16),
            };
            if let Err(e) = p.handler.call_protocol(&mut pc, event) {
                log::warn!("protocol {}: {event:?} failed: {}", p.name, e.reason);
            }
        }
    }

    // ---- accepting ----------------------------------------------------------------------

    fn accept(&mut self, i: usize) {
        loop {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            let (mut sock, peer) = match l.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the listener stays readable; try again next cycle.
                    log::warn!("accept: {e}");
                    return;
                }
            };
            let filter = ProtocolEvent::FilterNetworkConnection {
                peer,
                fd: sock.as_raw_fd(),
            };
            let mut pc = ProtocolContext {
                shared: &mut self.shared,
                protocol: ProtocolId(0),
            };
            if self.protocols[0].handler.call_protocol(&mut pc, filter).is_err() {
                log::debug!("{peer}: refused by FILTER_NETWORK_CONNECTION");
                continue;
            }
            // Linux copies TCP_NODELAY from the listener to accepted sockets (set in
            // listener::open): one setsockopt per connection saved.
            #[cfg(not(target_os = "linux"))]
            let _ = sock.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let k = entry.key();
            if k >= LISTENER_BASE {
                return;
            }
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut sock, Token(k), Interest::READABLE | Interest::WRITABLE)
            {
                log::warn!("register: {e}");
                continue;
            }
            let gen = self.next_gen;
            self.next_gen = self.next_gen.wrapping_add(1);
            let deadline = Instant::now() + self.handshake_timeout;
            entry.insert(Conn {
                sock,
                peer,
                out: Vec::new(),
                stash: Vec::new(),
                rx: Receiver::new(Role::Server, self.limits),
                http: None,
                deadline: Some(deadline),
                out_pos: 0,
                gen,
                session: self.protocols[0].handler.new_session(),
                proto: 0,
                flags: flag::MAY_READ | flag::TIMER_ARMED,
                state: State::Http,
            });
            self.timers.push(deadline, k, gen);
            log::debug!("{peer}: accepted as {k}.{gen}");
            if self.call(k, Reason::WsiCreate).is_err()
                || self.call(k, Reason::ServerNewClientInstantiated).is_err()
            {
                self.remove(k);
            }
        }
    }

    // ---- readiness ----------------------------------------------------------------------

    fn conn_event(&mut self, k: usize, readable: bool, read_closed: bool, writable: bool) {
        if readable {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            c.set(flag::MAY_READ);
            if read_closed {
                // Keep reading to the EOF even after a short read.
                c.set(flag::IN_RESUME);
                let gen = c.gen;
                self.shared.resume.push((k as u32, gen));
            }
            self.read_conn(k);
        }
        if writable {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            if c.has(flag::WRITE_BLOCKED) {
                c.clear(flag::WRITE_BLOCKED);
                self.flush(k);
            }
            self.maybe_writeable(k);
        }
    }

    /// Delivers a pending WRITEABLE request if the socket has room.
    fn maybe_writeable(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if !c.has(flag::WANT_WRITABLE) || c.has(flag::WRITE_BLOCKED) {
            return;
        }
        if c.unsent() > 0 {
            self.flush(k);
            match self.conns.get(k) {
                Some(c) if c.unsent() == 0 => {}
                _ => return,
            }
        }
        let c = &mut self.conns[k];
        c.clear(flag::WANT_WRITABLE);
        let reason = match c.state {
            State::WebSocket if !c.has(flag::CLOSE_SENT) => Reason::ServerWriteable,
            State::Http => Reason::HttpWriteable,
            _ => return,
        };
        self.call_and_close(k, reason);
        self.flush(k);
    }

    /// Reads and processes input until the socket is drained, reading is paused, or the
    /// connection's read budget for this cycle is spent; then flushes.
    fn read_conn(&mut self, k: usize) {
        let mut budget = self.read_budget;
        loop {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            if c.has(flag::RX_PAUSED) && c.state != State::Draining {
                break;
            }
            let need_read = c.stash.is_empty() || c.has(flag::STASH_INCOMPLETE);
            if need_read && !c.has(flag::MAY_READ) {
                break;
            }
            let mut buf = std::mem::take(&mut self.rxbuf);
            let s = c.stash.len();
            if s > 0 {
                buf[..s].copy_from_slice(&c.stash);
                let old = std::mem::take(&mut c.stash);
                self.shared.give_buf(old);
            }
            let mut len = s;
            let mut eof = false;
            if need_read {
                match c.sock.read(&mut buf[s..]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        len += n;
                        // A short read drained the socket (epoll will report new data with
                        // a new edge): skip the read that would only say WouldBlock.
                        if s + n < buf.len() && !c.has(flag::IN_RESUME) {
                            c.clear(flag::MAY_READ);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.clear(flag::MAY_READ),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::debug!("{}: read: {e}", c.peer);
                        self.rxbuf = buf;
                        self.remove(k);
                        return;
                    }
                }
            }
            let mut stop = Stop::Done;
            if len > s || (s > 0 && !need_read) {
                stop = self.input(k, &mut buf[..len]);
            } else if s > 0 {
                // Nothing new and the stash is incomplete: put it back.
                let c = &mut self.conns[k];
                let mut st = self.shared.take_buf();
                st.extend_from_slice(&buf[..s]);
                c.stash = st;
            }
            self.rxbuf = buf;
            if eof {
                self.peer_eof(k);
                return;
            }
            // Large transfers: hand the kernel what is queued rather than letting a whole
            // read budget pile up.
            if self.conns.get(k).is_some_and(|c| c.unsent() >= 64 << 10) {
                self.flush(k);
            }
            if stop == Stop::Paused {
                // Input is held (flow control, or a pipelined request waiting for the
                // current response): it is resumed explicitly.
                break;
            }
            budget = budget.saturating_sub(len.max(1));
            if budget == 0 {
                if let Some(c) = self.conns.get_mut(k) {
                    if c.has(flag::MAY_READ) && !c.has(flag::IN_RESUME) {
                        c.set(flag::IN_RESUME);
                        let gen = c.gen;
                        self.shared.resume.push((k as u32, gen));
                    }
                }
                break;
            }
        }
        if self.conns.contains(k) {
            self.flush(k);
        }
    }

    fn peer_eof(&mut self, k: usize) {
        if let Some(c) = self.conns.get(k) {
            log::debug!("{}: EOF", c.peer);
            // A half-closed peer can still receive: send what is queued (a close reply, an
            // error, a response) before closing.
            self.flush(k);
            self.remove(k);
        }
    }

    // ---- input --------------------------------------------------------------------------

    /// Processes `buf` by the connection's state; keeps what is not consumed.
    fn input(&mut self, k: usize, buf: &mut [u8]) -> Stop {
        let mut pos = 0;
        let stop = loop {
            let Some(c) = self.conns.get(k) else {
                return Stop::Done;
            };
            let (n, stop) = match c.state {
                State::Http => self.http_input(k, &mut buf[pos..]),
                State::WebSocket => self.ws_input(k, &mut buf[pos..]),
                State::Draining => (buf.len() - pos, Stop::Done),
            };
            pos += n;
            if stop != Stop::Switched {
                break stop;
            }
        };
        let Some(c) = self.conns.get_mut(k) else {
            return Stop::Done;
        };
        match stop {
            Stop::NeedMore | Stop::Paused if pos < buf.len() => {
                let mut st = self.shared.take_buf();
                st.extend_from_slice(&buf[pos..]);
                c.stash = st;
                if stop == Stop::NeedMore {
                    c.set(flag::STASH_INCOMPLETE);
                } else {
                    c.clear(flag::STASH_INCOMPLETE);
                }
            }
            _ => c.clear(flag::STASH_INCOMPLETE),
        }
        stop
    }

    fn ws_input(&mut self, k: usize, buf: &mut [u8]) -> (usize, Stop) {
        let Context {
            conns,
            protocols,
            shared,
            ..
        } = self;
        let c = &mut conns[k];
        let handler = &mut protocols[c.proto as usize].handler;
        let session = c.session;
        let mut pos = 0;
        loop {
            if c.has(flag::RX_PAUSED) {
                return (pos, Stop::Paused);
            }
            let (n, ev) = match c.rx.decode(&mut buf[pos..]) {
                Ok(x) => x,
                Err(e) => {
                    log::debug!("{}: protocol error: {e}", c.peer);
                    Self::fail(c, shared, e.code, e.reason);
                    let _ = handler.call(
                        &mut Wsi::new(c, shared, k as u32),
                        session,
                        Reason::Closed {
                            code: None,
                            reason: b"",
                        },
                    );
                    return (buf.len(), Stop::Done);
                }
            };
            pos += n;
            let Some(ev) = ev else {
                return (pos, Stop::NeedMore);
            };
            match ev {
                Event::Data {
                    data,
                    binary,
                    first,
                    last,
                    remaining,
                    ..
                } => {
                    if c.has(flag::CLOSE_SENT) {
                        continue;
                    }
                    let mut wsi = Wsi::new(c, shared, k as u32);
                    wsi.rx_binary = binary;
                    wsi.rx_final = last;
                    wsi.rx_remaining = remaining;
                    let reason = Reason::Receive {
                        data,
                        binary,
                        first,
                        last,
                        remaining,
                    };
                    if let Err(e) = handler.call(&mut wsi, session, reason) {
                        wsi.close(e.code, &e.reason);
                    }
                }
                Event::Ping(p) => {
                    if !c.has(flag::CLOSE_SENT) {
                        if c.out.capacity() == 0 {
                            c.out = shared.take_buf();
                        }
                        encoder::encode_frame(&mut c.out, proto::OpCode::Pong, true, None, p);
                    }
                }
                Event::Pong(data) => {
                    let mut wsi = Wsi::new(c, shared, k as u32);
                    if let Err(e) = handler.call(&mut wsi, session, Reason::ReceivePong { data }) {
                        wsi.close(e.code, &e.reason);
                    }
                }
                Event::Close {
                    code: peer_code,
                    reason,
                } => {
                    c.set(flag::CLOSE_RECEIVED | flag::SHUTDOWN_AFTER_FLUSH);
                    if !c.has(flag::CLOSE_SENT) {
                        // Echo the peer's code (RFC 6455 §5.5.1); an empty close gets an
                        // empty one.
                        if c.out.capacity() == 0 {
                            c.out = shared.take_buf();
                        }
                        encoder::encode_close(&mut c.out, peer_code, "", None);
                        c.set(flag::CLOSE_SENT);
                    }
                    if !c.has(flag::CLOSED_NOTIFIED) {
                        c.set(flag::CLOSED_NOTIFIED);
                        let mut wsi = Wsi::new(c, shared, k as u32);
                        let _ = handler.call(
                            &mut wsi,
                            session,
                            Reason::Closed {
                                code: peer_code,
                                reason,
                            },
                        );
                    }
                    return (buf.len(), Stop::Done);
                }
            }
        }
    }

    /// Fails a WebSocket: close frame with `code`, then close the TCP connection once it is
    /// flushed (RFC 6455 §7.1.7). The decoder cannot be trusted past the error, so no reply
    /// is awaited.
    fn fail(c: &mut Conn, shared: &mut Shared, code: u16, reason: &str) {
        if !c.has(flag::CLOSE_SENT) {
            if c.out.capacity() == 0 {
                c.out = shared.take_buf();
            }
            encoder::encode_close(&mut c.out, Some(code), reason, None);
            c.set(flag::CLOSE_SENT);
        }
        c.set(flag::SHUTDOWN_AFTER_FLUSH | flag::CLOSED_NOTIFIED);
    }

    fn http_input(&mut self, k: usize, buf: &mut [u8]) -> (usize, Stop) {
        let limits = self.http_limits;
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
        // The head is in: the handshake timeout no longer applies (a long body or
        // download must not be cut by it).
        c.deadline = None;
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

    /// Feeds request body bytes to `HTTP_BODY`; at the end, `HTTP_BODY_COMPLETION` and the
    /// default response if the handler gave none.
    fn body_input(&mut self, k: usize, buf: &mut [u8]) -> (usize, Stop) {
        let max_body = self.max_body;
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
                if let Some(hs) = self.conns.get_mut(k).and_then(|c| c.http.as_mut()) {
                    hs.body = Body::None;
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

    /// Answers an upgrade request: validation, sub-protocol choice, filter, 101,
    /// ESTABLISHED. Returns false if the connection was refused.
    fn upgrade(&mut self, k: usize) -> bool {
        let c = &mut self.conns[k];
        let request = c.request().expect("request is held during upgrade");
        // Token headers may be split over several lines: look across all of them.
        let lookup = |n: &str| match n {
            "upgrade" if request.has_token(n, "websocket") => Some(&b"websocket"[..]),
            "connection" if request.has_token(n, "upgrade") => Some(&b"upgrade"[..]),
            _ => request.header_bytes(n),
        };
        if let Err(e) = handshake::validate_request(request.method_str(), request.version_minor(), lookup) {
            log::debug!("{}: upgrade refused: {e}", c.peer);
            let extra: &[(&str, &str)] = if e.status() == 426 {
                &[("Sec-WebSocket-Version", "13")]
            } else if e.status() == 405 {
                &[("Allow", "GET")]
            } else {
                &[]
            };
            self.respond_and_close(k, e.status(), Some(e.reason()), extra);
            return false;
        }
        // Sub-protocol: the first registered protocol the client offers; none offered:
        // the first protocol; offered but unknown: refuse.
        let mut chosen: Option<(usize, Option<String>)> = None;
        let offers: Vec<&str> = request
            .header_values("sec-websocket-protocol")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect();
        let offer = offers.join(",");
        match (!offers.is_empty()).then_some(offer.as_str()) {
            None => chosen = Some((0, None)),
            Some(offer) => {
                for (i, p) in self.protocols.iter().enumerate() {
                    if handshake::offered_protocols(offer).any(|o| o == p.name) {
                        chosen = Some((i, Some(p.name.clone())));
                        break;
                    }
                }
                if chosen.is_none() && self.any_protocol {
                    chosen = Some((0, handshake::offered_protocols(offer).next().map(str::to_owned)));
                }
            }
        }
        let Some((pid, selected)) = chosen else {
            log::debug!("{}: no offered sub-protocol is known", c.peer);
            self.respond_and_close(k, 400, Some("No known sub-protocol"), &[]);
            return false;
        };
        if pid != c.proto as usize {
            self.protocols[c.proto as usize].handler.drop_session(c.session);
            c.proto = pid as u16;
            c.session = self.protocols[pid].handler.new_session();
        }
        if self.call(k, Reason::FilterProtocolConnection).is_err() {
            log::debug!("refused by FILTER_PROTOCOL_CONNECTION");
            self.respond_and_close(k, 403, None, &[]);
            return false;
        }
        let c = &mut self.conns[k];
        if c.out.capacity() == 0 {
            c.out = self.shared.take_buf();
        }
        let Conn { http, out, .. } = c;
        let request = http.as_ref().and_then(|h| h.request.as_ref()).expect("held");
        let key = request
            .header_bytes("sec-websocket-key")
            .unwrap_or_default()
            .trim_ascii();
        handshake::write_response(out, key, selected.as_deref(), &[], Some(self.shared.date.date()));
        c.state = State::WebSocket;
        c.set(flag::UPGRADED);
        c.deadline = None;
        c.clear(flag::KEEP_ALIVE | flag::HTTP_RESPONDED);
        let rx_chunk = self.protocols[pid].rx_buffer_size;
        c.rx.frames_mut().set_max_chunk(rx_chunk);
        log::debug!("{}: established on {}", c.peer, self.protocols[pid].name);
        self.call_and_close(k, Reason::Established);
        // The request's headers are not needed any more: free them.
        if let Some(c) = self.conns.get_mut(k) {
            c.http = None;
        }
        true
    }

    /// A plain HTTP request on the first protocol: `FILTER_HTTP_CONNECTION`, `HTTP`, then
    /// the body (if any), then the file server for what the handler left unanswered.
    fn http_request(&mut self, k: usize) {
        let c = &mut self.conns[k];
        let request = c.request().expect("held");
        let uri = request.uri().to_owned();
        let keep_alive = request.keep_alive();
        let body = if request.is_chunked() {
            Body::Chunked(ChunkedDecoder::new())
        } else {
            match request.content_length() {
                Some(n) if n > self.max_body => {
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
        if let Some(hs) = c.http.as_mut() {
            // Known before the handler runs, so that an early response knows a body is
            // still unread.
            hs.body = body;
            hs.body_seen = 0;
        }
        if self.call(k, Reason::FilterHttpConnection { uri: &uri }).is_err() {
            self.respond_and_close(k, 403, None, &[]);
            return;
        }
        if self.call(k, Reason::Http { uri: &uri }).is_err() {
            self.remove(k);
            return;
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
                log::debug!("{}: {} {}: {e:?}", c.peer, request.method_str(), request.path());
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
        let keep = c.has(flag::KEEP_ALIVE);
        if c.out.capacity() == 0 {
            c.out = self.shared.take_buf();
        }
        let date = Some(self.shared.date.date());
        let (range, body_len) = match &plan {
            None => {
                file.write_ok_head(&mut c.out, keep, date);
                (None, file.resolved().len)
            }
            Some(plan) => {
                plan.write_head(&mut c.out, keep, date);
                (plan.range, plan.body_len)
            }
        };
        if !head_only && body_len > 0 {
            let start = range.map_or(0, |(a, _)| a);
            if let Some(body) = file.body() {
                // Head and body in one buffer: one send for a small file.
                c.out
                    .extend_from_slice(&body[start as usize..(start + body_len) as usize]);
                self.complete_http(k);
                let _ = self.call(k, Reason::HttpFileCompletion);
                return;
            }
            match FileStream::open(&file.resolved().path, start, body_len) {
                Ok(stream) => c.http.as_mut().expect("held").file = Some(stream),
                Err(e) => {
                    // Raced with a delete: the head is out already, so only closing is honest.
                    log::warn!("{}: open {}: {e}", c.peer, file.resolved().path.display());
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
            log::debug!("{}: HTTP {status}: {reason}", c.peer);
        }
        self.respond_and_close(k, status, None, &[]);
    }

    fn respond_and_close(&mut self, k: usize, status: u16, text: Option<&str>, extra: &[(&str, &str)]) {
        if let Some(c) = self.conns.get_mut(k) {
            c.clear(flag::KEEP_ALIVE);
            if let Some(hs) = c.http.as_mut() {
                hs.body = Body::None;
            }
        }
        self.respond(k, status, text, extra);
    }

    /// Queues a small HTML status page (`lws_return_http_status`); the connection stays
    /// open only with keep-alive and no unread body.
    fn respond(&mut self, k: usize, status: u16, text: Option<&str>, extra: &[(&str, &str)]) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if c.out.capacity() == 0 {
            c.out = self.shared.take_buf();
        }
        let head_only = c.request().is_some_and(|r| r.method() == req::Method::Head);
        let keep = c.has(flag::KEEP_ALIVE);
        let date = Some(self.shared.date.date());
        response::status_page(&mut c.out, status, text, extra, keep, head_only, date);
        self.complete_http(k);
    }

    // ---- callbacks ----------------------------------------------------------------------

    /// Calls the connection's protocol with `reason`.
    fn call(&mut self, k: usize, reason: Reason<'_>) -> Result<(), Close> {
        let Some(c) = self.conns.get_mut(k) else {
            return Ok(());
        };
        let handler = &mut self.protocols[c.proto as usize].handler;
        let session = c.session;
        handler.call(&mut Wsi::new(c, &mut self.shared, k as u32), session, reason)
    }

    /// Calls, and on error closes the connection (WebSocket: close frame with the error's
    /// code; HTTP: drop).
    fn call_and_close(&mut self, k: usize, reason: Reason<'_>) {
        if let Err(e) = self.call(k, reason) {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            log::debug!(
                "{}: callback closed the connection: {} {}",
                c.peer,
                e.code,
                e.reason
            );
            if c.state == State::WebSocket {
                Wsi::new(c, &mut self.shared, k as u32).close(e.code, &e.reason);
            } else {
                self.remove(k);
            }
        }
    }

    // ---- output -------------------------------------------------------------------------

    /// Writes the out buffer to the socket, as far as the kernel takes it; then handles
    /// what the state asks for once output is done (shutdown, close timeout, pipelining).
    fn flush(&mut self, k: usize) {
        let Some(mut c) = self.conns.get_mut(k) else {
            return;
        };
        let closing = c.closes_when_flushed();
        loop {
            while c.unsent() > 0 && !c.has(flag::WRITE_BLOCKED) {
                let pending = &c.out[c.out_pos as usize..];
                let sent = if closing {
                    // The last bytes (our close frame) are followed by close(): MSG_MORE
                    // holds them so that the FIN rides in the same segment, one packet
                    // fewer for both ends to process. close() pushes them out at once.
                    send_more(&c.sock, pending)
                } else {
                    c.sock.write(pending)
                };
                match sent {
                    Ok(0) => break,
                    Ok(n) => c.out_pos += n as u32,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.set(flag::WRITE_BLOCKED),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::debug!("{}: write: {e}", c.peer);
                        self.remove(k);
                        return;
                    }
                }
            }
            // A file response streams one chunk per drained buffer, so a large file never
            // sits in memory and a slow client only holds one chunk.
            if c.unsent() > 0 || c.has(flag::WRITE_BLOCKED) {
                break;
            }
            let Some(fs) = c.http.as_mut().and_then(|h| h.file.as_mut()) else {
                break;
            };
            if c.out.capacity() == 0 {
                c.out = self.shared.take_buf();
            }
            c.out_pos = 0;
            match fs.next_chunk(&mut c.out) {
                Ok(false) => {}
                Ok(true) => {
                    c.http.as_mut().expect("held").file = None;
                    let _ = self.call(k, Reason::HttpFileCompletion);
                    let Some(c2) = self.conns.get_mut(k) else {
                        return;
                    };
                    c = c2;
                }
                Err(e) => {
                    log::warn!("{}: file read failed or ended early: {e}", c.peer);
                    self.remove(k);
                    return;
                }
            }
        }
        if c.unsent() == 0 && c.out.capacity() > 0 {
            c.out_pos = 0;
            let b = std::mem::take(&mut c.out);
            self.shared.give_buf(b);
        } else if c.out_pos as usize > c.out.len() / 2 && c.out_pos > 0 {
            // Keep the live part at the front so the buffer does not creep.
            let pos = c.out_pos as usize;
            c.out.drain(..pos);
            c.out_pos = 0;
        }
        let done = c.unsent() == 0;
        if done && c.closes_when_flushed() {
            self.notify_closed(k);
            self.remove(k);
            return;
        }
        if done && c.has(flag::SHUTDOWN_AFTER_FLUSH) && c.state != State::Draining {
            c.clear(flag::SHUTDOWN_AFTER_FLUSH);
            let _ = c.sock.shutdown(Shutdown::Write);
            let was_ws = c.has(flag::UPGRADED);
            c.state = State::Draining;
            self.set_deadline(k, self.close_timeout);
            if was_ws {
                self.notify_closed(k);
            }
            // The peer may already have closed: look for its EOF now.
            self.schedule_resume(k);
        } else if c.state == State::WebSocket && c.has(flag::CLOSE_SENT) && c.deadline.is_none() {
            self.set_deadline(k, self.close_timeout);
        } else if done
            && c.state == State::Http
            && c.has(flag::HTTP_RESPONDED)
            // An early response does not end the transaction before the request body is
            // consumed: the body must never be read as the next request.
            && c.http.as_ref().is_none_or(|h| h.file.is_none() && matches!(h.body, Body::None))
        {
            // Keep-alive: the response is out; read the next request, which may already be
            // stashed.
            c.clear(flag::HTTP_RESPONDED);
            c.http = None;
            self.set_deadline(k, self.handshake_timeout);
            self.schedule_resume(k);
        }
    }

    fn schedule_resume(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if !c.has(flag::IN_RESUME) {
            c.set(flag::IN_RESUME);
            self.shared.resume.push((k as u32, c.gen));
        }
    }

    /// Sets the connection's one deadline. The heap gets a new entry only when none is
    /// pending or the new deadline is earlier; a pending entry that fires early is re-armed
    /// for the current deadline. So a busy keep-alive connection, which moves its deadline
    /// on every request, does not fill the heap with stale entries.
    fn set_deadline(&mut self, k: usize, after: Duration) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        let at = Instant::now() + after;
        let earlier = c.deadline.is_none_or(|d| at < d);
        c.deadline = Some(at);
        if !c.has(flag::TIMER_ARMED) || earlier {
            c.set(flag::TIMER_ARMED);
            self.timers.push(at, k, c.gen);
        }
    }

    fn notify_closed(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if c.has(flag::CLOSED_NOTIFIED) {
            return;
        }
        c.set(flag::CLOSED_NOTIFIED);
        let _ = self.call(
            k,
            Reason::Closed {
                code: None,
                reason: b"",
            },
        );
    }

    // ---- pending work -------------------------------------------------------------------

    fn run_pending(&mut self) {
        // Requests made while serving these lists wait for the next service() call, so a
        // callback that asks again cannot spin this one forever.
        let requests = std::mem::take(&mut self.shared.requests);
        for r in requests {
            match r {
                CtxRequest::Writable(p) => {
                    for (k, c) in self.conns.iter_mut() {
                        if c.proto == p.0
                            && c.state == State::WebSocket
                            && !c.has(flag::CLOSE_SENT)
                            && !c.has(flag::WANT_WRITABLE)
                        {
                            c.set(flag::WANT_WRITABLE);
                            self.shared.writable.push((k as u32, c.gen));
                        }
                    }
                }
                CtxRequest::RxFlowAllow(p) => {
                    for (k, c) in self.conns.iter_mut() {
                        if c.proto == p.0 && c.has(flag::RX_PAUSED) {
                            c.clear(flag::RX_PAUSED);
                            if !c.has(flag::IN_RESUME) {
                                c.set(flag::IN_RESUME);
                                self.shared.resume.push((k as u32, c.gen));
                            }
                        }
                    }
                }
                CtxRequest::Callback(p, reason) => {
                    let keys: Vec<usize> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| c.proto == p.0 && c.state == State::WebSocket)
                        .map(|(k, _)| k)
                        .collect();
                    for k in keys {
                        self.call_and_close(k, reason);
                        self.flush(k);
                    }
                }
            }
        }
        let resume = std::mem::take(&mut self.shared.resume);
        for (k, gen) in resume {
            let k = k as usize;
            match self.conns.get_mut(k) {
                Some(c) if c.gen == gen => c.clear(flag::IN_RESUME),
                _ => continue,
            }
            self.read_conn(k);
        }
        let writable = std::mem::take(&mut self.shared.writable);
        for (k, gen) in writable {
            let k = k as usize;
            if self.conns.get(k).is_some_and(|c| c.gen == gen) {
                self.maybe_writeable(k);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((_, k, gen)) = self.timers.pop_due(now) {
            let Some(c) = self.conns.get_mut(k) else {
                continue;
            };
            if c.gen != gen {
                continue;
            }
            match c.deadline {
                None => c.clear(flag::TIMER_ARMED),
                Some(d) if d > now => self.timers.push(d, k, gen),
                Some(_) => {
                    c.deadline = None;
                    c.clear(flag::TIMER_ARMED);
                    log::debug!("{}: timed out in {:?}", c.peer, c.state);
                    self.remove(k);
                }
            }
        }
    }

    /// Closes and frees a connection, with its last callbacks.
    fn remove(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        // Writes from these last callbacks have nowhere to go.
        c.state = State::Draining;
        if !c.has(flag::CLOSED_NOTIFIED) {
            c.set(flag::CLOSED_NOTIFIED);
            let reason = if c.has(flag::UPGRADED) {
                Reason::Closed {
                    code: None,
                    reason: b"",
                }
            } else {
                Reason::ClosedHttp
            };
            let _ = self.call(k, reason);
        }
        let _ = self.call(k, Reason::WsiDestroy);
        let c = self.conns.remove(k);
        self.protocols[c.proto as usize].handler.drop_session(c.session);
        // No deregister: closing the socket (the only descriptor of it; it is never
        // duplicated) takes it out of the epoll set, and saves an epoll_ctl per connection.
        self.shared.give_buf(c.out);
        self.shared.give_buf(c.stash);
        log::debug!("{}: closed", c.peer);
    }
}

/// `send(MSG_MORE)` where the platform has it, else a plain write.
fn send_more(sock: &mio::net::TcpStream, buf: &[u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return socket2::SockRef::from(sock).send_with_flags(buf, libc::MSG_MORE);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    return (&*sock).write(buf);
}

impl Drop for Context {
    /// Closes every connection (with their CLOSED callbacks) and sends
    /// `PROTOCOL_DESTROY` (`libwebsocket_context_destroy`).
    fn drop(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            if let Some(c) = self.conns.get_mut(k) {
                if c.state == State::WebSocket && !c.has(flag::CLOSE_SENT) {
                    c.out.clear();
                    c.out_pos = 0;
                    encoder::encode_close(&mut c.out, Some(code::GOING_AWAY), "", None);
                    let _ = c.sock.write(&c.out);
                }
            }
            self.remove(k);
        }
        self.protocol_event_all(ProtocolEvent::Destroy);
    }
}

/// Boxed protocol handlers are only ever called through the context.
#[allow(dead_code)]
fn _assert_object_safe(_: &dyn ErasedProtocol) {}
