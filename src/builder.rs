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
use crate::timers::Timers;
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

/// Configuration of a [`Context`]; see [`Context::builder`].
pub struct ContextBuilder {
    port: Option<u16>,
    interface: Option<String>,
    protocols: Vec<Registered>,
    cfg: Config,
    max_unsent: usize,
    backlog: i32,
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
}

/// The settings the reactor reads while running (the rest are used up by `build`).
pub(crate) struct Config {
    pub(crate) limits: proto::Limits,
    pub(crate) http_limits: req::Limits,
    pub(crate) read_budget: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) any_protocol: bool,
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
                any_protocol: false,
                max_body: 1 << 20,
                max_close_drain: 1 << 20,
                ca_file: None,
                rx_buffer_size: 256 << 10,
            },
            max_unsent: 4 << 20,
            backlog: 1024,
            resource_path: None,
            file_cache_entries: 1024,
            file_cache_bytes: 16 << 20,
            tls: TlsOptions::default(),
            proxy: None,
            no_proxy: None,
            external_poll: false,
            user: None,
        }
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
    /// `www.example.com`), IP literals (exact match), or `*` for all. Nothing is exempt
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

    /// How long a new connection may take to send its request head (an outgoing one: to
    /// complete its handshake once connected). Default 10 s.
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
    /// after our last byte. Default 5 s.
    pub fn close_timeout(mut self, t: Duration) -> Self {
        self.cfg.close_timeout = t;
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
        self.tls.plain = policy;
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
            let mut l = listener::bind(self.interface.as_deref(), port, self.backlog)?;
            readiness.add_listener(&mut l, listeners.len())?;
            log::info!("listening on {}", l.local_addr()?);
            listeners.push(l);
        }
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
            rng: rand::SeedableRng::from_os_rng(),
            user: self.user,
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
            timers: Timers::default(),
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
        };
        ctx.protocol_event_all(ProtocolEvent::Init);
        ctx.report_poll_changes();
        Ok(ctx)
    }
}
