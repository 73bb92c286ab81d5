//! Timers: every connection's one deadline with its reason (libwebsockets'
//! `libwebsocket_set_timeout` and `enum pending_timeout`), and scheduled callbacks (a timer
//! reason for a connection or a protocol, or a closure, at a deadline: lws' `lws_sul`), in
//! one binary heap.
//!
//! A connection keeps its deadline and reason in its own record ([`Conn::deadline`],
//! [`Conn::timeout`]) and the heap holds at most one entry for it in the common case
//! (`TIMER_ARMED`): moving the deadline later is a store, and the entry, when it fires early,
//! is pushed again for the current deadline. So an idle WebSocket's ping timer, re-armed by
//! every read, costs a compare and two stores per read and one 16-byte heap entry per
//! connection. Scheduled callbacks live in a slab beside the heap; cancelling one frees its
//! slot at once and leaves a dead heap entry, and the heap is compacted when dead entries
//! outnumber live ones, so arming and cancelling in a loop cannot grow it without bound.
//!
//! Time is [`Tick`]s, milliseconds since the timers' epoch. Everything that decides takes
//! `now` as an argument (the loop reads the clock once per cycle), so the tests below drive
//! time by hand without sleeping.

use crate::connection::{flag, Conn, State};
use crate::context::Context;
use crate::proto::{encoder, OpCode};
use crate::reason::{ConnId, ProtocolEvent, ProtocolId, Reason};
use crate::shared::Shared;
use slab::Slab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// A point in time: 1 + whole milliseconds since the timers' epoch (never 0, so that
/// `Option<Tick>` costs nothing more).
pub(crate) type Tick = NonZeroU64;

/// Heap keys with this bit name a scheduled job's slot; without it, a connection's key.
const JOB: u32 = 1 << 31;

/// Largest connection key the heap can name.
pub(crate) const MAX_CONN_KEY: usize = (JOB - 1) as usize;

/// Why a connection's deadline is set, and so what happens when it passes
/// (libwebsockets' `enum pending_timeout`; the `PENDING_TIMEOUT_` prefix dropped).
///
/// The reactor sets these itself; [`Wsi::set_timeout`](crate::Wsi::set_timeout) sets one
/// of the user's, which closes the connection when it passes, whatever its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum PendingTimeout {
    /// `NO_PENDING_TIMEOUT`: no deadline.
    None = 0,
    /// `AWAITING_CONNECT_RESPONSE`: an outgoing connection is resolving its name and
    /// connecting.
    AwaitingConnectResponse = 1,
    /// `AWAITING_PROXY_RESPONSE`: an outgoing connection waits for its proxy's answer to
    /// `CONNECT`.
    AwaitingProxyResponse = 2,
    /// `AWAITING_SERVER_RESPONSE`: an outgoing connection sent its handshake and waits for
    /// the 101.
    AwaitingServerResponse = 3,
    /// `HTTP_CONTENT`: an HTTP request's head (and then its body) must have arrived by
    /// now; the deadline is set when the request starts and not moved by the bytes
    /// trickling in.
    HttpContent = 4,
    /// `HTTP_KEEPALIVE_IDLE`: a kept-alive HTTP connection waits for its next request.
    HttpKeepaliveIdle = 5,
    /// An open WebSocket is idle: when this passes, a ping is sent (and
    /// [`AwaitingPing`](Self::AwaitingPing) follows). Every read moves it on.
    WsIdle = 6,
    /// `AWAITING_PING`: a ping was sent on an idle WebSocket; without a pong (or any other
    /// input) by now, the connection is dropped as dead.
    AwaitingPing = 7,
    /// `CLOSE_ACK`: our close frame is out; waiting for the peer's.
    CloseAck = 8,
    /// `SHUTDOWN_FLUSH`: our last byte and FIN are out; waiting for the peer's EOF.
    ShutdownFlush = 9,
    /// `FLUSH_STORED_SEND_BEFORE_CLOSE`-like: output is queued and the peer has taken none
    /// of it since this was set (it stopped reading what we send).
    SendStall = 10,
    /// A deadline of the user's ([`Wsi::set_timeout`](crate::Wsi::set_timeout) with a
    /// reason of its own meaning to the application).
    User = 11,
}

/// The stored reason's bit saying it is the user's (closes the connection, whatever its
/// reason).
const USER_SET: u8 = 0x80;

impl PendingTimeout {
    pub(crate) fn from_u8(v: u8) -> PendingTimeout {
        use PendingTimeout::*;
        match v & !USER_SET {
            1 => AwaitingConnectResponse,
            2 => AwaitingProxyResponse,
            3 => AwaitingServerResponse,
            4 => HttpContent,
            5 => HttpKeepaliveIdle,
            6 => WsIdle,
            7 => AwaitingPing,
            8 => CloseAck,
            9 => ShutdownFlush,
            10 => SendStall,
            11 => User,
            _ => None,
        }
    }
}

/// A scheduled callback, to cancel it with [`Context::cancel_timer`] or
/// [`Wsi::cancel_timer`](crate::Wsi::cancel_timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    slot: u32,
    seq: u32,
}

/// What a scheduled job does when it fires.
pub(crate) enum Job {
    /// [`Reason::Timer`] to a connection, if it is still open.
    Conn(ConnId, u64),
    /// [`ProtocolEvent::Timer`] to a protocol.
    Protocol(ProtocolId, u64),
    /// A closure of the user's.
    Closure(Box<dyn FnOnce(&mut Context)>),
    /// Accepting again on a listener starved by the descriptor limit.
    Accept(usize),
    /// The graceful shutdown's deadline: whatever is still open closes.
    ShutdownDeadline,
}

struct Slot {
    seq: u32,
    job: Job,
}

/// One heap entry (16 bytes): due time, then arming order for ties, then whose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Tick,
    seq: u32,
    key: u32,
}

/// What a due heap entry was.
pub(crate) enum Due {
    /// A connection's deadline may have passed (check its generation and deadline).
    Conn {
        key: usize,
        gen: u32,
    },
    Job(Job),
}

/// The liveness settings, in milliseconds (0 = off), read on the data path.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Liveness {
    pub(crate) ping_interval: u64,
    pub(crate) ping_timeout: u64,
    pub(crate) close: u64,
    pub(crate) send: u64,
    pub(crate) keepalive: u64,
    /// The request head's deadline (handshake timeout, bounded by the HTTP timeout).
    pub(crate) head: u64,
    /// The whole request's (head and body) deadline.
    pub(crate) request: u64,
    pub(crate) connect: u64,
    pub(crate) client_handshake: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

impl Liveness {
    pub(crate) fn from_config(cfg: &crate::builder::Config) -> Self {
        let http = ms(cfg.http_timeout);
        let head = match (ms(cfg.handshake_timeout), http) {
            (0, r) => r,
            (h, 0) => h,
            (h, r) => h.min(r),
        };
        Liveness {
            ping_interval: ms(cfg.ping_interval),
            ping_timeout: ms(cfg.ping_timeout),
            close: ms(cfg.close_timeout),
            send: ms(cfg.send_timeout),
            keepalive: ms(cfg.keepalive_timeout),
            head,
            request: http,
            connect: ms(cfg.connect_timeout),
            client_handshake: ms(cfg.handshake_timeout),
        }
    }
}

pub(crate) struct Timers {
    epoch: Instant,
    /// This loop cycle's time, read once per cycle.
    now: Tick,
    heap: BinaryHeap<Reverse<Entry>>,
    jobs: Slab<Slot>,
    next_seq: u32,
    /// Heap entries known to be dead (cancelled jobs, removed connections).
    dead: usize,
    pub(crate) live: Liveness,
}

impl Default for Timers {
    fn default() -> Self {
        Timers::new(Instant::now())
    }
}

impl Timers {
    pub(crate) fn new(epoch: Instant) -> Self {
        Timers {
            epoch,
            now: NonZeroU64::MIN,
            heap: BinaryHeap::new(),
            jobs: Slab::new(),
            next_seq: 0,
            dead: 0,
            live: Liveness::default(),
        }
    }

    /// The tick `now` falls in (whole milliseconds, rounded down).
    pub(crate) fn tick(&self, now: Instant) -> Tick {
        let ms = now.saturating_duration_since(self.epoch).as_millis();
        NonZeroU64::new(u64::try_from(ms).unwrap_or(u64::MAX / 2) + 1).expect("non-zero")
    }

    /// Sets this cycle's time.
    pub(crate) fn set_now(&mut self, now: Instant) {
        self.now = self.tick(now);
    }

    /// The tick `ms` milliseconds after this cycle's time.
    pub(crate) fn after(&self, ms: u64) -> Tick {
        self.now.saturating_add(ms)
    }

    fn push(&mut self, at: Tick, seq: u32, key: u32) {
        self.heap.push(Reverse(Entry { at, seq, key }));
    }

    /// Sets connection `key`'s deadline to `ms` from now (0: none) for `reason`. The heap
    /// gets an entry only when none is pending or the new deadline is earlier than the
    /// pending one; a later one is found when the pending entry fires.
    pub(crate) fn arm(&mut self, c: &mut Conn, key: usize, ms: u64, reason: u8) {
        if ms == 0 {
            c.deadline = None;
            c.set_timeout_reason(0);
            return;
        }
        let at = self.after(ms);
        let earlier = c.deadline.is_none_or(|d| at < d);
        c.deadline = Some(at);
        c.set_timeout_reason(reason);
        if !c.has(flag::TIMER_ARMED) || earlier {
            c.set(flag::TIMER_ARMED);
            self.push(at, c.gen, key as u32);
        }
    }

    /// Clears a connection's deadline (its heap entry, if any, finds nothing to do).
    #[inline]
    pub(crate) fn disarm(c: &mut Conn) {
        c.deadline = None;
        c.set_timeout_reason(0);
    }

    /// A connection with a heap entry is going away: the entry is dead.
    pub(crate) fn forget(&mut self, c: &Conn) {
        if c.has(flag::TIMER_ARMED) {
            self.dead += 1;
        }
    }

    /// Input arrived: the peer is alive. An idle or pinged WebSocket's ping timer starts
    /// again; a kept-alive HTTP connection's next request starts, with its deadline.
    #[inline]
    pub(crate) fn on_input(&mut self, c: &mut Conn, key: usize) {
        const WS_IDLE: u8 = PendingTimeout::WsIdle as u8;
        const AWAITING_PING: u8 = PendingTimeout::AwaitingPing as u8;
        const KEEPALIVE: u8 = PendingTimeout::HttpKeepaliveIdle as u8;
        match c.timeout_reason() {
            WS_IDLE | AWAITING_PING => self.arm(c, key, self.live.ping_interval, WS_IDLE),
            KEEPALIVE => self.arm(c, key, self.live.head, PendingTimeout::HttpContent as u8),
            _ => {}
        }
    }

    /// The connection's default timer now that nothing else is pending: the idle ping
    /// timer on an open WebSocket, none otherwise.
    pub(crate) fn rest(&mut self, c: &mut Conn, key: usize) {
        if c.state == State::WebSocket && !c.has(flag::CLOSE_SENT) {
            self.arm(c, key, self.live.ping_interval, PendingTimeout::WsIdle as u8);
        } else {
            Timers::disarm(c);
        }
    }

    /// Schedules `job` at `at`.
    pub(crate) fn schedule(&mut self, at: Tick, job: Job) -> TimerHandle {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let slot = self.jobs.insert(Slot { seq, job });
        assert!(slot < JOB as usize, "too many timers");
        self.push(at, seq, slot as u32 | JOB);
        TimerHandle {
            slot: slot as u32,
            seq,
        }
    }

    /// Cancels a scheduled job; false if it already fired or was cancelled.
    pub(crate) fn cancel(&mut self, h: TimerHandle) -> bool {
        match self.jobs.get(h.slot as usize) {
            Some(s) if s.seq == h.seq => {
                self.jobs.remove(h.slot as usize);
                self.dead += 1;
                true
            }
            _ => false,
        }
    }

    /// Whether compaction would pay: dead entries are most of the heap.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.dead > 1024 && self.dead * 2 > self.heap.len()
    }

    /// Drops the dead entries: cancelled jobs, and connection entries `live` disowns.
    pub(crate) fn compact(&mut self, mut live: impl FnMut(usize, u32) -> bool) {
        let jobs = &self.jobs;
        self.heap.retain(|Reverse(e)| {
            if e.key & JOB != 0 {
                jobs.get((e.key & !JOB) as usize).is_some_and(|s| s.seq == e.seq)
            } else {
                live(e.key as usize, e.seq)
            }
        });
        self.dead = 0;
    }

    /// Armed heap entries (live and dead), and scheduled jobs.
    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.heap.len(), self.jobs.len())
    }

    /// When the next entry is due, to bound the poll's wait: never before it.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|Reverse(e)| self.epoch + Duration::from_millis(e.at.get() - 1))
    }

    /// Pops the next entry due at `now` (a cancelled job's is skipped).
    pub(crate) fn pop_due(&mut self, now: Tick) -> Option<Due> {
        loop {
            match self.heap.peek() {
                Some(Reverse(e)) if e.at <= now => {}
                _ => return None,
            }
            let Reverse(e) = self.heap.pop().expect("peeked");
            if e.key & JOB == 0 {
                return Some(Due::Conn {
                    key: e.key as usize,
                    gen: e.seq,
                });
            }
            let slot = (e.key & !JOB) as usize;
            match self.jobs.get(slot) {
                Some(s) if s.seq == e.seq => return Some(Due::Job(self.jobs.remove(slot).job)),
                _ => self.dead = self.dead.saturating_sub(1),
            }
        }
    }

    /// A connection's entry popped: re-pushes it if its deadline moved later, and says
    /// whether the deadline has passed (which clears it).
    pub(crate) fn conn_due(&mut self, c: &mut Conn, key: usize, now: Tick) -> Option<u8> {
        match c.deadline {
            None => {
                c.clear(flag::TIMER_ARMED);
                None
            }
            Some(d) if d > now => {
                self.push(d, c.gen, key as u32);
                None
            }
            Some(_) => {
                c.clear(flag::TIMER_ARMED);
                let reason = c.timeout_reason();
                Timers::disarm(c);
                Some(reason)
            }
        }
    }
}

impl Shared {
    /// [`Wsi::set_timeout`](crate::Wsi::set_timeout): the user's deadline, or (0 s or
    /// [`PendingTimeout::None`]) back to the connection's default.
    pub(crate) fn set_user_timeout(&mut self, c: &mut Conn, key: usize, reason: PendingTimeout, secs: u32) {
        if secs == 0 || reason == PendingTimeout::None {
            self.timers.rest(c, key);
        } else {
            self.timers
                .arm(c, key, u64::from(secs) * 1000, reason as u8 | USER_SET);
        }
    }
}

impl Context {
    /// Sets connection `k`'s deadline `ms` from now for `reason` (0: none).
    pub(crate) fn set_deadline(&mut self, k: usize, ms: u64, reason: PendingTimeout) {
        if let Some(c) = self.conns.get_mut(k) {
            self.shared.timers.arm(c, k, ms, reason as u8);
        }
    }

    /// Sets a deadline on connection `id` (`libwebsocket_set_timeout` from outside its
    /// callbacks): when `secs` pass, the connection is closed. 0 seconds or
    /// [`PendingTimeout::None`] cancels it, back to the connection's own timers. False if
    /// `id` names no open connection.
    pub fn set_timeout(&mut self, id: ConnId, reason: PendingTimeout, secs: u32) -> bool {
        match self.conns.get_mut(id.key as usize) {
            Some(c) if c.gen == id.gen => {
                self.shared.set_user_timeout(c, id.key as usize, reason, secs);
                true
            }
            _ => false,
        }
    }

    /// The reason of connection `id`'s pending deadline ([`PendingTimeout::None`] if none);
    /// `None` if `id` names no open connection.
    pub fn pending_timeout(&self, id: ConnId) -> Option<PendingTimeout> {
        match self.conns.get(id.key as usize) {
            Some(c) if c.gen == id.gen => Some(PendingTimeout::from_u8(c.timeout_reason())),
            _ => None,
        }
    }

    /// Runs `f` on the loop once `after` has passed (lws' `lws_sul_schedule`), from the
    /// `service()` call that finds it due; cancel it with the handle.
    ///
    /// ```
    /// # use wsreactor::{Context, Protocol, Reason, Wsi, Close};
    /// # use std::time::Duration;
    /// # #[derive(Default)] struct P;
    /// # impl Protocol for P { type Session = ();
    /// #   fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> { Ok(()) } }
    /// let mut ctx = Context::builder().no_listen().protocol("p", P).build()?;
    /// let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    /// let f = fired.clone();
    /// ctx.schedule(Duration::from_millis(1), move |_ctx| f.set(true));
    /// while !fired.get() {
    ///     ctx.service(Duration::from_secs(1))?; // waits just until the timer is due
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn schedule(&mut self, after: Duration, f: impl FnOnce(&mut Context) + 'static) -> TimerHandle {
        self.schedule_job(after, Job::Closure(Box::new(f)))
    }

    /// Delivers [`Reason::Timer`] with `id` to connection `conn` once `after` has passed
    /// (nothing if it closed by then). `None` if `conn` names no open connection.
    pub fn schedule_timer(&mut self, conn: ConnId, after: Duration, id: u64) -> Option<TimerHandle> {
        let open = self
            .conns
            .get(conn.key as usize)
            .is_some_and(|c| c.gen == conn.gen);
        open.then(|| self.schedule_job(after, Job::Conn(conn, id)))
    }

    /// Delivers [`ProtocolEvent::Timer`] with `id` to `protocol` once `after` has passed.
    pub fn schedule_protocol_timer(&mut self, protocol: ProtocolId, after: Duration, id: u64) -> TimerHandle {
        self.schedule_job(after, Job::Protocol(protocol, id))
    }

    /// Cancels a scheduled callback; false if it already ran or was cancelled.
    pub fn cancel_timer(&mut self, handle: TimerHandle) -> bool {
        self.shared.timers.cancel(handle)
    }

    pub(crate) fn schedule_job(&mut self, after: Duration, job: Job) -> TimerHandle {
        self.shared.schedule_job(after, job)
    }

    /// Fires every timer due at `now`, each guarded on its own (a panicking callback takes
    /// down its own connection, and the other timers still fire).
    pub(crate) fn expire(&mut self, now: Instant) {
        self.shared.timers.set_now(now);
        let now = self.shared.timers.tick(now);
        while let Some(due) = self.shared.timers.pop_due(now) {
            match due {
                Due::Conn { key, gen } => {
                    let reason = match self.conns.get_mut(key) {
                        Some(c) if c.gen == gen => self.shared.timers.conn_due(c, key, now),
                        _ => {
                            self.shared.timers.dead = self.shared.timers.dead.saturating_sub(1);
                            None
                        }
                    };
                    if let Some(r) = reason {
                        self.shared.stats.timeouts += 1;
                        self.guarded(Some(key), |ctx| ctx.timed_out(key, r));
                    }
                }
                Due::Job(job) => self.run_job(job),
            }
        }
        if self.shared.timers.wants_compaction() {
            let conns = &self.conns;
            self.shared.timers.compact(|k, gen| {
                conns
                    .get(k)
                    .is_some_and(|c| c.gen == gen && c.has(flag::TIMER_ARMED))
            });
        }
    }

    fn run_job(&mut self, job: Job) {
        match job {
            Job::Conn(id, user) => {
                let k = id.key as usize;
                if self.conns.get(k).is_some_and(|c| c.gen == id.gen) {
                    self.guarded(Some(k), |ctx| {
                        ctx.call_and_close(k, Reason::Timer { id: user });
                        ctx.flush(k);
                    });
                }
            }
            Job::Protocol(p, user) => self.guarded(None, |ctx| {
                ctx.protocol_event(p, ProtocolEvent::Timer { id: user })
            }),
            Job::Closure(f) => self.guarded(None, f),
            Job::Accept(i) => {
                self.guarded(None, |ctx| ctx.accept_retry(i));
                self.sync_listener(i);
            }
            Job::ShutdownDeadline => self.shutdown_deadline(),
        }
    }

    /// Connection `k`'s deadline for `reason` passed.
    fn timed_out(&mut self, k: usize, reason: u8) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        let why = PendingTimeout::from_u8(reason);
        if reason & USER_SET == 0 && why == PendingTimeout::WsIdle {
            if c.has(flag::CLOSE_SENT) {
                return;
            }
            // Idle: ask the peer whether it is still there.
            let mask = self.shared.mask_for(c);
            encoder::encode_frame(c.out_buf(&mut self.shared.bufs), OpCode::Ping, true, mask, b"");
            let wait = self.shared.timers.live.ping_timeout;
            self.shared
                .timers
                .arm(c, k, wait, PendingTimeout::AwaitingPing as u8);
            self.flush(k);
            return;
        }
        log::debug!("{}: timed out ({why:?}) in {:?}", c.peer(), c.state);
        let what = match c.state {
            State::ClientConnecting => "timed out connecting",
            State::ClientProxy => "timed out waiting for the proxy's answer to CONNECT",
            _ => "timed out waiting for the handshake response",
        };
        self.client_note(k, what);
        // A dead or stuck peer (no pong, not reading), a trickling request, an idle
        // kept-alive connection, a close handshake not answered, the user's deadline: the
        // connection is dropped as libwebsockets does, without a close frame (it would only
        // sit behind what the peer is not reading, or reach no one).
        self.remove(k);
    }
}

impl Shared {
    pub(crate) fn schedule_job(&mut self, after: Duration, job: Job) -> TimerHandle {
        // Rounded up: a job never runs before its time.
        let ms = u64::try_from(after.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX / 4);
        let at = self.timers.after(ms);
        self.timers.schedule(at, job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u64) -> Job {
        Job::Protocol(ProtocolId(0), n)
    }

    fn fired(t: &mut Timers, now: Tick) -> Vec<u64> {
        let mut v = Vec::new();
        while let Some(d) = t.pop_due(now) {
            match d {
                Due::Job(Job::Protocol(_, n)) => v.push(n),
                _ => panic!("unexpected entry"),
            }
        }
        v
    }

    fn t(ms: u64) -> Tick {
        NonZeroU64::new(ms + 1).unwrap()
    }

    #[test]
    fn jobs_fire_in_deadline_order_at_their_time() {
        let epoch = Instant::now();
        let mut tm = Timers::new(epoch);
        tm.set_now(epoch);
        for (n, at) in [(1, 300), (2, 100), (3, 200), (4, 100), (5, 0)] {
            tm.schedule(tm.after(at), job(n));
        }
        assert_eq!(fired(&mut tm, t(0)), vec![5]);
        assert_eq!(fired(&mut tm, t(99)), Vec::<u64>::new());
        // Equal deadlines fire in arming order.
        assert_eq!(fired(&mut tm, t(100)), vec![2, 4]);
        assert_eq!(tm.next(), Some(epoch + Duration::from_millis(200)));
        assert_eq!(fired(&mut tm, t(250)), vec![3]);
        assert_eq!(fired(&mut tm, t(10_000)), vec![1]);
        assert_eq!(tm.next(), None);
    }

    #[test]
    fn cancelled_jobs_do_not_fire_and_handles_do_not_alias() {
        let epoch = Instant::now();
        let mut tm = Timers::new(epoch);
        let a = tm.schedule(t(10), job(1));
        let b = tm.schedule(t(20), job(2));
        assert!(tm.cancel(a));
        assert!(!tm.cancel(a), "a second cancel finds nothing");
        // The freed slot is reused; the old handle must not cancel the new job.
        let c = tm.schedule(t(30), job(3));
        assert!(!tm.cancel(a));
        assert_eq!(fired(&mut tm, t(100)), vec![2, 3]);
        assert!(!tm.cancel(b), "fired already");
        assert!(!tm.cancel(c));
    }

    #[test]
    fn arm_and_cancel_in_a_loop_keeps_the_heap_bounded() {
        let epoch = Instant::now();
        let mut tm = Timers::new(epoch);
        let keep = tm.schedule(t(1_000_000), job(7));
        for i in 0..100_000u64 {
            let h = tm.schedule(t(1000 + i), job(i));
            assert!(tm.cancel(h));
            if tm.wants_compaction() {
                tm.compact(|_, _| true);
            }
        }
        let (heap, jobs) = tm.len();
        assert_eq!(jobs, 1);
        assert!(heap <= 2100, "heap held {heap} entries");
        assert_eq!(fired(&mut tm, t(2_000_000)), vec![7]);
        assert!(!tm.cancel(keep));
    }

    /// The production defaults, by simulated time: 30 s idle gets a ping, 20 s more
    /// without a pong drops the connection; no sleeping.
    #[test]
    fn default_ping_validity_in_simulated_time() {
        use std::io::{Read, Write};
        #[derive(Default)]
        struct P;
        impl crate::Protocol for P {
            type Session = ();
            fn callback(
                &mut self,
                _: &mut crate::Wsi<'_>,
                _: &mut (),
                _: Reason<'_>,
            ) -> Result<(), crate::Close> {
                Ok(())
            }
        }
        let mut ctx = Context::builder()
            .port(0)
            .interface("127.0.0.1")
            .protocol("p", P)
            .build()
            .unwrap();
        let mut c = std::net::TcpStream::connect(ctx.local_addr().unwrap()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            ctx.service(Duration::from_millis(10)).unwrap();
            c.set_nonblocking(true).unwrap();
            if let Ok(n) = c.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            c.set_nonblocking(false).unwrap();
        }
        assert!(got.starts_with(b"HTTP/1.1 101"));
        let t0 = Instant::now();
        ctx.expire(t0 + Duration::from_secs(29));
        assert_eq!(
            ctx.conns.iter().next().unwrap().1.timeout_reason(),
            PendingTimeout::WsIdle as u8
        );
        ctx.expire(t0 + Duration::from_millis(30_100));
        let c0 = ctx.conns.iter().next().unwrap().1;
        assert_eq!(c0.timeout_reason(), PendingTimeout::AwaitingPing as u8);
        let mut ping = [0u8; 2];
        c.read_exact(&mut ping).unwrap();
        assert_eq!(ping, [0x89, 0x00], "an empty ping");
        ctx.expire(t0 + Duration::from_secs(49));
        assert_eq!(ctx.connection_count(), 1, "still within the ping timeout");
        ctx.expire(t0 + Duration::from_millis(50_200));
        assert_eq!(ctx.connection_count(), 0, "dropped without a pong");
    }

    #[test]
    fn a_connection_stays_small() {
        // The timeout reason lives in the flags' top byte: the record stays at the 176
        // bytes it had. 100,000 idle connections are 100,000 of these.
        assert!(
            std::mem::size_of::<Conn>() <= 176,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }

    #[test]
    fn next_is_never_before_the_deadline() {
        let epoch = Instant::now();
        let mut tm = Timers::new(epoch);
        tm.set_now(epoch + Duration::from_micros(2500));
        // `after` counts from the cycle's tick (2 ms); a due job is never early.
        tm.schedule(tm.after(5), job(1));
        let at = tm.next().unwrap();
        assert_eq!(at, epoch + Duration::from_millis(7));
        let (early, due) = (tm.tick(at - Duration::from_micros(1)), tm.tick(at));
        assert_eq!(fired(&mut tm, early), Vec::<u64>::new());
        assert_eq!(fired(&mut tm, due), vec![1]);
    }
}
