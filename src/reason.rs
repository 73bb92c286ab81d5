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

    /// The id that [`as_u64`](Self::as_u64) gave `n` for (e.g. a handle kept by C code,
    /// see `wsreactor-c`). A number that names no open connection is refused by every call
    /// taking a `ConnId`, as a stale id is.
    ///
    /// ```
    /// use wsreactor::ConnId;
    /// assert_eq!(ConnId::from_u64(0x7_0000_0005).as_u64(), 0x7_0000_0005);
    /// ```
    pub fn from_u64(n: u64) -> Self {
        ConnId {
            key: n as u32,
            gen: (n >> 32) as u32,
        }
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
        /// Bytes still to come in the current frame (`lws_remaining_packet_payload`); with
        /// permessage-deflate, the frame's compressed bytes not inflated yet.
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
    /// `LWS_CALLBACK_RAW_ADOPT`: a raw descriptor was adopted with
    /// [`Context::adopt_raw`](crate::Context::adopt_raw); its bytes arrive as `RawRx`.
    RawAdopt,
    /// `LWS_CALLBACK_RAW_RX`: bytes read from an adopted raw descriptor, as they came.
    RawRx {
        /// The bytes.
        data: &'a [u8],
    },
    /// `LWS_CALLBACK_RAW_WRITEABLE`: an adopted raw descriptor can take more, as asked with
    /// [`Wsi::callback_on_writable`](crate::Wsi::callback_on_writable); write with
    /// [`WriteProtocol::Http`](crate::WriteProtocol::Http).
    RawWriteable,
    /// `LWS_CALLBACK_RAW_CLOSE`: an adopted raw descriptor is closed (its end of file, an
    /// error, or the callback's error); last before `WSI_DESTROY`.
    RawClose,
    /// Messages of `topic` were dropped from this subscriber's queue because it was at its
    /// bound ([`SlowPolicy::DropOldest`](crate::SlowPolicy::DropOldest)); delivered before
    /// the subscriber's next queued message, so the protocol can tell its client.
    TopicMissed {
        /// The topic.
        topic: &'a str,
        /// Messages dropped since the last notice.
        missed: u64,
    },
    /// A reason of the user's (libwebsockets' `LWS_CALLBACK_USER` and above), sent to
    /// every connection of a protocol with `callback_all_protocol`, or to one connection
    /// with [`Context::callback`](crate::Context::callback) /
    /// [`ConnRequests::callback`](crate::ConnRequests::callback).
    User {
        /// The user's event number.
        event: u32,
        /// The bytes sent with it (empty if none).
        data: &'a [u8],
    },
    /// `LWS_CALLBACK_TIMER`: a timer scheduled for this connection
    /// ([`Wsi::schedule_timer`](crate::Wsi::schedule_timer),
    /// [`Context::schedule_timer`](crate::Context::schedule_timer)) is due.
    Timer {
        /// The id it was scheduled with.
        id: u64,
    },
    /// `LWS_CALLBACK_CONFIRM_EXTENSION_OKAY`: the client offered extension `name` (one
    /// registered with [`ContextBuilder::extension`](crate::ContextBuilder::extension) or
    /// `permessage_deflate`) and the extension accepted an offer for this connection;
    /// returning an error refuses it (its session is destroyed at once and the handshake
    /// goes on without it). Once per negotiated extension, after
    /// `FILTER_PROTOCOL_CONNECTION`, before `ESTABLISHED`.
    ConfirmExtensionOkay {
        /// The extension's name.
        name: &'a str,
    },
    /// `LWS_CALLBACK_CLIENT_CONFIRM_EXTENSION_SUPPORTED`: an outgoing connection is about
    /// to offer extension `name` (each registered one in turn); returning an error leaves it
    /// out of the offer. Comes before `CLIENT_APPEND_HANDSHAKE_HEADER`.
    ClientConfirmExtensionSupported {
        /// The extension's name.
        name: &'a str,
    },
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
    /// A timer scheduled for this protocol
    /// ([`ProtocolContext::schedule_timer`](crate::ProtocolContext::schedule_timer),
    /// [`Context::schedule_protocol_timer`](crate::Context::schedule_protocol_timer)) is due.
    Timer {
        /// The id it was scheduled with.
        id: u64,
    },
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
    /// The Redis backplane's link is up (`ContextBuilder::redis`, feature `redis`):
    /// authenticated, every live topic resubscribed, publishes cross processes again
    /// (those queued meanwhile sent). Once per connection that comes up.
    BackplaneUp,
    /// The Redis backplane's link is down, or could not come up (Redis unreachable, killed,
    /// restarted, refusing us, sending garbage): local delivery goes on, publishes stay
    /// local (queued or dropped, as `backplane::WhileDown` says) and the link
    /// reconnects with backoff. Once per outage, not for each failed reconnect; the cause
    /// is logged and the counts are in `Context::backplane_stats`.
    BackplaneDown,
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

/// The error a callback returns to close its connection, refuse it (filters), or wait
/// for room in its send queue.
///
/// Three kinds, by constructor:
/// * [`Close::new`]: a WebSocket close with that code and reason (an HTTP connection is
///   dropped).
/// * [`Close::http_status`]: for `FILTER_*` and `HTTP`, refuse the request with that HTTP
///   status and text (the filters' default is a plain 403).
/// * The conversion of [`WriteError::BackPressure`](crate::WriteError::BackPressure) with
///   `?`: **not a close**. The send queue is merely full; the refused write was not queued,
///   the connection stays open, and its protocol gets one WRITEABLE callback when the queue
///   has drained, to write again from its state (a counter, a cursor in a ring). So the
///   documented pattern `wsi.write(..)?` handles back-pressure. (In `RECEIVE` it cannot
///   happen to an echo: the reactor stops reading a connection whose queue is half full,
///   and cuts received pieces to fit in the other half.)
///
/// Other errors convert with `?` where this crate knows them to be program errors
/// ([`WriteError`](crate::WriteError)'s other kinds, `io::Error`, UTF-8 and number parse
/// errors, `fmt::Error`): close code 1011. Any other error: `.map_err(Close::internal)`.
///
/// ```
/// use wsreactor::{Close, Protocol, Reason, Wsi};
///
/// #[derive(Default)]
/// struct Rooms;
///
/// impl Protocol for Rooms {
///     type Session = ();
///     fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
///         match reason {
///             // refused with this status and text, not a bare 403
///             Reason::FilterProtocolConnection if wsi.urlarg("room").is_none() => {
///                 Err(Close::http_status(400, "which room? ws://host/?room=NAME"))
///             }
///             Reason::Receive { data, .. } => {
///                 let n: u32 = std::str::from_utf8(data)?.trim().parse()?; // 1011 if not a number
///                 wsi.send_text(&(n + 1).to_string())?; // a full queue: WRITEABLE later, no close
///                 Ok(())
///             }
///             _ => Ok(()),
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The WebSocket close code to send (1000–4999), or the HTTP status of a refusal
    /// (100–599, from [`Close::http_status`]).
    pub code: u16,
    /// The close reason to send (or the text of the refusal page).
    pub reason: Cow<'static, str>,
    /// Not a close: the send queue was full (see the type's documentation).
    wait: bool,
}

impl Close {
    /// A close with `code` and `reason`.
    pub fn new(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Close {
            code,
            reason: reason.into(),
            wait: false,
        }
    }

    /// A normal closure (1000) without reason.
    pub fn normal() -> Self {
        Close::new(crate::proto::close::code::NORMAL, "")
    }

    /// Refuses an HTTP request or a WebSocket upgrade (from `FILTER_HTTP_CONNECTION`,
    /// `FILTER_PROTOCOL_CONNECTION` or `HTTP`) with `status` (100–599; anything else is
    /// 403) and `text` for the page (the status' own words if empty). On an open WebSocket
    /// it closes with 1011.
    pub fn http_status(status: u16, text: impl Into<Cow<'static, str>>) -> Self {
        let status = if (100..=599).contains(&status) {
            status
        } else {
            403
        };
        Close::new(status, text)
    }

    /// Closes with 1011 (internal error) and the error's text, for any error type:
    /// `.map_err(Close::internal)?`.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Close::new(crate::proto::close::code::INTERNAL_ERROR, e.to_string())
    }

    /// The HTTP status of a refusal made with [`http_status`](Self::http_status).
    pub fn http_status_code(&self) -> Option<u16> {
        (!self.wait && (100..=599).contains(&self.code)).then_some(self.code)
    }

    /// True when this is a full send queue, not a close (from `WriteError::BackPressure`).
    pub fn is_back_pressure(&self) -> bool {
        self.wait
    }
}

impl From<crate::wsi::WriteError> for Close {
    fn from(e: crate::wsi::WriteError) -> Self {
        use crate::wsi::WriteError;
        match e {
            WriteError::BackPressure => Close {
                code: crate::proto::close::code::NORMAL,
                reason: Cow::Borrowed(""),
                wait: true,
            },
            // Closing already: a second close is a no-op, so the normal code does no harm.
            WriteError::Closed => Close::normal(),
            e => Close::internal(e),
        }
    }
}

macro_rules! close_on_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Close {
            /// Close code 1011 with the error's text.
            fn from(e: $t) -> Self {
                Close::internal(e)
            }
        }
    )*};
}

close_on_error!(
    std::io::Error,
    std::fmt::Error,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    std::num::ParseIntError,
    std::num::ParseFloatError,
    Box<dyn std::error::Error + Send + Sync>
);

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
