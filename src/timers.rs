//! Connection deadlines: handshake, close-handshake and drain timeouts.
//!
//! A binary heap with lazy deletion: a connection stores its one current deadline, and a
//! heap entry only fires if the connection still exists (same generation) and still has
//! that deadline. Rescheduling is a push; cancelling is clearing the field.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u32)>>,
}

impl Timers {
    pub(crate) fn push(&mut self, at: Instant, key: usize, gen: u32) {
        self.heap.push(Reverse((at, key, gen)));
    }

    /// The earliest deadline, to bound the poll timeout.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops the next entry due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize, u32)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}
