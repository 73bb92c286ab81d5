//! The readiness source: which descriptors the context waits on, and what they are ready
//! for.
//!
//! Every registration and interest change of the context passes through [`Readiness`], so
//! that a mode where the user's own poll loop does the waiting can replace "register with
//! epoll" by "tell the user which fd wants which events" in this one place. Today it is a
//! mio `Poll` (epoll on Linux), edge-triggered: a connection is registered once for reading
//! and writing and never re-registered; the connection's flags remember what the edges
//! said (`MAY_READ`, `WRITE_BLOCKED`).

use mio::event::Source as MioSource;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 64;

/// Largest connection key: the tokens above it name listeners and the waker.
pub(crate) const MAX_CONN_KEY: usize = LISTENER_BASE - 1;

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

pub(crate) struct Readiness {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    /// Set by a `CancelHandle` before it wakes the loop (other wakes are internal).
    cancel: Arc<AtomicBool>,
}

impl Readiness {
    pub(crate) fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Readiness {
            poll,
            events: Events::with_capacity(1024),
            waker,
            cancel: Arc::new(AtomicBool::new(false)),
        })
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

    pub(crate) fn add_listener(&self, l: &mut impl MioSource, index: usize) -> io::Result<()> {
        self.poll
            .registry()
            .register(l, Token(LISTENER_BASE + index), Interest::READABLE)
    }

    /// Registers a new connection for both directions, once for its whole life.
    pub(crate) fn add_conn(&self, s: &mut impl MioSource, key: usize) -> io::Result<()> {
        self.poll
            .registry()
            .register(s, Token(key), Interest::READABLE | Interest::WRITABLE)
    }

    /// Forgets a connection that is about to be closed. Nothing to do with epoll: closing
    /// the socket (its only descriptor; it is never duplicated) takes it out of the set,
    /// which saves an `epoll_ctl` per connection. A user-driven poll loop, which must drop
    /// the fd from its own array, is told here.
    pub(crate) fn remove_conn(&self, _key: usize) {}

    /// Waits up to `timeout` and appends the events to `out`. An interrupted wait returns
    /// no events and no error.
    pub(crate) fn wait(&mut self, timeout: Duration, out: &mut Vec<Ready>) -> io::Result<()> {
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
