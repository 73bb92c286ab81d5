//! Counters of what the context has done ([`Context::stats`](crate::Context::stats)).

/// A snapshot of a context's activity (`ctx.stats()`): connections by state now, and
/// counters since the context was built. Cheap to take (one pass over the connections for
/// the gauges); counters are plain integers bumped on the data path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Open HTTP connections (not upgraded).
    pub http: usize,
    /// Open WebSocket connections (server and client side), not closing.
    pub websocket: usize,
    /// Outgoing connections still connecting or handshaking.
    pub connecting: usize,
    /// Connections closing (close frame sent, or draining after a shutdown).
    pub closing: usize,
    /// Adopted raw descriptors (`adopt_raw`).
    pub raw: usize,
    /// Topics with at least one subscriber.
    pub topics: usize,

    /// TCP connections accepted.
    pub accepted: u64,
    /// Bytes read from sockets (TLS: plaintext).
    pub bytes_in: u64,
    /// Bytes handed to sockets (TLS: plaintext).
    pub bytes_out: u64,
    /// Whole WebSocket messages received.
    pub messages_in: u64,
    /// Whole WebSocket messages queued (written by callbacks, or delivered from topics).
    pub messages_out: u64,
    /// HTTP requests read (not upgrades).
    pub http_requests: u64,
    /// WebSocket handshakes completed (server and client side).
    pub handshakes: u64,
    /// Connections or requests refused: by a filter, or a handshake that failed validation.
    pub refused: u64,
    /// WebSockets closed by the peer's close frame.
    pub closed_by_peer: u64,
    /// WebSockets closed by us: a callback's error, `close()`.
    pub closed_by_us: u64,
    /// WebSockets failed for a protocol error (1002, 1007, 1009).
    pub closed_protocol_error: u64,
    /// WebSockets closed because a callback panicked (1011).
    pub closed_panic: u64,
    /// Topic subscribers closed for being too slow (1008).
    pub closed_slow: u64,
    /// WebSockets that ended without a close handshake (EOF, reset, write error).
    pub dropped: u64,
    /// Connections ended by a deadline (handshake, connect, close, keep-alive).
    pub timeouts: u64,
}
