//! Connections the context did not open itself: sockets accepted elsewhere (TCP or Unix
//! stream, optionally with bytes already read from them) served as HTTP/WebSocket
//! connections, and raw descriptors (pipes, timerfds, serial devices, sockets of other
//! protocols) with the `RAW_*` reasons. Also the one way a server-side connection record is
//! made, for the listeners' accepts too.

use crate::connection::{flag, Conn, State};
use crate::context::Context;
use crate::proto::{Receiver, Role};
use crate::reason::{ConnId, ProtocolId, Reason};
use crate::roles::Stop;
use crate::timers::PendingTimeout;
use crate::transport::Transport;
use std::io;
use std::os::fd::OwnedFd;

impl Context {
    /// Registers `transport` with the readiness source and makes its connection record:
    /// a server-side connection of protocol `proto` in `state`. The key, or why not.
    pub(crate) fn insert_conn(
        &mut self,
        mut transport: Transport,
        proto: u16,
        state: State,
    ) -> io::Result<usize> {
        let entry = self.conns.vacant_entry();
        let k = entry.key();
        if k > crate::readiness::MAX_CONN_KEY || k > crate::timers::MAX_CONN_KEY {
            return Err(io::Error::other("too many connections"));
        }
        self.readiness.add_conn(transport.source(), k)?;
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let session = self.protocols[proto as usize].handler.new_session();
        let rx = Receiver::new(Role::Server, self.cfg.limits);
        entry.insert(Conn::new(
            transport,
            rx,
            gen,
            proto,
            session,
            flag::MAY_READ,
            state,
        ));
        Ok(k)
    }

    /// A new HTTP connection (accepted or adopted): its request deadline, `WSI_CREATE` and
    /// `SERVER_NEW_CLIENT_INSTANTIATED`. False if a callback refused it (it is removed).
    pub(crate) fn start_http_conn(&mut self, k: usize) -> bool {
        let head = self.shared.timers.live.head;
        self.set_deadline(k, head, PendingTimeout::HttpContent);
        if self.call(k, Reason::WsiCreate).is_err()
            || self.call(k, Reason::ServerNewClientInstantiated).is_err()
        {
            self.remove(k);
            return false;
        }
        true
    }

    fn adopt_check(&self, preread: &[u8]) -> io::Result<()> {
        if self.conns.len() >= self.cfg.max_connections {
            return Err(io::Error::other(format!(
                "adopt: {} connections open (max_connections)",
                self.conns.len()
            )));
        }
        if preread.len() > self.cfg.rx_buffer_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "adopt: {} bytes already read, more than the receive buffer ({})",
                    preread.len(),
                    self.cfg.rx_buffer_size
                ),
            ));
        }
        Ok(())
    }

    /// Serves a TCP connection accepted elsewhere as if the context's listener had
    /// accepted it (`lws_adopt_socket`; `lws_adopt_socket_readbuf` with `preread`): HTTP
    /// requests, WebSocket upgrades, TLS if the context serves TLS. `preread` are bytes
    /// already read from it (the start of a request, read by whoever routed the
    /// connection here): they are handled before anything read from the socket, by the
    /// next `service` (at most the receive buffer's size,
    /// [`rx_buffer_size`](crate::ContextBuilder::rx_buffer_size)).
    ///
    /// The socket is made non-blocking. `WSI_CREATE` and `SERVER_NEW_CLIENT_INSTANTIATED`
    /// come before this returns; an error from them refuses it (an error here).
    ///
    /// ```no_run
    /// # fn f(ctx: &mut wsreactor::Context) -> std::io::Result<()> {
    /// let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
    /// let (sock, _) = listener.accept()?;
    /// let id = ctx.adopt_socket(sock, b"")?;
    /// # Ok(()) }
    /// ```
    pub fn adopt_socket(&mut self, sock: std::net::TcpStream, preread: &[u8]) -> io::Result<ConnId> {
        self.adopt_check(preread)?;
        sock.set_nonblocking(true)?;
        sock.set_nodelay(true)?;
        let sock = mio::net::TcpStream::from_std(sock);
        let transport = match &self.tls {
            None => Transport::tcp(sock),
            Some(tls) => Transport::tls(sock, tls.config.clone())?,
        };
        let r = self.adopt_stream(transport, preread);
        self.report_poll_changes();
        r
    }

    /// [`adopt_socket`](Self::adopt_socket) for a Unix-domain stream socket (plain: no TLS;
    /// [`Wsi::peer_addr`](crate::Wsi::peer_addr) is `0.0.0.0:0`).
    pub fn adopt_unix_socket(
        &mut self,
        sock: std::os::unix::net::UnixStream,
        preread: &[u8],
    ) -> io::Result<ConnId> {
        self.adopt_check(preread)?;
        sock.set_nonblocking(true)?;
        let r = self.adopt_stream(Transport::unix(sock), preread);
        self.report_poll_changes();
        r
    }

    fn adopt_stream(&mut self, transport: Transport, preread: &[u8]) -> io::Result<ConnId> {
        let k = self.insert_conn(transport, 0, State::Http)?;
        let c = &mut self.conns[k];
        let id = ConnId {
            key: k as u32,
            gen: c.gen,
        };
        if !preread.is_empty() {
            let mut st = self.shared.bufs.take();
            st.extend_from_slice(preread);
            c.stash = st;
            // Read by the next service, before the socket.
            self.shared.schedule_resume(k, c);
        }
        if !self.start_http_conn(k) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "adopt: refused by WSI_CREATE or SERVER_NEW_CLIENT_INSTANTIATED",
            ));
        }
        log::debug!("adopted as {id}");
        Ok(id)
    }

    /// Serves a descriptor of any pollable kind (a pipe, a timerfd, a serial device, a
    /// socket of another protocol) with `protocol`'s callback, as libwebsockets'
    /// `LWS_ADOPT_RAW_FILE_DESC`: [`Reason::RawAdopt`] first (before this returns), then
    /// [`Reason::RawRx`] with the bytes as they are read, [`Reason::RawWriteable`] when
    /// asked for with [`Wsi::callback_on_writable`](crate::Wsi::callback_on_writable), and
    /// [`Reason::RawClose`] at its end of file or on an error (a callback's error closes
    /// it). Write to it with [`WriteProtocol::Http`](crate::WriteProtocol::Http). The
    /// descriptor is made non-blocking and closed with the connection.
    ///
    /// Errors: a regular file or directory (always "ready": it cannot be polled), a
    /// descriptor the poll set refuses, an unknown protocol, the connection cap.
    pub fn adopt_raw(&mut self, fd: impl Into<OwnedFd>, protocol: ProtocolId) -> io::Result<ConnId> {
        let fd: OwnedFd = fd.into();
        let file = std::fs::File::from(fd);
        if protocol.index() >= self.protocols.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "adopt_raw: no such protocol",
            ));
        }
        self.adopt_check(b"")?;
        let ft = file.metadata()?.file_type();
        if ft.is_file() || ft.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "adopt_raw: a regular file or directory cannot be polled",
            ));
        }
        // fcntl(F_SETFL, O_NONBLOCK), which socket2 does for any descriptor on Unix.
        socket2::SockRef::from(&file).set_nonblocking(true)?;
        let r = self.insert_conn(Transport::raw(file), protocol.0, State::Raw);
        let r = r.and_then(|k| {
            let id = ConnId {
                key: k as u32,
                gen: self.conns[k].gen,
            };
            if let Err(e) = self.call(k, Reason::RawAdopt) {
                self.remove(k);
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("adopt_raw: refused by RAW_ADOPT: {}", e.reason),
                ));
            }
            self.flush(k);
            Ok(id)
        });
        self.report_poll_changes();
        r
    }

    /// Bytes read from a raw descriptor: one `RAW_RX`; an error closes it.
    pub(crate) fn raw_input(&mut self, k: usize, data: &[u8]) -> (usize, Stop) {
        if let Err(e) = self.call(k, Reason::RawRx { data }) {
            log::debug!("raw {k}: closed by its callback: {}", e.reason);
            self.remove(k);
            return (data.len(), Stop::Done);
        }
        let paused = self.conns.get(k).is_some_and(|c| c.has(flag::RX_PAUSED));
        (data.len(), if paused { Stop::Paused } else { Stop::Done })
    }
}
