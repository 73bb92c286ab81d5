//! One accepted connection: its socket, state, decoder and the buffers it holds only
//! while it needs them.
//!
//! Size matters here: 100,000 idle connections are 100,000 of these. An idle WebSocket
//! holds no heap buffer at all (the out buffer goes back to the context's free list when it
//! empties, the stash exists only while a frame header is split across reads, and the HTTP
//! request is dropped after `ESTABLISHED`).

use crate::http::request::Request;
use crate::proto::Receiver;
use crate::roles::http::HttpState;
use crate::shared::BufPool;
use crate::timers::Tick;
use crate::transport::Transport;
use std::net::SocketAddr;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Reading (or answering) HTTP requests; not upgraded.
    Http,
    /// An open WebSocket. `CLOSE_SENT` / `CLOSE_RECEIVED` flags track the close handshake.
    WebSocket,
    /// An outgoing connection: resolving its name or waiting for the TCP connect.
    ClientConnecting,
    /// An outgoing connection through an HTTP proxy: `CONNECT` sent, reading the proxy's
    /// answer (TLS, if any, starts once the tunnel is up).
    ClientProxy,
    /// An outgoing connection: handshake request sent, reading the server's response.
    ClientHandshake,
    /// An adopted raw descriptor: bytes in and out as they are, `RAW_*` reasons.
    Raw,
    /// The Redis backplane's connection, connecting (no protocol sees it).
    #[cfg(feature = "redis")]
    BackplaneConnecting,
    /// The Redis backplane's connection, connected: its bytes go to the link.
    #[cfg(feature = "redis")]
    Backplane,
    /// Output flushed and write side shut down: reading and discarding until the peer's
    /// EOF or the deadline, so that our last bytes are not lost to a reset.
    Draining,
}

/// Bit flags of [`Conn::flags`].
pub(crate) mod flag {
    /// rx flow control: reading is paused by the user.
    pub(crate) const RX_PAUSED: u32 = 1 << 0;
    /// The socket may hold unread data (no WouldBlock seen since the last edge).
    pub(crate) const MAY_READ: u32 = 1 << 1;
    /// The last write hit WouldBlock: wait for a writable edge.
    pub(crate) const WRITE_BLOCKED: u32 = 1 << 2;
    /// The user asked for a WRITEABLE callback.
    pub(crate) const WANT_WRITABLE: u32 = 1 << 3;
    /// The stash holds an incomplete unit (frame header, control frame): read before
    /// decoding again.
    pub(crate) const STASH_INCOMPLETE: u32 = 1 << 4;
    /// We sent a close frame.
    pub(crate) const CLOSE_SENT: u32 = 1 << 5;
    /// The peer's close frame arrived.
    pub(crate) const CLOSE_RECEIVED: u32 = 1 << 6;
    /// CLOSED (or CLOSED_HTTP) was delivered.
    pub(crate) const CLOSED_NOTIFIED: u32 = 1 << 7;
    /// A fragmented message is being sent: only continuation frames may follow.
    pub(crate) const SENDING_FRAGMENTED: u32 = 1 << 8;
    /// Shut the write side down once the out buffer is flushed, then drain.
    pub(crate) const SHUTDOWN_AFTER_FLUSH: u32 = 1 << 9;
    /// Queued in the context's resume-read list.
    pub(crate) const IN_RESUME: u32 = 1 << 10;
    /// The HTTP connection is kept alive after the current response.
    pub(crate) const KEEP_ALIVE: u32 = 1 << 11;
    /// The current HTTP response was fully queued (transaction completed).
    pub(crate) const HTTP_RESPONDED: u32 = 1 << 12;
    /// A timer-heap entry for this connection is pending.
    pub(crate) const TIMER_ARMED: u32 = 1 << 13;
    /// The connection was upgraded to a WebSocket (CLOSED, not CLOSED_HTTP, ends it).
    pub(crate) const UPGRADED: u32 = 1 << 14;
    /// Reading stopped because the out buffer is over `max_unsent`: the peer is not reading
    /// what it asks for (echoes, pongs, responses), so it must not be read either. Lifted
    /// when the out buffer drains.
    pub(crate) const OUT_FULL: u32 = 1 << 15;
    /// Plain bytes arrived on a TLS listener that refuses or redirects plain HTTP: the
    /// first request gets that answer.
    pub(crate) const PLAIN_ON_TLS: u32 = 1 << 16;
    /// An outgoing connection: frames are masked, reasons are the `CLIENT_*` ones.
    pub(crate) const CLIENT: u32 = 1 << 17;
    /// Subscribed to a topic: its positions in the topics' logs are in the context's topics.
    pub(crate) const SUBSCRIBED: u32 = 1 << 18;
    /// Reading paused by a topic's push-back (a subscriber is at its bound), apart from
    /// the user's own rx flow control.
    pub(crate) const TOPIC_PAUSED: u32 = 1 << 19;
    /// A topic this subscriber is in was published to since it last had all its topic
    /// messages: the flush pulls from the topics' logs only then, so that a drained out
    /// buffer costs no look-up in the subscribers' map.
    pub(crate) const TOPIC_QUEUED: u32 = 1 << 20;
}

pub(crate) struct Conn {
    pub(crate) transport: Transport,
    /// Out buffer: frames (or HTTP bytes) queued for the socket, sent from `out_pos`.
    pub(crate) out: Vec<u8>,
    /// Received bytes not consumed yet (split frame header, paused input).
    pub(crate) stash: Vec<u8>,
    pub(crate) rx: Receiver,
    /// The negotiated extensions (permessage-deflate, ...): one pointer for connections
    /// without any.
    pub(crate) ext: Option<Box<crate::extensions::ConnExt>>,
    pub(crate) http: Option<Box<HttpState>>,
    pub(crate) deadline: Option<Tick>,
    pub(crate) out_pos: u32,
    /// Bytes read and discarded since our close frame was queued (bounded by
    /// `max_close_drain`), so a peer that keeps sending cannot keep a closing connection
    /// reading for the whole close timeout.
    pub(crate) drained: u32,
    pub(crate) gen: u32,
    pub(crate) session: u32,
    pub(crate) proto: u16,
    /// The bits of [`flag`] below 24; the top byte is why `deadline` is set (see
    /// [`timeout_reason`](Conn::timeout_reason)).
    pub(crate) flags: u32,
    pub(crate) state: State,
}

impl Conn {
    /// A new connection with nothing buffered, no deadline, no extension and no HTTP state.
    pub(crate) fn new(
        transport: Transport,
        rx: Receiver,
        gen: u32,
        proto: u16,
        session: u32,
        flags: u32,
        state: State,
    ) -> Conn {
        Conn {
            transport,
            out: Vec::new(),
            stash: Vec::new(),
            rx,
            ext: None,
            http: None,
            deadline: None,
            out_pos: 0,
            drained: 0,
            gen,
            session,
            proto,
            flags,
            state,
        }
    }

    #[inline]
    pub(crate) fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    #[inline]
    pub(crate) fn set(&mut self, f: u32) {
        self.flags |= f;
    }

    #[inline]
    pub(crate) fn clear(&mut self, f: u32) {
        self.flags &= !f;
    }

    /// Why `deadline` is set: a [`PendingTimeout`](crate::PendingTimeout) as `u8`, with
    /// the high bit for a deadline of the user's. Kept in the flags' top byte: a field of
    /// its own would grow the record by 8 bytes.
    #[inline]
    pub(crate) fn timeout_reason(&self) -> u8 {
        (self.flags >> 24) as u8
    }

    #[inline]
    pub(crate) fn set_timeout_reason(&mut self, r: u8) {
        self.flags = (self.flags & 0x00ff_ffff) | (u32::from(r) << 24);
    }

    /// The peer's address, asked of the socket when wanted (logs, `Wsi::peer_addr`) rather
    /// than kept: 32 bytes less per connection. `0.0.0.0:0` for a socket that is not
    /// connected (a client still connecting).
    pub(crate) fn peer(&self) -> SocketAddr {
        self.transport
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The out buffer, taken from the pool if the connection holds none: every write path
    /// appends through this.
    #[inline]
    pub(crate) fn out_buf(&mut self, pool: &mut BufPool) -> &mut Vec<u8> {
        if self.out.capacity() == 0 {
            self.out = pool.take();
        }
        &mut self.out
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
            // A client waits for the server to close the TCP connection first (RFC 6455
            // §7.1.1): it shuts down its write side and drains instead.
            && !self.has(flag::CLIENT)
    }

    /// The current request, if one is held.
    pub(crate) fn request(&self) -> Option<&Request> {
        self.http.as_ref().and_then(|h| h.request.as_ref())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_record_stays_small() {
        // Idle-connection memory is this record times the connection count (README, "Keep
        // the idle connection small"); extensions (permessage-deflate) added one pointer.
        assert!(
            std::mem::size_of::<super::Conn>() <= 184,
            "{}",
            std::mem::size_of::<super::Conn>()
        );
        println!("Conn: {} bytes", std::mem::size_of::<super::Conn>());
    }
}
