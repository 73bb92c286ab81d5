//! The loop: [`Context::service`] waits for readiness, hands each event to its listener or
//! connection, runs the work callbacks queued, and expires deadlines. That is all it does;
//! what happens to one connection lives in the rooms below it:
//!
//! | room | what |
//! | --- | --- |
//! | [`readiness`](crate::readiness) | the mio poll set; every registration passes through it |
//! | [`listener`](crate::listener) | listen sockets and accepting |
//! | [`driver`](crate::driver) | one connection's data path: read → role → flush, close, removal |
//! | [`transport`](crate::transport) | the only code that reads or writes a socket |
//! | [`roles`](crate::roles) | the HTTP server and WebSocket state machines |
//! | [`dispatch`](crate::dispatch) | calls into protocol handlers |
//! | [`timers`](crate::timers) | connection deadlines |

use crate::builder::{Config, ContextBuilder};
use crate::connection::{flag, Conn, State};
use crate::dispatch::Registered;
use crate::fileserver::cache::FileCache;
use crate::proto::{close::code, encoder};
use crate::protocol::Protocol;
use crate::readiness::{Readiness, Ready, Source};
use crate::reason::{ConnId, ProtocolEvent, ProtocolId, Reason};
use crate::shared::{CtxRequest, Shared};
use crate::timers::Timers;
use crate::tls::TlsContext;
use mio::net::TcpListener;
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A thread-safe handle that wakes a blocked [`Context::service`]
/// (`libwebsocket_cancel_service`); the protocols then get
/// [`ProtocolEvent::EventWaitCancelled`].
#[derive(Clone)]
pub struct CancelHandle(Arc<mio::Waker>, Arc<std::sync::atomic::AtomicBool>);

impl CancelHandle {
    /// Makes the context's current or next `service()` return promptly.
    pub fn cancel(&self) {
        // The waker also brings back name resolutions: the flag says this wake is a cancel.
        self.1.store(true, std::sync::atomic::Ordering::Release);
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
    pub(crate) readiness: Readiness,
    /// Events of the current `service()` call (kept to reuse its allocation).
    pub(crate) ready: Vec<Ready>,
    pub(crate) listeners: Vec<TcpListener>,
    pub(crate) conns: Slab<Conn>,
    pub(crate) protocols: Vec<Registered>,
    pub(crate) shared: Shared,
    pub(crate) timers: Timers,
    /// The one receive buffer: every read of every connection lands here.
    pub(crate) rxbuf: Vec<u8>,
    /// TLS ciphertext on its way from a socket to rustls (empty without TLS).
    pub(crate) tls_rx: Vec<u8>,
    pub(crate) cfg: Config,
    pub(crate) file_cache: Option<FileCache>,
    /// The TLS configuration of the listeners, when they serve TLS.
    pub(crate) tls: Option<TlsContext>,
    /// Name resolutions of outgoing connections, done on threads.
    pub(crate) resolver: crate::roles::client::Resolver,
    /// rustls client configurations, verified and accepting self-signed, made on first use.
    pub(crate) client_tls: [Option<Arc<rustls::ClientConfig>>; 2],
    /// Proxies for outgoing connections.
    pub(crate) proxy: crate::proxy::ProxyConfig,
    pub(crate) next_gen: u32,
    /// Outgoing connections' next connection attempts (happy eyeballs): due time, key, gen.
    pub(crate) attempts: Vec<(Instant, usize, u32)>,
    /// The connection whose callback runs, for [`guarded`](Context::guarded).
    pub(crate) current: Option<usize>,
}

impl Context {
    /// A builder with the defaults: port 7681 on all interfaces, no protocols.
    pub fn builder() -> ContextBuilder {
        ContextBuilder::new()
    }

    /// The address of the (first) listener, e.g. to learn the port chosen for port 0.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listeners.first().and_then(|l| l.local_addr().ok())
    }

    /// A handle for waking `service()` from another thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.readiness.waker(), self.readiness.cancel_flag())
    }

    /// The number of open connections (HTTP and WebSocket).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The id of the protocol registered under `name`.
    pub fn protocol_by_name(&self, name: &str) -> Option<ProtocolId> {
        self.shared.protocol_id(name)
    }

    /// The user id given with [`ProtocolSpec::id`](crate::ProtocolSpec::id).
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

    /// Asks for one WRITEABLE callback on connection `id`, from outside its callbacks
    /// (`libwebsocket_callback_on_writable` by id). False if `id` names no open connection
    /// (it closed, or its slot was reused).
    pub fn callback_on_writable(&mut self, id: ConnId) -> bool {
        match self.conns.get_mut(id.key as usize) {
            Some(c) if c.gen == id.gen => {
                self.shared.schedule_writable(id.key as usize, c);
                true
            }
            _ => false,
        }
    }

    /// This machine's host name (libwebsockets' `libwebsocket_canonical_hostname`): the
    /// kernel's (`/proc/sys/kernel/hostname`), else `$HOSTNAME`, else `localhost`.
    ///
    /// ```
    /// # use wsreactor::{Context, Protocol, Reason, Wsi, Close};
    /// # #[derive(Default)] struct P;
    /// # impl Protocol for P { type Session = ();
    /// #   fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> { Ok(()) } }
    /// let ctx = Context::builder().no_listen().protocol("p", P).build().unwrap();
    /// assert!(!ctx.canonical_hostname().is_empty());
    /// ```
    pub fn canonical_hostname(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "localhost".to_owned())
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
        let mut timeout = if self.shared.has_pending() {
            Duration::ZERO
        } else {
            timeout
        };
        if let Some(at) = self.timers.next() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        if let Some(at) = self.next_attempt() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        let waited = self.readiness.wait(timeout, &mut ready);
        // One clock read per cycle: every response of this cycle gets this Date, and
        // preconditions and the file cache are judged at this time.
        self.shared.date.update(SystemTime::now());
        let mut cancelled = false;
        for ev in &ready {
            match ev.source {
                Source::Waker => cancelled |= self.readiness.take_cancel(),
                Source::Listener(i) => self.guarded(None, |ctx| ctx.accept(i)),
                Source::Conn(k) => self.guarded(Some(k), |ctx| ctx.conn_event(k, ev)),
            }
        }
        self.ready = ready;
        waited?;
        self.client_resolved();
        if cancelled {
            self.protocol_event_all(ProtocolEvent::EventWaitCancelled);
        }
        self.run_pending();
        self.guarded(None, |ctx| ctx.expire(Instant::now()));
        if !self.attempts.is_empty() {
            self.client_attempts(Instant::now());
        }
        Ok(())
    }

    /// Serves what callbacks asked for: context-wide requests, then read resumptions, then
    /// WRITEABLE callbacks. Requests made while serving these lists wait for the next
    /// `service()` call, so a callback that asks again cannot spin this one forever.
    fn run_pending(&mut self) {
        let requests = std::mem::take(&mut self.shared.requests);
        for r in requests {
            match r {
                CtxRequest::Writable(p) => {
                    for (k, c) in self.conns.iter_mut() {
                        if c.proto == p.0 && c.state == State::WebSocket && !c.has(flag::CLOSE_SENT) {
                            self.shared.schedule_writable(k, c);
                        }
                    }
                }
                CtxRequest::RxFlowAllow(p) => {
                    for (k, c) in self.conns.iter_mut() {
                        if c.proto == p.0 && c.has(flag::RX_PAUSED) {
                            c.clear(flag::RX_PAUSED);
                            self.shared.schedule_resume(k, c);
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
                        self.guarded(Some(k), |ctx| {
                            ctx.call_and_close(k, reason);
                            ctx.flush(k);
                        });
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
            self.guarded(Some(k), |ctx| ctx.read_conn(k));
        }
        let writable = std::mem::take(&mut self.shared.writable);
        for (k, gen) in writable {
            let k = k as usize;
            if self.conns.get(k).is_some_and(|c| c.gen == gen) {
                self.guarded(Some(k), |ctx| ctx.maybe_writeable(k));
            }
        }
    }
}

impl Drop for Context {
    /// Closes every connection (with their CLOSED callbacks) and sends
    /// `PROTOCOL_DESTROY` (`libwebsocket_context_destroy`).
    fn drop(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            if let Some(c) = self.conns.get_mut(k) {
                if c.state == State::WebSocket && !c.has(flag::CLOSE_SENT) {
                    let mut bye = Vec::with_capacity(8);
                    let mask = self.shared.mask_for(c);
                    encoder::encode_close(&mut bye, Some(code::GOING_AWAY), "", mask);
                    c.transport.write_now(&bye);
                }
            }
            self.remove(k);
        }
        self.protocol_event_all(ProtocolEvent::Destroy);
    }
}
