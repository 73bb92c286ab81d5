//! Reaching protocols, connections and topics from the loop: the calls a program makes on
//! the [`Context`] between `service()` calls (by [`ConnId`], by [`ProtocolId`], by topic),
//! its stats and its user value. A callback reaches the same through its
//! [`Wsi`](crate::Wsi) and [`ProtocolContext`](crate::ProtocolContext).

use super::Context;
use crate::connection::{flag, State};
use crate::protocol::Protocol;
use crate::reason::{ConnId, ProtocolId, Reason};
use crate::shared::CtxRequest;
use crate::wsi::Wsi;

impl Context {
    crate::wsi::shared_calls!();

    /// The user id given with [`ProtocolSpec::id`](crate::ProtocolSpec::id).
    pub fn protocol_user_id(&self, protocol: ProtocolId) -> Option<u32> {
        self.protocols.get(protocol.index()).map(|p| p.id)
    }

    /// The handler of `protocol`, if it is of type `P`, to read its state between
    /// `service()` calls (see [`protocol_mut`](Self::protocol_mut)).
    ///
    /// ```
    /// # use wsreactor::{Close, Context, Protocol, Reason, Wsi};
    /// #[derive(Default)]
    /// struct Counter { messages: u64 }
    /// impl Protocol for Counter {
    ///     type Session = ();
    ///     fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), r: Reason<'_>) -> Result<(), Close> {
    ///         if let Reason::Receive { .. } = r { self.messages += 1 }
    ///         Ok(())
    ///     }
    /// }
    /// let ctx = Context::builder().no_listen().protocol("count", Counter::default()).build()?;
    /// let id = ctx.protocol_by_name("count").unwrap();
    /// assert_eq!(ctx.protocol_ref::<Counter>(id).map(|c| c.messages), Some(0));
    /// # #[derive(Default)] struct Other;
    /// # impl Protocol for Other { type Session = ();
    /// #   fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> { Ok(()) } }
    /// assert!(ctx.protocol_ref::<Other>(id).is_none()); // not that type
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn protocol_ref<P: Protocol>(&self, protocol: ProtocolId) -> Option<&P> {
        self.protocols
            .get(protocol.index())
            .and_then(|p| p.handler.as_any().downcast_ref::<P>())
    }

    /// The handler of `protocol`, if it is of type `P`, for the main loop to reach its
    /// state between `service()` calls.
    pub fn protocol_mut<P: Protocol>(&mut self, protocol: ProtocolId) -> Option<&mut P> {
        self.protocols
            .get_mut(protocol.index())
            .and_then(|p| p.handler.as_any_mut().downcast_mut::<P>())
    }

    /// Number of sessions (bound connections) of a protocol.
    pub fn protocol_sessions(&self, protocol: ProtocolId) -> usize {
        self.protocols
            .get(protocol.index())
            .map_or(0, |p| p.handler.sessions())
    }

    /// The slab key of connection `id` if it is still open.
    pub(super) fn live(&self, id: ConnId) -> Option<usize> {
        self.conns
            .get(id.key as usize)
            .is_some_and(|c| c.gen == id.gen)
            .then_some(id.key as usize)
    }

    /// Asks for one WRITEABLE callback on connection `id`, from outside its callbacks
    /// (`libwebsocket_callback_on_writable` by id). False if `id` names no open connection
    /// (it closed, or its slot was reused).
    pub fn callback_on_writable(&mut self, id: ConnId) -> bool {
        match self.conns.get_mut(id.key as usize) {
            Some(c) if c.gen == id.gen => {
                self.shared.schedule_writable(id.key as usize, c);
                true
            }
            _ => false,
        }
    }

    /// Starts the closing handshake of connection `id` with `code` and `reason`, as
    /// [`Wsi::close`](crate::Wsi::close) (an HTTP connection is dropped). False for a
    /// stale id.
    pub fn close(&mut self, id: ConnId, code: u16, reason: &str) -> bool {
        let Some(k) = self.live(id) else {
            return false;
        };
        self.guarded(Some(k), |ctx| ctx.close_conn(k, code, reason));
        self.report_poll_changes();
        true
    }

    pub(crate) fn close_conn(&mut self, k: usize, code: u16, reason: &str) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if c.state == State::WebSocket {
            Wsi::new(c, &mut self.shared, k as u32).close(code, reason);
            self.flush(k);
        } else {
            self.remove(k);
        }
    }

    /// Pauses (`false`) or resumes (`true`) reading connection `id`
    /// (`libwebsocket_rx_flow_control` by id), as
    /// [`Wsi::rx_flow_control`](crate::Wsi::rx_flow_control). False for a stale id.
    pub fn rx_flow_control(&mut self, id: ConnId, enable: bool) -> bool {
        let Some(k) = self.live(id) else {
            return false;
        };
        Wsi::new(&mut self.conns[k], &mut self.shared, k as u32).rx_flow_control(enable);
        true
    }

    /// Calls connection `id`'s protocol with [`Reason::User`] `{ event, data }` now, e.g. a
    /// private message from the loop. False for a stale id.
    pub fn callback(&mut self, id: ConnId, event: u32, data: &[u8]) -> bool {
        let Some(k) = self.live(id) else {
            return false;
        };
        self.guarded(Some(k), |ctx| {
            ctx.call_and_close(k, Reason::User { event, data });
            ctx.flush(k);
        });
        true
    }

    /// The per-session data of connection `id`, if it is a `S` (the session type of the
    /// protocol the connection is bound to). `None` for a stale id or another type.
    ///
    /// ```
    /// # use wsreactor::{Close, Context, Protocol, Reason, Wsi};
    /// # #[derive(Default)] struct Chat;
    /// # #[derive(Default)] struct Member { nick: String }
    /// # impl Protocol for Chat { type Session = Member;
    /// #   fn callback(&mut self, _: &mut Wsi<'_>, _: &mut Member, _: Reason<'_>) -> Result<(), Close> { Ok(()) } }
    /// # fn rename(ctx: &mut Context, id: wsreactor::ConnId) {
    /// if let Some(m) = ctx.session::<Member>(id) {
    ///     m.nick = "moderator".into();
    /// }
    /// # }
    /// ```
    pub fn session<S: 'static>(&mut self, id: ConnId) -> Option<&mut S> {
        let k = self.live(id)?;
        let c = &self.conns[k];
        self.protocols[c.proto as usize]
            .handler
            .session_any(c.session)?
            .downcast_mut()
    }

    /// Subscribes connection `id` to `topic`, as [`Wsi::subscribe`]. False for a stale id,
    /// or if it already was.
    pub fn subscribe(&mut self, id: ConnId, topic: &str) -> bool {
        let Some(k) = self.live(id) else {
            return false;
        };
        self.shared.topics.subscribe(k, &mut self.conns[k], topic, None)
    }

    /// [`subscribe`](Self::subscribe) with the options for a topic it creates.
    pub fn subscribe_with(&mut self, id: ConnId, topic: &str, opts: crate::TopicOptions) -> bool {
        let Some(k) = self.live(id) else {
            return false;
        };
        self.shared
            .topics
            .subscribe(k, &mut self.conns[k], topic, Some(opts))
    }

    /// Unsubscribes connection `id` from `topic`. False for a stale id, or if it was not
    /// subscribed.
    pub fn unsubscribe(&mut self, id: ConnId, topic: &str) -> bool {
        let Some(k) = self.live(id) else {
            return false;
        };
        self.shared.topics.unsubscribe(k, &mut self.conns[k], topic)
    }

    /// Sends a whole message to every subscriber of `topic` from the loop (a line from
    /// stdin, a datagram), framed once and shared; sent by the next `service()`. Under
    /// [`SlowPolicy::PushBack`](crate::SlowPolicy::PushBack) the loop has no reading to
    /// pause: [`Published::full`](crate::Published::full) says subscribers are full, to
    /// wait before publishing more.
    pub fn publish(&mut self, topic: &str, data: &[u8], binary: bool) -> crate::Published {
        self.shared.topics.publish(topic, data, binary, None)
    }

    /// The number of subscribers of `topic` (uWebSockets' `numSubscribers`).
    pub fn num_subscribers(&self, topic: &str) -> usize {
        self.shared.topics.num_subscribers(topic)
    }

    /// What the context has done so far, and its connections by state now.
    ///
    /// ```
    /// # use wsreactor::{Context, Protocol, Reason, Wsi, Close};
    /// # #[derive(Default)] struct P;
    /// # impl Protocol for P { type Session = ();
    /// #   fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> { Ok(()) } }
    /// let ctx = Context::builder().port(0).protocol("p", P).build()?;
    /// let s = ctx.stats();
    /// assert_eq!((s.websocket, s.accepted, s.bytes_in), (0, 0, 0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stats(&self) -> crate::Stats {
        let mut s = self.shared.stats;
        s.topics = self.shared.topics.count();
        for (_, c) in self.conns.iter() {
            match c.state {
                State::Http => s.http += 1,
                State::Raw => s.raw += 1,
                State::WebSocket if c.has(flag::CLOSE_SENT) => s.closing += 1,
                State::WebSocket => s.websocket += 1,
                State::Draining => s.closing += 1,
                State::ClientConnecting | State::ClientProxy | State::ClientHandshake => s.connecting += 1,
                // The backplane's link has its own figures (`backplane_stats`).
                #[cfg(feature = "redis")]
                State::Backplane | State::BackplaneConnecting => {}
            }
        }
        s
    }
}
