//! Context state that callbacks may touch through a [`Wsi`](crate::Wsi) or a
//! [`ProtocolContext`](crate::ProtocolContext): the queues of work the loop runs after the
//! callback returns, and the pool of out buffers.
//!
//! Every "schedule this connection" goes through one method here, so a connection is queued
//! at most once per list (its `IN_RESUME` / `WANT_WRITABLE` flag says it already is).

use crate::connection::{flag, Conn};
use crate::http::DateCache;
use crate::reason::{ConnId, ProtocolId};

/// A request a callback makes of the whole context, carried out after it returns: for all
/// connections of a protocol, or for one connection by id.
#[derive(Debug)]
pub(crate) enum CtxRequest {
    Writable(ProtocolId),
    RxFlowAllow(ProtocolId),
    /// A user event (number, bytes) to every connection of the protocol.
    Callback(ProtocolId, u32, Box<[u8]>),
    Conn(ConnId, ConnOp),
}

/// What a [`CtxRequest::Conn`] asks of one connection.
#[derive(Debug)]
pub(crate) enum ConnOp {
    Writable,
    Close(u16, Box<str>),
    RxFlow(bool),
    User(u32, Box<[u8]>),
}

/// Out buffers not in use. A connection holds one only while it has bytes queued, so an
/// idle connection costs no buffer and a busy one reuses a warm allocation.
#[derive(Default)]
pub(crate) struct BufPool {
    free: Vec<Vec<u8>>,
}

impl BufPool {
    #[inline]
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_default()
    }

    #[inline]
    pub(crate) fn give(&mut self, mut b: Vec<u8>) {
        // Keep a bounded stock of modest buffers; large ones go back to the allocator so a
        // burst does not pin memory.
        if self.free.len() < 256 && b.capacity() <= 256 << 10 && b.capacity() > 0 {
            b.clear();
            self.free.push(b);
        }
    }
}

pub(crate) struct Shared {
    pub(crate) requests: Vec<CtxRequest>,
    /// Connections with a new WRITEABLE request: (slab key, generation).
    pub(crate) writable: Vec<(u32, u32)>,
    /// Connections whose reading should resume (flow control lifted, read budget spent,
    /// out buffer drained, input stashed for later).
    pub(crate) resume: Vec<(u32, u32)>,
    pub(crate) bufs: BufPool,
    pub(crate) protocol_names: Vec<Box<str>>,
    pub(crate) max_unsent: usize,
    /// The time of this `service()` cycle and its formatted `Date`: the reactor reads the
    /// clock once per cycle and the sans-IO HTTP code is given the time.
    pub(crate) date: DateCache,
    /// Masking keys and handshake nonces of outgoing connections: ChaCha seeded from the
    /// operating system, so keys are unpredictable (RFC 6455 §5.3) at a few ns each.
    pub(crate) rng: rand::rngs::StdRng,
    /// The context-wide user value (`libwebsocket_context_user`).
    pub(crate) user: Option<Box<dyn std::any::Any>>,
    /// Connection deadlines and scheduled callbacks (here, so that callbacks can set them).
    pub(crate) timers: crate::timers::Timers,
    /// The registered extensions (`ContextBuilder::extension`, `permessage_deflate`).
    pub(crate) ext: crate::extensions::Extensions,
    /// Topics, their subscribers and queues.
    pub(crate) topics: crate::topics::Topics,
    pub(crate) stats: crate::stats::Stats,
}

/// Size of a piece an extension transforms a received message into (at most; `rx_buffer_size` may cap it lower).
pub(crate) const INFLATE_PIECE: usize = 64 << 10;

impl Shared {
    /// Queues connection `key` for a read pass in this `service()` call, once.
    #[inline]
    pub(crate) fn schedule_resume(&mut self, key: usize, c: &mut Conn) {
        if !c.has(flag::IN_RESUME) {
            c.set(flag::IN_RESUME);
            self.resume.push((key as u32, c.gen));
        }
    }

    /// Queues connection `key` for one WRITEABLE callback, once.
    #[inline]
    pub(crate) fn schedule_writable(&mut self, key: usize, c: &mut Conn) {
        if !c.has(flag::WANT_WRITABLE) {
            c.set(flag::WANT_WRITABLE);
            self.writable.push((key as u32, c.gen));
        }
    }

    /// Whether the connection's out buffer is too full to go on reading it: more than half of
    /// `max_unsent` is queued. Replies the peer is not reading (pongs, echoes, responses)
    /// then stop its input instead of growing our memory; and stopping at half leaves a
    /// callback room to write up to half the bound without being refused because of replies
    /// the reactor queued itself.
    #[inline]
    pub(crate) fn out_full(&self, c: &mut Conn) -> bool {
        if c.unsent() > self.max_unsent / 2 {
            c.set(flag::OUT_FULL);
            true
        } else {
            false
        }
    }

    /// The masking key for a frame the connection sends: a fresh one for a client, none for
    /// a server.
    #[inline]
    pub(crate) fn mask_for(&mut self, c: &Conn) -> Option<[u8; 4]> {
        use rand::RngCore;
        c.has(flag::CLIENT).then(|| self.rng.next_u32().to_ne_bytes())
    }

    /// The largest piece `RECEIVE` delivers on a connection of a protocol whose rx buffer
    /// size is `proto_chunk` (0: no limit of its own): cut to fit in half of `max_unsent`, so
    /// that echoing a piece, with the reactor having stopped reading at half full, always
    /// fits (see [`Close`](crate::Close) on back-pressure).
    pub(crate) fn rx_chunk(&self, proto_chunk: usize) -> usize {
        let fit = (self.max_unsent / 2).saturating_sub(14).max(1);
        if proto_chunk == 0 {
            fit
        } else {
            proto_chunk.min(fit)
        }
    }

    pub(crate) fn protocol_id(&self, name: &str) -> Option<ProtocolId> {
        self.protocol_names
            .iter()
            .position(|n| &**n == name)
            .map(|i| ProtocolId(i as u16))
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.requests.is_empty()
            || !self.writable.is_empty()
            || !self.resume.is_empty()
            || self.topics.has_pending()
    }
}
