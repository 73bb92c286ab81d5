//! Protocols and callback reasons: the user-facing side of dispatch.
//!
//! A protocol is what libwebsockets calls a `struct libwebsocket_protocols` entry: a name
//! (the `Sec-WebSocket-Protocol` it answers to), a handler, a per-session data type and an
//! rx buffer size. Its handler gets every callback reason of the connections bound to it,
//! as [`Reason`]s through [`Protocol::callback`], and the context-wide ones, which concern
//! no single connection, as [`ProtocolEvent`]s through [`Protocol::protocol_callback`].

use crate::wsi::{ProtocolContext, Wsi};
use std::borrow::Cow;
use std::net::SocketAddr;

/// A protocol handler (libwebsockets: the `callback` of a protocol).
///
/// ```
/// use wsreactor::{Close, Protocol, Reason, Wsi};
///
/// /// Counts the messages each client sends and answers with the count.
/// #[derive(Default)]
/// struct Counter;
///
/// impl Protocol for Counter {
///     type Session = u64; // per-session data: created on connect, dropped on close
///
///     fn callback(&mut self, wsi: &mut Wsi<'_>, count: &mut u64, reason: Reason<'_>) -> Result<(), Close> {
///         if let Reason::Receive { last: true, .. } = reason {
///             *count += 1;
///             wsi.send_text(&count.to_string())?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Protocol: 'static {
    /// Per-session user data (libwebsockets' `per_session_data_size`), created with
    /// `Default` when a connection is bound to this protocol and dropped after the last
    /// callback of that connection.
    type Session: Default + 'static;

    /// Called for each callback reason of a connection bound to this protocol.
    ///
    /// Returning an error closes this connection (with the error's close code on a
    /// WebSocket, or by dropping an HTTP connection) and no other; for the `Filter*`
    /// reasons an error refuses the connection.
    fn callback(
        &mut self,
        wsi: &mut Wsi<'_>,
        session: &mut Self::Session,
        reason: Reason<'_>,
    ) -> Result<(), Close>;

    /// Called for context-wide events that concern no single connection: protocol init and
    /// destroy, `cancel_service`, and (for the first protocol) new TCP connections.
    fn protocol_callback(
        &mut self,
        ctx: &mut ProtocolContext<'_>,
        event: ProtocolEvent,
    ) -> Result<(), Close> {
        let _ = (ctx, event);
        Ok(())
    }
}

/// The callback reasons delivered for one connection (libwebsockets' `LWS_CALLBACK_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason<'a> {
    /// `LWS_CALLBACK_WSI_CREATE`: a connection object was created (first protocol).
    WsiCreate,
    /// `LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED`: an accepted connection is set up and
    /// registered with the poll loop (first protocol).
    ServerNewClientInstantiated,
    /// `LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION`: a WebSocket upgrade for this protocol
    /// passed validation; the request headers are readable through the [`Wsi`]. Returning an
    /// error refuses it with 403.
    FilterProtocolConnection,
    /// `LWS_CALLBACK_ESTABLISHED`: the 101 response is queued; the connection is a
    /// WebSocket now. Headers are still readable here, and released after.
    Established,
    /// `LWS_CALLBACK_RECEIVE`: a piece of a message. Messages arrive in pieces as their
    /// bytes arrive (at most the protocol's rx buffer size each); `first` and `last` mark
    /// the message boundaries.
    Receive {
        /// The payload bytes (text already validated as UTF-8 up to here).
        data: &'a [u8],
        /// A binary message (else text).
        binary: bool,
        /// The first piece of a message.
        first: bool,
        /// The last piece of a message.
        last: bool,
        /// Bytes still to come in the current frame (`lws_remaining_packet_payload`).
        remaining: u64,
    },
    /// `LWS_CALLBACK_RECEIVE_PONG`: a pong arrived (pings are answered automatically).
    ReceivePong {
        /// The pong's payload.
        data: &'a [u8],
    },
    /// `LWS_CALLBACK_SERVER_WRITEABLE`: the connection can take more data, as asked with
    /// [`Wsi::callback_on_writable`]. One request gives one callback.
    ServerWriteable,
    /// `LWS_CALLBACK_CLOSED`: the WebSocket is closed; no more data will be received.
    /// `code` and `reason` are those of the peer's close frame, `None` when there was none
    /// (the connection was dropped or failed).
    Closed {
        /// The peer's close code.
        code: Option<u16>,
        /// The peer's close reason (UTF-8).
        reason: &'a [u8],
    },
    /// `LWS_CALLBACK_WSI_DESTROY`: the connection object is about to be freed; last call.
    WsiDestroy,
    /// `LWS_CALLBACK_FILTER_HTTP_CONNECTION`: an HTTP request (not an upgrade) arrived;
    /// returning an error refuses it with 403.
    FilterHttpConnection {
        /// The request target.
        uri: &'a str,
    },
    /// `LWS_CALLBACK_HTTP`: an HTTP request for the handler (first protocol). The handler
    /// may answer it ([`Wsi::return_http_status`], [`Wsi::serve_http_file`], or its own
    /// response) or leave it to the built-in file server by doing nothing.
    Http {
        /// The request target.
        uri: &'a str,
    },
    /// `LWS_CALLBACK_HTTP_BODY`: a piece of the request body.
    HttpBody {
        /// The body bytes.
        data: &'a [u8],
    },
    /// `LWS_CALLBACK_HTTP_BODY_COMPLETION`: the whole request body was received.
    HttpBodyCompletion,
    /// `LWS_CALLBACK_HTTP_WRITEABLE`: an HTTP connection can take more data.
    HttpWriteable,
    /// `LWS_CALLBACK_HTTP_FILE_COMPLETION`: a file response (from `serve_http_file` or the
    /// built-in file server) was all handed to the kernel.
    HttpFileCompletion,
    /// `LWS_CALLBACK_CLOSED_HTTP`: an HTTP connection (never upgraded) closed.
    ClosedHttp,
    /// A reason of the user's, sent with `callback_all_protocol` (libwebsockets'
    /// `LWS_CALLBACK_USER` and above).
    User(u32),
}

/// Context-wide events, delivered to each protocol (or to the first one only, as noted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolEvent {
    /// `LWS_CALLBACK_PROTOCOL_INIT`: the context was built.
    Init,
    /// `LWS_CALLBACK_PROTOCOL_DESTROY`: the context is being dropped.
    Destroy,
    /// `LWS_CALLBACK_EVENT_WAIT_CANCELLED`: [`CancelHandle::cancel`](crate::CancelHandle)
    /// woke the loop.
    EventWaitCancelled,
    /// `LWS_CALLBACK_FILTER_NETWORK_CONNECTION` (first protocol only): a TCP connection was
    /// accepted; an error refuses it before any byte is read.
    FilterNetworkConnection {
        /// The peer's address.
        peer: SocketAddr,
        /// The socket's file descriptor.
        fd: i32,
    },
}

/// The error a callback returns to close its connection (or refuse it, for filters).
///
/// Any `std::error::Error` converts into it with `?` (close code 1011).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The WebSocket close code to send.
    pub code: u16,
    /// The close reason to send.
    pub reason: Cow<'static, str>,
}

impl Close {
    /// A close with `code` and `reason`.
    pub fn new(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Close {
            code,
            reason: reason.into(),
        }
    }

    /// A normal closure (1000) without reason.
    pub fn normal() -> Self {
        Close::new(crate::proto::close::code::NORMAL, "")
    }
}

impl<E: std::error::Error> From<E> for Close {
    fn from(e: E) -> Self {
        Close::new(crate::proto::close::code::INTERNAL_ERROR, e.to_string())
    }
}

/// Names a registered protocol: its index in registration order (libwebsockets identifies
/// protocols by their `struct libwebsocket_protocols *`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolId(pub(crate) u16);

impl ProtocolId {
    /// The position of the protocol in registration order (0 = first).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
