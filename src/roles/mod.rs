//! The roles a connection plays, one state machine each, between the transport's plaintext
//! and the protocol callbacks:
//!
//! * [`http`]: the HTTP/1.1 server side: request head, filters, the `HTTP` callback, the
//!   built-in file server, request bodies, keep-alive, and the upgrade decision.
//! * [`websocket`]: the server handshake (101, sub-protocol, `ESTABLISHED`) and an open
//!   WebSocket: decode → `RECEIVE` / `RECEIVE_PONG`, pings answered, the close handshake,
//!   failing on protocol errors.
//!
//! * [`client`]: outgoing connections: name resolution off the loop, connect, the client
//!   handshake, then the WebSocket role with masked frames and the `CLIENT_*` reasons.
//!
//! A role takes input as `(bytes) -> (consumed, Stop)` from the
//! [driver](crate::driver), which reads, stashes and flushes for every role alike. An
//! raw role for adopted descriptors would be one more module of this shape.

pub(crate) mod client;
pub(crate) mod http;
pub(crate) mod websocket;

/// Why a role stopped consuming input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The bytes end inside a unit (header, control frame): keep the rest, read more.
    NeedMore,
    /// Reading is paused: keep the rest and deliver it on resume.
    Paused,
    /// The connection changed state (upgrade): go on with the rest in the new state.
    Switched,
    /// No further input is wanted (closing, failed, removed): drop the rest.
    Done,
}
