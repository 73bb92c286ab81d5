//! The vocabulary shared by every layer: callback reasons, context-wide events, the close a
//! callback asks for, and the ids naming protocols and connections.
//!
//! A leaf module (it uses nothing of the crate but `proto`'s close codes), so that the
//! protocol trait, the callback handle and the reactor can all use these types without
//! depending on each other.

use std::borrow::Cow;
use std::net::SocketAddr;

/// A stable name for a connection: slab index plus generation, so a stale id never
/// reaches a newer connection that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) key: u32,
    pub(crate) gen: u32,
}

impl ConnId {
    /// The id as one number (generation in the high half, slot in the low half), e.g. for
    /// JSON.
    pub fn as_u64(self) -> u64 {
        (self.gen as u64) << 32 | self.key as u64
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.key, self.gen)
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
    /// passed validation; the request headers are readable through the [`Wsi`](crate::Wsi). Returning an
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
    /// [`Wsi::callback_on_writable`](crate::Wsi::callback_on_writable). One request gives one callback.
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
    /// `LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION` (first protocol): the TLS
    /// handshake finished and the client presented a certificate chain that rustls verified
    /// against the CA file; returning an error refuses the connection before any request is
    /// read. Only with [`ssl_client_certs`](crate::ContextBuilder::ssl_client_certs).
    PerformClientCertVerification {
        /// The client's chain, end-entity certificate first (DER).
        chain: &'a [rustls_pki_types::CertificateDer<'static>],
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
    /// may answer it ([`Wsi::return_http_status`](crate::Wsi::return_http_status), [`Wsi::serve_http_file`](crate::Wsi::serve_http_file), or its own
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
    /// `LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER`: an outgoing connection is about to
    /// send its handshake request; add fields (cookies, authorization) with
    /// [`Wsi::append_handshake_header`](crate::Wsi::append_handshake_header).
    ClientAppendHandshakeHeader,
    /// `LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH`: the server's 101 response passed the
    /// checks; its headers are readable with [`Wsi::header`](crate::Wsi::header). Returning
    /// an error refuses the connection (`CLIENT_CONNECTION_ERROR` follows).
    ClientFilterPreEstablish,
    /// `LWS_CALLBACK_CLIENT_ESTABLISHED`: an outgoing connection is a WebSocket now.
    ClientEstablished,
    /// `LWS_CALLBACK_CLIENT_CONNECTION_ERROR`: an outgoing connection failed before it was
    /// established (no `CLOSED` follows, only `WSI_DESTROY`).
    ClientConnectionError {
        /// What went wrong, for people: the address and the error, the bad response, the
        /// timeout.
        reason: &'a str,
    },
    /// `LWS_CALLBACK_CLIENT_RECEIVE`: a piece of a message on an outgoing connection, as
    /// [`Receive`](Reason::Receive).
    ClientReceive {
        /// The payload bytes (text already validated as UTF-8 up to here).
        data: &'a [u8],
        /// A binary message (else text).
        binary: bool,
        /// The first piece of a message.
        first: bool,
        /// The last piece of a message.
        last: bool,
        /// Bytes still to come in the current frame.
        remaining: u64,
    },
    /// `LWS_CALLBACK_CLIENT_RECEIVE_PONG`: a pong arrived on an outgoing connection.
    ClientReceivePong {
        /// The pong's payload.
        data: &'a [u8],
    },
    /// `LWS_CALLBACK_CLIENT_WRITEABLE`: an outgoing connection can take more data, as asked
    /// with [`Wsi::callback_on_writable`](crate::Wsi::callback_on_writable).
    ClientWriteable,
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
    /// `LWS_CALLBACK_ADD_POLL_FD` (first protocol, only with
    /// [`external_poll`](crate::ContextBuilder::external_poll)): add `fd` to your poll set,
    /// polled for `events` (`poll(2)` bits: `POLLIN`, `POLLOUT`).
    AddPollFd(PollArgs),
    /// `LWS_CALLBACK_DEL_POLL_FD`: take `fd` out of your poll set; it is about to be
    /// closed (or was, within the call that reports this: the number may come back in an
    /// `AddPollFd` that follows).
    DelPollFd(PollArgs),
    /// `LWS_CALLBACK_CHANGE_MODE_POLL_FD`: poll `fd` for `events` from now on (was
    /// `prev_events`). `events` may be 0: poll it for nothing (a hang-up or error is still
    /// reported by `poll(2)`, and servicing it then closes the connection).
    ChangeModePollFd(PollArgs),
    /// `LWS_CALLBACK_LOCK_POLL`: a batch of the three above follows; take the lock of a
    /// poll set shared with other threads.
    LockPoll,
    /// `LWS_CALLBACK_UNLOCK_POLL`: the batch is over.
    UnlockPoll,
}

/// The argument of the external-poll events (libwebsockets' `struct libwebsocket_pollargs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollArgs {
    /// The descriptor.
    pub fd: i32,
    /// The events to poll it for (`poll(2)` bits; 0 for `DelPollFd`).
    pub events: i16,
    /// The events it was polled for until now (0 for `AddPollFd`).
    pub prev_events: i16,
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
