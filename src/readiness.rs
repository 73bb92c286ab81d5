//! The readiness source: which descriptors the context waits on, and what they are ready
//! for.
//!
//! Every registration and interest change of the context passes through [`Readiness`], in
//! one of two modes:
//!
//! - **mio** (the default): a mio `Poll` (epoll on Linux) that [`Context::service`] waits
//!   on, edge-triggered. A connection is registered once for reading and writing and never
//!   re-registered; the connection's flags remember what the edges said (`MAY_READ`,
//!   `WRITE_BLOCKED`), so this mode has no interest changes at all.
//! - **external** ([`ContextBuilder::external_poll`]): the user's own poll loop waits. Each
//!   descriptor the context needs is reported to the first protocol as it comes and goes
//!   (`ADD_POLL_FD`, `DEL_POLL_FD`), and the user calls [`Context::service_fd`] for each
//!   one that is ready. A user's `poll()` is level-triggered, so here interest does change:
//!   `POLLOUT` only while output is blocked (or a connect is in progress), `POLLIN` off
//!   while input is held (rx flow control, a full out buffer, a pipelined request waiting),
//!   each change reported as `CHANGE_MODE_POLL_FD`. The flags the edge-triggered mode keeps
//!   work unchanged under a level-triggered poll: a level is an edge that repeats.
//!
//! The reports are queued here and delivered by the context at the end of the public call
//! that made them (`Context::report_poll_changes`), in order, so a descriptor number
//! closed and reused within one call is seen as a `DEL` then an `ADD`.
//!
//! [`Context::service`]: crate::Context::service
//! [`Context::service_fd`]: crate::Context::service_fd
//! [`ContextBuilder::external_poll`]: crate::ContextBuilder::external_poll

use crate::connection::{flag, Conn, State};
use crate::reason::PollArgs;
use mio::event::Source as MioSource;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 64;

/// Largest connection key: the tokens above it name listeners and the waker.
pub(crate) const MAX_CONN_KEY: usize = LISTENER_BASE - 1;

/// `poll(2)`'s readable bit.
pub(crate) const POLLIN: i16 = libc::POLLIN;
/// `poll(2)`'s writable bit.
pub(crate) const POLLOUT: i16 = libc::POLLOUT;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// [`CancelHandle::cancel`](crate::CancelHandle) woke the loop.
    Waker,
    /// A listener (by index) has connections to accept.
    Listener(usize),
    /// A connection (by slab key).
    Conn(usize),
}

/// One readiness event, in the terms the connection driver needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready {
    pub(crate) source: Source,
    /// Readable, or an error or hang-up (found out by reading).
    pub(crate) readable: bool,
    /// The peer shut its write side: read on to the EOF even after a short read.
    pub(crate) read_closed: bool,
    /// Writable, or an error (found out by writing).
    pub(crate) writable: bool,
}

/// A change of the external poll set, for the first protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollChange {
    Add(PollArgs),
    Del(PollArgs),
    Change(PollArgs),
}

pub(crate) struct Readiness {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    /// Set by a `CancelHandle` before it wakes the loop (other wakes are internal).
    cancel: Arc<AtomicBool>,
    mode: Mode,
}

enum Mode {
    Mio,
    External(Box<External>),
}

/// The external loop's view: what each descriptor is and which events it was last told.
struct External {
    /// Indexed by descriptor number (they are small and dense, as lws' `fd_lookup`).
    fds: Vec<Option<(Source, i16)>>,
    changes: Vec<PollChange>,
}

impl External {
    fn add(&mut self, fd: RawFd, source: Source, events: i16) {
        let Ok(i) = usize::try_from(fd) else {
            return;
        };
        if self.fds.len() <= i {
            self.fds.resize(i + 1, None);
        }
        if let Some((_, prev)) = self.fds[i].take() {
            // The number was closed and handed out again within one call: the old one goes.
            self.changes.push(PollChange::Del(PollArgs {
                fd,
                events: 0,
                prev_events: prev,
            }));
        }
        self.fds[i] = Some((source, events));
        self.changes.push(PollChange::Add(PollArgs {
            fd,
            events,
            prev_events: 0,
        }));
    }

    fn remove(&mut self, fd: RawFd) {
        let Some(slot) = usize::try_from(fd).ok().and_then(|i| self.fds.get_mut(i)) else {
            return;
        };
        if let Some((_, prev)) = slot.take() {
            self.changes.push(PollChange::Del(PollArgs {
                fd,
                events: 0,
                prev_events: prev,
            }));
        }
    }

    fn set(&mut self, fd: RawFd, source: Source, events: i16) {
        let Some(Some((s, ev))) = usize::try_from(fd).ok().and_then(|i| self.fds.get_mut(i)) else {
            return;
        };
        if *s == source && *ev != events {
            self.changes.push(PollChange::Change(PollArgs {
                fd,
                events,
                prev_events: *ev,
            }));
            *ev = events;
        }
    }
}

/// The events a connection's socket should be polled for, level-triggered.
fn wanted(c: &Conn) -> i16 {
    if c.state == State::ClientConnecting {
        return POLLOUT;
    }
    #[cfg(feature = "redis")]
    if c.state == State::BackplaneConnecting {
        return POLLOUT;
    }
    let held = (c.state != State::Draining && c.has(flag::RX_PAUSED | flag::TOPIC_PAUSED | flag::OUT_FULL))
        || (!c.stash.is_empty() && !c.has(flag::STASH_INCOMPLETE));
    let mut ev = if held { 0 } else { POLLIN };
    if c.has(flag::WRITE_BLOCKED) {
        ev |= POLLOUT;
    }
    ev
}

impl Readiness {
    pub(crate) fn new(external: bool) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mode = if external {
            let mut x = External {
                fds: Vec::new(),
                changes: Vec::new(),
            };
            // The waker lives in our epoll set, alone: the set's descriptor is readable
            // while a wake is pending, and reading it (`wait`) clears it.
            x.add(poll.as_raw_fd(), Source::Waker, POLLIN);
            Mode::External(Box::new(x))
        } else {
            Mode::Mio
        };
        Ok(Readiness {
            poll,
            events: Events::with_capacity(1024),
            waker,
            cancel: Arc::new(AtomicBool::new(false)),
            mode,
        })
    }

    /// Whether the user's loop does the waiting.
    #[inline]
    pub(crate) fn is_external(&self) -> bool {
        matches!(self.mode, Mode::External(_))
    }

    /// The waker, for [`CancelHandle`](crate::CancelHandle)s.
    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Whether a wake-up was a `CancelHandle::cancel` (and clears it).
    pub(crate) fn take_cancel(&self) -> bool {
        self.cancel.swap(false, Ordering::AcqRel)
    }

    /// The epoll descriptor (readable when `service` has something to do).
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.poll.registry().as_fd()
    }

    pub(crate) fn add_listener(
        &mut self,
        l: &mut (impl MioSource + AsRawFd),
        index: usize,
    ) -> io::Result<()> {
        match &mut self.mode {
            Mode::Mio => self
                .poll
                .registry()
                .register(l, Token(LISTENER_BASE + index), Interest::READABLE),
            Mode::External(x) => {
                x.add(l.as_raw_fd(), Source::Listener(index), POLLIN);
                Ok(())
            }
        }
    }

    /// Registers a new connection for both directions, once for its whole life.
    pub(crate) fn add_conn(&mut self, s: &mut (impl MioSource + AsRawFd), key: usize) -> io::Result<()> {
        self.add(s, key, POLLIN)
    }

    /// Registers a socket whose connect is in progress (an outgoing connection's attempt):
    /// the same as [`add_conn`](Self::add_conn) for mio, `POLLOUT` for an external loop.
    pub(crate) fn add_connecting(
        &mut self,
        s: &mut (impl MioSource + AsRawFd),
        key: usize,
    ) -> io::Result<()> {
        self.add(s, key, POLLOUT)
    }

    fn add(&mut self, s: &mut (impl MioSource + AsRawFd), key: usize, events: i16) -> io::Result<()> {
        match &mut self.mode {
            Mode::Mio => {
                self.poll
                    .registry()
                    .register(s, Token(key), Interest::READABLE | Interest::WRITABLE)
            }
            Mode::External(x) => {
                x.add(s.as_raw_fd(), Source::Conn(key), events);
                Ok(())
            }
        }
    }

    /// A registered socket is about to be closed on its own (an outgoing connection's
    /// losing attempt). Nothing to do with epoll: closing takes it out of the set.
    #[inline]
    pub(crate) fn remove_fd(&mut self, fd: RawFd) {
        if let Mode::External(x) = &mut self.mode {
            x.remove(fd);
        }
    }

    /// Forgets a connection that is about to be closed, with every socket it holds. Nothing
    /// to do with epoll: closing the socket (its only descriptor; it is never duplicated)
    /// takes it out of the set, which saves an `epoll_ctl` per connection. A user-driven
    /// poll loop, which must drop the fd from its own array, is told here.
    #[inline]
    pub(crate) fn remove_conn(&mut self, c: &Conn) {
        if let Mode::External(x) = &mut self.mode {
            x.remove(c.transport.fd());
            for fd in crate::roles::client::racing_fds(c) {
                x.remove(fd);
            }
        }
    }

    /// Tells an external loop what connection `key` now waits for, if that changed. A no-op
    /// for mio, whose edge-triggered registration never changes.
    #[inline]
    pub(crate) fn sync(&mut self, key: usize, c: &mut Conn) {
        if let Mode::External(x) = &mut self.mode {
            let want = wanted(c);
            if want & POLLIN == 0 && c.state != State::ClientConnecting {
                // Not polled for input from now on, so no event will say input arrived:
                // assume it may have, and read when the input is taken again (a resume
                // that finds nothing costs one read).
                c.set(flag::MAY_READ);
            }
            x.set(c.transport.fd(), Source::Conn(key), want);
        }
    }

    /// Tells an external loop whether listener `index` (descriptor `fd`) is polled: not
    /// while accepting is starved of descriptors (EMFILE: its level would be reported at
    /// once, forever; the context retries on a timer instead).
    pub(crate) fn sync_listener(&mut self, fd: RawFd, index: usize, starved: bool) {
        if let Mode::External(x) = &mut self.mode {
            x.set(fd, Source::Listener(index), if starved { 0 } else { POLLIN });
        }
    }

    /// Forgets every descriptor left (the listeners and the waker of a context being
    /// dropped).
    pub(crate) fn remove_all(&mut self) {
        if let Mode::External(x) = &mut self.mode {
            for fd in 0..x.fds.len() {
                x.remove(fd as RawFd);
            }
        }
    }

    /// What an external loop's descriptor is to this context: `None` for a foreign one.
    pub(crate) fn lookup(&self, fd: RawFd) -> Option<(Source, i16)> {
        match &self.mode {
            Mode::Mio => None,
            Mode::External(x) => usize::try_from(fd)
                .ok()
                .and_then(|i| x.fds.get(i).copied().flatten()),
        }
    }

    /// The changes of the external poll set since the last call.
    pub(crate) fn take_changes(&mut self, into: &mut Vec<PollChange>) {
        if let Mode::External(x) = &mut self.mode {
            into.append(&mut x.changes);
        }
    }

    /// Waits up to `timeout` (no time at all in external mode, where only the waker is in
    /// the set) and appends the events to `out`. An interrupted wait returns no events and
    /// no error.
    pub(crate) fn wait(&mut self, timeout: Duration, out: &mut Vec<Ready>) -> io::Result<()> {
        let timeout = if self.is_external() {
            Duration::ZERO
        } else {
            timeout
        };
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            let source = match ev.token() {
                WAKER => Source::Waker,
                Token(t) if t >= LISTENER_BASE => Source::Listener(t - LISTENER_BASE),
                Token(k) => Source::Conn(k),
            };
            out.push(Ready {
                source,
                readable: ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                read_closed: ev.is_read_closed(),
                writable: ev.is_writable() || ev.is_error(),
            });
        }
        Ok(())
    }
}
