//! The transport: the only code that reads from or writes to a connection's socket.
//!
//! Everything above it (the roles, the protocol callbacks) sees plaintext bytes read into
//! the context-wide receive buffer and queues plaintext in the connection's out buffer; this
//! module moves those bytes between the buffers and the kernel, through a rustls session
//! when the connection is TLS. A role never knows whether its bytes were encrypted.
//!
//! A TLS session is boxed beside the socket, so a plain connection pays one pointer for it.
//! The socket is a TCP stream, a Unix-domain stream (accepted on a Unix listener, or
//! adopted), or any other pollable descriptor adopted raw (a pipe, a timerfd, a serial
//! device, a socket of another protocol), read and written as a file.

use mio::event::Source as MioSource;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConnection};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::ServerName;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The largest TLS record on the wire (TLS 1.2's 16 KiB + 2 KiB expansion + header): the
/// most plaintext rustls can still produce from ciphertext it buffered earlier.
const MAX_RECORD: usize = 16384 + 2048 + 5;

/// Bytes rustls may hold of encrypted output not yet taken by the kernel (beyond that,
/// `write_out` reports back-pressure as a full socket does).
const TLS_BUFFER_LIMIT: usize = 64 << 10;

/// How a write pass over the out buffer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The kernel took everything (for TLS: every record too).
    All,
    /// The socket is full: wait for a writable edge.
    Blocked,
}

/// What the first byte on a TLS listener said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// Nothing to read yet.
    NotYet,
    /// A TLS handshake (or EOF): the session stays.
    Tls,
    /// Plain bytes: the session was dropped and the connection is plain TCP.
    Plain,
}

pub(crate) struct Transport {
    sock: Sock,
    tls: Option<Box<Tls>>,
}

/// A connection's descriptor. The std types, registered as plain descriptors: mio's own
/// wrappers carry a registry check in debug builds, which would make every connection
/// record larger there than in release.
pub(crate) enum Sock {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
    /// An adopted descriptor of any pollable kind, read and written as a file.
    Raw(std::fs::File),
}

impl Read for Sock {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
            Sock::Raw(f) => f.read(buf),
        }
    }
}

impl Write for Sock {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
            Sock::Raw(f) => f.write(buf),
        }
    }

    /// rustls hands its records over as one vectored write: one `writev`, not one
    /// syscall (and one TCP segment) per record.
    #[inline]
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write_vectored(bufs),
            Sock::Unix(s) => s.write_vectored(bufs),
            Sock::Raw(f) => f.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Sock {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
            Sock::Raw(f) => f.as_raw_fd(),
        }
    }
}

impl MioSource for Sock {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).register(r, t, i)
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).reregister(r, t, i)
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).deregister(r)
    }
}

struct Tls {
    conn: Connection,
    /// The first byte was looked at (see [`Transport::sniff`]).
    sniffed: bool,
    /// The socket said EOF.
    eof: bool,
    /// `close_notify` was queued.
    notified: bool,
    /// The end of the handshake was reported (once) by `handshake_done`.
    reported: bool,
}

impl Transport {
    pub(crate) fn tcp(sock: TcpStream) -> Self {
        Transport {
            sock: Sock::Tcp(sock.into()),
            tls: None,
        }
    }

    /// A plain connection on a Unix-domain stream socket (non-blocking).
    pub(crate) fn unix(sock: std::os::unix::net::UnixStream) -> Self {
        Transport {
            sock: Sock::Unix(sock),
            tls: None,
        }
    }

    /// An adopted raw descriptor (already non-blocking).
    pub(crate) fn raw(file: std::fs::File) -> Self {
        Transport {
            sock: Sock::Raw(file),
            tls: None,
        }
    }

    /// True for a raw descriptor (no HTTP, no WebSocket: `RAW_*` reasons).
    pub(crate) fn is_raw(&self) -> bool {
        matches!(self.sock, Sock::Raw(_))
    }

    /// A connection accepted on a TLS listener.
    pub(crate) fn tls(sock: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Transport::with_session(sock, Connection::Server(conn), false))
    }

    /// An outgoing TLS connection to `name` (sent by SNI and checked against the
    /// certificate, as `config`'s verifier does).
    pub(crate) fn tls_client(
        sock: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<Self> {
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        // A client speaks first: nothing to sniff.
        Ok(Transport::with_session(sock, Connection::Client(conn), true))
    }

    /// Starts an outgoing TLS session on a connection that was plain so far (a client whose
    /// proxy tunnel is up): nothing of it was written before.
    pub(crate) fn start_tls_client(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<()> {
        debug_assert!(self.tls.is_none());
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        self.tls = Some(Tls::new(Connection::Client(conn), true));
        Ok(())
    }

    fn with_session(sock: TcpStream, conn: Connection, sniffed: bool) -> Self {
        Transport {
            sock: Sock::Tcp(sock.into()),
            tls: Some(Tls::new(conn, sniffed)),
        }
    }

    /// Replaces the socket (a client trying its next address), keeping any TLS session
    /// that has not started.
    pub(crate) fn replace_socket(&mut self, sock: TcpStream) {
        self.sock = Sock::Tcp(sock.into());
    }

    /// The outcome of a non-blocking connect: `Ok(true)` connected, `Ok(false)` still in
    /// progress, `Err` refused or unreachable.
    pub(crate) fn connect_result(&mut self) -> io::Result<bool> {
        match &self.sock {
            Sock::Tcp(s) => connect_state(s),
            _ => Ok(true),
        }
    }

    /// The socket, to register it with the readiness source.
    pub(crate) fn source(&mut self) -> &mut Sock {
        &mut self.sock
    }

    /// True for a TLS connection whose first byte was not looked at yet.
    #[inline]
    pub(crate) fn needs_sniff(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| !t.sniffed)
    }

    /// Looks at the first byte without consuming it: a TLS handshake record keeps the
    /// session, anything else makes this a plain TCP connection, so a plain HTTP request on
    /// the TLS port can be answered in plain HTTP.
    pub(crate) fn sniff(&mut self) -> io::Result<Sniffed> {
        let Sock::Tcp(sock) = &self.sock else {
            // Only TCP carries TLS.
            return Ok(Sniffed::Tls);
        };
        let mut b = [0u8; 1];
        let first = loop {
            match sock.peek(&mut b) {
                Ok(0) => break None,
                Ok(_) => break Some(b[0]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Sniffed::NotYet),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        match first {
            Some(b) if b != TLS_HANDSHAKE_RECORD => {
                self.tls = None;
                Ok(Sniffed::Plain)
            }
            _ => {
                if let Some(t) = self.tls.as_mut() {
                    t.sniffed = true;
                }
                Ok(Sniffed::Tls)
            }
        }
    }

    /// True when the connection is TLS (`lws_is_ssl`).
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The client's certificate chain, if it presented one.
    pub(crate) fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.tls.as_ref().and_then(|t| t.conn.peer_certificates())
    }

    /// The SNI name the client asked for.
    pub(crate) fn server_name(&self) -> Option<&str> {
        match self.tls.as_deref() {
            Some(Tls {
                conn: Connection::Server(s),
                ..
            }) => s.server_name(),
            _ => None,
        }
    }

    /// True once, when the TLS handshake has just completed.
    pub(crate) fn handshake_done(&mut self) -> bool {
        match self.tls.as_mut() {
            Some(t) if !t.reported && !t.conn.is_handshaking() => {
                t.reported = true;
                true
            }
            _ => false,
        }
    }

    /// Reads plaintext into `buf`. `Ok(0)` is the peer's EOF (for TLS: `close_notify`, or a
    /// TCP FIN without it: a WebSocket has its own close frame, and an HTTP body its own
    /// framing, so a missing `close_notify` truncates nothing that is not seen anyway).
    ///
    /// A short read means the socket is drained, as with plain TCP: TLS reads go on until
    /// `buf` is full or the socket would block, so no plaintext is left inside rustls
    /// without the caller knowing.
    ///
    /// `scratch` is the context-wide ciphertext buffer: TLS reads the socket into it in one
    /// large read and feeds rustls from there, where rustls alone would read 4 KiB per
    /// system call.
    #[inline]
    pub(crate) fn read(&mut self, buf: &mut [u8], scratch: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_mut() {
            None => self.sock.read(buf),
            Some(t) => t.read(&mut self.sock, buf, scratch),
        }
    }

    /// True when there is output still to hand to the kernel beyond the out buffer (TLS
    /// records, handshake messages, alerts).
    #[inline]
    pub(crate) fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.wants_write())
    }

    /// Writes `out[*pos..]` as far as the kernel takes it, advancing `pos`.
    ///
    /// `last`: nothing will follow but close(). Plain TCP then sends with `MSG_MORE`, so
    /// that the FIN rides in the same segment, one packet fewer for both ends to process
    /// (close() pushes the bytes out at once); TLS adds its `close_notify`.
    #[inline]
    pub(crate) fn write_out(&mut self, out: &[u8], pos: &mut u32, last: bool) -> io::Result<Sent> {
        if let Some(t) = self.tls.as_mut() {
            return t.write_out(&mut self.sock, out, pos, last);
        }
        while (*pos as usize) < out.len() {
            let pending = &out[*pos as usize..];
            let sent = match &self.sock {
                Sock::Tcp(s) if last => send_more(s, pending),
                _ => self.sock.write(pending),
            };
            match sent {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => *pos += n as u32,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Sent::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Sent::All)
    }

    /// One best-effort write, for the last words of a context being dropped.
    pub(crate) fn write_now(&mut self, buf: &[u8]) {
        match self.tls.as_mut() {
            None => {
                let _ = self.sock.write(buf);
            }
            Some(t) => {
                let mut pos = 0;
                let _ = t.write_out(&mut self.sock, buf, &mut pos, true);
            }
        }
    }

    /// Shuts the write side down (our FIN, after `close_notify` for TLS), keeping the read
    /// side to drain the peer.
    pub(crate) fn shutdown_write(&mut self) {
        if let Some(t) = self.tls.as_mut() {
            let mut pos = 0;
            let _ = t.write_out(&mut self.sock, &[], &mut pos, true);
        }
        let _ = match &self.sock {
            Sock::Tcp(s) => s.shutdown(Shutdown::Write),
            Sock::Unix(s) => s.shutdown(Shutdown::Write),
            // A pipe or device has no half-close: it is closed with the connection.
            Sock::Raw(_) => Ok(()),
        };
    }

    /// The peer's address; an error for what is not TCP (a Unix socket's peer has no
    /// IP address).
    pub(crate) fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match &self.sock {
            Sock::Tcp(s) => s.peer_addr(),
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl Tls {
    fn new(mut conn: Connection, sniffed: bool) -> Box<Tls> {
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Box::new(Tls {
            conn,
            sniffed,
            eof: false,
            notified: false,
            reported: false,
        })
    }

    /// Moves decrypted plaintext into `buf[*n..]`. False once the peer's `close_notify` (or
    /// FIN) has ended the plaintext.
    fn drain(&mut self, buf: &mut [u8], n: &mut usize) -> io::Result<bool> {
        while *n < buf.len() {
            match self.conn.reader().read(&mut buf[*n..]) {
                // close_notify: the end, after what was read.
                Ok(0) => return Ok(false),
                Ok(m) => *n += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The TCP FIN came without close_notify: an EOF all the same (see `read`).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn read(&mut self, sock: &mut Sock, buf: &mut [u8], scratch: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        loop {
            if !self.drain(buf, &mut n)? || n == buf.len() || self.eof {
                return Ok(n);
            }
            let room = buf.len() - n;
            if room > 2 * MAX_RECORD && !scratch.is_empty() {
                // One large read. Its plaintext, plus what rustls can still make of records
                // it holds (under MAX_RECORD), fits in `room`: no ciphertext is ever left
                // outside rustls.
                let want = (room - MAX_RECORD).min(scratch.len());
                let got = match sock.read(&mut scratch[..want]) {
                    Ok(0) => {
                        self.eof = true;
                        continue;
                    }
                    Ok(g) => g,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return if n > 0 { Ok(n) } else { Err(e) };
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                let mut rest = &scratch[..got];
                while !rest.is_empty() {
                    if self.conn.read_tls(&mut rest)? == 0 {
                        // rustls takes nothing more (after close_notify): the rest is void.
                        break;
                    }
                    if let Err(e) = self.conn.process_new_packets() {
                        return Err(self.fail(sock, e));
                    }
                    if !self.drain(buf, &mut n)? {
                        return Ok(n);
                    }
                }
                if got < want {
                    // A short read drained the socket, as for plain TCP; with no plaintext
                    // yet (a handshake message) that is WouldBlock, not EOF.
                    return if n > 0 {
                        Ok(n)
                    } else {
                        Err(io::ErrorKind::WouldBlock.into())
                    };
                }
                continue;
            }
            match self.conn.read_tls(sock) {
                Ok(0) => {
                    self.eof = true;
                    // Whatever the last records held is read above, then EOF.
                    if let Err(e) = self.conn.process_new_packets() {
                        return Err(self.fail(sock, e));
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if n > 0 { Ok(n) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                return Err(self.fail(sock, e));
            }
        }
    }

    /// A TLS error: rustls has queued the alert for it; send it before the caller closes.
    fn fail(&mut self, sock: &mut Sock, e: rustls::Error) -> io::Error {
        while self.conn.wants_write() {
            if self.conn.write_tls(sock).is_err() {
                break;
            }
        }
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    fn write_out(&mut self, sock: &mut Sock, out: &[u8], pos: &mut u32, last: bool) -> io::Result<Sent> {
        loop {
            while self.conn.wants_write() {
                match self.conn.write_tls(sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Sent::Blocked),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if *pos as usize == out.len() {
                if last && !self.notified {
                    self.notified = true;
                    self.conn.send_close_notify();
                    continue;
                }
                return Ok(Sent::All);
            }
            let n = self.conn.writer().write(&out[*pos as usize..])?;
            if n == 0 && !self.conn.wants_write() {
                // rustls' plaintext buffer is full while handshaking (nothing can be
                // encrypted yet): the rest stays in the out buffer for a later flush.
                return Ok(Sent::All);
            }
            *pos += n as u32;
        }
    }
}

/// The outcome of a non-blocking connect on `sock`: `Ok(true)` connected, `Ok(false)`
/// still in progress, `Err` refused or unreachable.
pub(crate) fn connect_state(sock: &impl std::os::fd::AsFd) -> io::Result<bool> {
    let sock = socket2::SockRef::from(sock);
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// `send(MSG_MORE)` where the platform has it, else a plain write.
fn send_more(sock: &std::net::TcpStream, buf: &[u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return socket2::SockRef::from(sock).send_with_flags(buf, libc::MSG_MORE);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    return (&*sock).write(buf);
}
