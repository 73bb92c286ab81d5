//! The transport: the only code that reads from or writes to a connection's socket.
//!
//! Everything above it (the roles, the protocol callbacks) sees plaintext bytes read into
//! the context-wide receive buffer and queues plaintext in the connection's out buffer; this
//! module moves those bytes between the buffers and the kernel. Plain TCP today. TLS
//! (rustls) slots in here as a second kind of transport, between the socket bytes and the
//! role, so a role never knows whether its bytes are encrypted; an adopted raw descriptor
//! would be a third.

use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};

/// How a write pass over the out buffer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The kernel took everything.
    All,
    /// The socket is full: wait for a writable edge.
    Blocked,
}

pub(crate) struct Transport {
    sock: TcpStream,
}

impl Transport {
    pub(crate) fn tcp(sock: TcpStream) -> Self {
        Transport { sock }
    }

    /// The socket, to register it with the readiness source.
    pub(crate) fn source(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// Reads what the socket holds into `buf`. `Ok(0)` is the peer's EOF.
    #[inline]
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }

    /// Writes `out[*pos..]` as far as the kernel takes it, advancing `pos`.
    ///
    /// `last`: nothing will follow but close(): `MSG_MORE` then holds the bytes so that the
    /// FIN rides in the same segment, one packet fewer for both ends to process (close()
    /// pushes them out at once).
    #[inline]
    pub(crate) fn write_out(&mut self, out: &[u8], pos: &mut u32, last: bool) -> io::Result<Sent> {
        while (*pos as usize) < out.len() {
            let pending = &out[*pos as usize..];
            let sent = if last {
                send_more(&self.sock, pending)
            } else {
                self.sock.write(pending)
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
        let _ = self.sock.write(buf);
    }

    /// Shuts the write side down (our FIN), keeping the read side to drain the peer.
    pub(crate) fn shutdown_write(&mut self) {
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// `send(MSG_MORE)` where the platform has it, else a plain write.
fn send_more(sock: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return socket2::SockRef::from(sock).send_with_flags(buf, libc::MSG_MORE);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    return (&*sock).write(buf);
}
