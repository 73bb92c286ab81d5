//! Connection deadlines: handshake, close-handshake and drain timeouts.
//!
//! A binary heap with lazy deletion: a connection stores its one current deadline, and a
//! heap entry only fires if the connection still exists (same generation) and still has
//! that deadline. Rescheduling is a push; cancelling is clearing the field.
//!
//! Deadlines are [`Tick`]s, milliseconds since the context started, so a connection spends 8
//! bytes on its deadline rather than the 16 of an `Option<Instant>` (100,000 idle
//! connections are 100,000 of them).

use crate::connection::flag;
use crate::context::Context;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// A point in time: 1 + whole milliseconds since the timers' epoch (never 0, so that
/// `Option<Tick>` costs nothing more).
pub(crate) type Tick = NonZeroU64;

pub(crate) struct Timers {
    epoch: Instant,
    heap: BinaryHeap<Reverse<(Tick, usize, u32)>>,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            epoch: Instant::now(),
            heap: BinaryHeap::new(),
        }
    }
}

impl Timers {
    /// The tick of `at`: at most a millisecond early, never late.
    pub(crate) fn tick(&self, at: Instant) -> Tick {
        let ms = at.saturating_duration_since(self.epoch).as_millis();
        NonZeroU64::new(u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1).expect("non-zero")
    }

    pub(crate) fn push(&mut self, at: Tick, key: usize, gen: u32) {
        self.heap.push(Reverse((at, key, gen)));
    }

    /// The earliest deadline, to bound the poll timeout.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| self.epoch + Duration::from_millis(at.get() - 1))
    }

    /// Pops the next entry due at `now`.
    pub(crate) fn pop_due(&mut self, now: Tick) -> Option<(Tick, usize, u32)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}

impl Context {
    /// Sets the connection's one deadline. The heap gets a new entry only when none is
    /// pending or the new deadline is earlier; a pending entry that fires early is re-armed
    /// for the current deadline. So a busy keep-alive connection, which moves its deadline
    /// on every request, does not fill the heap with stale entries.
    pub(crate) fn set_deadline(&mut self, k: usize, after: Duration) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        let at = self.timers.tick(Instant::now() + after);
        let earlier = c.deadline.is_none_or(|d| at < d);
        c.deadline = Some(at);
        if !c.has(flag::TIMER_ARMED) || earlier {
            c.set(flag::TIMER_ARMED);
            self.timers.push(at, k, c.gen);
        }
    }

    /// Drops every connection whose deadline has passed.
    pub(crate) fn expire(&mut self, now: Instant) {
        let now = self.timers.tick(now);
        while let Some((_, k, gen)) = self.timers.pop_due(now) {
            let Some(c) = self.conns.get_mut(k) else {
                continue;
            };
            if c.gen != gen {
                continue;
            }
            match c.deadline {
                None => c.clear(flag::TIMER_ARMED),
                Some(d) if d > now => self.timers.push(d, k, gen),
                Some(_) => {
                    c.deadline = None;
                    c.clear(flag::TIMER_ARMED);
                    log::debug!("{}: timed out in {:?}", c.peer(), c.state);
                    let what = match c.state {
                        crate::connection::State::ClientConnecting => "timed out connecting",
                        crate::connection::State::ClientProxy => {
                            "timed out waiting for the proxy's answer to CONNECT"
                        }
                        _ => "timed out waiting for the handshake response",
                    };
                    self.client_note(k, what);
                    self.remove(k);
                }
            }
        }
    }
}
