//! How a context ends: a graceful [`shutdown`](Context::shutdown) (listeners closed, 1001
//! to every WebSocket, responses in flight finished, a deadline for the rest), and `Drop`.

use super::Context;
use crate::connection::{flag, State};
use crate::proto::{close::code, encoder};
use crate::reason::ProtocolEvent;
use std::io;
use std::time::Duration;

impl Context {
    /// Starts a graceful shutdown: the listeners close (new clients are refused by the
    /// kernel), every open WebSocket is sent a 1001 (going away) close frame, HTTP
    /// responses in flight are finished (then those connections close, kept alive or
    /// not), idle HTTP connections close at once; what is still open when `grace` has
    /// passed is closed then. Keep calling [`service`](Self::service) until
    /// [`is_shut_down`](Self::is_shut_down), or call
    /// [`graceful_shutdown`](Self::graceful_shutdown), which does.
    pub fn shutdown(&mut self, grace: Duration) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        log::info!("shutting down: {} connections open", self.conns.len());
        for l in self.listeners.drain(..) {
            self.readiness.remove_fd(std::os::fd::AsRawFd::as_raw_fd(&l.sock));
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.guarded(Some(k), |ctx| ctx.shutdown_conn(k));
        }
        self.schedule_job(grace, crate::timers::Job::ShutdownDeadline);
        self.report_poll_changes();
    }

    fn shutdown_conn(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        match c.state {
            State::WebSocket => {
                crate::wsi::Wsi::new(c, &mut self.shared, k as u32).close(code::GOING_AWAY, "");
                self.flush(k);
            }
            State::Http => {
                let idle = c
                    .http
                    .as_ref()
                    .is_none_or(|h| h.request.is_none() && h.head.is_empty())
                    && !c.has(flag::HTTP_RESPONDED)
                    && c.unsent() == 0
                    && c.stash.is_empty();
                if idle {
                    self.remove(k);
                } else if c.has(flag::HTTP_RESPONDED) {
                    // The response is queued: it goes out, then the connection closes.
                    c.set(flag::SHUTDOWN_AFTER_FLUSH);
                    self.flush(k);
                } else {
                    // A request is arriving: its response will say `Connection: close`.
                    c.clear(flag::KEEP_ALIVE);
                }
            }
            State::Draining => {}
            _ => {
                self.client_note(k, "the context is shutting down");
                self.remove(k);
            }
        }
    }

    /// The graceful shutdown's deadline passed.
    pub(crate) fn shutdown_deadline(&mut self) {
        if !self.conns.is_empty() {
            log::info!("shutdown: closing the {} connections left", self.conns.len());
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.guarded(Some(k), |ctx| ctx.remove(k));
        }
    }

    /// Whether a [`shutdown`](Self::shutdown) has finished: every connection is closed.
    pub fn is_shut_down(&self) -> bool {
        self.shutting_down && self.conns.is_empty()
    }

    /// [`shutdown`](Self::shutdown), then services the loop until every connection is
    /// closed (at most `grace`, and a close handshake's own timeout beyond). What the
    /// examples do on SIGINT and SIGTERM:
    ///
    /// With [`external_poll`](crate::ContextBuilder::external_poll) there is no loop of
    /// the context's own to wait in: this is an error (`InvalidInput`) and does nothing;
    /// call [`shutdown`](Self::shutdown) and keep the program's loop going until
    /// [`is_shut_down`](Self::is_shut_down).
    ///
    /// ```no_run
    /// # use wsreactor::{Context, Protocol, Reason, Wsi, Close};
    /// # use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
    /// # use std::time::Duration;
    /// # #[derive(Default)] struct P;
    /// # impl Protocol for P { type Session = ();
    /// #   fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> { Ok(()) } }
    /// let mut ctx = Context::builder().port(7681).protocol("p", P).build()?;
    /// let stop = Arc::new(AtomicBool::new(false));
    /// let (flag, wake) = (stop.clone(), ctx.cancel_handle());
    /// // With the ctrlc crate: ctrlc::set_handler(move || { flag.store(true, ..); wake.cancel(); })
    /// while !stop.load(Ordering::SeqCst) {
    ///     ctx.service(Duration::from_secs(1))?;
    /// }
    /// ctx.graceful_shutdown(Duration::from_secs(5))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn graceful_shutdown(&mut self, grace: Duration) -> io::Result<()> {
        if self.readiness.is_external() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "graceful_shutdown: an external_poll context has no loop of its own to wait in; \
                 call shutdown() and run your loop until is_shut_down()",
            ));
        }
        self.shutdown(grace);
        while !self.is_shut_down() {
            self.service(grace)?;
        }
        Ok(())
    }
}

impl Drop for Context {
    /// Closes every connection and sends `PROTOCOL_DESTROY`
    /// (`libwebsocket_context_destroy`). Each open WebSocket that has not sent its close
    /// frame yet gets one with code **1001** (going away) and no reason, written straight to
    /// the socket without waiting for the peer's answer (if the kernel's buffer is full, it
    /// is lost and the peer sees the TCP connection end instead); then every connection's
    /// `CLOSED` (or `CLOSED_HTTP`) and `WSI_DESTROY` callbacks run and its socket closes.
    fn drop(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            if let Some(c) = self.conns.get_mut(k) {
                if c.state == State::WebSocket && !c.has(flag::CLOSE_SENT) {
                    let mut bye = Vec::with_capacity(8);
                    let mask = self.shared.mask_for(c);
                    encoder::encode_close(&mut bye, Some(code::GOING_AWAY), "", mask);
                    c.transport.write_now(&bye);
                }
            }
            self.remove(k);
        }
        self.readiness.remove_all();
        self.report_poll_changes();
        self.protocol_event_all(ProtocolEvent::Destroy);
    }
}
