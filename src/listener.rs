//! Listen sockets: address selection (IPv4/IPv6 literal or interface name) and socket
//! options, through socket2; Unix-domain listeners; and accepting connections from them.
//! A context has any number of listeners (up to 63), each TCP or Unix, TLS or plain.

use crate::connection::State;
use crate::context::Context;
use crate::reason::{ProtocolEvent, ProtocolId};
use crate::transport::Transport;
use crate::wsi::ProtocolContext;
use mio::event::Source as MioSource;
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

/// Most listeners of one context (their tokens and the starved-listener bits).
pub(crate) const MAX_LISTENERS: usize = 63;

/// A listener to open, beside or instead of the one of
/// [`ContextBuilder::port`](crate::ContextBuilder::port): TCP on a port (all interfaces,
/// an IPv4 or IPv6 address, or an interface name) or a Unix-domain socket path, TLS or
/// plain. Given to [`ContextBuilder::listen`](crate::ContextBuilder::listen).
///
/// ```no_run
/// use wsreactor::{Context, Listen};
/// # #[derive(Default)] struct P;
/// # impl wsreactor::Protocol for P { type Session = ();
/// #   fn callback(&mut self, _: &mut wsreactor::Wsi<'_>, _: &mut (), _: wsreactor::Reason<'_>) -> Result<(), wsreactor::Close> { Ok(()) } }
/// let ctx = Context::builder()
///     .no_listen()
///     .ssl_cert_filepath("cert.pem")
///     .ssl_private_key_filepath("key.pem")
///     .listen(Listen::tcp("0.0.0.0", 443).ssl(true))   // https:// and wss://
///     .listen(Listen::tcp("::1", 8080))                // plain, IPv6 loopback
///     .listen(Listen::unix("/run/app/ws.sock"))        // plain, for a local proxy
///     .protocol("p", P)
///     .build()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Listen {
    pub(crate) kind: ListenKind,
    pub(crate) ssl: bool,
    pub(crate) own_tls: Option<ListenTls>,
}

/// A listener's own certificate, instead of the context's.
#[derive(Debug, Clone)]
pub(crate) enum ListenTls {
    Pem(crate::tls::Pem),
    Config(Arc<rustls::ServerConfig>),
}

#[derive(Debug, Clone)]
pub(crate) enum ListenKind {
    Tcp { interface: Option<String>, port: u16 },
    Unix(PathBuf),
}

impl Listen {
    /// TCP on `port` (0: any free one) of `interface`: an IPv4 or IPv6 address, an
    /// interface name (`SO_BINDTODEVICE`), or `""` for all interfaces (dual-stack).
    pub fn tcp(interface: &str, port: u16) -> Listen {
        Listen {
            kind: ListenKind::Tcp {
                interface: (!interface.is_empty()).then(|| interface.to_owned()),
                port,
            },
            ssl: false,
            own_tls: None,
        }
    }

    /// A Unix-domain stream socket at `path` (a stale socket file there is replaced; the
    /// file is removed when the context is dropped). Always plain.
    pub fn unix(path: impl Into<PathBuf>) -> Listen {
        Listen {
            kind: ListenKind::Unix(path.into()),
            ssl: false,
            own_tls: None,
        }
    }

    /// Serves TLS (with the context's certificates, `ssl_*` settings) instead of plain.
    /// Default: plain.
    pub fn ssl(mut self, yes: bool) -> Listen {
        self.ssl = yes;
        self
    }

    /// Serves TLS with a certificate of its own (PEM files: the chain, then the key),
    /// instead of the context's: one context serving two sites on two ports (libwebsockets'
    /// vhosts, each with its certificate). The context's cipher list, client-certificate
    /// mode and CA file apply; its SNI names do not (this certificate answers every name).
    /// A bad file fails [`build`](crate::ContextBuilder::build), naming it.
    ///
    /// ```no_run
    /// use wsreactor::{Context, Listen};
    /// # use wsreactor::{Close, Protocol, Reason, Wsi};
    /// # #[derive(Default)] struct P;
    /// # impl Protocol for P { type Session = ();
    /// #   fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> { Ok(()) } }
    /// let ctx = Context::builder()
    ///     .no_listen()
    ///     .listen(Listen::tcp("", 443).ssl_cert("a.example/cert.pem", "a.example/key.pem"))
    ///     .listen(Listen::tcp("", 8443).ssl_cert("b.example/cert.pem", "b.example/key.pem"))
    ///     .protocol("p", P)
    ///     .build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn ssl_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Listen {
        self.ssl = true;
        self.own_tls = Some(ListenTls::Pem(crate::tls::Pem::Files(cert.into(), key.into())));
        self
    }

    /// [`ssl_cert`](Self::ssl_cert) from PEM text in memory.
    pub fn ssl_cert_pem(mut self, chain: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Listen {
        self.ssl = true;
        self.own_tls = Some(ListenTls::Pem(crate::tls::Pem::Memory(chain.into(), key.into())));
        self
    }

    /// Serves TLS with this rustls configuration as it is (the listener's own
    /// [`ssl_server_config`](crate::ContextBuilder::ssl_server_config)).
    pub fn ssl_server_config(mut self, config: Arc<rustls::ServerConfig>) -> Listen {
        self.ssl = true;
        self.own_tls = Some(ListenTls::Config(config));
        self
    }
}

/// Where a listener listens ([`Context::listener_addr`](crate::Context::listener_addr)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP listener's address (the port chosen for port 0 included).
    Tcp(SocketAddr),
    /// A Unix-domain listener's path.
    Unix(PathBuf),
}

/// An open listener.
pub(crate) struct Listener {
    pub(crate) sock: ListenSock,
    /// Connections accepted here speak TLS.
    pub(crate) tls: bool,
    /// This listener's own TLS configuration, else the context's.
    pub(crate) own_tls: Option<Arc<rustls::ServerConfig>>,
}

pub(crate) enum ListenSock {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Drop for ListenSock {
    fn drop(&mut self) {
        if let ListenSock::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl AsRawFd for ListenSock {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            ListenSock::Tcp(l) => l.as_raw_fd(),
            ListenSock::Unix(l, _) => l.as_raw_fd(),
        }
    }
}

impl MioSource for ListenSock {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            ListenSock::Tcp(l) => l.register(r, t, i),
            ListenSock::Unix(l, _) => l.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            ListenSock::Tcp(l) => l.reregister(r, t, i),
            ListenSock::Unix(l, _) => l.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            ListenSock::Tcp(l) => l.deregister(r),
            ListenSock::Unix(l, _) => l.deregister(r),
        }
    }
}

/// A connection just accepted.
enum Accepted {
    Tcp(mio::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Listener {
    pub(crate) fn addr(&self) -> io::Result<ListenAddr> {
        match &self.sock {
            ListenSock::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            ListenSock::Unix(_, p) => Ok(ListenAddr::Unix(p.clone())),
        }
    }

    /// One accept. A Unix peer has no IP address: it is given as `0.0.0.0:0`.
    fn accept(&self) -> io::Result<(Accepted, SocketAddr)> {
        match &self.sock {
            ListenSock::Tcp(l) => l.accept().map(|(s, a)| (Accepted::Tcp(s), a)),
            ListenSock::Unix(l, _) => l
                .accept()
                .map(|(s, _)| (Accepted::Unix(s.into()), SocketAddr::from(([0, 0, 0, 0], 0)))),
        }
    }
}

/// Opens the listener `spec` asks for.
pub(crate) fn open_listener(
    spec: &Listen,
    opts: SockOpts,
    own_tls: Option<Arc<rustls::ServerConfig>>,
) -> io::Result<Listener> {
    let sock = match &spec.kind {
        ListenKind::Tcp { interface, port } => ListenSock::Tcp(bind(interface.as_deref(), *port, opts)?),
        ListenKind::Unix(path) => {
            use std::os::unix::fs::FileTypeExt;
            // A socket file left by an earlier run would make bind fail: replace it (but
            // never anything that is not a socket).
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                std::fs::remove_file(path)?;
            }
            ListenSock::Unix(UnixListener::bind(path)?, path.clone())
        }
    };
    if spec.ssl && matches!(sock, ListenSock::Unix(..)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a Unix-domain listener is plain (no TLS)",
        ));
    }
    Ok(Listener {
        sock,
        tls: spec.ssl,
        own_tls,
    })
}

/// Opens a non-blocking listener on `port` (0 = any free port).
///
/// `interface` is an IP literal (IPv4 or IPv6), an interface name (bound with
/// `SO_BINDTODEVICE`, Linux only, which needs `CAP_NET_RAW`), or `None` for all
/// interfaces (a dual-stack IPv6 socket where the system allows, else IPv4).
/// Socket options of the listeners, inherited by the sockets they accept.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SockOpts {
    pub(crate) backlog: i32,
    /// `SO_REUSEPORT`: several sockets (contexts, threads, processes) on one port, the
    /// kernel spreading new connections over them.
    pub(crate) reuse_port: bool,
    /// TCP keepalive: idle time, probe interval, probes.
    pub(crate) keepalive: Option<(std::time::Duration, std::time::Duration, u32)>,
}

/// Applies TCP keepalive to a socket (a listener's accepted sockets inherit it on Linux).
pub(crate) fn set_keepalive(
    sock: socket2::SockRef<'_>,
    ka: Option<(std::time::Duration, std::time::Duration, u32)>,
) -> io::Result<()> {
    let Some((time, interval, probes)) = ka else {
        return Ok(());
    };
    let ka = socket2::TcpKeepalive::new().with_time(time);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd"
    ))]
    let ka = ka.with_interval(interval).with_retries(probes);
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd"
    )))]
    let _ = (interval, probes);
    sock.set_tcp_keepalive(&ka)
}

pub(crate) fn bind(interface: Option<&str>, port: u16, opts: SockOpts) -> io::Result<TcpListener> {
    let (addr, device) = match interface {
        None => (SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port), None),
        Some(s) => match s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            Ok(ip) => (SocketAddr::new(ip, port), None),
            Err(_) => (SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port), Some(s)),
        },
    };
    let sock = match open(addr, device, opts) {
        Ok(s) => s,
        // No IPv6 on this host: fall back to IPv4 for the wildcard.
        Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
            log::debug!("IPv6 wildcard bind failed ({e}), using IPv4");
            open(SocketAddr::from(([0, 0, 0, 0], port)), device, opts)?
        }
        Err(e) => return Err(e),
    };
    Ok(TcpListener::from_std(sock.into()))
}

fn open(addr: SocketAddr, device: Option<&str>, opts: SockOpts) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(SockProtocol::TCP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        sock.set_only_v6(false)?;
    }
    sock.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    if opts.reuse_port {
        sock.set_reuse_port(true)?;
    }
    set_keepalive(socket2::SockRef::from(&sock), opts.keepalive)?;
    if let Some(dev) = device {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        sock.bind_device(Some(dev.as_bytes()))?;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("binding to interface {dev} needs Linux"),
        ));
    }
    // Inherited by accepted sockets on Linux, so they need no setsockopt of their own.
    sock.set_tcp_nodelay(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(opts.backlog)?;
    Ok(sock)
}

impl Context {
    /// Accepts every pending connection of listener `i`: `FILTER_NETWORK_CONNECTION`,
    /// registration, `WSI_CREATE` and `SERVER_NEW_CLIENT_INSTANTIATED`, and the handshake
    /// deadline.
    pub(crate) fn accept(&mut self, i: usize) {
        loop {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            let tls = match (&l.own_tls, l.tls) {
                (Some(own), _) => Some(own.clone()),
                (None, true) => self.tls.as_ref().map(|t| t.config.clone()),
                (None, false) => None,
            };
            let (sock, peer) = match l.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    self.accept_starved(i, &e);
                    return;
                }
            };
            if self.starved & (1 << (i % 64)) != 0 {
                self.starved &= !(1 << (i % 64));
                log::warn!("accept: accepting again");
            }
            if self.conns.len() >= self.cfg.max_connections {
                // Refused by closing at once: see `ContextBuilder::max_connections`.
                log::debug!("{peer}: refused: {} connections open", self.conns.len());
                self.refused += 1;
                continue;
            }
            let fd = match &sock {
                Accepted::Tcp(s) => s.as_raw_fd(),
                Accepted::Unix(s) => s.as_raw_fd(),
            };
            let filter = ProtocolEvent::FilterNetworkConnection { peer, fd };
            let mut pc = ProtocolContext {
                shared: &mut self.shared,
                protocol: ProtocolId(0),
            };
            if self.protocols[0].handler.call_protocol(&mut pc, filter).is_err() {
                log::debug!("{peer}: refused by FILTER_NETWORK_CONNECTION");
                self.shared.stats.refused += 1;
                continue;
            }
            // Linux copies TCP_NODELAY from the listener to accepted sockets (set in
            // `open`): one setsockopt per connection saved.
            let transport = match (sock, tls) {
                (Accepted::Unix(s), _) => Transport::unix(s),
                (Accepted::Tcp(s), None) => {
                    #[cfg(not(target_os = "linux"))]
                    let _ = s.set_nodelay(true);
                    Transport::tcp(s)
                }
                (Accepted::Tcp(s), Some(tls)) => match Transport::tls(s, tls) {
                    Ok(t) => t,
                    Err(e) => {
                        log::warn!("{peer}: TLS session: {e}");
                        continue;
                    }
                },
            };
            let k = match self.insert_conn(transport, 0, State::Http) {
                Ok(k) => k,
                Err(e) => {
                    log::warn!("{peer}: {e}");
                    continue;
                }
            };
            self.shared.stats.accepted += 1;
            log::debug!("{peer}: accepted as {k}.{}", self.conns[k].gen);
            self.start_http_conn(k);
        }
    }
}

/// How long a listener starved of descriptors waits before accepting again.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

impl Context {
    /// `accept` failed with something other than "nothing pending": at the descriptor
    /// limit (EMFILE, ENFILE) or short of kernel memory (ENOBUFS, ENOMEM). The listener is
    /// edge-triggered, so the clients left in its backlog would wait for a new client's
    /// edge: retry on a timer instead, without spinning, until an accept succeeds.
    fn accept_starved(&mut self, i: usize, e: &io::Error) {
        let bit = 1u64 << (i % 64);
        if self.starved & bit == 0 {
            log::warn!("accept: {e}: retrying every {ACCEPT_RETRY:?} while it lasts");
            self.starved |= bit;
        }
        self.schedule_job(ACCEPT_RETRY, crate::timers::Job::Accept(i));
    }

    /// The retry timer of a starved listener.
    pub(crate) fn accept_retry(&mut self, i: usize) {
        if !self.shutting_down {
            self.accept(i);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The accept path relies on this: it no longer sets TCP_NODELAY itself.
    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let opts = SockOpts {
            backlog: 16,
            ..SockOpts::default()
        };
        let l = bind(Some("127.0.0.1"), 0, opts).unwrap();
        let addr = l.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap());
    }
}
