//! The loop: [`Context::service`] waits for readiness, hands each event to its listener or
//! connection, runs the work callbacks queued, and expires deadlines. That is all it does;
//! what happens to one connection lives in the rooms below it:
//!
//! | room | what |
//! | --- | --- |
//! | [`readiness`](crate::readiness) | the poll set (mio, or the user's loop); every registration passes through it |
//! | [`listener`](crate::listener) | listen sockets and accepting |
//! | [`driver`](crate::driver) | one connection's data path: read → role → flush, close, removal |
//! | [`transport`](crate::transport) | the only code that reads or writes a socket |
//! | [`roles`](crate::roles) | the HTTP server and WebSocket state machines |
//! | [`dispatch`](crate::dispatch) | calls into protocol handlers |
//! | [`timers`](crate::timers) | connection deadlines and scheduled callbacks |
//!
//! Two parts of the context's own API have files of their own: `context/by_id.rs` (calls
//! on protocols, connections by id and topics from the loop; stats; the user value) and
//! `context/shutdown.rs` (graceful shutdown and `Drop`).

use crate::builder::{Config, ContextBuilder};
use crate::connection::{flag, Conn, State};
use crate::dispatch::Registered;
use crate::fileserver::cache::FileCache;
use crate::readiness::{PollChange, Readiness, Ready, Source};
use crate::reason::{ProtocolEvent, ProtocolId, Reason};
use crate::shared::{ConnOp, CtxRequest, Shared};
use crate::tls::TlsContext;
use crate::wsi::ProtocolContext;
mod by_id;
mod shutdown;

use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
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
/// Dropping it closes every connection: open WebSockets get a close frame 1001 (going
/// away), see [its `Drop`](#impl-Drop-for-Context).
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
    pub(crate) listeners: Vec<crate::listener::Listener>,
    pub(crate) conns: Slab<Conn>,
    pub(crate) protocols: Vec<Registered>,
    pub(crate) shared: Shared,
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
    /// External poll changes being reported (kept to reuse its allocation).
    pub(crate) poll_changes: Vec<PollChange>,
    /// Listeners (bit per index) waiting on the accept retry timer.
    pub(crate) starved: u64,
    /// Connections refused at the connection cap.
    pub(crate) refused: u64,
    /// [`shutdown`](Context::shutdown) was called.
    pub(crate) shutting_down: bool,
    /// The Redis backplane, when configured.
    #[cfg(feature = "redis")]
    pub(crate) backplane: Option<Box<crate::backplane::Backplane>>,
}

impl Context {
    /// A builder with the defaults: port 7681 on all interfaces, no protocols.
    pub fn builder() -> ContextBuilder {
        ContextBuilder::new()
    }

    /// The address of the first TCP listener, e.g. to learn the port chosen for port 0
    /// (see [`listener_addr`](Self::listener_addr) for each of several).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listeners.iter().find_map(|l| match l.addr() {
            Ok(crate::listener::ListenAddr::Tcp(a)) => Some(a),
            _ => None,
        })
    }

    /// The number of listeners (see [`ContextBuilder::listen`]).
    pub fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    /// Where listener `i` listens, in the order they were given ([`ContextBuilder::port`]'s
    /// first, then each [`ContextBuilder::listen`]); `None` past the last, and after a
    /// [`shutdown`](Self::shutdown) closed them.
    pub fn listener_addr(&self, i: usize) -> Option<crate::listener::ListenAddr> {
        self.listeners.get(i).and_then(|l| l.addr().ok())
    }

    /// A handle for waking `service()` from another thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.readiness.waker(), self.readiness.cancel_flag())
    }

    /// The number of open connections (HTTP and WebSocket).
    pub fn connection_count(&self) -> usize {
        // The Redis backplane's connection is the context's own, not one of the user's.
        #[cfg(feature = "redis")]
        if self.backplane.as_ref().is_some_and(|b| b.has_conn()) {
            return self.conns.len() - 1;
        }
        self.conns.len()
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
    ///
    /// With [`external_poll`](crate::ContextBuilder::external_poll) it never waits: it does
    /// what [`service_pending`](Self::service_pending) does.
    pub fn service(&mut self, timeout: Duration) -> io::Result<()> {
        let timeout = self.poll_timeout(timeout);
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        let waited = self.readiness.wait(timeout, &mut ready);
        self.cycle_start();
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
        self.cycle_end(cancelled);
        Ok(())
    }

    /// How long a poll may wait before this context needs servicing, at most `max`
    /// (libwebsockets' `lws_service_adjust_timeout`): zero when work is pending without an
    /// event on any descriptor (see [`service_needed`](Self::service_needed)), else up to
    /// the next deadline (a timeout, a connection attempt).
    ///
    /// An external loop uses it as its `poll()` timeout, so it neither stalls nor spins:
    ///
    /// ```no_run
    /// # fn f(ctx: &mut wsreactor::Context) {
    /// let ms = ctx.poll_timeout(std::time::Duration::from_secs(1)).as_millis();
    /// // poll(fds, n, ms) ...
    /// # }
    /// ```
    pub fn poll_timeout(&self, max: Duration) -> Duration {
        if self.shared.has_pending() {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut timeout = max;
        if let Some(at) = self.shared.timers.next() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        if let Some(at) = self.next_attempt() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        if let Some(at) = self.shared.topics.next_stall() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        #[cfg(feature = "redis")]
        if let Some(at) = self.backplane_timeout() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        // Deadlines are whole milliseconds: round up, so a poll(2) timeout in milliseconds
        // does not wake just before one and spin until it is due.
        if timeout.subsec_nanos() % 1_000_000 != 0 && timeout < max {
            timeout = (timeout + Duration::from_millis(1)).min(max);
        }
        timeout
    }

    /// True when the context has work that no descriptor will announce: input already
    /// buffered (rx flow control resumed, a read budget spent with data left, TLS
    /// plaintext decrypted ahead), WRITEABLE callbacks asked for, context-wide requests.
    /// Then call [`service_pending`](Self::service_pending) (or any `service*`) without
    /// waiting; [`poll_timeout`](Self::poll_timeout) is zero meanwhile.
    pub fn service_needed(&self) -> bool {
        self.shared.has_pending()
    }

    /// Does the work that needs no descriptor event: what callbacks queued, expired
    /// deadlines, connection attempts due (libwebsockets' `lws_service_fd(ctx, NULL)`).
    /// Never waits. An external loop calls it once per round, after its
    /// [`service_fd`](Self::service_fd) calls.
    pub fn service_pending(&mut self) -> io::Result<()> {
        self.cycle_start();
        self.cycle_end(false);
        Ok(())
    }

    /// Services one descriptor that an external `poll()` found ready
    /// (`libwebsocket_service_fd`), given with [`external_poll`](crate::ContextBuilder::external_poll):
    /// accepts on a listener, reads and writes on a connection, takes a
    /// [`CancelHandle::cancel`] wake; then runs what that queued (WRITEABLE callbacks, read
    /// resumptions, requests) and reports the poll changes. Deadlines, the cycle's clock
    /// read and connection attempts are [`service_pending`](Self::service_pending)'s, once
    /// per round of the loop rather than once per descriptor: call it after each round.
    ///
    /// `Ok(true)`: the descriptor is this context's and was serviced (the caller clears its
    /// `revents`). `Ok(false)`: it is not (another context's, the caller's own, or one
    /// already reported in a `DelPollFd` while the caller went through its array): nothing
    /// was done and the caller services it itself. `revents` of 0 does nothing.
    ///
    /// Errors: a negative descriptor, or a context not built for an external loop
    /// (`InvalidInput`); `POLLNVAL` on a descriptor of this context, which means someone
    /// else closed it (the connection is dropped; `InvalidInput`).
    pub fn service_fd(&mut self, fd: RawFd, revents: i16) -> io::Result<bool> {
        if fd < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("service_fd: bad descriptor {fd}"),
            ));
        }
        if !self.readiness.is_external() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "service_fd: the context was not built with external_poll()",
            ));
        }
        let Some((source, events)) = self.readiness.lookup(fd) else {
            return Ok(false);
        };
        if revents == 0 {
            return Ok(true);
        }
        let mut cancelled = false;
        let mut result = Ok(true);
        if revents & libc::POLLNVAL != 0 {
            if let Source::Conn(k) = source {
                self.remove(k);
            }
            result = Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "service_fd: descriptor {fd} is not open (POLLNVAL): closed behind the context's back?"
                ),
            ));
        } else {
            match source {
                Source::Waker => {
                    let mut ready = std::mem::take(&mut self.ready);
                    ready.clear();
                    let waited = self.readiness.wait(Duration::ZERO, &mut ready);
                    cancelled =
                        ready.iter().any(|r| r.source == Source::Waker) && self.readiness.take_cancel();
                    self.ready = ready;
                    // The waker also brings back name resolutions.
                    self.client_resolved();
                    if let Err(e) = waited {
                        result = Err(e);
                    }
                }
                Source::Listener(i) => {
                    self.guarded(None, |ctx| ctx.accept(i));
                    self.sync_listener(i);
                }
                Source::Conn(k) => {
                    let hup = revents & (libc::POLLHUP | libc::POLLERR) != 0;
                    let ev = Ready {
                        source,
                        readable: revents & libc::POLLIN != 0 || hup,
                        read_closed: revents & libc::POLLHUP != 0,
                        writable: revents & libc::POLLOUT != 0 || hup,
                    };
                    self.guarded(Some(k), |ctx| ctx.conn_event(k, &ev));
                    if hup && events & crate::readiness::POLLIN == 0 && self.conns.contains(k) {
                        // Polled for nothing (input held) and hung up: it would be reported
                        // again at once, forever. The connection is dead: drop it.
                        log::debug!("fd {fd}: hang-up while input is held: closing");
                        self.remove(k);
                    }
                    self.sync_poll(k);
                }
            }
        }
        if cancelled {
            self.protocol_event_all(ProtocolEvent::EventWaitCancelled);
        }
        self.run_pending();
        self.report_poll_changes();
        result
    }

    /// The start of a service cycle: one clock read; every response of this cycle gets
    /// this `Date`, and preconditions and the file cache are judged at this time.
    fn cycle_start(&mut self) {
        self.shared.timers.set_now(Instant::now());
        self.shared.date.update(SystemTime::now());
    }

    /// The end of a service cycle: finished name resolutions, `cancel_service`, what
    /// callbacks queued, deadlines, connection attempts, and the poll changes to report.
    fn cycle_end(&mut self, cancelled: bool) {
        self.client_resolved();
        if cancelled {
            self.protocol_event_all(ProtocolEvent::EventWaitCancelled);
        }
        self.run_pending();
        self.expire(Instant::now());
        if !self.attempts.is_empty() {
            self.client_attempts(Instant::now());
        }
        #[cfg(feature = "redis")]
        if self.backplane.is_some() {
            self.backplane_service(Instant::now());
        }
        self.report_poll_changes();
    }

    /// Tells an external loop whether listener `i` is polled now (nothing for mio).
    pub(crate) fn sync_listener(&mut self, i: usize) {
        if let Some(l) = self.listeners.get(i) {
            let starved = self.starved & (1 << (i % 64)) != 0;
            self.readiness.sync_listener(l.sock.as_raw_fd(), i, starved);
        }
    }

    /// Tells an external loop what connection `k` waits for now (nothing for mio).
    #[inline]
    pub(crate) fn sync_poll(&mut self, k: usize) {
        if let Some(c) = self.conns.get_mut(k) {
            self.readiness.sync(k, c);
        }
    }

    /// Delivers the queued external poll changes to the first protocol, between
    /// `LOCK_POLL` and `UNLOCK_POLL`.
    pub(crate) fn report_poll_changes(&mut self) {
        self.readiness.take_changes(&mut self.poll_changes);
        if self.poll_changes.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut self.poll_changes);
        let handler = &mut self.protocols[0].handler;
        let mut pc = ProtocolContext {
            shared: &mut self.shared,
            protocol: ProtocolId(0),
        };
        let events = std::iter::once(ProtocolEvent::LockPoll)
            .chain(changes.iter().map(|c| match *c {
                PollChange::Add(a) => ProtocolEvent::AddPollFd(a),
                PollChange::Del(a) => ProtocolEvent::DelPollFd(a),
                PollChange::Change(a) => ProtocolEvent::ChangeModePollFd(a),
            }))
            .chain(std::iter::once(ProtocolEvent::UnlockPoll));
        for ev in events {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handler.call_protocol(&mut pc, ev)
            }));
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::warn!("{ev:?}: the first protocol failed: {}", e.reason),
                Err(_) => log::error!("{ev:?}: the first protocol panicked"),
            }
        }
        self.poll_changes = changes;
        self.poll_changes.clear();
    }

    /// Connections refused so far because [`max_connections`](ContextBuilder::max_connections)
    /// were open.
    pub fn refused_connections(&self) -> u64 {
        self.refused
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
                CtxRequest::Callback(p, event, data) => {
                    let keys: Vec<usize> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| c.proto == p.0 && c.state == State::WebSocket)
                        .map(|(k, _)| k)
                        .collect();
                    for k in keys {
                        self.guarded(Some(k), |ctx| {
                            ctx.call_and_close(k, Reason::User { event, data: &data });
                            ctx.flush(k);
                        });
                        self.sync_poll(k);
                    }
                }
                CtxRequest::Conn(id, op) => {
                    let Some(k) = self.live(id) else {
                        continue;
                    };
                    match op {
                        ConnOp::Writable => {
                            let c = &mut self.conns[k];
                            self.shared.schedule_writable(k, c);
                        }
                        ConnOp::Close(code, reason) => {
                            self.guarded(Some(k), |ctx| ctx.close_conn(k, code, &reason))
                        }
                        ConnOp::RxFlow(enable) => {
                            self.rx_flow_control(id, enable);
                        }
                        ConnOp::User(event, data) => {
                            self.callback(id, event, &data);
                        }
                    }
                }
            }
        }
        self.shared.topics.expire_stalls(Instant::now());
        if self.shared.topics.has_pending() {
            self.run_topics();
        }
        let resume = std::mem::take(&mut self.shared.resume);
        for (k, gen) in resume {
            let k = k as usize;
            match self.conns.get_mut(k) {
                Some(c) if c.gen == gen => c.clear(flag::IN_RESUME),
                _ => continue,
            }
            self.guarded(Some(k), |ctx| ctx.read_conn(k));
            self.sync_poll(k);
        }
        let writable = std::mem::take(&mut self.shared.writable);
        for (k, gen) in writable {
            let k = k as usize;
            if self.conns.get(k).is_some_and(|c| c.gen == gen) {
                self.guarded(Some(k), |ctx| ctx.maybe_writeable(k));
                self.sync_poll(k);
            }
        }
    }
}

/// The context's own poll descriptor (the epoll set), for a loop of another kind (a GUI
/// toolkit's, tokio's `AsyncFd`, a C program's) to wait on one descriptor: when it is
/// readable, call [`Context::service`] with a zero timeout; and wake up after
/// [`Context::poll_timeout`] at the latest, for deadlines and for work that needs no event.
///
/// ```no_run
/// use std::os::fd::AsRawFd;
/// # fn f(ctx: &mut wsreactor::Context) -> std::io::Result<()> {
/// let fd = ctx.as_raw_fd(); // put it in your loop's poll set, for reading
/// // ... your loop says fd is readable, or ctx.poll_timeout(max) has passed:
/// ctx.service(std::time::Duration::ZERO)?;
/// # Ok(()) }
/// ```
///
/// With [`external_poll`](crate::ContextBuilder::external_poll) the set holds only the
/// waker (it is the descriptor reported for it).
impl AsRawFd for Context {
    fn as_raw_fd(&self) -> RawFd {
        self.readiness.raw_fd()
    }
}

/// The context's own poll descriptor; see [`AsRawFd`](#impl-AsRawFd-for-Context).
impl AsFd for Context {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.readiness.as_fd()
    }
}
