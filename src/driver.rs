//! One connection's data path, as one straight line:
//!
//! readiness event → [`read_conn`](Context::read_conn): the transport reads into the
//! context-wide buffer → [`input`](Context::input) hands the bytes to the connection's role
//! (HTTP server or WebSocket, in [`roles`](crate::roles)) → the role's events become
//! callbacks → what callbacks write lands in the connection's out buffer →
//! [`flush`](Context::flush) hands it to the transport in one write when the read batch is
//! done.
//!
//! Also here: WRITEABLE delivery, the peer's EOF, and [`remove`](Context::remove), the one
//! way a connection ends.

use crate::connection::{flag, State};
use crate::context::Context;
use crate::dispatch::deliver_closed;
use crate::readiness::Ready;
use crate::reason::Reason;
use crate::roles::Stop;
use crate::timers::PendingTimeout;
use crate::tls::PlainHttp;
use crate::transport::{Sent, Sniffed};

/// Unsent bytes past which reading goes on only after a flush: a large transfer hands the
/// kernel what is queued rather than letting a whole read budget pile up.
const FLUSH_WHILE_READING: usize = 64 << 10;

impl Context {
    pub(crate) fn conn_event(&mut self, k: usize, ev: &Ready) {
        #[cfg(feature = "redis")]
        if self
            .conns
            .get(k)
            .is_some_and(|c| c.state == State::BackplaneConnecting)
        {
            self.backplane_connect_event(k);
            if self
                .conns
                .get(k)
                .is_none_or(|c| c.state == State::BackplaneConnecting)
            {
                return;
            }
        }
        if self
            .conns
            .get(k)
            .is_some_and(|c| c.state == State::ClientConnecting)
        {
            self.client_connect_event(k);
            if self
                .conns
                .get(k)
                .is_none_or(|c| c.state == State::ClientConnecting)
            {
                return;
            }
        }
        if ev.readable {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            c.set(flag::MAY_READ);
            if ev.read_closed {
                // Keep reading to the EOF even after a short read.
                self.shared.schedule_resume(k, c);
            }
            self.read_conn(k);
        }
        if ev.writable {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            if c.has(flag::WRITE_BLOCKED) {
                c.clear(flag::WRITE_BLOCKED);
                self.flush(k);
            }
            self.maybe_writeable(k);
        }
    }

    /// Delivers a pending WRITEABLE request if the socket has room.
    pub(crate) fn maybe_writeable(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if !c.has(flag::WANT_WRITABLE) || c.has(flag::WRITE_BLOCKED) {
            return;
        }
        if c.unsent() > 0 {
            self.flush(k);
            match self.conns.get(k) {
                Some(c) if c.unsent() == 0 => {}
                _ => return,
            }
        }
        let c = &mut self.conns[k];
        c.clear(flag::WANT_WRITABLE);
        let reason = match c.state {
            State::WebSocket if c.has(flag::CLOSE_SENT) => return,
            State::WebSocket if c.has(flag::CLIENT) => Reason::ClientWriteable,
            State::WebSocket => Reason::ServerWriteable,
            State::Http => Reason::HttpWriteable,
            State::Raw => Reason::RawWriteable,
            _ => return,
        };
        self.call_and_close(k, reason);
        self.flush(k);
    }

    /// Reads and processes input until the socket is drained, reading is paused, the out
    /// buffer is over its bound, or the connection's read budget for this cycle is spent;
    /// then flushes.
    pub(crate) fn read_conn(&mut self, k: usize) {
        let mut budget = self.cfg.read_budget;
        loop {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            if c.state != State::Draining {
                if c.has(flag::RX_PAUSED | flag::TOPIC_PAUSED) {
                    break;
                }
                if self.shared.out_full(c) {
                    break;
                }
            }
            if c.drained != 0 && u64::from(c.drained) > self.cfg.max_close_drain {
                // A closing peer that keeps sending: read no more of it; our last bytes go
                // out, then the FIN, and the close deadline ends the connection.
                break;
            }
            let need_read = c.stash.is_empty() || c.has(flag::STASH_INCOMPLETE);
            if need_read && !c.has(flag::MAY_READ) {
                break;
            }
            if c.transport.needs_sniff() {
                match c.transport.sniff() {
                    Ok(Sniffed::NotYet) => {
                        c.clear(flag::MAY_READ);
                        break;
                    }
                    Ok(Sniffed::Tls) => {}
                    Ok(Sniffed::Plain) => {
                        log::debug!("{}: plain bytes on the TLS port", c.peer());
                        if self.cfg.plain_http != PlainHttp::Serve {
                            c.set(flag::PLAIN_ON_TLS);
                        }
                    }
                    Err(e) => {
                        log::debug!("{}: read: {e}", c.peer());
                        self.remove(k);
                        return;
                    }
                }
            }
            let mut buf = std::mem::take(&mut self.rxbuf);
            let s = c.stash.len();
            if s > 0 {
                buf[..s].copy_from_slice(&c.stash);
                let old = std::mem::take(&mut c.stash);
                self.shared.bufs.give(old);
            }
            let mut len = s;
            let mut eof = false;
            if need_read {
                match c.transport.read(&mut buf[s..], &mut self.tls_rx) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        len += n;
                        self.shared.timers.on_input(c, k);
                        self.shared.stats.bytes_in += n as u64;
                        // A short read drained the socket (epoll will report new data with
                        // a new edge): skip the read that would only say WouldBlock.
                        if s + n < buf.len() && !c.has(flag::IN_RESUME) {
                            c.clear(flag::MAY_READ);
                        }
                        if c.has(flag::CLOSE_SENT) || c.state == State::Draining {
                            c.drained = c.drained.saturating_add(n as u32);
                            if u64::from(c.drained) > self.cfg.max_close_drain {
                                // Not a reset: that would destroy our close frame (or
                                // response) still queued in the kernel.
                                log::debug!("{}: still sending after our close: not read any more", c.peer());
                                c.set(flag::SHUTDOWN_AFTER_FLUSH);
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => c.clear(flag::MAY_READ),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::debug!("{}: read: {e}", c.peer());
                        self.rxbuf = buf;
                        self.client_note(k, &format!("read: {e}"));
                        self.remove(k);
                        return;
                    }
                }
            }
            if c.transport.handshake_done() && !self.tls_established(k) {
                self.rxbuf = buf;
                return;
            }
            let mut stop = Stop::Done;
            if len > s || (s > 0 && !need_read) {
                stop = self.input(k, &mut buf[..len]);
            } else if s > 0 {
                // Nothing new and the stash is incomplete: put it back.
                let c = &mut self.conns[k];
                let mut st = self.shared.bufs.take();
                st.extend_from_slice(&buf[..s]);
                c.stash = st;
            }
            self.rxbuf = buf;
            if eof {
                self.peer_eof(k);
                return;
            }
            if self
                .conns
                .get(k)
                .is_some_and(|c| c.unsent() >= FLUSH_WHILE_READING)
            {
                self.flush(k);
            }
            if stop == Stop::Paused {
                // Input is held (flow control, or a pipelined request waiting for the
                // current response): it is resumed explicitly.
                break;
            }
            budget = budget.saturating_sub(len.max(1));
            if budget == 0 {
                if let Some(c) = self.conns.get_mut(k) {
                    if c.has(flag::MAY_READ) {
                        self.shared.schedule_resume(k, c);
                    }
                }
                break;
            }
        }
        if self.conns.contains(k) {
            self.flush(k);
        }
    }

    fn peer_eof(&mut self, k: usize) {
        if let Some(c) = self.conns.get(k) {
            log::debug!("{}: EOF", c.peer());
            self.client_note(
                k,
                if c.state == State::ClientProxy {
                    "the proxy closed the connection before answering CONNECT"
                } else {
                    "the server closed the connection during the handshake"
                },
            );
            // A half-closed peer can still receive: send what is queued (a close reply, an
            // error, a response) before closing.
            self.flush(k);
            self.remove(k);
        }
    }

    /// Hands `buf` to the connection's role, again after each switch (an upgrade carries
    /// on with the rest as WebSocket input); stashes what the role did not consume.
    fn input(&mut self, k: usize, buf: &mut [u8]) -> Stop {
        let mut pos = 0;
        let stop = loop {
            let Some(c) = self.conns.get(k) else {
                return Stop::Done;
            };
            let (n, stop) = match c.state {
                State::Http => self.http_input(k, &mut buf[pos..]),
                State::WebSocket => self.ws_input(k, &mut buf[pos..]),
                State::ClientHandshake => self.client_input(k, &mut buf[pos..]),
                State::ClientProxy => self.client_proxy_input(k, &mut buf[pos..]),
                State::ClientConnecting => (buf.len() - pos, Stop::Done),
                State::Draining => (buf.len() - pos, Stop::Done),
                State::Raw => self.raw_input(k, &buf[pos..]),
                #[cfg(feature = "redis")]
                State::Backplane => self.backplane_input(k, &buf[pos..]),
                #[cfg(feature = "redis")]
                State::BackplaneConnecting => (buf.len() - pos, Stop::Done),
            };
            pos += n;
            if stop != Stop::Switched {
                break stop;
            }
        };
        let Some(c) = self.conns.get_mut(k) else {
            return Stop::Done;
        };
        match stop {
            Stop::NeedMore | Stop::Paused if pos < buf.len() => {
                let mut st = self.shared.bufs.take();
                st.extend_from_slice(&buf[pos..]);
                c.stash = st;
                if stop == Stop::NeedMore {
                    c.set(flag::STASH_INCOMPLETE);
                } else {
                    c.clear(flag::STASH_INCOMPLETE);
                }
            }
            _ => c.clear(flag::STASH_INCOMPLETE),
        }
        stop
    }

    /// Writes the out buffer to the transport, as far as the kernel takes it, refilling it
    /// from a file response as it drains; then does what the state asks for once output is
    /// done (shutdown, close timeout, the next HTTP request, resuming a read stopped by
    /// `OUT_FULL`).
    pub(crate) fn flush(&mut self, k: usize) {
        let mut moved = false;
        loop {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            let last = c.closes_when_flushed();
            // `last` with nothing queued still writes: TLS sends its close_notify then (the
            // peer's close reply to our close frame leaves nothing else to send).
            if (c.unsent() > 0 || c.transport.wants_write() || last) && !c.has(flag::WRITE_BLOCKED) {
                let before = c.out_pos;
                let res = c.transport.write_out(&c.out, &mut c.out_pos, last);
                moved |= c.out_pos != before;
                self.shared.stats.bytes_out += u64::from(c.out_pos.saturating_sub(before));
                match res {
                    Ok(Sent::All) => {}
                    Ok(Sent::Blocked) => c.set(flag::WRITE_BLOCKED),
                    Err(e) => {
                        log::debug!("{}: write: {e}", c.peer());
                        self.client_note(k, &format!("write: {e}"));
                        self.remove(k);
                        return;
                    }
                }
            }
            if c.unsent() > 0 || c.has(flag::WRITE_BLOCKED) || c.transport.wants_write() {
                break;
            }
            // A file response streams one chunk per drained buffer, so a large file never
            // sits in memory and a slow client only holds one chunk.
            if !self.next_file_chunk(k) && !self.next_topic_frames(k) {
                break;
            }
        }
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if c.unsent() == 0 && c.out.capacity() > 0 {
            c.out_pos = 0;
            let b = std::mem::take(&mut c.out);
            self.shared.bufs.give(b);
        } else if c.out_pos as usize > c.out.len() / 2 && c.out_pos > 0 {
            // Keep the live part at the front so the buffer does not creep.
            let pos = c.out_pos as usize;
            c.out.drain(..pos);
            c.out_pos = 0;
        }
        if c.has(flag::OUT_FULL) && c.unsent() <= self.shared.max_unsent / 2 {
            c.clear(flag::OUT_FULL);
            self.shared.schedule_resume(k, c);
        }
        // For TLS, records rustls still holds count as unsent: the connection is not done
        // with its output (a shutdown, a close) before they are out.
        let done = c.unsent() == 0 && !c.has(flag::WRITE_BLOCKED) && !c.transport.wants_write();
        self.send_stall(k, done, moved);
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if done && c.closes_when_flushed() {
            self.notify_closed(k);
            self.remove(k);
            return;
        }
        if done && c.has(flag::SHUTDOWN_AFTER_FLUSH) && c.state != State::Draining {
            c.clear(flag::SHUTDOWN_AFTER_FLUSH);
            c.transport.shutdown_write();
            c.state = State::Draining;
            let upgraded = c.has(flag::UPGRADED);
            let close = self.shared.timers.live.close;
            self.shared
                .timers
                .arm(c, k, close, PendingTimeout::ShutdownFlush as u8);
            if upgraded {
                self.notify_closed(k);
            }
            // The peer may already have closed: look for its EOF now.
            if let Some(c) = self.conns.get_mut(k) {
                self.shared.schedule_resume(k, c);
            }
        } else if c.state == State::WebSocket
            && c.has(flag::CLOSE_SENT)
            && c.timeout_reason() != PendingTimeout::CloseAck as u8
        {
            let close = self.shared.timers.live.close;
            self.shared
                .timers
                .arm(c, k, close, PendingTimeout::CloseAck as u8);
        } else if done && c.state == State::Http {
            self.http_flushed(k);
        }
    }

    /// The send-stall timer: while output waits on a peer that takes none of it, the
    /// connection's deadline is the send timeout (taking over from the idle timers, not
    /// from a request, close or user deadline); progress moves it on, and once the output
    /// is out the connection's own timer is back.
    fn send_stall(&mut self, k: usize, done: bool, moved: bool) {
        const STALL: u8 = PendingTimeout::SendStall as u8;
        const IDLE: u8 = PendingTimeout::WsIdle as u8;
        const PING: u8 = PendingTimeout::AwaitingPing as u8;
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        let timers = &mut self.shared.timers;
        if done {
            if c.timeout_reason() == STALL {
                timers.rest(c, k);
            }
        } else if c.has(flag::WRITE_BLOCKED) {
            match c.timeout_reason() {
                0 | IDLE | PING => timers.arm(c, k, timers.live.send, STALL),
                STALL if moved => timers.arm(c, k, timers.live.send, STALL),
                _ => {}
            }
        }
    }

    /// Closes and frees a connection, with its last callbacks.
    pub(crate) fn remove(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        #[cfg(feature = "redis")]
        if matches!(c.state, State::Backplane | State::BackplaneConnecting) {
            self.backplane_removed(k);
            return;
        }
        // Writes from these last callbacks have nowhere to go.
        c.state = State::Draining;
        let handler = &mut *self.protocols[c.proto as usize].handler;
        if c.has(flag::CLIENT) && !c.has(flag::UPGRADED) && !c.has(flag::CLOSED_NOTIFIED) {
            // An outgoing connection that never opened: its error, and no CLOSED.
            c.set(flag::CLOSED_NOTIFIED);
            let why = c
                .client_mut()
                .and_then(|cs| cs.error.take())
                .unwrap_or_else(|| "the connection closed before the handshake completed".into());
            let session = c.session;
            let reason = Reason::ClientConnectionError { reason: &why };
            let _ = handler.call(
                &mut crate::wsi::Wsi::new(c, &mut self.shared, k as u32),
                session,
                reason,
            );
        }
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if c.has(flag::UPGRADED) && !c.has(flag::CLOSE_SENT | flag::CLOSE_RECEIVED) {
            self.shared.stats.dropped += 1;
        }
        let handler = &mut *self.protocols[c.proto as usize].handler;
        deliver_closed(handler, c, &mut self.shared, k, None, b"");
        let _ = self.call(k, Reason::WsiDestroy);
        let mut c = self.conns.remove(k);
        if let Some(ce) = c.ext.take() {
            self.shared.ext.destroy(&ce);
        }
        if c.has(flag::SUBSCRIBED) {
            self.shared.topics.drop_conn(k);
        }
        self.readiness.remove_conn(&c);
        self.shared.timers.forget(&c);
        log::debug!("{}: closed", c.peer());
        self.protocols[c.proto as usize].handler.drop_session(c.session);
        self.shared.bufs.give(c.out);
        self.shared.bufs.give(c.stash);
    }
}

impl Context {
    /// The TLS handshake just finished: with client certificates asked for, the first
    /// protocol sees a presented chain and may refuse it. False if the connection was
    /// refused (and removed).
    fn tls_established(&mut self, k: usize) -> bool {
        let Some(c) = self.conns.get_mut(k) else {
            return false;
        };
        log::debug!(
            "{}: TLS established (SNI {:?})",
            c.peer(),
            c.transport.server_name()
        );
        let Some(chain) = c.transport.peer_certificates().map(<[_]>::to_vec) else {
            return true;
        };
        if self
            .call(k, Reason::PerformClientCertVerification { chain: &chain })
            .is_err()
        {
            log::debug!("client certificate refused by the protocol");
            self.remove(k);
            return false;
        }
        true
    }
}
