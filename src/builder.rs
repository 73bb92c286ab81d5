//! Building a context: the protocols and every setting, with their defaults
//! (libwebsockets' `struct lws_context_creation_info` and protocols array).

use crate::context::Context;
use crate::dispatch::{Registered, Slot};
use crate::fileserver::cache::{self as file_cache, FileCache};
use crate::http::request as req;
use crate::http::DateCache;
use crate::listener;
use crate::proto;
use crate::protocol::Protocol;
use crate::readiness::Readiness;
use crate::reason::ProtocolEvent;
use crate::shared::{BufPool, Shared};
use crate::timers::{Liveness, Timers};
use crate::tls::{ClientCerts, Pem, PlainHttp, TlsOptions};
use slab::Slab;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// The connection cap's default: the descriptor limit less a reserve for files, the poll
/// and the listeners.
fn default_max_connections() -> usize {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => usize::try_from(soft)
            .unwrap_or(usize::MAX)
            .saturating_sub(64)
            .max(1),
        Err(_) => 1000,
    }
}

/// Changes to `gid` (dropping supplementary groups) and then `uid`, once the listeners are
/// bound: the group first, as a process no longer root could not change it.
fn drop_privileges(gid: Option<u32>, uid: Option<u32>) -> io::Result<()> {
    use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
    let err = |what: &str, e: nix::Error| io::Error::other(format!("{what}: {e}"));
    if let Some(g) = gid {
        setgroups(&[Gid::from_raw(g)]).map_err(|e| err("setgroups", e))?;
        setgid(Gid::from_raw(g)).map_err(|e| err("setgid", e))?;
    }
    if let Some(u) = uid {
        setuid(Uid::from_raw(u)).map_err(|e| err("setuid", e))?;
    }
    if gid.is_some() || uid.is_some() {
        log::info!("running as uid {} gid {}", Uid::current(), Gid::current());
    }
    Ok(())
}

/// Configuration of a [`Context`]; see [`Context::builder`].
pub struct ContextBuilder {
    port: Option<u16>,
    interface: Option<String>,
    protocols: Vec<Registered>,
    cfg: Config,
    max_unsent: usize,
    backlog: i32,
    reuse_port: bool,
    uid: Option<u32>,
    gid: Option<u32>,
    resource_path: Option<std::path::PathBuf>,
    file_cache_entries: usize,
    file_cache_bytes: usize,
    tls: TlsOptions,
    /// `proxy()`: `None` = from the environment.
    proxy: Option<String>,
    /// `no_proxy()`: `None` = from the environment.
    no_proxy: Option<String>,
    external_poll: bool,
    user: Option<Box<dyn std::any::Any>>,
    listens: Vec<crate::listener::Listen>,
    /// `extension()`, `permessage_deflate()`, in offer order.
    extensions: crate::extensions::Extensions,
    topic_options: crate::topics::TopicOptions,
    #[cfg(feature = "redis")]
    redis: Option<(String, crate::backplane::LinkConfig)>,
}

/// The settings the reactor reads while running (the rest are used up by `build`).
pub(crate) struct Config {
    pub(crate) limits: proto::Limits,
    pub(crate) http_limits: req::Limits,
    pub(crate) read_budget: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) close_timeout: Duration,
    /// What a TLS listener does with plain HTTP.
    pub(crate) plain_http: PlainHttp,
    pub(crate) http_timeout: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) any_protocol: bool,
    pub(crate) max_connections: usize,
    /// TCP keepalive (idle time, probe interval, probes) of every socket.
    pub(crate) tcp_keepalive: Option<(Duration, Duration, u32)>,
    pub(crate) max_body: u64,
    pub(crate) max_close_drain: u64,
    /// CA certificates for verifying servers of outgoing `wss://` connections (and clients'
    /// certificates on a TLS listener).
    pub(crate) ca_file: Option<PathBuf>,
    /// The size of the context-wide receive buffer.
    pub(crate) rx_buffer_size: usize,
}

impl ContextBuilder {
    pub(crate) fn new() -> Self {
        ContextBuilder {
            port: Some(7681),
            interface: None,
            protocols: Vec::new(),
            cfg: Config {
                limits: proto::Limits::default(),
                http_limits: req::Limits::default(),
                read_budget: 1 << 20,
                handshake_timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(10),
                close_timeout: Duration::from_secs(5),
                plain_http: PlainHttp::Refuse,
                http_timeout: Duration::from_secs(30),
                keepalive_timeout: Duration::from_secs(15),
                send_timeout: Duration::from_secs(30),
                ping_interval: Duration::from_secs(30),
                ping_timeout: Duration::from_secs(20),
                any_protocol: false,
                max_connections: default_max_connections(),
                tcp_keepalive: Some((Duration::from_secs(60), Duration::from_secs(10), 6)),
                max_body: 1 << 20,
                max_close_drain: 1 << 20,
                ca_file: None,
                rx_buffer_size: 256 << 10,
            },
            max_unsent: 4 << 20,
            backlog: 1024,
            reuse_port: false,
            uid: None,
            gid: None,
            resource_path: None,
            file_cache_entries: 1024,
            file_cache_bytes: 16 << 20,
            tls: TlsOptions::default(),
            proxy: None,
            no_proxy: None,
            external_poll: false,
            user: None,
            listens: Vec::new(),
            extensions: Default::default(),
            topic_options: Default::default(),
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
    /// Topics across processes (cargo feature `redis`): the context joins the Redis (or
    /// Valkey, Redis 6 or later) pub/sub server at `url`
    /// (`redis://[[user]:password@]host[:port][/db]`). Each topic with local subscribers
    /// is one Redis subscription of this process; a message published here goes to the
    /// local subscribers at once and to the other processes through `PUBLISH`; one from
    /// another process is delivered to the local subscribers as if published here. Delivery
    /// across processes is at most once, as Redis pub/sub is. The connection lives in this
    /// context's loop (no thread, no runtime); when Redis is unreachable local delivery
    /// goes on, the link reconnects with backoff and resubscribes, and publishes meanwhile
    /// are queued or dropped as `config` says (counted in
    /// [`Context::backplane_stats`](crate::Context::backplane_stats)). A bad URL fails
    /// `build()`.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, url: &str, config: crate::backplane::LinkConfig) -> Self {
        self.redis = Some((url.to_owned(), config));
        self
    }

    /// The options of topics created by a plain [`Wsi::subscribe`](crate::Wsi::subscribe)
    /// (queue bound per subscriber and slow-subscriber policy); default: 256 KiB, drop the
    /// oldest. [`Wsi::subscribe_with`](crate::Wsi::subscribe_with) chooses per topic.
    pub fn topic_options(mut self, opts: crate::topics::TopicOptions) -> Self {
        self.topic_options = opts;
        self
    }

    /// Lets the user's own poll loop do the waiting, as libwebsockets does with its
    /// `*_POLL_FD` callbacks: the context never waits itself, and reports every descriptor
    /// it needs (listen sockets, accepted and outgoing connections, the
    /// [`CancelHandle`](crate::CancelHandle) waker) to the **first protocol** as
    /// [`ProtocolEvent::AddPollFd`](crate::ProtocolEvent::AddPollFd),
    /// [`DelPollFd`](crate::ProtocolEvent::DelPollFd) and
    /// [`ChangeModePollFd`](crate::ProtocolEvent::ChangeModePollFd) (`poll(2)` event bits,
    /// level-triggered: `POLLOUT` only while output waits for room), between
    /// [`LockPoll`](crate::ProtocolEvent::LockPoll) and
    /// [`UnlockPoll`](crate::ProtocolEvent::UnlockPoll). The loop polls them with
    /// [`Context::poll_timeout`] as its timeout, calls [`Context::service_fd`] for each
    /// ready descriptor, then [`Context::service_pending`] once per round:
    ///
    /// ```no_run
    /// # use wsreactor::*;
    /// # use std::time::Duration;
    /// # struct P { fds: Vec<libc::pollfd> }
    /// # impl Protocol for P { type Session = ();
    /// #   fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> { Ok(()) } }
    /// # fn poll(_: &mut [libc::pollfd], _: Duration) {}
    /// # fn fds_of(ctx: &mut Context) -> &mut Vec<libc::pollfd> { unimplemented!() }
    /// // The first protocol keeps the array from its AddPollFd / DelPollFd /
    /// // ChangeModePollFd events (see examples/test-server-extpoll.rs).
    /// # let mut ctx = Context::builder().external_poll().protocol("p", P { fds: vec![] }).build()?;
    /// loop {
    ///     let mut fds = fds_of(&mut ctx).clone();
    ///     poll(&mut fds, ctx.poll_timeout(Duration::from_secs(1)));
    ///     for p in fds.iter().filter(|p| p.revents != 0) {
    ///         if !ctx.service_fd(p.fd, p.revents)? {
    ///             // not the context's: the loop's own descriptor
    ///         }
    ///     }
    ///     ctx.service_pending()?;
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// The simpler route, one descriptor for the whole context, needs no option: see
    /// [`Context`'s `AsRawFd`](crate::Context#impl-AsRawFd-for-Context).
    pub fn external_poll(mut self) -> Self {
        self.external_poll = true;
        self
    }

    /// The context-wide user value (libwebsockets' `user` of the creation info, read back
    /// with `libwebsocket_context_user`): state every protocol reaches from any callback
    /// with [`Wsi::user_mut`](crate::Wsi::user_mut) (and
    /// [`Context::user_mut`](crate::Context::user_mut) from the loop), so protocols sharing
    /// state need no `Rc<RefCell<_>>`.
    ///
    /// ```
    /// use wsreactor::{Close, Context, Protocol, Reason, Wsi};
    ///
    /// #[derive(Default)]
    /// struct Totals { messages: u64 }
    ///
    /// #[derive(Default)]
    /// struct Counting;
    /// impl Protocol for Counting {
    ///     type Session = ();
    ///     fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
    ///         if let Reason::Receive { last: true, .. } = reason {
    ///             wsi.user_mut::<Totals>().expect("set at build").messages += 1;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut ctx = Context::builder().port(0).user(Totals::default())
    ///     .protocol("a", Counting).protocol("b", Counting).build()?;
    /// assert_eq!(ctx.user_mut::<Totals>().unwrap().messages, 0);
    /// assert!(ctx.user_mut::<String>().is_none()); // a wrong type is None
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn user<T: 'static>(mut self, value: T) -> Self {
        self.user = Some(Box::new(value));
        self
    }

    /// Offers permessage-deflate (RFC 7692) with these settings: the server accepts the
    /// first acceptable offer of a client (each protocol may refuse it per connection in
    /// [`Reason::ConfirmExtensionOkay`](crate::Reason::ConfirmExtensionOkay)), and outgoing
    /// connections offer it (unless [`ClientConnect::no_deflate`](crate::ClientConnect::no_deflate),
    /// or the protocol refuses in
    /// [`Reason::ClientConfirmExtensionSupported`](crate::Reason::ClientConfirmExtensionSupported)).
    /// Default: off. Messages are then compressed and inflated transparently: `RECEIVE`
    /// gets inflated pieces (at most 64 KiB, or the rx buffer size), bounded by
    /// [`max_message_size`](Self::max_message_size) on the inflated size. Memory modes:
    /// [`DeflateOptions::shared`](crate::proto::deflate::DeflateOptions::shared) (no
    /// per-connection compressor between messages) or
    /// [`DeflateOptions::dedicated`](crate::proto::deflate::DeflateOptions::dedicated).
    ///
    /// ```no_run
    /// use wsreactor::proto::deflate::DeflateOptions;
    /// # struct P; impl wsreactor::Protocol for P { type Session = ();
    /// # fn callback(&mut self, _: &mut wsreactor::Wsi<'_>, _: &mut (), _: wsreactor::Reason<'_>) -> Result<(), wsreactor::Close> { Ok(()) } }
    /// let ctx = wsreactor::Context::builder()
    ///     .protocol("echo", P)
    ///     .permessage_deflate(DeflateOptions::shared())
    ///     .build();
    /// ```
    ///
    /// It is the [`extension`](Self::extension)
    /// [`PermessageDeflate`](crate::proto::deflate::PermessageDeflate)`::new(opts)`.
    pub fn permessage_deflate(self, opts: crate::proto::deflate::DeflateOptions) -> Self {
        self.extension(crate::proto::deflate::PermessageDeflate::new(opts))
    }

    /// Registers a WebSocket extension (libwebsockets' `extensions` array of
    /// `libwebsocket_context_creation_info`), after those registered before: a server
    /// negotiates each one the client offers (each protocol may refuse it per connection in
    /// [`Reason::ConfirmExtensionOkay`](crate::Reason::ConfirmExtensionOkay)); outgoing
    /// connections offer them all in this order (a protocol may leave one out in
    /// [`Reason::ClientConfirmExtensionSupported`](crate::Reason::ClientConfirmExtensionSupported)).
    /// See [`proto::extension`](crate::proto::extension) for the trait, the rules of RSV
    /// bits, and an extension written out in full.
    ///
    /// ```no_run
    /// use wsreactor::proto::deflate::{DeflateOptions, PermessageDeflate};
    /// # struct P; impl wsreactor::Protocol for P { type Session = ();
    /// # fn callback(&mut self, _: &mut wsreactor::Wsi<'_>, _: &mut (), _: wsreactor::Reason<'_>) -> Result<(), wsreactor::Close> { Ok(()) } }
    /// let ctx = wsreactor::Context::builder()
    ///     .protocol("echo", P)
    ///     .extension(PermessageDeflate::new(DeflateOptions::default())) // = .permessage_deflate(..)
    ///     .build();
    /// ```
    pub fn extension<E: crate::proto::extension::Extension>(mut self, ext: E) -> Self {
        self.extensions.register(ext);
        self
    }

    /// The HTTP proxy outgoing connections are tunnelled through with `CONNECT`
    /// (libwebsockets' `libwebsocket_set_proxy`): `host:port` or
    /// `http://[user:password@]host[:port]` (the credentials percent-decoded, sent as
    /// `Proxy-Authorization: Basic`; port 1080 if none), for `ws://` and `wss://` alike;
    /// `None` or empty: no proxy. See also [`Context::set_proxy`].
    ///
    /// Default, as curl: from the environment when the context is built, `https_proxy` (or
    /// `HTTPS_PROXY`) for `wss://` connections and `http_proxy` (or `HTTP_PROXY`) for
    /// `ws://`. Either way the targets named by `no_proxy` (see
    /// [`no_proxy`](Self::no_proxy)) connect directly, and a connection can opt out with
    /// [`ClientConnect::no_proxy`](crate::ClientConnect::no_proxy).
    pub fn proxy(mut self, proxy: Option<&str>) -> Self {
        self.proxy = Some(proxy.unwrap_or_default().to_owned());
        self
    }

    /// The hosts that are never proxied, as curl's `no_proxy`: comma-separated host names
    /// (each also matching its sub-domains: `example.com` and `.example.com` both match
    /// `www.example.com`), IP literals (exact match), CIDR ranges (`10.0.0.0/8`), or `*` for all. Nothing is exempt
    /// otherwise: as for curl, `localhost`, `127.0.0.1` and `::1` are proxied unless listed.
    ///
    /// Default: the environment's `no_proxy` (or `NO_PROXY`) when the context is built.
    pub fn no_proxy(mut self, hosts: &str) -> Self {
        self.no_proxy = Some(hosts.to_owned());
        self
    }

    /// TCP port to listen on; 0 picks a free one (see [`Context::local_addr`]). Default 7681.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// One more listener, beside the one of [`port`](Self::port) (which
    /// [`no_listen`](Self::no_listen) drops, to have only these): TCP or Unix-domain, TLS
    /// or plain, each with its own address; see [`Listen`](crate::Listen). They share the
    /// protocols, the settings and the TLS certificates; the socket options (backlog,
    /// `SO_REUSEPORT`, TCP keepalive) apply to each TCP one. Up to 63 listeners.
    /// [`Context::listener_addr`] tells where each listens.
    pub fn listen(mut self, listener: crate::listener::Listen) -> Self {
        self.listens.push(listener);
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
            receive_with_nul: P::RECEIVE_WITH_NUL,
            handler: Box::new(Slot::new(spec.handler)),
        });
        self
    }

    /// Largest message accepted, in bytes; larger ones fail with 1009. Default 64 MiB.
    pub fn max_message_size(mut self, n: u64) -> Self {
        self.cfg.limits.max_message_size = n;
        self
    }

    /// Largest frame accepted, in bytes; larger ones fail with 1009. Default 16 MiB.
    pub fn max_frame_size(mut self, n: u64) -> Self {
        self.cfg.limits.max_frame_size = n;
        self
    }

    /// Largest HTTP request head (request line and headers), in bytes; larger ones get
    /// 431. Default 8 KiB.
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.cfg.http_limits.max_head_bytes = n;
        self
    }

    /// Bound on the bytes queued and unsent per connection; a write beyond it returns
    /// [`WriteError::BackPressure`](crate::WriteError). Default 4 MiB.
    ///
    /// The bound also governs reading: while more than half of it is queued, the
    /// connection's input is not read (nor decoded further), so a peer that sends without
    /// reading the replies (pongs, echoes, responses) is slowed by TCP rather than growing
    /// the out buffer; and the pieces `RECEIVE` delivers are cut to fit in the other half
    /// (at most `max_unsent / 2 - 14` bytes), so that echoing a piece never meets
    /// back-pressure.
    pub fn max_unsent(mut self, n: usize) -> Self {
        self.max_unsent = n.max(1);
        self
    }

    /// Size of the context-wide receive buffer (one per context, not per connection).
    /// Default 256 KiB: a 64 KiB message and its header then usually arrive in one read,
    /// and are echoed as one frame rather than split at a read boundary (scenario c of
    /// BENCHMARKS.md: about 5 % less server CPU per MB than with 64 KiB).
    pub fn rx_buffer_size(mut self, n: usize) -> Self {
        self.cfg.rx_buffer_size = n.max(256);
        self
    }

    /// How long a new connection may take to send its request head, counted from its
    /// accept (an outgoing one: to complete its handshake once connected), not moved by
    /// bytes trickling in; past it the connection is dropped. Zero: no limit (the
    /// [`http_timeout`](Self::http_timeout) still applies). Default 10 s.
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.cfg.handshake_timeout = t;
        self
    }

    /// How long an outgoing connection may take to resolve its name and connect (across
    /// all the addresses it tries); `CLIENT_CONNECTION_ERROR` "timed out connecting" past
    /// it. Default 10 s.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.cfg.connect_timeout = t;
        self
    }

    /// How long to wait for the peer's close frame after sending ours, and for its EOF
    /// after our last byte. Zero: no limit. Default 5 s.
    pub fn close_timeout(mut self, t: Duration) -> Self {
        self.cfg.close_timeout = t;
        self
    }

    /// The deadline of a whole HTTP request, head and body, counted from its start (the
    /// accept, or the first byte after a kept-alive response) and never moved by the bytes
    /// that arrive: a client trickling its request is dropped by it, however steadily it
    /// trickles. The head alone has the [`handshake_timeout`](Self::handshake_timeout), if
    /// that is shorter. Zero: no limit. Default 30 s.
    pub fn http_timeout(mut self, t: Duration) -> Self {
        self.cfg.http_timeout = t;
        self
    }

    /// How long a kept-alive HTTP connection may wait idle for its next request. Zero: no
    /// limit. Default 15 s.
    pub fn keepalive_timeout(mut self, t: Duration) -> Self {
        self.cfg.keepalive_timeout = t;
        self
    }

    /// How long output may sit queued without the peer taking any of it (a peer that
    /// stopped reading a download or its WebSocket): past it the connection is dropped.
    /// Any progress starts it again. Zero: no limit. Default 30 s.
    pub fn send_timeout(mut self, t: Duration) -> Self {
        self.cfg.send_timeout = t;
        self
    }

    /// After how long without input a WebSocket (served or outgoing) is sent a ping. Any
    /// input, not only a pong, shows the peer alive and starts the interval again. Zero:
    /// no pings. Default 30 s, below the 60 s after which common proxies (nginx's
    /// `proxy_read_timeout`) drop an idle tunnel.
    pub fn ping_interval(mut self, t: Duration) -> Self {
        self.cfg.ping_interval = t;
        self
    }

    /// How long a pinged WebSocket has to answer (a pong, or any other input) before it is
    /// dropped as dead (`CLOSED` without a close code). Zero: wait for ever. Default 20 s.
    pub fn ping_timeout(mut self, t: Duration) -> Self {
        self.cfg.ping_timeout = t;
        self
    }

    /// TCP keepalive on every socket (libwebsockets' `ka_time`, `ka_probes`,
    /// `ka_interval`): after `time` without traffic the kernel probes the peer every
    /// `interval`, and after `probes` unanswered probes the connection fails (read error,
    /// `CLOSED`). Catches peers that vanished without a FIN (power loss, a dropped NAT
    /// mapping) where no WebSocket ping runs, e.g. an idle HTTP download or a context with
    /// pings off. Set on the listener, whose accepted sockets inherit it (no system call
    /// per connection), and on outgoing sockets. `None`: off. Default 60 s, 10 s, 6 probes
    /// (a dead peer found within 2 minutes).
    pub fn tcp_keepalive(mut self, ka: Option<(Duration, u32, Duration)>) -> Self {
        self.cfg.tcp_keepalive = ka.map(|(time, probes, interval)| (time, interval, probes));
        self
    }

    /// `SO_REUSEPORT` on the listener, so that several contexts (one per thread, or per
    /// process) listen on the same port and the kernel spreads new connections over them:
    /// the way to use more than one core (see README, "Scaling out"). Default off: a second
    /// context on a port in use then fails to build, as it should by accident.
    pub fn reuse_port(mut self, yes: bool) -> Self {
        self.reuse_port = yes;
        self
    }

    /// Runs as this user id once the listeners are bound (libwebsockets' `uid`), e.g. to
    /// bind port 80 or 443 as root and serve as nobody. Failing to change fails
    /// [`build`](Self::build). Changes the whole process. Default: unchanged.
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Runs as this group id (and no supplementary groups) once the listeners are bound
    /// (libwebsockets' `gid`); changed before the [`uid`](Self::uid). Default: unchanged.
    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// Most connections open at once (accepted and outgoing); a client accepted beyond it
    /// is refused by closing its connection at once (a FIN, no response): answering with
    /// 503 would mean reading its request first, holding the very descriptor and memory the
    /// cap protects, and a 503 written before the request is read is often lost to a reset
    /// anyway; a closed connection is also what a reverse proxy takes as "try the next
    /// backend". [`Context::refused_connections`] counts them. Default: the soft
    /// `RLIMIT_NOFILE` at start-up less 64, so that refusing happens before `accept` runs
    /// out of descriptors and the file server still has some to open files with.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.cfg.max_connections = n;
        self
    }

    /// Most bytes read (and discarded) from a peer after our close frame is queued, while
    /// waiting for its close frame and then its EOF. Past it the connection reads no more:
    /// what is queued (the close frame, an error response) is still sent, then a FIN, and
    /// the close timeout ends the connection. So a peer that keeps sending instead of
    /// closing cannot keep a closing connection reading (and burning CPU) for the whole
    /// close timeout. Default 1 MiB.
    pub fn max_close_drain(mut self, n: u64) -> Self {
        self.cfg.max_close_drain = n;
        self
    }

    /// Accept upgrades that offer only unknown sub-protocols, binding them to the first
    /// protocol and selecting the client's first offer (default: refuse with 400). Meant
    /// for echo and test servers that speak any sub-protocol.
    pub fn accept_any_protocol(mut self, yes: bool) -> Self {
        self.cfg.any_protocol = yes;
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
        self.cfg.max_body = n;
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

    /// Serves TLS (wss:// and https://) with the certificate chain and private key in
    /// these PEM files (libwebsockets' `ssl_cert_filepath` and `ssl_private_key_filepath`).
    /// Read by [`build`](Self::build), which fails with the file and the reason if they do
    /// not load or do not match.
    ///
    /// ```no_run
    /// # use wsreactor::{Context, Protocol, Reason, Wsi, Close};
    /// # #[derive(Default)] struct Echo;
    /// # impl Protocol for Echo { type Session = ();
    /// #   fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> { Ok(()) } }
    /// let ctx = Context::builder()
    ///     .port(443)
    ///     .ssl_cert_filepath("/etc/ssl/example.pem")
    ///     .ssl_private_key_filepath("/etc/ssl/example.key")
    ///     .protocol("echo", Echo)
    ///     .build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn ssl_cert_filepath(mut self, path: impl Into<PathBuf>) -> Self {
        let key = match self.tls.cert.take() {
            Some(Pem::Files(_, k)) => k,
            _ => PathBuf::new(),
        };
        self.tls.cert = Some(Pem::Files(path.into(), key));
        self
    }

    /// The PEM file of the private key for [`ssl_cert_filepath`](Self::ssl_cert_filepath).
    pub fn ssl_private_key_filepath(mut self, path: impl Into<PathBuf>) -> Self {
        let cert = match self.tls.cert.take() {
            Some(Pem::Files(c, _)) => c,
            _ => PathBuf::new(),
        };
        self.tls.cert = Some(Pem::Files(cert, path.into()));
        self
    }

    /// Serves TLS with a certificate chain and key given as PEM text in memory.
    pub fn ssl_cert_pem(mut self, chain: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.tls.cert = Some(Pem::Memory(chain.into(), key.into()));
        self
    }

    /// One more certificate on the same listener, chosen when the client asks for
    /// `server_name` by SNI (libwebsockets' vhosts sharing a port; `*.example.com` matches
    /// one label). Clients that send no name, or another one, get the main certificate
    /// ([`ssl_cert_filepath`](Self::ssl_cert_filepath) or [`ssl_cert_pem`](Self::ssl_cert_pem);
    /// without one, the first SNI certificate).
    pub fn ssl_sni_cert_pem(
        mut self,
        server_name: &str,
        chain: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls
            .sni
            .push((server_name.to_owned(), Pem::Memory(chain.into(), key.into())));
        self
    }

    /// [`ssl_sni_cert_pem`](Self::ssl_sni_cert_pem) from PEM files.
    pub fn ssl_sni_cert_filepath(
        mut self,
        server_name: &str,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.tls
            .sni
            .push((server_name.to_owned(), Pem::Files(cert.into(), key.into())));
        self
    }

    /// The PEM file of the CA certificates that client certificates are verified against
    /// (libwebsockets' `ssl_ca_filepath`); see [`ssl_client_certs`](Self::ssl_client_certs).
    pub fn ssl_ca_filepath(mut self, path: impl Into<PathBuf>) -> Self {
        self.cfg.ca_file = Some(path.into());
        self
    }

    /// Asks TLS clients for a certificate, optionally or as a requirement
    /// (`LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT`); needs
    /// [`ssl_ca_filepath`](Self::ssl_ca_filepath). The first protocol then sees each verified
    /// chain in [`Reason::PerformClientCertVerification`](crate::Reason) and may refuse it.
    /// Default: [`ClientCerts::None`].
    pub fn ssl_client_certs(mut self, mode: ClientCerts) -> Self {
        self.tls.client_certs = mode;
        self
    }

    /// The TLS cipher suites allowed, by IANA name, separated by `:` (libwebsockets'
    /// `ssl_cipher_list`), e.g. `"TLS_AES_256_GCM_SHA384:TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"`.
    /// A name rustls does not offer fails [`build`](Self::build), listing the known ones.
    /// Default: rustls' own list (AES-GCM and ChaCha20-Poly1305, TLS 1.3 and 1.2).
    pub fn ssl_cipher_list(mut self, list: &str) -> Self {
        self.tls.cipher_list = Some(list.to_owned());
        self
    }

    /// Uses this rustls configuration for TLS as it is, for everything the settings above
    /// do not cover (libwebsockets' user-supplied `SSL_CTX`). The certificate, SNI, CA,
    /// client-certificate and cipher settings are then ignored.
    pub fn ssl_server_config(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls.server_config = Some(config);
        self
    }

    /// What the TLS port does with a client speaking plain HTTP. Default:
    /// [`PlainHttp::Refuse`] (400).
    pub fn ssl_plain_http(mut self, policy: PlainHttp) -> Self {
        self.cfg.plain_http = policy;
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
        let tls = if self.tls.enabled() {
            Some(self.tls.build(self.cfg.ca_file.as_deref())?)
        } else {
            None
        };
        let mut proxy = crate::proxy::ProxyConfig::from_env();
        if let Some(p) = &self.proxy {
            let p = crate::proxy::Proxy::parse(p)?;
            proxy.plain = p.clone();
            proxy.tls = p;
        }
        if let Some(n) = &self.no_proxy {
            proxy.no_proxy = crate::proxy::NoProxy::parse(n);
        }
        let mut readiness = Readiness::new(self.external_poll)?;
        let mut listeners = Vec::new();
        if let Some(port) = self.port {
            let opts = listener::SockOpts {
                backlog: self.backlog,
                reuse_port: self.reuse_port,
                keepalive: self.cfg.tcp_keepalive,
            };
            let mut l = listener::bind(self.interface.as_deref(), port, opts)?;
            readiness.add_listener(&mut l, listeners.len())?;
            log::info!("listening on {}", l.local_addr()?);
            listeners.push(listener::Listener {
                sock: listener::ListenSock::Tcp(l),
                tls: tls.is_some(),
                own_tls: None,
            });
        }
        for spec in &self.listens {
            if listeners.len() >= listener::MAX_LISTENERS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "more than 63 listeners",
                ));
            }
            if spec.ssl && tls.is_none() && spec.own_tls.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a TLS listener needs a certificate (ssl_cert_filepath and friends, or the listener's own)",
                ));
            }
            let own_tls = match &spec.own_tls {
                None => None,
                Some(listener::ListenTls::Config(c)) => Some(c.clone()),
                Some(listener::ListenTls::Pem(pem)) => {
                    Some(self.tls.build_for_listener(pem, self.cfg.ca_file.as_deref())?)
                }
            };
            let opts = listener::SockOpts {
                backlog: self.backlog,
                reuse_port: self.reuse_port,
                keepalive: self.cfg.tcp_keepalive,
            };
            let mut l = listener::open_listener(spec, opts, own_tls)?;
            readiness.add_listener(&mut l.sock, listeners.len())?;
            log::info!(
                "listening on {:?}{}",
                l.addr()?,
                if l.tls { " (TLS)" } else { "" }
            );
            listeners.push(l);
        }
        drop_privileges(self.gid, self.uid)?;
        let shared = Shared {
            requests: Vec::new(),
            writable: Vec::new(),
            resume: Vec::new(),
            bufs: BufPool::default(),
            protocol_names: self
                .protocols
                .iter()
                .map(|p| p.name.clone().into_boxed_str())
                .collect(),
            max_unsent: self.max_unsent,
            date: DateCache::new(),
            timers: {
                let mut t = Timers::default();
                t.live = Liveness::from_config(&self.cfg);
                t.set_now(std::time::Instant::now());
                t
            },
            rng: rand::SeedableRng::from_os_rng(),
            user: self.user,
            ext: self.extensions,
            topics: crate::topics::Topics::new(self.topic_options),
            stats: Default::default(),
        };
        let file_cache = self.resource_path.map(|root| {
            FileCache::new(
                root,
                file_cache::Limits {
                    max_entries: self.file_cache_entries,
                    max_bytes: self.file_cache_bytes,
                    max_file: file_cache::MAX_CACHED_FILE,
                    settle: file_cache::SETTLE,
                },
            )
        });
        let mut ctx = Context {
            readiness,
            ready: Vec::with_capacity(1024),
            listeners,
            conns: Slab::new(),
            protocols: self.protocols,
            shared,
            rxbuf: vec![0; self.cfg.rx_buffer_size],
            tls_rx: if tls.is_some() {
                vec![0; self.cfg.rx_buffer_size]
            } else {
                Vec::new()
            },
            cfg: self.cfg,
            file_cache,
            tls,
            resolver: Default::default(),
            client_tls: [None, None],
            proxy,
            next_gen: 1,
            current: None,
            poll_changes: Vec::new(),
            attempts: Vec::new(),
            starved: 0,
            refused: 0,
            shutting_down: false,
            #[cfg(feature = "redis")]
            backplane: None,
        };
        #[cfg(feature = "redis")]
        if let Some((url, config)) = self.redis {
            let url = crate::backplane::RedisUrl::parse(&url)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            ctx.backplane = Some(Box::new(crate::backplane::Backplane::new(url, config)));
            ctx.shared.topics.bridge = Some(Default::default());
        }
        ctx.protocol_event_all(ProtocolEvent::Init);
        ctx.report_poll_changes();
        Ok(ctx)
    }
}
