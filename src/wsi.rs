//! The handle a callback gets on its connection (libwebsockets' `struct libwebsocket *`),
//! and the context-wide requests callbacks may make.
//!
//! A [`Wsi`] lives only for the duration of one callback: user code never holds a
//! connection, so the reactor stays the only owner of sockets and state. To name a
//! connection later, keep its [`ConnId`].

use crate::connection::{flag, Conn, State};
use crate::fileserver::FileStream;
use crate::http::request::Method;
use crate::http::response;
use crate::proto::{encoder, OpCode};
use crate::reason::{Close, ConnId, ProtocolId};
use crate::roles::http::queue_status_page;
use crate::shared::{ConnOp, CtxRequest, Shared};
use crate::timers::{Job, PendingTimeout, TimerHandle};
use crate::topics::{Published, TopicOptions};
use std::net::SocketAddr;
use std::time::Duration;

/// The value of argument `name` in a query string, percent-decoded (`+` is a space).
pub(crate) fn urlarg(query: &str, name: &str) -> Option<String> {
    let decode = |v: &str| {
        let v = v.replace('+', " ");
        percent_encoding::percent_decode_str(&v)
            .decode_utf8_lossy()
            .into_owned()
    };
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

/// What a write sends (libwebsockets' `enum libwebsocket_write_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteProtocol {
    /// `LWS_WRITE_TEXT`: the first (or only) frame of a text message. The data must be
    /// UTF-8 (not checked, as in libwebsockets; a peer will fail the connection otherwise).
    Text,
    /// `LWS_WRITE_BINARY`: the first (or only) frame of a binary message.
    Binary,
    /// `LWS_WRITE_CONTINUATION`: a further frame of a fragmented message.
    Continuation,
    /// `LWS_WRITE_PING` (at most 125 bytes).
    Ping,
    /// `LWS_WRITE_PONG` (at most 125 bytes).
    Pong,
    /// `LWS_WRITE_HTTP`: raw bytes on an HTTP connection, or on an adopted raw descriptor
    /// ([`Context::adopt_raw`](crate::Context::adopt_raw)).
    Http,
}

/// Why a write was refused. Nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The connection is closing or not in a state for this kind of write.
    Closed,
    /// The unsent data would exceed the connection's bound (`max_unsent`): wait for
    /// `SERVER_WRITEABLE` (ask with `callback_on_writable`) and write again.
    BackPressure,
    /// A continuation without a started fragmented message, or a new message inside one.
    Fragmentation,
    /// A control frame over 125 bytes.
    TooLong,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteError::Closed => "connection closing",
            WriteError::BackPressure => "too much unsent data queued",
            WriteError::Fragmentation => "write breaks message fragmentation",
            WriteError::TooLong => "control frame payload over 125 bytes",
        })
    }
}

impl std::error::Error for WriteError {}

/// Requests for one other connection, made from inside a callback
/// ([`Wsi::conn`], [`ProtocolContext::conn`]) and carried out after it returns, in order. A
/// stale id (the connection closed, its slot reused) is ignored. From the loop, the
/// [`Context`](crate::Context) has the same calls, done at once.
///
/// ```
/// use wsreactor::{Close, ConnId, Protocol, Reason, Wsi};
///
/// /// The first connection is the moderator: its message "kick N" closes connection N.
/// #[derive(Default)]
/// struct Moderated { members: Vec<ConnId> }
///
/// impl Protocol for Moderated {
///     type Session = ();
///     fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
///         match reason {
///             Reason::Established => self.members.push(wsi.id()),
///             Reason::Receive { data, .. } if self.members.first() == Some(&wsi.id()) => {
///                 if let Some(n) = data.strip_prefix(b"kick ") {
///                     let n: usize = std::str::from_utf8(n)?.parse()?;
///                     if let Some(&id) = self.members.get(n) {
///                         wsi.conn(id).close(4000, "kicked");
///                     }
///                 }
///             }
///             Reason::Closed { .. } => self.members.retain(|&m| m != wsi.id()),
///             _ => {}
///         }
///         Ok(())
///     }
/// }
/// ```
pub struct ConnRequests<'a> {
    requests: &'a mut Vec<CtxRequest>,
    id: ConnId,
}

impl ConnRequests<'_> {
    /// Asks for one WRITEABLE callback on the connection (`libwebsocket_callback_on_writable`).
    pub fn callback_on_writable(&mut self) -> &mut Self {
        self.requests.push(CtxRequest::Conn(self.id, ConnOp::Writable));
        self
    }

    /// Starts its closing handshake with `code` and `reason` (an HTTP connection is
    /// dropped), as [`Wsi::close`].
    pub fn close(&mut self, code: u16, reason: &str) -> &mut Self {
        self.requests
            .push(CtxRequest::Conn(self.id, ConnOp::Close(code, reason.into())));
        self
    }

    /// Pauses or resumes reading it (`libwebsocket_rx_flow_control`), as
    /// [`Wsi::rx_flow_control`].
    pub fn rx_flow_control(&mut self, enable: bool) -> &mut Self {
        self.requests
            .push(CtxRequest::Conn(self.id, ConnOp::RxFlow(enable)));
        self
    }

    /// Calls its protocol with [`Reason::User`](crate::Reason::User) `{ event, data }` (a private message, a
    /// kick with a reason).
    pub fn callback(&mut self, event: u32, data: &[u8]) -> &mut Self {
        self.requests
            .push(CtxRequest::Conn(self.id, ConnOp::User(event, data.into())));
        self
    }
}

/// The calls on protocols and on the context's user value that the [`Context`](crate::Context),
/// a [`Wsi`] and a [`ProtocolContext`] all have (each holds the context's `shared` part).
/// Asked from a callback, the `*_all_protocol` requests are served after it returns; asked
/// from the loop, by the next `service()`.
macro_rules! shared_calls {
    () => {
        /// Asks for a WRITEABLE callback on every connection of `protocol`
        /// (`libwebsocket_callback_on_writable_all_protocol`).
        pub fn callback_on_writable_all_protocol(&mut self, protocol: ProtocolId) {
            self.shared.requests.push(CtxRequest::Writable(protocol));
        }

        /// Re-enables reading on every connection of `protocol` that paused it
        /// (`libwebsocket_rx_flow_allow_all_protocol`).
        pub fn rx_flow_allow_all_protocol(&mut self, protocol: ProtocolId) {
            self.shared.requests.push(CtxRequest::RxFlowAllow(protocol));
        }

        /// Calls the handler with [`Reason::User`](crate::Reason::User) `{ event, data }` for
        /// every WebSocket connection of `protocol` (`libwebsocket_callback_all_protocol`,
        /// for the user's reasons only); from a callback, after it returns.
        pub fn callback_all_protocol(&mut self, protocol: ProtocolId, event: u32, data: &[u8]) {
            self.shared
                .requests
                .push(CtxRequest::Callback(protocol, event, data.into()));
        }

        /// The id of the protocol registered under `name`.
        pub fn protocol_by_name(&self, name: &str) -> Option<ProtocolId> {
            self.shared.protocol_id(name)
        }

        /// The context-wide user value given with
        /// [`ContextBuilder::user`](crate::ContextBuilder::user), if it is a `T`
        /// (`libwebsocket_context_user`).
        pub fn user<T: 'static>(&self) -> Option<&T> {
            self.shared.user.as_ref()?.downcast_ref()
        }

        /// The context-wide user value, mutable, if it is a `T`.
        pub fn user_mut<T: 'static>(&mut self) -> Option<&mut T> {
            self.shared.user.as_mut()?.downcast_mut()
        }
    };
}
pub(crate) use shared_calls;

/// What a callback has beyond [`shared_calls`]: requests for any connection by id.
macro_rules! context_requests {
    () => {
        shared_calls!();

        /// Requests for connection `id` (any connection, of any protocol), carried out
        /// after this callback returns: see [`ConnRequests`].
        pub fn conn(&mut self, id: ConnId) -> ConnRequests<'_> {
            ConnRequests {
                requests: &mut self.shared.requests,
                id,
            }
        }
    };
}

/// The context as seen from a [`ProtocolEvent`](crate::ProtocolEvent) callback.
pub struct ProtocolContext<'a> {
    pub(crate) shared: &'a mut Shared,
    pub(crate) protocol: ProtocolId,
}

impl ProtocolContext<'_> {
    /// The protocol this callback belongs to.
    pub fn protocol(&self) -> ProtocolId {
        self.protocol
    }

    context_requests!();

    /// Delivers [`ProtocolEvent::Timer`](crate::ProtocolEvent::Timer) with `id` to this
    /// protocol once `after` has passed.
    pub fn schedule_timer(&mut self, after: Duration, id: u64) -> TimerHandle {
        self.shared.schedule_job(after, Job::Protocol(self.protocol, id))
    }

    /// Cancels a scheduled timer; false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, handle: TimerHandle) -> bool {
        self.shared.timers.cancel(handle)
    }
}

/// A connection, as seen from inside one of its callbacks.
pub struct Wsi<'a> {
    pub(crate) conn: &'a mut Conn,
    pub(crate) shared: &'a mut Shared,
    pub(crate) key: u32,
    pub(crate) rx_binary: bool,
    pub(crate) rx_final: bool,
    pub(crate) rx_remaining: u64,
}

impl<'a> Wsi<'a> {
    pub(crate) fn new(conn: &'a mut Conn, shared: &'a mut Shared, key: u32) -> Self {
        Wsi {
            conn,
            shared,
            key,
            rx_binary: false,
            rx_final: false,
            rx_remaining: 0,
        }
    }

    /// This connection's stable id.
    pub fn id(&self) -> ConnId {
        ConnId {
            key: self.key,
            gen: self.conn.gen,
        }
    }

    /// Sends a whole message, or the last frame of a fragmented one
    /// (`libwebsocket_write`).
    ///
    /// The frame is queued in the connection's out buffer, which the reactor writes to the
    /// socket after the callback returns, batching all frames of a poll cycle into one
    /// write; what the kernel does not take is kept and sent when the socket is writable
    /// ([`partial_buffered`](Self::partial_buffered)). As with libwebsockets, the polite way
    /// to send a stream is one write per `SERVER_WRITEABLE`.
    ///
    /// On a connection [subscribed](Self::subscribe) to topics, the messages
    /// [published](Self::publish) to them and not yet sent go into the out buffer first,
    /// so a message written here never overtakes one published before it (a publish and
    /// then a reply in the same callback arrive in that order). Two exceptions: control
    /// frames (ping, pong) go at once, and while the connection has yet to be told of
    /// messages it missed ([`Reason::TopicMissed`](crate::Reason::TopicMissed)), the
    /// topic messages wait for that notice and a write goes ahead of them.
    pub fn write(&mut self, data: &[u8], wp: WriteProtocol) -> Result<(), WriteError> {
        self.write_fragment(data, wp, true)
    }

    /// [`write`](Self::write) with control over FIN: `fin == false` is libwebsockets'
    /// `LWS_WRITE_NO_FIN`, to be followed by [`WriteProtocol::Continuation`] frames.
    pub fn write_fragment(&mut self, data: &[u8], wp: WriteProtocol, fin: bool) -> Result<(), WriteError> {
        let c = &mut *self.conn;
        if wp == WriteProtocol::Http {
            if c.state != State::Http && c.state != State::Raw {
                return Err(WriteError::Closed);
            }
            return self.queue(data.len(), |out| out.extend_from_slice(data));
        }
        if c.state != State::WebSocket || c.has(flag::CLOSE_SENT) {
            return Err(WriteError::Closed);
        }
        let opcode = match wp {
            WriteProtocol::Text | WriteProtocol::Binary if c.has(flag::SENDING_FRAGMENTED) => {
                return Err(WriteError::Fragmentation)
            }
            WriteProtocol::Continuation if !c.has(flag::SENDING_FRAGMENTED) => {
                return Err(WriteError::Fragmentation)
            }
            WriteProtocol::Ping | WriteProtocol::Pong if data.len() > 125 => return Err(WriteError::TooLong),
            WriteProtocol::Text => OpCode::Text,
            WriteProtocol::Binary => OpCode::Binary,
            WriteProtocol::Continuation => OpCode::Continuation,
            WriteProtocol::Ping => OpCode::Ping,
            WriteProtocol::Pong => OpCode::Pong,
            WriteProtocol::Http => unreachable!("handled above"),
        };
        let control = opcode.is_control();
        let fin = fin || control;
        if !control && c.has(flag::SUBSCRIBED) && !c.has(flag::SENDING_FRAGMENTED) {
            let unsent = c.unsent();
            if unsent > 0 && unsent + data.len() + 14 > self.shared.max_unsent {
                return Err(WriteError::BackPressure);
            }
            self.shared.topic_frames_first(self.key as usize, self.conn);
        }
        if !control && self.conn.ext.is_some() {
            return self.write_ext(data, opcode, fin);
        }
        if self.conn.has(flag::CLIENT) {
            let mask = self.shared.mask_for(self.conn);
            self.queue(data.len() + 14, |out| {
                encoder::encode_frame(out, opcode, fin, mask, data)
            })?;
        } else {
            // A constant `None`: the server's encoding folds to a header and one copy.
            self.queue(data.len() + 14, |out| {
                encoder::encode_frame(out, opcode, fin, None, data)
            })?;
        }
        if !control {
            if fin {
                self.shared.stats.messages_out += 1;
                self.conn.clear(flag::SENDING_FRAGMENTED);
            } else {
                self.conn.set(flag::SENDING_FRAGMENTED);
            }
        }
        Ok(())
    }

    /// A data frame on a connection with extensions: the first negotiated extension that
    /// takes the message (`PACKET_TX_PRESEND`) transforms each of its frames, its RSV bits on
    /// the first; a message none takes goes out as written. An extension's error fails the
    /// connection with its close code.
    #[cold]
    fn write_ext(&mut self, data: &[u8], opcode: OpCode, fin: bool) -> Result<(), WriteError> {
        let c = &mut *self.conn;
        let unsent = c.unsent();
        let Some(ce) = c.ext.as_mut() else {
            return Err(WriteError::Closed);
        };
        let first = opcode != OpCode::Continuation;
        // Refuse before transforming: an extension that took the data cannot take it back.
        let mut bound = data.len();
        for x in &ce.on {
            if let Some(e) = self.shared.ext.get(x.ext) {
                bound = bound.max(e.tx_bound(data.len()));
            }
        }
        if unsent > 0 && unsent + bound + 14 > self.shared.max_unsent {
            return Err(WriteError::BackPressure);
        }
        let mut z = std::mem::take(&mut self.shared.ext.tx);
        z.clear();
        let mut rsv = 0;
        let mut failed = None;
        if first {
            ce.tx = 0;
            ce.tx_binary = opcode == OpCode::Binary;
        }
        let frame = crate::proto::extension::TxFrame {
            data,
            first,
            fin,
            binary: ce.tx_binary,
        };
        if first {
            for (j, x) in ce.on.iter().enumerate() {
                let Some(e) = self.shared.ext.get(x.ext) else { continue };
                match e.tx(x.session, frame, &mut z) {
                    Ok(true) => {
                        ce.tx = j as u8 + 1;
                        rsv = x.rsv;
                        break;
                    }
                    Ok(false) => z.clear(),
                    Err(err) => {
                        failed = Some(err);
                        break;
                    }
                }
            }
        } else if ce.tx != 0 {
            let x = ce.on[ce.tx as usize - 1];
            if let Some(e) = self.shared.ext.get(x.ext) {
                if let Err(err) = e.tx(x.session, frame, &mut z) {
                    failed = Some(err);
                }
            }
        }
        let transformed = ce.tx != 0;
        if let Some(err) = failed {
            self.shared.ext.tx = z;
            log::debug!("{}: extension failed on send: {err}", self.conn.peer());
            self.shared.stats.closed_protocol_error += 1;
            self.close_frame(err.code, err.reason);
            self.conn.set(flag::SHUTDOWN_AFTER_FLUSH);
            return Err(WriteError::Closed);
        }
        let mask = self.shared.mask_for(c);
        let out = c.out_buf(&mut self.shared.bufs);
        if transformed {
            encoder::encode_frame_rsv(out, opcode, fin, rsv, mask, &z);
        } else {
            encoder::encode_frame(out, opcode, fin, mask, data);
        }
        self.shared.ext.tx = z;
        if fin {
            self.shared.stats.messages_out += 1;
            c.clear(flag::SENDING_FRAGMENTED);
        } else {
            c.set(flag::SENDING_FRAGMENTED);
        }
        Ok(())
    }

    /// The extensions negotiated on this connection, as the `Sec-WebSocket-Extensions`
    /// value's names, `", "`-separated (the browser's `ws.extensions`): e.g.
    /// `"permessage-deflate"`, or `""`.
    pub fn extensions(&self) -> String {
        match &self.conn.ext {
            Some(ce) => self.shared.ext.names(ce),
            None => String::new(),
        }
    }

    /// This connection's session of extension type `E`, if one was negotiated (with `E`
    /// registered more than once, the first negotiated): e.g. to read what its negotiation
    /// settled.
    pub fn extension_session<E: crate::proto::extension::Extension>(&mut self) -> Option<&mut E::Session> {
        let ce = self.conn.ext.as_ref()?;
        let want = std::any::TypeId::of::<E>();
        let x = ce.on.iter().find(|x| {
            self.shared
                .ext
                .list
                .get(x.ext as usize)
                .and_then(Option::as_ref)
                .is_some_and(|e| e.ext_type() == want)
        })?;
        self.shared.ext.get(x.ext)?.session_any(x.session)?.downcast_mut()
    }

    /// The permessage-deflate parameters negotiated on this connection, if any.
    pub fn deflate_params(&mut self) -> Option<crate::proto::deflate::Negotiated> {
        self.extension_session::<crate::proto::deflate::PermessageDeflate>()
            .map(|s| *s.negotiated())
    }

    fn queue(&mut self, len: usize, f: impl FnOnce(&mut Vec<u8>)) -> Result<(), WriteError> {
        let c = &mut *self.conn;
        let unsent = c.unsent();
        if unsent > 0 && unsent + len > self.shared.max_unsent {
            return Err(WriteError::BackPressure);
        }
        f(c.out_buf(&mut self.shared.bufs));
        Ok(())
    }

    /// Subscribes this connection to `topic` (uWebSockets' `subscribe`): every message
    /// [`publish`](Self::publish)ed to it is queued for this connection, until it
    /// unsubscribes or closes. A topic exists while it has subscribers, with the options of
    /// [`ContextBuilder::topic_options`](crate::ContextBuilder::topic_options). False if
    /// already subscribed.
    ///
    /// ```
    /// use wsreactor::{Close, Protocol, Reason, Wsi};
    ///
    /// /// Every message goes to everyone in the room named by the URL (`/?room=NAME`).
    /// #[derive(Default)]
    /// struct Room;
    ///
    /// impl Protocol for Room {
    ///     type Session = String; // the topic
    ///     fn callback(&mut self, wsi: &mut Wsi<'_>, topic: &mut String, reason: Reason<'_>) -> Result<(), Close> {
    ///         match reason {
    ///             Reason::Established => {
    ///                 *topic = format!("room:{}", wsi.urlarg("room").unwrap_or_default());
    ///                 wsi.subscribe(topic);
    ///             }
    ///             Reason::Receive { data, binary, first: true, last: true, .. } => {
    ///                 wsi.publish(topic, data, binary); // framed once, shared by all
    ///             }
    ///             Reason::TopicMissed { missed, .. } => {
    ///                 wsi.send_text(&format!("(you missed {missed} messages)"))?;
    ///             }
    ///             _ => {}
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn subscribe(&mut self, topic: &str) -> bool {
        self.shared
            .topics
            .subscribe(self.key as usize, self.conn, topic, None)
    }

    /// [`subscribe`](Self::subscribe), creating the topic with `opts` if it does not exist
    /// yet (a topic keeps the options of its first subscriber).
    pub fn subscribe_with(&mut self, topic: &str, opts: TopicOptions) -> bool {
        self.shared
            .topics
            .subscribe(self.key as usize, self.conn, topic, Some(opts))
    }

    /// Unsubscribes from `topic`, dropping what is still queued of it. False if not
    /// subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.shared
            .topics
            .unsubscribe(self.key as usize, self.conn, topic)
    }

    /// True if subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.shared
            .topics
            .is_subscribed(self.key as usize, self.conn.gen, topic)
    }

    /// Sends a whole message to every subscriber of `topic` (this connection too, if it is
    /// one), framed once and shared (uWebSockets' `publish`). Each subscriber's queue is
    /// bounded by the topic's [`TopicOptions`]; under
    /// [`SlowPolicy::PushBack`](crate::SlowPolicy::PushBack) this connection stops being
    /// read while a subscriber is full.
    pub fn publish(&mut self, topic: &str, data: &[u8], binary: bool) -> Published {
        self.shared
            .topics
            .publish(topic, data, binary, Some((self.key as usize, self.conn)))
    }

    /// The number of subscribers of `topic` (uWebSockets' `numSubscribers`).
    pub fn num_subscribers(&self, topic: &str) -> usize {
        self.shared.topics.num_subscribers(topic)
    }

    /// Sends a whole text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), WriteError> {
        self.write(text.as_bytes(), WriteProtocol::Text)
    }

    /// Sends a whole binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), WriteError> {
        self.write(data, WriteProtocol::Binary)
    }

    /// Starts the closing handshake with `code` and `reason` (cut to fit a control
    /// frame). No more `RECEIVE` is delivered; the connection closes when the peer answers,
    /// or after the close timeout. Invalid codes are sent as 1011.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.close_frame(code, reason) {
            self.shared.stats.closed_by_us += 1;
        }
    }

    /// Queues the close frame; false if the connection was closing already (or is not a
    /// WebSocket).
    pub(crate) fn close_frame(&mut self, code: u16, reason: &str) -> bool {
        let c = &mut *self.conn;
        if c.state != State::WebSocket || c.has(flag::CLOSE_SENT) {
            return false;
        }
        let code = if crate::proto::close::is_valid_code(code) {
            code
        } else {
            crate::proto::close::code::INTERNAL_ERROR
        };
        let mask = self.shared.mask_for(c);
        encoder::encode_close(c.out_buf(&mut self.shared.bufs), Some(code), reason, mask);
        c.set(flag::CLOSE_SENT);
        true
    }

    /// What a callback's error asks of its connection: a full send queue waits for room
    /// (one WRITEABLE once the queue has drained; no close); anything else closes with the
    /// error's code and reason.
    pub(crate) fn callback_failed(&mut self, e: &Close) {
        if e.is_back_pressure() {
            log::trace!("{}: send queue full: WRITEABLE when drained", self.conn.peer());
            self.callback_on_writable();
            return;
        }
        log::debug!(
            "{}: callback closed the connection: {} {}",
            self.conn.peer(),
            e.code,
            e.reason
        );
        self.close(e.code, &e.reason);
    }

    /// Marks the connection as subject to a timeout (`libwebsocket_set_timeout`): when
    /// `secs` pass without another call, the connection is closed (`CLOSED` or
    /// `CLIENT_CONNECTION_ERROR` follow), whatever `reason` says; the reason is the user's
    /// label for it, readable with [`pending_timeout`](Self::pending_timeout). It replaces
    /// the connection's own deadline (an idle WebSocket's ping timer, an HTTP request's
    /// deadline) until it passes or is cancelled. `secs` 0 or [`PendingTimeout::None`]
    /// cancels it, as [`cancel_timeout`](Self::cancel_timeout).
    ///
    /// ```
    /// # use wsreactor::{Close, PendingTimeout, Reason, Wsi};
    /// fn callback(wsi: &mut Wsi<'_>, reason: Reason<'_>) -> Result<(), Close> {
    ///     match reason {
    ///         // A client must say something within 5 s of connecting, else it goes.
    ///         Reason::Established => wsi.set_timeout(PendingTimeout::User, 5),
    ///         Reason::Receive { .. } => wsi.cancel_timeout(),
    ///         _ => {}
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn set_timeout(&mut self, reason: PendingTimeout, secs: u32) {
        self.shared
            .set_user_timeout(self.conn, self.key as usize, reason, secs);
    }

    /// Cancels a [`set_timeout`](Self::set_timeout): the connection is back on its own
    /// timers (an open WebSocket: the idle ping timer; otherwise none).
    pub fn cancel_timeout(&mut self) {
        self.set_timeout(PendingTimeout::None, 0);
    }

    /// Why the connection's deadline is set ([`PendingTimeout::None`] if it has none).
    pub fn pending_timeout(&self) -> PendingTimeout {
        PendingTimeout::from_u8(self.conn.timeout_reason())
    }

    /// Delivers [`Reason::Timer`](crate::Reason::Timer) with `id` to this connection once `after` has passed
    /// (nothing if it closed by then); cancel it with [`cancel_timer`](Self::cancel_timer).
    /// Any number may be pending per connection.
    pub fn schedule_timer(&mut self, after: Duration, id: u64) -> TimerHandle {
        let job = Job::Conn(self.id(), id);
        self.shared.schedule_job(after, job)
    }

    /// Cancels a scheduled timer; false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, handle: TimerHandle) -> bool {
        self.shared.timers.cancel(handle)
    }

    /// Asks for one `SERVER_WRITEABLE` (or `HTTP_WRITEABLE`) callback when the socket can
    /// take data (`libwebsocket_callback_on_writable`). If the socket is not known to be
    /// full, it comes in the same `service()` call.
    pub fn callback_on_writable(&mut self) {
        self.shared.schedule_writable(self.key as usize, self.conn);
    }

    /// Pauses (`false`) or resumes (`true`) reading from this connection
    /// (`libwebsocket_rx_flow_control`). While paused no `RECEIVE` is delivered and the
    /// socket is not read, so the peer is slowed by TCP; input already read is kept and
    /// delivered on resume.
    pub fn rx_flow_control(&mut self, enable: bool) {
        if enable {
            if self.conn.has(flag::RX_PAUSED) {
                self.conn.clear(flag::RX_PAUSED);
                self.shared.schedule_resume(self.key as usize, self.conn);
            }
        } else {
            self.conn.set(flag::RX_PAUSED);
        }
    }

    /// True when reading is paused by [`rx_flow_control`](Self::rx_flow_control).
    pub fn is_rx_paused(&self) -> bool {
        self.conn.has(flag::RX_PAUSED)
    }

    /// True when queued output is waiting for the socket (`lws_partial_buffered`).
    pub fn partial_buffered(&self) -> bool {
        self.conn.unsent() > 0
    }

    /// Bytes queued and not yet taken by the kernel.
    pub fn unsent_len(&self) -> usize {
        self.conn.unsent()
    }

    /// During `RECEIVE`: the message is binary (`lws_frame_is_binary`).
    pub fn frame_is_binary(&self) -> bool {
        self.rx_binary
    }

    /// During `RECEIVE`: this piece ends the message (`lws_is_final_fragment`).
    pub fn is_final_fragment(&self) -> bool {
        self.rx_final
    }

    /// During `RECEIVE`: bytes of the current frame still to come
    /// (`libwebsockets_remaining_packet_payload`).
    pub fn remaining_packet_payload(&self) -> u64 {
        self.rx_remaining
    }

    /// The peer's address (`libwebsockets_get_peer_addresses`).
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer()
    }

    /// The socket's file descriptor (`libwebsocket_get_socket_fd`).
    pub fn socket_fd(&self) -> i32 {
        self.conn.transport.fd()
    }

    /// True when the connection is TLS (`lws_is_ssl`).
    pub fn is_ssl(&self) -> bool {
        self.conn.transport.is_tls()
    }

    /// The client's TLS certificate chain (end-entity first, DER), if it presented one.
    pub fn peer_certificates(&self) -> Option<&[rustls_pki_types::CertificateDer<'static>]> {
        self.conn.transport.peer_certificates()
    }

    /// The server name the TLS client asked for by SNI.
    pub fn tls_server_name(&self) -> Option<&str> {
        self.conn.transport.server_name()
    }

    /// The protocol this connection is bound to (`libwebsockets_get_protocol`).
    pub fn protocol(&self) -> ProtocolId {
        ProtocolId(self.conn.proto)
    }

    /// The name of the bound protocol.
    pub fn protocol_name(&self) -> &str {
        &self.shared.protocol_names[self.conn.proto as usize]
    }

    /// True once the connection is a WebSocket.
    pub fn is_websocket(&self) -> bool {
        self.conn.state == State::WebSocket
    }

    /// The request target (URI) of the HTTP request or upgrade, while it is held: in
    /// `FILTER_*`, `ESTABLISHED` and the HTTP reasons. `None` after that.
    pub fn uri(&self) -> Option<&str> {
        self.conn.request().map(|r| r.uri())
    }

    /// The request method, while the request is held (`HEAD` answered as `GET` minus the
    /// body: [`respond`](Self::respond) does that itself).
    pub fn method(&self) -> Option<Method> {
        self.conn.request().map(|r| r.method())
    }

    /// The request method as sent, for methods [`Method`] has no name for.
    pub fn method_str(&self) -> Option<&str> {
        self.conn.request().map(|r| r.method_str())
    }

    /// The value of URL argument `name` of the request target, percent-decoded (`+` is a
    /// space), while the request is held (`lws_get_urlarg_by_name`): for
    /// `/chat?room=caf%C3%A9&nick=a+b`, `urlarg("room")` is `café`, `urlarg("nick")` is
    /// `a b`. The first of repeated arguments; an argument without `=` has the empty value;
    /// bytes that do not decode to UTF-8 are replaced (U+FFFD).
    pub fn urlarg(&self, name: &str) -> Option<String> {
        let query = self.conn.request()?.query()?;
        urlarg(query, name)
    }

    /// Answers the HTTP request with `body` from memory, `content_type` and extra headers,
    /// taking care of the rest: `Content-Length`, no body for `HEAD` (the same length),
    /// keep-alive as the request asked, and the transaction's completion. `status` is any
    /// status (a 404 page, a 200).
    pub fn respond(
        &mut self,
        status: u16,
        content_type: &str,
        body: &[u8],
        extra_headers: &[(&str, &str)],
    ) -> Result<(), WriteError> {
        let c = &mut *self.conn;
        if c.state != State::Http || c.has(flag::HTTP_RESPONDED) {
            return Err(WriteError::Closed);
        }
        let head_only = c.request().is_some_and(|r| r.method() == Method::Head);
        let keep = c.has(flag::KEEP_ALIVE);
        let mut headers = Vec::with_capacity(extra_headers.len() + 1);
        headers.push(("Content-Type", content_type));
        headers.extend_from_slice(extra_headers);
        let date = Some(self.shared.date.date());
        let out = c.out_buf(&mut self.shared.bufs);
        response::write_head(out, status, &headers, Some(body.len() as u64), keep, date);
        if !head_only {
            out.extend_from_slice(body);
        }
        c.complete_http();
        Ok(())
    }

    /// A request header by name (case-insensitive), while the request is held
    /// (`lws_hdr_copy`). On an outgoing connection, during `CLIENT_FILTER_PRE_ESTABLISH`:
    /// a header of the server's response.
    pub fn header(&self, name: &str) -> Option<&str> {
        if let Some(cs) = self.conn.client() {
            return cs.response_header(name);
        }
        self.conn.request().and_then(|r| r.header(name))
    }

    /// During `CLIENT_APPEND_HANDSHAKE_HEADER`: adds a field to the handshake request of this
    /// outgoing connection (a cookie, an authorization). False at other times, or when the
    /// field holds CR or LF.
    pub fn append_handshake_header(&mut self, name: &str, value: &str) -> bool {
        if name.is_empty()
            || name
                .bytes()
                .chain(value.bytes())
                .any(|b| b == b'\r' || b == b'\n')
        {
            return false;
        }
        match self.conn.http.as_mut().and_then(|h| h.client.as_mut()) {
            Some(cs) if matches!(self.conn.state, State::ClientConnecting | State::ClientProxy) => {
                cs.extra.push((name.to_owned(), value.to_owned()));
                true
            }
            _ => false,
        }
    }

    /// True for an outgoing (client) connection.
    pub fn is_client(&self) -> bool {
        self.conn.has(flag::CLIENT)
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.header("host")
    }

    /// The `Origin` header.
    pub fn origin(&self) -> Option<&str> {
        self.header("origin")
    }

    /// The `Cookie` header.
    pub fn cookie(&self) -> Option<&str> {
        self.header("cookie")
    }

    /// Answers the HTTP request with a small HTML page for `status`
    /// (`libwebsockets_return_http_status`); `html` replaces the default text (escaped).
    pub fn return_http_status(&mut self, status: u16, html: Option<&str>) -> Result<(), WriteError> {
        let c = &mut *self.conn;
        if c.state != State::Http || c.has(flag::HTTP_RESPONDED) {
            return Err(WriteError::Closed);
        }
        queue_status_page(c, self.shared, status, html, &[]);
        Ok(())
    }

    /// Sends the file at `path` as the response (`libwebsockets_serve_http_file`), with
    /// `content_type` and extra headers. The file is streamed from writable events; the
    /// handler gets `HTTP_FILE_COMPLETION` when it is all sent. No conditional or range
    /// handling: that is the built-in file server's job.
    pub fn serve_http_file(
        &mut self,
        path: impl AsRef<std::path::Path>,
        content_type: &str,
        extra_headers: &[(&str, &str)],
    ) -> std::io::Result<()> {
        let c = &mut *self.conn;
        if c.state != State::Http || c.has(flag::HTTP_RESPONDED) {
            return Err(std::io::Error::other(WriteError::Closed));
        }
        let file = FileStream::open_whole(path.as_ref())?;
        let len = file.remaining();
        let head_only = c.request().is_some_and(|r| r.method() == Method::Head);
        let keep = c.has(flag::KEEP_ALIVE);
        let mut headers = Vec::with_capacity(extra_headers.len() + 1);
        headers.push(("Content-Type", content_type));
        headers.extend_from_slice(extra_headers);
        let date = Some(self.shared.date.date());
        response::write_head(
            c.out_buf(&mut self.shared.bufs),
            200,
            &headers,
            Some(len),
            keep,
            date,
        );
        if !head_only && len > 0 {
            c.http.get_or_insert_with(Box::default).file = Some(file);
        }
        c.complete_http();
        Ok(())
    }

    /// Says that the handler's own HTTP response (written with [`WriteProtocol::Http`]) is
    /// complete (`lws_http_transaction_completed`): the connection reads the next request
    /// once it is sent, or closes if the request did not ask for keep-alive. Returns true
    /// if the connection will close.
    pub fn http_transaction_completed(&mut self) -> bool {
        self.conn.complete_http();
        self.conn.has(flag::SHUTDOWN_AFTER_FLUSH)
    }

    context_requests!();
}

#[cfg(test)]
mod tests {
    #[test]
    fn urlarg_decodes_and_finds_by_name() {
        let q = "room=caf%C3%A9&nick=a+b&flag&x=1&x=2&sp%61ce=%zz";
        assert_eq!(super::urlarg(q, "room").as_deref(), Some("café"));
        assert_eq!(super::urlarg(q, "nick").as_deref(), Some("a b"));
        assert_eq!(super::urlarg(q, "flag").as_deref(), Some(""));
        assert_eq!(super::urlarg(q, "x").as_deref(), Some("1"));
        assert_eq!(super::urlarg(q, "space").as_deref(), Some("%zz"));
        assert_eq!(super::urlarg(q, "ro"), None);
        assert_eq!(super::urlarg("a=%FF", "a").as_deref(), Some("\u{fffd}"));
    }
}
