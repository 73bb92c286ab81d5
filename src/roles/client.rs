//! The client role: an outgoing connection from name to WebSocket.
//!
//! ClientConnecting (the name resolved off the loop, then a non-blocking connect, address
//! after address) → [through a proxy: ClientProxy (`CONNECT` sent, a 2xx answer read; TLS
//! starts only then)] → `CLIENT_APPEND_HANDSHAKE_HEADER` and the request sent → ClientHandshake
//! (the response head read and checked: 101, accept key, sub-protocol, the extensions we offered) →
//! `CLIENT_FILTER_PRE_ESTABLISH` → `CLIENT_ESTABLISHED`, and from there the
//! [WebSocket role](super::websocket) with masked frames and the `CLIENT_*` reasons. Any
//! failure before that ends in one `CLIENT_CONNECTION_ERROR` with the reason as text.

use super::Stop;
use crate::client::{ClientConnect, ProxyChoice, SslMode};
use crate::connection::{flag, Conn, State};
use crate::context::Context;
use crate::proto::{handshake, Receiver, Role};
use crate::proxy::{self, NoProxy, Proxy};
use crate::readiness::MAX_CONN_KEY;
use crate::reason::{ConnId, Reason};
use crate::roles::http::HttpState;
use crate::timers::PendingTimeout;
use crate::transport::{connect_state, Transport};
use mio::net::TcpStream;
use rustls_pki_types::ServerName;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// RFC 8305's Connection Attempt Delay: while no attempt has connected, the next address
/// gets its own attempt this long after the previous one started (happy eyeballs), the
/// earlier attempts staying in the race.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Most header fields read from a server's handshake response.
const MAX_RESPONSE_HEADERS: usize = 64;

/// An outgoing connection's state until it is established (kept in its [`HttpState`]).
#[derive(Debug)]
pub(crate) struct ClientState {
    pub(crate) info: ClientConnect,
    /// Our `Sec-WebSocket-Key`.
    key: String,
    /// Addresses still to try after the current one.
    addrs: Vec<SocketAddr>,
    /// The address being connected to, for error messages.
    current: Option<SocketAddr>,
    /// Further attempts in flight (happy eyeballs), registered under the same token.
    racing: Vec<(TcpStream, SocketAddr)>,
    /// Fields added in `CLIENT_APPEND_HANDSHAKE_HEADER`.
    pub(crate) extra: Vec<(String, String)>,
    /// The response's fields (names lower-cased, repeated ones joined by `, `), readable in
    /// `CLIENT_FILTER_PRE_ESTABLISH`.
    response: Vec<(String, String)>,
    /// Why the connection failed, for `CLIENT_CONNECTION_ERROR`.
    pub(crate) error: Option<String>,
    /// The HTTP proxy connected to instead of the target.
    proxy: Option<Proxy>,
    /// Through a proxy, for `wss://`: the TLS session to start once the tunnel is up.
    tls_pending: Option<(std::sync::Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// The extensions we offered (indices in the context's list): the response may accept
    /// them.
    ext_offered: Vec<u16>,
}

/// A connecting client's state, which lives in the HTTP state of its connection.
impl Conn {
    pub(crate) fn client(&self) -> Option<&ClientState> {
        self.http.as_ref().and_then(|h| h.client.as_deref())
    }

    pub(crate) fn client_mut(&mut self) -> Option<&mut ClientState> {
        self.http.as_mut().and_then(|h| h.client.as_deref_mut())
    }
}

impl ClientState {
    /// The host the TCP connection goes to (the proxy's or the target's), for messages.
    fn dial_host(&self) -> &str {
        self.proxy.as_ref().map_or(&self.info.address, |p| &p.host)
    }

    pub(crate) fn response_header(&self, name: &str) -> Option<&str> {
        self.response
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The descriptors of an outgoing connection's other attempts in flight, to take them out
/// of an external poll set with the connection.
pub(crate) fn racing_fds(c: &Conn) -> impl Iterator<Item = std::os::fd::RawFd> + '_ {
    c.client()
        .into_iter()
        .flat_map(|cs| cs.racing.iter().map(|(s, _)| s.as_raw_fd()))
}

/// A TLS session to start once a proxy's tunnel is up.
type PendingTls = (Arc<rustls::ClientConfig>, ServerName<'static>);

/// Name resolutions done off the loop, handed back through the waker.
pub(crate) struct Resolver {
    tx: mpsc::Sender<Resolved>,
    rx: mpsc::Receiver<Resolved>,
}

type Resolved = (usize, u32, io::Result<Vec<SocketAddr>>);

impl Default for Resolver {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Resolver { tx, rx }
    }
}

fn unconnected_socket() -> io::Result<TcpStream> {
    // A placeholder until the name is resolved: the connection needs a socket to exist,
    // and the real one is made per address tried.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    Ok(TcpStream::from_std(s.into()))
}

/// A non-blocking connect, with the context's TCP keepalive.
fn connect_tcp(addr: SocketAddr, ka: Option<(Duration, Duration, u32)>) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    crate::listener::set_keepalive(socket2::SockRef::from(&s), ka)?;
    Ok(s)
}

impl Context {
    /// Sets the HTTP proxy of the connections opened from now on (libwebsockets'
    /// `libwebsocket_set_proxy`), for `ws://` and `wss://` alike: `host:port` or
    /// `http://[user:password@]host[:port]`; `None` or empty: none (not even the
    /// environment's). See [`ContextBuilder::proxy`](crate::ContextBuilder::proxy); the
    /// `no_proxy` list still applies.
    pub fn set_proxy(&mut self, proxy: Option<&str>) -> io::Result<()> {
        let p = Proxy::parse(proxy.unwrap_or_default())?;
        self.proxy.plain = p.clone();
        self.proxy.tls = p;
        Ok(())
    }

    /// Sets the hosts that are never proxied (curl's `no_proxy`; see
    /// [`ContextBuilder::no_proxy`](crate::ContextBuilder::no_proxy)).
    pub fn set_no_proxy(&mut self, hosts: &str) {
        self.proxy.no_proxy = NoProxy::parse(hosts);
    }

    /// Opens an outgoing WebSocket connection (libwebsockets' `libwebsocket_client_connect`):
    /// `ssl` 0 plain, 1 verified TLS, 2 TLS accepting a self-signed certificate; `host` and
    /// `origin` the headers to send (`host` empty: the address); `protocol` the
    /// sub-protocol(s) to offer, which also names the registered protocol that gets the
    /// callbacks; `ietf_version` -1 or 13.
    ///
    /// The connection is driven by `service()`: its protocol gets `CLIENT_ESTABLISHED`, or
    /// `CLIENT_CONNECTION_ERROR` with the reason. An error here means the request itself is
    /// unusable.
    #[allow(clippy::too_many_arguments)]
    pub fn client_connect(
        &mut self,
        address: &str,
        port: u16,
        ssl: i32,
        path: &str,
        host: &str,
        origin: Option<&str>,
        protocol: Option<&str>,
        ietf_version: i32,
    ) -> io::Result<ConnId> {
        if ietf_version != -1 && ietf_version != 13 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("WebSocket version {ietf_version} is not supported (13 is)"),
            ));
        }
        let mut c = ClientConnect::new(address, port)
            .ssl(SslMode::from_lws(ssl))
            .with_path(path);
        if !host.is_empty() {
            c = c.host_header(host);
        }
        if let Some(o) = origin {
            c = c.origin(o);
        }
        if let Some(p) = protocol {
            c = c.protocols(p);
        }
        self.connect(c)
    }

    /// Opens an outgoing WebSocket connection; see [`ClientConnect`].
    ///
    /// ```no_run
    /// # use wsreactor::{ClientConnect, Context, Protocol, Reason, Wsi, Close};
    /// # #[derive(Default)] struct Chat;
    /// # impl Protocol for Chat { type Session = ();
    /// #   fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> { Ok(()) } }
    /// let mut ctx = Context::builder().no_listen().protocol("chat", Chat).build()?;
    /// ctx.connect(ClientConnect::url("wss://example.com/chat").unwrap().protocols("chat"))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect(&mut self, info: ClientConnect) -> io::Result<ConnId> {
        self.connect_inner(info, None)
    }

    /// [`connect`](Self::connect) with the connection's initial per-session data
    /// (libwebsockets' `client_connect_extended` userdata). It must be the `Session` type of
    /// the protocol the connection is bound to.
    pub fn connect_with_session<S: 'static>(
        &mut self,
        info: ClientConnect,
        session: S,
    ) -> io::Result<ConnId> {
        self.connect_inner(info, Some(Box::new(session)))
    }

    fn connect_inner(
        &mut self,
        info: ClientConnect,
        session: Option<Box<dyn std::any::Any>>,
    ) -> io::Result<ConnId> {
        let r = self.connect_start(info, session);
        // An external poll loop learns of the new socket before connect returns.
        self.report_poll_changes();
        r
    }

    fn connect_start(
        &mut self,
        info: ClientConnect,
        session: Option<Box<dyn std::any::Any>>,
    ) -> io::Result<ConnId> {
        let pid = match &info.bind {
            Some(name) => self.shared.protocol_id(name).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no protocol {name:?} registered"),
                )
            })?,
            None => info
                .protocols
                .as_deref()
                .and_then(|offer| {
                    handshake::offered_protocols(offer).find_map(|o| self.shared.protocol_id(o))
                })
                .unwrap_or(crate::reason::ProtocolId(0)),
        };
        let handler = &mut self.protocols[pid.index()].handler;
        let session = match session {
            None => handler.new_session(),
            Some(s) => handler.new_session_with(s).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the session's type is not the protocol's Session type",
                )
            })?,
        };
        let tls = info.ssl != SslMode::Plain;
        let via = match &info.proxy {
            ProxyChoice::Context => self.proxy.for_target(&info.address, tls).cloned(),
            ProxyChoice::Direct => None,
            ProxyChoice::Via(p) => Some(p.clone()),
        };
        let (dial_host, dial_port) = match &via {
            Some(p) => (p.host.clone(), p.port),
            None => (info.address.clone(), info.port),
        };
        let ip = dial_host.parse::<IpAddr>().ok();
        let first = ip.map(|ip| SocketAddr::new(ip, dial_port));
        // Addresses given instead of a resolution (not through a proxy).
        let given = (via.is_none() && !info.addresses.is_empty()).then(|| info.addresses.clone());
        let first = if given.is_some() { None } else { first };
        // Everything that can fail before the connection exists; on failure the session made
        // above is dropped again.
        let ka = self.cfg.tcp_keepalive;
        let built = (|| -> io::Result<(Transport, Option<PendingTls>, usize)> {
            let sock = match first {
                Some(addr) => connect_tcp(addr, ka)?,
                None => unconnected_socket()?,
            };
            let mut tls_pending = None;
            let mut transport = match info.ssl {
                SslMode::Plain => Transport::tcp(sock),
                mode => {
                    let config = self.client_tls_config(mode == SslMode::AllowSelfSigned)?;
                    let name = ServerName::try_from(info.address.clone()).map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidInput, format!("TLS server name: {e}"))
                    })?;
                    if via.is_some() {
                        // Through a proxy the ClientHello waits for the tunnel: plain until then.
                        tls_pending = Some((config, name));
                        Transport::tcp(sock)
                    } else {
                        Transport::tls_client(sock, config, name)?
                    }
                }
            };
            let k = self.conns.vacant_key();
            if k > MAX_CONN_KEY || k > crate::timers::MAX_CONN_KEY {
                return Err(io::Error::other("too many connections"));
            }
            if first.is_some() {
                self.readiness.add_connecting(transport.source(), k)?;
            }
            Ok((transport, tls_pending, k))
        })();
        let (transport, tls_pending, k) = match built {
            Ok(x) => x,
            Err(e) => {
                self.protocols[pid.index()].handler.drop_session(session);
                return Err(e);
            }
        };
        let entry = self.conns.vacant_entry();
        debug_assert_eq!(entry.key(), k);
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let mut nonce = [0u8; 16];
        rand::RngCore::fill_bytes(&mut self.shared.rng, &mut nonce);
        let target = proxy::authority(&info.address, info.port);
        let proxied = via.is_some();
        let client = ClientState {
            info,
            key: handshake::client_key(nonce),
            addrs: Vec::new(),
            current: first,
            racing: Vec::new(),
            extra: Vec::new(),
            response: Vec::new(),
            error: None,
            proxy: via,
            tls_pending,
            ext_offered: Vec::new(),
        };
        let rx = Receiver::new(Role::Client, self.cfg.limits);
        let mut conn = Conn::new(
            transport,
            rx,
            gen,
            pid.0,
            session,
            flag::CLIENT,
            State::ClientConnecting,
        );
        conn.http = Some(Box::new(HttpState {
            client: Some(Box::new(client)),
            ..HttpState::default()
        }));
        entry.insert(conn);
        let connect = self.shared.timers.live.connect;
        self.set_deadline(k, connect, PendingTimeout::AwaitingConnectResponse);
        if let Some(addrs) = given {
            self.client_start_addresses(k, addrs);
        } else if first.is_none() {
            // Names are resolved on a thread of their own: getaddrinfo blocks.
            let tx = self.resolver.tx.clone();
            let waker = self.readiness.waker();
            let host = dial_host.clone();
            std::thread::spawn(move || {
                let r = (host.as_str(), dial_port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<_>>());
                if tx.send((k, gen, r)).is_ok() {
                    let _ = waker.wake();
                }
            });
        }
        if proxied {
            log::debug!("client {k}.{gen}: connecting to {target} through the proxy {dial_host}:{dial_port}");
        } else {
            log::debug!("client {k}.{gen}: connecting to {target}");
        }
        Ok(ConnId { key: k as u32, gen })
    }

    fn client_tls_config(&mut self, self_signed: bool) -> io::Result<std::sync::Arc<rustls::ClientConfig>> {
        let slot = &mut self.client_tls[usize::from(self_signed)];
        if let Some(c) = slot {
            return Ok(c.clone());
        }
        let c = crate::tls::client_config(self_signed, self.cfg.ca_file.as_deref())?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Hands finished name resolutions to their connections.
    pub(crate) fn client_resolved(&mut self) {
        while let Ok((k, gen, r)) = self.resolver.rx.try_recv() {
            let Some(c) = self.conns.get_mut(k) else {
                continue;
            };
            if c.gen != gen || c.state != State::ClientConnecting {
                continue;
            }
            let cs = c.client_mut().expect("client state");
            match r {
                Ok(addrs) if !addrs.is_empty() => self.client_start_addresses(k, addrs),
                Ok(_) => {
                    let why = format!("{}: the name has no address", cs.dial_host());
                    self.client_fail(k, why);
                }
                Err(e) => {
                    let why = format!("{}: {e}", cs.dial_host());
                    self.client_fail(k, why);
                }
            }
        }
    }

    /// Starts connecting through `addrs`, IPv6 and IPv4 alternating (RFC 8305's order).
    fn client_start_addresses(&mut self, k: usize, addrs: Vec<SocketAddr>) {
        let Some(cs) = self.conns.get_mut(k).and_then(Conn::client_mut) else {
            return;
        };
        let (v6, v4): (Vec<_>, Vec<_>) = addrs.into_iter().partition(SocketAddr::is_ipv6);
        let mut order = Vec::new();
        let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => break,
                (x, y) => order.extend(x.into_iter().chain(y)),
            }
        }
        order.reverse();
        cs.addrs = order;
        self.client_next_address(k);
    }

    /// Starts the next attempt of connections still connecting whose attempt delay is up.
    pub(crate) fn client_attempts(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.attempts.len() {
            let (at, k, gen) = self.attempts[i];
            if at > now {
                i += 1;
                continue;
            }
            self.attempts.swap_remove(i);
            let Some(c) = self.conns.get_mut(k) else {
                continue;
            };
            if c.gen != gen || c.state != State::ClientConnecting {
                continue;
            }
            let cs = c.client_mut().expect("client state");
            let Some(addr) = cs.addrs.pop() else {
                continue;
            };
            match connect_tcp(addr, self.cfg.tcp_keepalive) {
                Ok(mut sock) => match self.readiness.add_connecting(&mut sock, k) {
                    Ok(()) => {
                        log::debug!("client {k}: also trying {addr}");
                        cs.racing.push((sock, addr));
                    }
                    Err(e) => cs.error = Some(format!("{addr}: {e}")),
                },
                Err(e) => cs.error = Some(format!("{addr}: {e}")),
            }
            if !cs.addrs.is_empty() {
                self.attempts.push((now + ATTEMPT_DELAY, k, gen));
            }
        }
    }

    /// When the next connection attempt is due, to bound the poll timeout.
    pub(crate) fn next_attempt(&self) -> Option<Instant> {
        self.attempts.iter().map(|a| a.0).min()
    }

    /// Connects to the next address to try, or fails with the last error.
    fn client_next_address(&mut self, k: usize) {
        loop {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            // Field by field: the transport is used while the client state is borrowed.
            let cs = c
                .http
                .as_mut()
                .and_then(|h| h.client.as_mut())
                .expect("client state");
            let Some(addr) = cs.addrs.pop() else {
                let why = cs.error.take().unwrap_or_else(|| "no address left to try".into());
                self.client_fail(k, why);
                return;
            };
            cs.current = Some(addr);
            match connect_tcp(addr, self.cfg.tcp_keepalive) {
                Ok(sock) => {
                    self.readiness.remove_fd(c.transport.fd());
                    c.transport.replace_socket(sock);
                    if let Err(e) = self.readiness.add_connecting(c.transport.source(), k) {
                        cs.error = Some(format!("{addr}: {e}"));
                        continue;
                    }
                    if !cs.addrs.is_empty() {
                        let gen = c.gen;
                        self.attempts.push((Instant::now() + ATTEMPT_DELAY, k, gen));
                    }
                    return;
                }
                Err(e) => cs.error = Some(format!("{addr}: {e}")),
            }
        }
    }

    /// A readiness event while connecting: the connect finished (or failed).
    pub(crate) fn client_connect_event(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if c.client().is_none_or(|cs| cs.current.is_none()) {
            return; // still resolving
        }
        let mut result = c.transport.connect_result();
        // Field by field: the transport is used while the client state is borrowed.
        let cs = c
            .http
            .as_mut()
            .and_then(|h| h.client.as_mut())
            .expect("client state");
        // Other attempts in the race: the first to connect wins, failed ones drop out.
        let mut j = 0;
        while j < cs.racing.len() {
            match connect_state(&cs.racing[j].0) {
                Ok(false) => j += 1,
                Ok(true) if !matches!(result, Ok(true)) => {
                    let (sock, addr) = cs.racing.swap_remove(j);
                    self.readiness.remove_fd(c.transport.fd());
                    c.transport.replace_socket(sock);
                    cs.current = Some(addr);
                    result = Ok(true);
                }
                Ok(true) => j += 1,
                Err(e) => {
                    let (sock, addr) = cs.racing.swap_remove(j);
                    self.readiness.remove_fd(sock.as_raw_fd());
                    cs.error = Some(format!("connect to {addr}: {e}"));
                }
            }
        }
        if let Err(e) = &result {
            if let Some((sock, addr)) = cs.racing.pop() {
                // The primary attempt failed: one still racing takes its place.
                let what = if cs.proxy.is_some() { "the proxy " } else { "" };
                cs.error = Some(format!("connect to {what}{}: {e}", cs.current.expect("set")));
                self.readiness.remove_fd(c.transport.fd());
                c.transport.replace_socket(sock);
                cs.current = Some(addr);
                result = Ok(false);
            }
        }
        if matches!(result, Ok(true)) {
            // The winner's rivals close now.
            for (sock, _) in cs.racing.drain(..) {
                self.readiness.remove_fd(sock.as_raw_fd());
            }
        }
        match result {
            Ok(false) => {}
            Ok(true) => {
                // Connected: the handshake (and a proxy's CONNECT) has its own time.
                let hs = self.shared.timers.live.client_handshake;
                self.set_deadline(k, hs, PendingTimeout::AwaitingServerResponse);
                let Some(c) = self.conns.get_mut(k) else {
                    return;
                };
                let proxied = c
                    .http
                    .as_ref()
                    .and_then(|h| h.client.as_ref())
                    .is_some_and(|cs| cs.proxy.is_some());
                if proxied {
                    self.client_send_connect(k);
                } else {
                    self.client_send_request(k);
                }
            }
            Err(e) => {
                let cs = c.client_mut().expect("client state");
                let what = if cs.proxy.is_some() { "the proxy " } else { "" };
                cs.error = Some(format!("connect to {what}{}: {e}", cs.current.expect("set")));
                self.client_next_address(k);
            }
        }
    }

    /// Connected to the proxy: asks it for the tunnel to the target.
    fn client_send_connect(&mut self, k: usize) {
        let c = &mut self.conns[k];
        // Connected: reads are possible from now on.
        c.set(flag::MAY_READ);
        c.out_buf(&mut self.shared.bufs);
        let Conn { http, out, .. } = c;
        let cs = http
            .as_ref()
            .and_then(|h| h.client.as_ref())
            .expect("client state");
        let auth = cs.proxy.as_ref().and_then(|p| p.auth.as_deref());
        proxy::write_connect(out, &cs.info.address, cs.info.port, auth);
        c.state = State::ClientProxy;
        log::debug!("{}: CONNECT sent to the proxy", c.peer());
        self.flush(k);
    }

    /// Reads the proxy's answer to `CONNECT`; on a 2xx the tunnel is up and the connection
    /// carries on as if freshly connected to the target (TLS started, the request sent).
    pub(crate) fn client_proxy_input(&mut self, k: usize, buf: &mut [u8]) -> (usize, Stop) {
        let max = self.cfg.http_limits.max_head_bytes;
        let c = &mut self.conns[k];
        let hs = c.http.as_mut().expect("client state");
        let cs = hs.client.as_ref().expect("client state");
        let who = format!(
            "the proxy {}",
            cs.proxy.as_ref().map(Proxy::addr).unwrap_or_default()
        );
        let target = proxy::authority(&cs.info.address, cs.info.port);
        let (head, end, consumed) = match collect_head(hs, buf, max) {
            Head::NeedMore => return (buf.len(), Stop::NeedMore),
            Head::TooLarge => {
                self.client_fail(k, format!("{who}: its answer to CONNECT is over {max} bytes"));
                return (buf.len(), Stop::Done);
            }
            Head::Complete { head, end, consumed } => (head, end, consumed),
        };
        let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut fields);
        match resp.parse(&head[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                self.client_fail(k, format!("{who}: bad answer to CONNECT: incomplete head"));
                return (buf.len(), Stop::Done);
            }
            Err(e) => {
                let first = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or_default());
                let first: String = first.trim_end().chars().take(80).collect();
                self.client_fail(k, format!("{who}: bad answer to CONNECT ({e}): {first:?}"));
                return (buf.len(), Stop::Done);
            }
        }
        let code = resp.code.unwrap_or(0);
        let status = format!(
            "HTTP/1.{} {code} {}",
            resp.version.unwrap_or(1),
            resp.reason.unwrap_or_default()
        );
        let status = status.trim_end();
        if !(200..300).contains(&code) {
            self.client_fail(k, format!("{who} refused the tunnel to {target}: {status}"));
            return (buf.len(), Stop::Done);
        }
        let cs = hs.client.as_mut().expect("client state");
        if let Some((config, name)) = cs.tls_pending.take() {
            if consumed < buf.len() {
                // The server speaks only after our ClientHello: these bytes are no TLS.
                self.client_fail(
                    k,
                    format!("{who} sent bytes after its {status} before the TLS handshake"),
                );
                return (buf.len(), Stop::Done);
            }
            if let Err(e) = c.transport.start_tls_client(config, name) {
                self.client_fail(k, format!("TLS: {e}"));
                return (buf.len(), Stop::Done);
            }
        }
        log::debug!("{}: tunnel to {target} up ({status})", c.peer());
        self.client_send_request(k);
        (consumed, Stop::Switched)
    }

    fn client_send_request(&mut self, k: usize) {
        self.conns[k].set(flag::MAY_READ);
        let (offered, offer) = self.extension_offer(k);
        let Some(cs) = self.conns.get_mut(k).and_then(Conn::client_mut) else {
            return;
        };
        if !offered.is_empty() {
            cs.ext_offered = offered;
            cs.extra.push(("Sec-WebSocket-Extensions".into(), offer));
        }
        if self.call(k, Reason::ClientAppendHandshakeHeader).is_err() {
            self.client_fail(k, "refused by CLIENT_APPEND_HANDSHAKE_HEADER".into());
            return;
        }
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        c.out_buf(&mut self.shared.bufs);
        let Conn { http, out, .. } = c;
        let cs = http
            .as_ref()
            .and_then(|h| h.client.as_ref())
            .expect("client state");
        let extra: Vec<(&str, &str)> = cs.extra.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        handshake::write_request(
            out,
            &cs.info.path,
            &cs.info.host_value(),
            cs.info.origin.as_deref(),
            cs.info.protocols.as_deref(),
            &cs.key,
            &extra,
        );
        c.state = State::ClientHandshake;
        log::debug!("{}: handshake request sent", c.peer());
        self.flush(k);
    }

    /// The extension offer: each registered extension in order, unless the protocol leaves
    /// it out (`CLIENT_CONFIRM_EXTENSION_SUPPORTED`; permessage-deflate also with
    /// `ClientConnect::no_deflate`). Returns the offered ones' indices and the header value.
    fn extension_offer(&mut self, k: usize) -> (Vec<u16>, String) {
        let mut offered = Vec::new();
        let mut offer = String::new();
        for i in 0..self.shared.ext.list.len() as u16 {
            let Some(name) = self.shared.ext.get(i).map(|e| e.name().to_owned()) else {
                continue;
            };
            let Some(cs) = self
                .conns
                .get(k)
                .and_then(|c| c.http.as_ref())
                .and_then(|h| h.client.as_ref())
            else {
                break;
            };
            if cs.info.no_deflate && name.eq_ignore_ascii_case(crate::proto::deflate::NAME) {
                continue;
            }
            if self
                .call(k, Reason::ClientConfirmExtensionSupported { name: &name })
                .is_err()
            {
                continue;
            }
            let Some(e) = self.shared.ext.get(i) else { continue };
            if !offer.is_empty() {
                offer.push_str(", ");
            }
            offer.push_str(&e.client_offer());
            offered.push(i);
        }
        (offered, offer)
    }

    /// Reads the server's response head; on success the connection becomes a WebSocket and
    /// the rest of `buf` is WebSocket input.
    pub(crate) fn client_input(&mut self, k: usize, buf: &mut [u8]) -> (usize, Stop) {
        let max = self.cfg.http_limits.max_head_bytes;
        let c = &mut self.conns[k];
        let hs = c.http.as_mut().expect("client state");
        let (head, end, consumed) = match collect_head(hs, buf, max) {
            Head::NeedMore => return (buf.len(), Stop::NeedMore),
            Head::TooLarge => {
                self.client_fail(k, format!("the response head is over {max} bytes"));
                return (buf.len(), Stop::Done);
            }
            Head::Complete { head, end, consumed } => (head, end, consumed),
        };
        let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut fields);
        let status = match resp.parse(&head[..end]) {
            Ok(httparse::Status::Complete(_)) => resp.code.unwrap_or(0),
            Ok(httparse::Status::Partial) => 0,
            Err(e) => {
                self.client_fail(k, format!("bad response head: {e}"));
                return (buf.len(), Stop::Done);
            }
        };
        let mut response: Vec<(String, String)> = Vec::new();
        for h in resp.headers.iter() {
            let v = String::from_utf8_lossy(h.value).trim().to_owned();
            match response.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(h.name)) {
                Some((_, old)) => {
                    old.push_str(", ");
                    old.push_str(&v);
                }
                None => response.push((h.name.to_ascii_lowercase(), v)),
            }
        }
        let cs = hs.client.as_mut().expect("client state");
        let offered = std::mem::take(&mut cs.ext_offered);
        let checked = handshake::validate_response(status, &cs.key, cs.info.protocols.as_deref(), |n| {
            // With our offer, the extensions are checked below instead.
            if !offered.is_empty() && n == "sec-websocket-extensions" {
                return None;
            }
            response.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_bytes())
        });
        let ext = match &checked {
            Ok(_) if !offered.is_empty() => {
                let header = response
                    .iter()
                    .find(|(k, _)| k == "sec-websocket-extensions")
                    .map(|(_, v)| v.as_str());
                self.shared.ext.client_accept(&offered, header)
            }
            _ => Ok(None),
        };
        if let Some(cs) = self.conns[k].http.as_mut().and_then(|h| h.client.as_mut()) {
            cs.response = response;
        }
        if let Err(e) = checked {
            self.client_fail(k, e.to_string());
            return (buf.len(), Stop::Done);
        }
        let mut ext = match ext {
            Ok(x) => x,
            Err(e) => {
                self.client_fail(k, e);
                return (buf.len(), Stop::Done);
            }
        };
        // Held by the connection from here, so that its removal (a refusal below) destroys it.
        if let Some(c) = self.conns.get_mut(k) {
            c.ext = ext.take();
        }
        if self.call(k, Reason::ClientFilterPreEstablish).is_err() {
            self.client_fail(k, "refused by CLIENT_FILTER_PRE_ESTABLISH".into());
            return (buf.len(), Stop::Done);
        }
        let Some(c) = self.conns.get_mut(k) else {
            return (buf.len(), Stop::Done);
        };
        c.state = State::WebSocket;
        c.set(flag::UPGRADED);
        c.http = None;
        self.shared.timers.rest(c, k);
        if let Some(ce) = &c.ext {
            c.rx.allow_rsv(ce.rsv());
        }
        self.shared.stats.handshakes += 1;
        let p = &self.protocols[c.proto as usize];
        c.rx.frames_mut()
            .set_max_chunk(self.shared.rx_chunk(p.rx_buffer_size));
        log::debug!("{}: client established on {}", c.peer(), p.name);
        self.call_and_close(k, Reason::ClientEstablished);
        (consumed, Stop::Switched)
    }

    /// Records why an outgoing connection failed and removes it (`CLIENT_CONNECTION_ERROR`).
    pub(crate) fn client_fail(&mut self, k: usize, reason: String) {
        if let Some(cs) = self.conns.get_mut(k).and_then(Conn::client_mut) {
            log::debug!("client {k}: {reason}");
            cs.error = Some(reason);
        }
        self.remove(k);
    }

    /// Notes an I/O error of an outgoing connection that is not established yet, for its
    /// `CLIENT_CONNECTION_ERROR`.
    pub(crate) fn client_note(&mut self, k: usize, what: &str) {
        if let Some(cs) = self.conns.get_mut(k).and_then(Conn::client_mut) {
            if cs.error.is_none() {
                cs.error = Some(what.to_owned());
            }
        }
    }
}

/// Where a response head being read stands.
enum Head {
    NeedMore,
    TooLarge,
    /// The head (with what followed it in the same read), its length, and how much of the
    /// latest `buf` it took.
    Complete {
        head: Vec<u8>,
        end: usize,
        consumed: usize,
    },
}

/// Adds `buf` to the response head being read (a proxy's answer or the server's 101).
fn collect_head(hs: &mut HttpState, buf: &[u8], max: usize) -> Head {
    let before = hs.head.len();
    hs.head.extend_from_slice(buf);
    match head_end(&hs.head) {
        Some(end) => Head::Complete {
            head: std::mem::take(&mut hs.head),
            end,
            consumed: end - before,
        },
        None if hs.head.len() > max => Head::TooLarge,
        None => Head::NeedMore,
    }
}

/// The length of a response head (through its blank line), if it is all in `b`.
fn head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&x| x == b'\n') {
        let nl = i + p;
        let rest = &b[nl + 1..];
        if rest.starts_with(b"\n") {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn head_end() {
        assert_eq!(super::head_end(b"HTTP/1.1 101 x\r\nA: b\r\n\r\nrest"), Some(24));
        assert_eq!(super::head_end(b"HTTP/1.1 101 x\nA: b\n\nrest"), Some(21));
        assert_eq!(super::head_end(b"HTTP/1.1 101 x\r\nA: b\r\n"), None);
    }
}
