//! Dispatch to protocols: type-erased protocol storage and every call into user handlers.
//!
//! Each protocol lives in a [`Slot`] next to a slab of its sessions, so a connection only
//! stores a small session index, sessions of a zero-sized type cost no allocation, and the
//! handler call is one virtual call with no downcast.

use crate::connection::{flag, Conn, State};
use crate::context::Context;
use crate::protocol::Protocol;
use crate::reason::{Close, ProtocolEvent, ProtocolId, Reason};
use crate::shared::Shared;
use crate::wsi::{ProtocolContext, Wsi};
use slab::Slab;
use std::any::Any;

pub(crate) trait ErasedProtocol {
    fn new_session(&mut self) -> u32;
    /// A session with the given initial value, if it is of the protocol's session type.
    fn new_session_with(&mut self, value: Box<dyn Any>) -> Option<u32>;
    fn drop_session(&mut self, session: u32);
    fn call(&mut self, wsi: &mut Wsi<'_>, session: u32, reason: Reason<'_>) -> Result<(), Close>;
    /// [`Protocol::receive_with_nul`]: `msg` is a whole message followed by a 0 byte;
    /// binary or not as `wsi.rx_binary` says (one argument less on the stack).
    fn call_with_nul(&mut self, wsi: &mut Wsi<'_>, session: u32, msg: &[u8]) -> Result<(), Close>;
    fn call_protocol(&mut self, ctx: &mut ProtocolContext<'_>, event: ProtocolEvent) -> Result<(), Close>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn session_any(&mut self, session: u32) -> Option<&mut dyn Any>;
    fn sessions(&self) -> usize;
}

pub(crate) struct Slot<P: Protocol> {
    pub(crate) proto: P,
    sessions: Slab<P::Session>,
}

impl<P: Protocol> Slot<P> {
    pub(crate) fn new(proto: P) -> Self {
        Slot {
            proto,
            sessions: Slab::new(),
        }
    }
}

impl<P: Protocol> ErasedProtocol for Slot<P> {
    fn new_session(&mut self) -> u32 {
        self.sessions.insert(P::Session::default()) as u32
    }

    fn new_session_with(&mut self, value: Box<dyn Any>) -> Option<u32> {
        let s = value.downcast::<P::Session>().ok()?;
        Some(self.sessions.insert(*s) as u32)
    }

    fn drop_session(&mut self, session: u32) {
        self.sessions.try_remove(session as usize);
    }

    #[inline]
    fn call(&mut self, wsi: &mut Wsi<'_>, session: u32, reason: Reason<'_>) -> Result<(), Close> {
        match self.sessions.get_mut(session as usize) {
            Some(s) => self.proto.callback(wsi, s, reason),
            None => Ok(()),
        }
    }

    #[inline]
    fn call_with_nul(&mut self, wsi: &mut Wsi<'_>, session: u32, msg: &[u8]) -> Result<(), Close> {
        match self.sessions.get_mut(session as usize) {
            Some(s) => {
                let binary = wsi.rx_binary;
                self.proto.receive_with_nul(wsi, s, msg, binary)
            }
            None => Ok(()),
        }
    }

    fn call_protocol(&mut self, ctx: &mut ProtocolContext<'_>, event: ProtocolEvent) -> Result<(), Close> {
        self.proto.protocol_callback(ctx, event)
    }

    fn as_any(&self) -> &dyn Any {
        &self.proto
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        &mut self.proto
    }

    fn session_any(&mut self, session: u32) -> Option<&mut dyn Any> {
        self.sessions.get_mut(session as usize).map(|s| s as &mut dyn Any)
    }

    fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// A registered protocol: handler plus the settings of its `libwebsocket_protocols` entry.
pub(crate) struct Registered {
    pub(crate) name: String,
    pub(crate) rx_buffer_size: usize,
    pub(crate) id: u32,
    /// [`Protocol::RECEIVE_WITH_NUL`] of the handler.
    pub(crate) receive_with_nul: bool,
    pub(crate) handler: Box<dyn ErasedProtocol>,
}

/// Delivers `CLOSED` (an upgraded connection: with the peer's close code and reason, if it
/// sent a close frame) or `CLOSED_HTTP`, once per connection: every path that ends a
/// connection (the peer's close frame, a protocol failure, the flush after the close
/// handshake, removal) comes through here, and `CLOSED_NOTIFIED` keeps it to one call.
pub(crate) fn deliver_closed(
    handler: &mut dyn ErasedProtocol,
    c: &mut Conn,
    shared: &mut Shared,
    key: usize,
    code: Option<u16>,
    reason: &[u8],
) {
    if c.has(flag::CLOSED_NOTIFIED) {
        return;
    }
    c.set(flag::CLOSED_NOTIFIED);
    let why = if c.transport.is_raw() {
        Reason::RawClose
    } else if c.has(flag::UPGRADED) {
        Reason::Closed { code, reason }
    } else {
        Reason::ClosedHttp
    };
    let session = c.session;
    let _ = handler.call(&mut Wsi::new(c, shared, key as u32), session, why);
}

impl Context {
    /// Calls the connection's protocol with `reason`.
    pub(crate) fn call(&mut self, k: usize, reason: Reason<'_>) -> Result<(), Close> {
        let Some(c) = self.conns.get_mut(k) else {
            return Ok(());
        };
        self.current = Some(k);
        let handler = &mut self.protocols[c.proto as usize].handler;
        let session = c.session;
        handler.call(&mut Wsi::new(c, &mut self.shared, k as u32), session, reason)
    }

    /// Calls, and on error closes the connection (WebSocket: close frame with the error's
    /// code; HTTP: drop), or, for a full send queue, waits for room.
    pub(crate) fn call_and_close(&mut self, k: usize, reason: Reason<'_>) {
        if let Err(e) = self.call(k, reason) {
            self.callback_failed(k, &e);
        }
    }

    /// What a callback's error asks for: see [`Wsi::callback_failed`]; an HTTP connection
    /// is dropped.
    pub(crate) fn callback_failed(&mut self, k: usize, e: &Close) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if c.state == State::WebSocket || e.is_back_pressure() {
            Wsi::new(c, &mut self.shared, k as u32).callback_failed(e);
        } else {
            log::debug!(
                "{}: callback closed the connection: {} {}",
                c.peer(),
                e.code,
                e.reason
            );
            self.remove(k);
        }
    }

    /// `CLOSED` / `CLOSED_HTTP` without a close frame from the peer, if not delivered yet.
    pub(crate) fn notify_closed(&mut self, k: usize) {
        if let Some(c) = self.conns.get_mut(k) {
            let handler = &mut *self.protocols[c.proto as usize].handler;
            deliver_closed(handler, c, &mut self.shared, k, None, b"");
        }
    }

    /// An event for one protocol.
    pub(crate) fn protocol_event(&mut self, protocol: ProtocolId, event: ProtocolEvent) {
        let Some(p) = self.protocols.get_mut(protocol.index()) else {
            return;
        };
        let mut pc = ProtocolContext {
            shared: &mut self.shared,
            protocol,
        };
        if let Err(e) = p.handler.call_protocol(&mut pc, event) {
            log::warn!("protocol {}: {event:?} failed: {}", p.name, e.reason);
        }
    }

    /// A context-wide event, to every protocol.
    pub(crate) fn protocol_event_all(&mut self, event: ProtocolEvent) {
        for (i, p) in self.protocols.iter_mut().enumerate() {
            let mut pc = ProtocolContext {
                shared: &mut self.shared,
                protocol: ProtocolId(i as u16),
            };
            if let Err(e) = p.handler.call_protocol(&mut pc, event) {
                log::warn!("protocol {}: {event:?} failed: {}", p.name, e.reason);
            }
        }
    }
}

impl Context {
    /// Runs one piece of the loop's work for connection `k` (or for no connection in
    /// particular) so that a panicking protocol callback closes only the connection it was
    /// called for, instead of unwinding through `service()` and taking every other
    /// connection down. The catch is per event, not per callback: the hot path pays
    /// nothing for it.
    ///
    /// After a panic the handler's own state may be half-updated; the connection is removed
    /// (its remaining callbacks guarded too, and skipped if they panic again) and the
    /// context's buffers are restored. Under `panic = "abort"` there is nothing to catch.
    pub(crate) fn guarded(&mut self, k: Option<usize>, f: impl FnOnce(&mut Context)) {
        self.current = k;
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        let Err(payload) = caught else {
            return;
        };
        if self.rxbuf.is_empty() {
            // The panic came while the receive buffer was lent out.
            self.rxbuf = vec![0; self.cfg.rx_buffer_size];
        }
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let Some(k) = self.current.take() else {
            log::error!("a protocol callback panicked outside any connection: {what}");
            return;
        };
        let Some(c) = self.conns.get_mut(k) else {
            log::error!("a protocol callback panicked: {what}");
            return;
        };
        log::error!(
            "{}: a protocol callback panicked, closing its connection with 1011: {what}",
            c.peer()
        );
        self.shared.stats.closed_panic += 1;
        if c.state == State::WebSocket {
            Wsi::new(c, &mut self.shared, k as u32)
                .close_frame(crate::proto::close::code::INTERNAL_ERROR, "internal error");
        }
        // What is queued (the close frame last) goes out if the socket takes it now; the
        // connection does not wait for the peer's reply, its handler being suspect.
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(c) = self.conns.get_mut(k) {
                if c.unsent() > 0 && !c.has(flag::WRITE_BLOCKED) {
                    let _ = c.transport.write_out(&c.out, &mut c.out_pos, false);
                }
            }
            self.remove(k)
        }));
        if ended.is_err() && self.conns.contains(k) {
            // It panicked again in its last callbacks: drop it without them.
            let mut c = self.conns.remove(k);
            self.readiness.remove_conn(&c);
            self.shared.topics.drop_conn(k);
            if let Some(ce) = c.ext.take() {
                self.shared.ext.destroy(&ce);
            }
            self.protocols[c.proto as usize].handler.drop_session(c.session);
        }
    }
}
