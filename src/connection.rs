//! One accepted connection: its socket, state, decoder and the buffers it holds only
//! while it needs them.
//!
//! Size matters here: 100,000 idle connections are 100,000 of these. An idle WebSocket
//! holds no heap buffer at all (the out buffer goes back to the context's free list when it
//! empties, the stash exists only while a frame header is split across reads, and the HTTP
//! request is dropped after `ESTABLISHED`).

use crate::fileserver::FileStream;
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{HeadScanner, Request};
use crate::proto::Receiver;
use mio::net::TcpStream;
use std::net::SocketAddr;
use std::time::Instant;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Reading (or answering) HTTP requests; not upgraded.
    Http,
    /// An open WebSocket. `CLOSE_SENT` / `CLOSE_RECEIVED` flags track the close handshake.
    WebSocket,
    /// Output flushed and write side shut down: reading and discarding until the peer's
    /// EOF or the deadline, so that our last bytes are not lost to a reset.
    Draining,
}

/// Bit flags of [`Conn::flags`].
pub(crate) mod flag {
    /// rx flow control: reading is paused by the user.
    pub(crate) const RX_PAUSED: u16 = 1 << 0;
    /// The socket may hold unread data (no WouldBlock seen since the last edge).
    pub(crate) const MAY_READ: u16 = 1 << 1;
    /// The last write hit WouldBlock: wait for a writable edge.
    pub(crate) const WRITE_BLOCKED: u16 = 1 << 2;
    /// The user asked for a WRITEABLE callback.
    pub(crate) const WANT_WRITABLE: u16 = 1 << 3;
    /// The stash holds an incomplete unit (frame header, control frame): read before
    /// decoding again.
    pub(crate) const STASH_INCOMPLETE: u16 = 1 << 4;
    /// We sent a close frame.
    pub(crate) const CLOSE_SENT: u16 = 1 << 5;
    /// The peer's close frame arrived.
    pub(crate) const CLOSE_RECEIVED: u16 = 1 << 6;
    /// CLOSED (or CLOSED_HTTP) was delivered.
    pub(crate) const CLOSED_NOTIFIED: u16 = 1 << 7;
    /// A fragmented message is being sent: only continuation frames may follow.
    pub(crate) const SENDING_FRAGMENTED: u16 = 1 << 8;
    /// Shut the write side down once the out buffer is flushed, then drain.
    pub(crate) const SHUTDOWN_AFTER_FLUSH: u16 = 1 << 9;
    /// Queued in the context's resume-read list.
    pub(crate) const IN_RESUME: u16 = 1 << 10;
    /// The HTTP connection is kept alive after the current response.
    pub(crate) const KEEP_ALIVE: u16 = 1 << 11;
    /// The current HTTP response was fully queued (transaction completed).
    pub(crate) const HTTP_RESPONDED: u16 = 1 << 12;
    /// A timer-heap entry for this connection is pending.
    pub(crate) const TIMER_ARMED: u16 = 1 << 13;
    /// The connection was upgraded to a WebSocket (CLOSED, not CLOSED_HTTP, ends it).
    pub(crate) const UPGRADED: u16 = 1 << 14;
}

/// A request body being received.
#[derive(Debug, Default)]
pub(crate) enum Body {
    #[default]
    None,
    /// `Content-Length` bytes still to come.
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// HTTP-side state, boxed so that it costs one pointer once the connection is upgraded.
#[derive(Debug, Default)]
pub(crate) struct HttpState {
    /// The request head, while it is incomplete.
    pub(crate) head: Vec<u8>,
    pub(crate) scanner: HeadScanner,
    /// The current request, readable through the Wsi until after ESTABLISHED.
    pub(crate) request: Option<Request>,
    pub(crate) body: Body,
    /// Body bytes received so far (checked against the body limit).
    pub(crate) body_seen: u64,
    pub(crate) file: Option<FileStream>,
}

pub(crate) struct Conn {
    pub(crate) sock: TcpStream,
    pub(crate) peer: SocketAddr,
    /// Out buffer: frames (or HTTP bytes) queued for the socket, sent from `out_pos`.
    pub(crate) out: Vec<u8>,
    /// Received bytes not consumed yet (split frame header, paused input).
    pub(crate) stash: Vec<u8>,
    pub(crate) rx: Receiver,
    pub(crate) http: Option<Box<HttpState>>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) out_pos: u32,
    pub(crate) gen: u32,
    pub(crate) session: u32,
    pub(crate) proto: u16,
    pub(crate) flags: u16,
    pub(crate) state: State,
}

impl Conn {
    #[inline]
    pub(crate) fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    #[inline]
    pub(crate) fn set(&mut self, f: u16) {
        self.flags |= f;
    }

    #[inline]
    pub(crate) fn clear(&mut self, f: u16) {
        self.flags &= !f;
    }

    /// Bytes queued and not yet taken by the kernel.
    #[inline]
    pub(crate) fn unsent(&self) -> usize {
        self.out.len() - self.out_pos as usize
    }

    /// Marks the HTTP response as fully queued: once it is flushed and the request body
    /// (if any) consumed, the next request is read, or the connection closes without
    /// keep-alive.
    pub(crate) fn complete_http(&mut self) {
        if self.has(flag::KEEP_ALIVE) {
            self.set(flag::HTTP_RESPONDED);
        } else {
            self.set(flag::HTTP_RESPONDED | flag::SHUTDOWN_AFTER_FLUSH);
        }
    }

    /// Whether the connection is closed as soon as its out buffer is flushed: both close
    /// frames are exchanged and the socket was read dry. The peer sends nothing after its
    /// close frame (RFC 6455 §5.5.1), so nothing unread can turn the close into a reset;
    /// closing at once, rather than shutting down and waiting for the peer's EOF, saves a
    /// shutdown, a read and a timer per connection, and the server holds TIME_WAIT as
    /// §7.1.1 asks.
    pub(crate) fn closes_when_flushed(&self) -> bool {
        self.has(flag::SHUTDOWN_AFTER_FLUSH)
            && self.has(flag::CLOSE_RECEIVED)
            && self.has(flag::CLOSE_SENT)
            && !self.has(flag::MAY_READ)
            && self.stash.is_empty()
            && self.state == State::WebSocket
    }

    /// The current request, if one is held.
    pub(crate) fn request(&self) -> Option<&Request> {
        self.http.as_ref().and_then(|h| h.request.as_ref())
    }
}
