//! Topics: publish / subscribe with bounded fan-out (uWebSockets' `subscribe`, `publish`,
//! `numSubscribers`).
//!
//! A published message is framed once, appended to its topic's log (one buffer of frames
//! back to back), and each subscriber holds a position in that log: no copy per
//! subscriber while it waits, and no work per subscriber at the publish itself, so the
//! cost of a publish does not grow with the subscribers. Once per loop cycle the
//! subscribers of the topics published to are flushed; a subscriber's frames move into its
//! out buffer only when that buffer has drained (the flush pulls them, as it pulls a file
//! response's chunks, a whole run of them in one copy), so at most one out-buffer's worth
//! (64 KiB) is copied ahead of the socket. Once every subscriber has its messages, the log
//! is emptied. Server frames are unmasked, which is what makes sharing possible; an
//! outgoing (client) connection must mask every frame with a key of its own, so for a
//! client subscriber the payload is re-framed, masked, as it is pulled (one copy for that
//! subscriber).
//!
//! Each subscriber's queue (what lies between its position and the log's head) is bounded
//! per topic ([`TopicOptions::max_queued`], counting each message's frame plus
//! [`ENTRY_COST`]), and the topic's [`SlowPolicy`] says what happens at the bound. The
//! subscribers are looked at only when the log as a whole is over the bound, and then
//! only those found at the bound the last time, as long as no other can be (a walk over
//! all of them finds those again about once per bound's worth of messages): a member that
//! never reads costs a publish its own entry, not the room. The log forgets what every
//! subscriber has taken, so a topic holds at most the bound (twice it under push-back)
//! whatever its number of subscribers.
//!
//! A connection that subscribes to nothing costs nothing here: the state lives in a map
//! keyed by the connection's slot, and the connection record carries one flag bit.

use crate::connection::{flag, Conn, State};
use crate::context::Context;
use crate::proto::{encoder, OpCode};
use crate::reason::Reason;
use crate::wsi::Wsi;
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

/// What a queued message costs a subscriber's bound beyond its frame bytes (its entry in
/// the topic's log, with room to spare), so that a flood of tiny messages is bounded too.
pub const ENTRY_COST: usize = 32;

/// Hashes the connection slots that key the subscribers' map: one multiplication
/// (Fibonacci hashing) where std's SipHash took ~100 instructions a look-up (callgrind,
/// bench/fanout.sh). The keys are the context's own slab indices, dense and not chosen by
/// a peer, and an odd multiplier maps distinct slots to distinct low bits, so there is no
/// flooding to defend against.
#[derive(Default, Clone, Copy)]
struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type SlotMap<V> = HashMap<u32, V, BuildHasherDefault<SlotHasher>>;

/// Bytes moved from a subscriber's queue into its out buffer per pull.
const PULL_CHUNK: usize = 64 << 10;

/// What a topic does with a subscriber whose queue is at its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Drop the oldest queued messages of this topic to make room; the subscriber's
    /// protocol gets [`Reason::TopicMissed`] with the count before its next message of any
    /// topic, to tell its client.
    DropOldest,
    /// Push back on the publisher, the libwebsockets mirror way: a publishing connection
    /// stops being read (rx flow control) until every subscriber of the topic has drained
    /// to half its bound; a publish from the loop is told how many subscribers are full
    /// ([`Published::full`]). A subscriber full for longer than `stall` (or holding
    /// twice its bound) is closed with 1008, so one reader that never reads cannot freeze
    /// the topic for good.
    PushBack {
        /// How long a subscriber may stay full before it is closed.
        stall: Duration,
    },
    /// Close the slow subscriber with 1008 (uWebSockets' `closeOnBackpressureLimit`).
    Close,
}

/// A topic's settings, fixed by its first subscriber: see [`crate::Wsi::subscribe_with`]
/// and [`ContextBuilder::topic_options`](crate::ContextBuilder::topic_options) for the
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicOptions {
    /// Bound on each subscriber's queued messages of this topic, in bytes (frames plus
    /// [`ENTRY_COST`] each). A message larger than the bound is still queued to an empty
    /// queue. Default 256 KiB.
    pub max_queued: usize,
    /// What happens at the bound. Default [`SlowPolicy::DropOldest`].
    pub policy: SlowPolicy,
}

impl Default for TopicOptions {
    fn default() -> Self {
        TopicOptions {
            max_queued: 256 << 10,
            policy: SlowPolicy::DropOldest,
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// Subscribers the message was queued for.
    pub delivered: usize,
    /// Subscribers at their bound after it (with [`SlowPolicy::PushBack`]: the publisher
    /// should wait; a publishing connection is paused by itself).
    pub full: usize,
    /// Subscribers that lost messages to make room ([`SlowPolicy::DropOldest`]) or were
    /// closed ([`SlowPolicy::Close`], or a stalled push-back subscriber).
    pub dropped: usize,
}

struct Topic {
    name: Box<str>,
    opts: TopicOptions,
    /// Subscribers: (connection slot, generation).
    subs: Vec<(u32, u32)>,
    /// The messages published and not yet sent to every subscriber.
    log: Log,
    /// Subscribers with messages of this topic still to send (their position short of the
    /// log's head). At 0 the log is emptied.
    behind: u32,
    /// Subscribers at their bound (push-back).
    full: u32,
    /// Publishing connections paused by this topic: (slot, generation).
    paused: Vec<(u32, u32)>,
    /// In `dirty` already.
    scheduled: bool,
    /// Subscribers found at the bound by the last look at them (and some that have moved
    /// on since); every other subscriber is at `floor` or past it.
    laggers: Vec<(u32, u32)>,
    floor: u64,
}

impl Topic {
    /// Every subscriber has its messages: the log is emptied, and none lags.
    fn caught_up(&mut self) {
        self.log.clear();
        self.laggers.clear();
        self.floor = self.log.head();
    }
}

/// Above this capacity an emptied log gives its buffer back, so that a quiet topic does not
/// keep the memory of its largest burst.
const LOG_KEEP: usize = 16 << 10;

/// A topic's shared log: its frames back to back in one buffer, each frame written once
/// whatever the number of subscribers. A subscriber holds a message number into it; the
/// log keeps what the furthest-behind subscriber has still to send, bounded by
/// [`TopicOptions::max_queued`] (twice that under push-back) through the policy.
#[derive(Default)]
struct Log {
    bytes: Vec<u8>,
    /// Absolute byte offset of `bytes[0]`. Bytes before `start_of(first)` are dead,
    /// compacted away once they are half the buffer.
    base: u64,
    /// Per retained message: (publish sequence number, shared by all topics, so that a
    /// subscriber of several gets them in publish order; absolute start offset).
    msgs: VecDeque<(u64, u64)>,
    /// Message number of `msgs[0]`.
    first: u64,
}

impl Log {
    /// The number the next message published gets.
    fn head(&self) -> u64 {
        self.first + self.msgs.len() as u64
    }

    fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// Absolute byte offset where message `m` (`first..=head`) starts.
    fn start_of(&self, m: u64) -> u64 {
        self.msgs
            .get((m - self.first) as usize)
            .map_or_else(|| self.end(), |&(_, start)| start)
    }

    fn seq(&self, m: u64) -> u64 {
        self.msgs[(m - self.first) as usize].0
    }

    /// The bytes of messages `from..to`.
    fn range(&self, from: u64, to: u64) -> &[u8] {
        let s = (self.start_of(from) - self.base) as usize;
        let e = (self.start_of(to) - self.base) as usize;
        &self.bytes[s..e]
    }

    /// What messages `m..head` cost a subscriber's bound.
    fn cost_from(&self, m: u64) -> usize {
        (self.end() - self.start_of(m)) as usize + (self.head() - m) as usize * ENTRY_COST
    }

    fn push(&mut self, seq: u64, op: OpCode, data: &[u8]) {
        let start = self.end();
        encoder::encode_frame(&mut self.bytes, op, true, None, data);
        self.msgs.push_back((seq, start));
    }

    /// Forgets the messages before `m`.
    fn trim(&mut self, m: u64) {
        let m = m.min(self.head());
        if m <= self.first {
            return;
        }
        if m == self.head() {
            self.clear();
            return;
        }
        let start = self.start_of(m);
        self.msgs.drain(..(m - self.first) as usize);
        self.first = m;
        let dead = (start - self.base) as usize;
        if dead > self.bytes.len() / 2 {
            self.bytes.drain(..dead);
            self.base = start;
        }
    }

    /// Forgets every message (all were sent).
    fn clear(&mut self) {
        self.first = self.head();
        self.base = self.end();
        self.msgs.clear();
        if self.bytes.capacity() > LOG_KEEP {
            self.bytes = Vec::new();
            self.msgs = VecDeque::new();
        } else {
            self.bytes.clear();
        }
    }
}

/// One subscription of a subscriber.
struct SubTopic {
    topic: u32,
    /// The subscriber's position in the topic's `subs`.
    slot: u32,
    /// The number of the next message of the topic's log to send it.
    next: u64,
    missed: u64,
    full_since: Option<Instant>,
}

/// A subscriber: the topics of one connection and where it is in each.
struct Sub {
    gen: u32,
    topics: Vec<SubTopic>,
    /// In `missed` already.
    notify: bool,
    /// Closing: out of its topics, sent nothing more.
    doomed: bool,
}

impl Sub {
    fn new(gen: u32) -> Self {
        Sub {
            gen,
            topics: Vec::new(),
            notify: false,
            doomed: false,
        }
    }

    fn entry(&mut self, topic: u32) -> Option<&mut SubTopic> {
        self.topics.iter_mut().find(|t| t.topic == topic)
    }
}

/// Every topic of a context and the subscribers' positions. Lives in
/// [`Shared`](crate::shared::Shared), so callbacks publish and subscribe directly.
#[derive(Default)]
pub(crate) struct Topics {
    names: HashMap<Box<str>, u32>,
    list: Slab<Topic>,
    subs: SlotMap<Sub>,
    pub(crate) default: TopicOptions,
    /// The last publish's sequence number.
    seq: u64,
    /// Topics with messages published since their subscribers were last flushed.
    pub(crate) dirty: Vec<u32>,
    /// A topic's subscribers, copied out to be flushed (kept for its allocation).
    scratch: Vec<(u32, u32)>,
    /// Subscribers to tell of missed messages.
    pub(crate) missed: Vec<(u32, u32)>,
    /// Subscribers to close (slow, or stalled): (slot, generation).
    pub(crate) doomed: Vec<(u32, u32)>,
    /// Publishers to read again.
    pub(crate) unpause: Vec<(u32, u32)>,
    /// Push-back subscribers that became full: (since, slot, generation, topic).
    stalls: Vec<(Instant, u32, u32, u32)>,
    /// Calls of `enforce`, and those that walked all subscribers.
    #[cfg(test)]
    enforced: u64,
    #[cfg(test)]
    walks: u64,
    /// With a Redis backplane: what other processes must hear of (topics created and
    /// gone, publishes), drained by the backplane each cycle. `None` without one.
    #[cfg(feature = "redis")]
    pub(crate) bridge: Option<Bridge>,
}

/// What the backplane must tell other processes, in order.
#[cfg(feature = "redis")]
#[derive(Debug, Default)]
pub(crate) struct Bridge {
    pub(crate) ops: Vec<BridgeOp>,
    /// The topic names and payloads of the publishes in `ops`, back to back: a flood of
    /// publishes costs a copy each into one buffer, not two allocations each.
    pub(crate) bytes: Vec<u8>,
}

/// A topic change for the backplane.
#[cfg(feature = "redis")]
#[derive(Debug)]
pub(crate) enum BridgeOp {
    /// The first local subscriber joined.
    Subscribe(Box<str>),
    /// The last local subscriber left.
    Unsubscribe(Box<str>),
    /// A message published here: its topic name and payload in [`Bridge::bytes`].
    Publish {
        topic: std::ops::Range<usize>,
        data: std::ops::Range<usize>,
        binary: bool,
    },
}

impl Topics {
    pub(crate) fn new(default: TopicOptions) -> Self {
        Topics {
            default,
            ..Default::default()
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        !(self.dirty.is_empty()
            && self.missed.is_empty()
            && self.doomed.is_empty()
            && self.unpause.is_empty())
    }

    pub(crate) fn count(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn num_subscribers(&self, name: &str) -> usize {
        self.names
            .get(name)
            .map_or(0, |&t| self.list[t as usize].subs.len())
    }

    pub(crate) fn is_subscribed(&self, key: usize, gen: u32, name: &str) -> bool {
        let Some(&t) = self.names.get(name) else {
            return false;
        };
        self.subs
            .get(&(key as u32))
            .is_some_and(|s| s.gen == gen && s.topics.iter().any(|e| e.topic == t))
    }

    /// Subscribes connection `key` to `name` (creating the topic with `opts`, or the
    /// default). False if it already was, or if it is being closed as too slow.
    pub(crate) fn subscribe(
        &mut self,
        key: usize,
        c: &mut Conn,
        name: &str,
        opts: Option<TopicOptions>,
    ) -> bool {
        let key32 = key as u32;
        let sub = self.subs.entry(key32).or_insert_with(|| Sub::new(c.gen));
        if sub.gen != c.gen {
            // A stale record of an earlier connection in this slot: cannot happen, as
            // removal drops it, but never let one connection inherit another's state.
            *sub = Sub::new(c.gen);
        }
        if sub.doomed {
            return false;
        }
        let t = match self.names.get(name) {
            Some(&t) => t,
            None => {
                let t = self.list.insert(Topic {
                    name: name.into(),
                    opts: opts.unwrap_or(self.default),
                    subs: Vec::new(),
                    log: Log::default(),
                    behind: 0,
                    full: 0,
                    paused: Vec::new(),
                    scheduled: false,
                    laggers: Vec::new(),
                    floor: 0,
                }) as u32;
                self.names.insert(name.into(), t);
                #[cfg(feature = "redis")]
                if let Some(b) = &mut self.bridge {
                    b.ops.push(BridgeOp::Subscribe(name.into()));
                }
                t
            }
        };
        if sub.topics.iter().any(|e| e.topic == t) {
            return false;
        }
        let topic = &mut self.list[t as usize];
        if sub.topics.is_empty() {
            // Most connections are in one topic: room for exactly one (a first push would
            // make room for four, 120 bytes more per subscriber).
            sub.topics.reserve_exact(1);
        }
        sub.topics.push(SubTopic {
            topic: t,
            slot: topic.subs.len() as u32,
            next: topic.log.head(),
            missed: 0,
            full_since: None,
        });
        topic.subs.push((key32, c.gen));
        c.set(flag::SUBSCRIBED);
        true
    }

    /// Unsubscribes connection `key` from `name`, dropping its queued messages of that
    /// topic. False if it was not subscribed.
    pub(crate) fn unsubscribe(&mut self, key: usize, c: &mut Conn, name: &str) -> bool {
        let Some(&t) = self.names.get(name) else {
            return false;
        };
        let key32 = key as u32;
        let Some(sub) = self.subs.get_mut(&key32).filter(|s| s.gen == c.gen) else {
            return false;
        };
        let Some(i) = sub.topics.iter().position(|e| e.topic == t) else {
            return false;
        };
        let e = sub.topics.swap_remove(i);
        if sub.topics.is_empty() && !sub.doomed {
            self.subs.remove(&key32);
            c.clear(flag::SUBSCRIBED);
        }
        self.leave(t, e);
        true
    }

    /// Takes subscription `e` out of topic `t`'s list (and the topic away when it was the
    /// last).
    fn leave(&mut self, t: u32, e: SubTopic) {
        let topic = &mut self.list[t as usize];
        let slot = e.slot as usize;
        topic.subs.swap_remove(slot);
        if let Some(&(moved, _)) = topic.subs.get(slot) {
            if let Some(m) = self.subs.get_mut(&moved).and_then(|s| s.entry(t)) {
                m.slot = slot as u32;
            }
        }
        if e.full_since.is_some() {
            topic.full -= 1;
            if topic.full == 0 {
                self.unpause.append(&mut topic.paused);
            }
        }
        if e.next < topic.log.head() {
            topic.behind -= 1;
            if topic.behind == 0 {
                topic.caught_up();
            }
        }
        if topic.subs.is_empty() {
            self.unpause.append(&mut topic.paused);
            let name = self.list.remove(t as usize).name;
            self.names.remove(&name);
            #[cfg(feature = "redis")]
            if let Some(b) = &mut self.bridge {
                b.ops.push(BridgeOp::Unsubscribe(name));
            }
        }
    }

    /// Forgets connection `key` (it is being removed).
    pub(crate) fn drop_conn(&mut self, key: usize) {
        let Some(sub) = self.subs.remove(&(key as u32)) else {
            return;
        };
        for e in sub.topics {
            let t = e.topic;
            self.leave(t, e);
        }
    }

    /// Marks subscriber `key` to be closed as too slow: out of all its topics at once (it
    /// holds back no log), its record kept until the connection is removed.
    fn doom(&mut self, key: u32, gen: u32) {
        let Some(sub) = self.subs.get_mut(&key).filter(|s| s.gen == gen && !s.doomed) else {
            return;
        };
        sub.doomed = true;
        for e in std::mem::take(&mut sub.topics) {
            let t = e.topic;
            self.leave(t, e);
        }
        self.doomed.push((key, gen));
    }

    /// Queues `data` for every subscriber of `name`, framed once. `publisher`: the
    /// connection publishing, paused under push-back.
    pub(crate) fn publish(
        &mut self,
        name: &str,
        data: &[u8],
        binary: bool,
        publisher: Option<(usize, &mut Conn)>,
    ) -> Published {
        #[cfg(feature = "redis")]
        if let Some(b) = &mut self.bridge {
            // Other processes may have subscribers even when this one has none.
            let at = b.bytes.len();
            b.bytes.extend_from_slice(name.as_bytes());
            b.bytes.extend_from_slice(data);
            b.ops.push(BridgeOp::Publish {
                topic: at..at + name.len(),
                data: at + name.len()..b.bytes.len(),
                binary,
            });
        }
        self.publish_here(name, data, binary, publisher)
    }

    /// [`publish`](Self::publish) to this process' subscribers only: a message that came
    /// from another process through the backplane.
    ///
    /// The frame is appended to the topic's log once; no subscriber is touched unless the
    /// log is over the topic's bound, so the cost does not grow with the subscribers (they
    /// are walked once per flush cycle, by [`Context::run_topics`]).
    pub(crate) fn publish_here(
        &mut self,
        name: &str,
        data: &[u8],
        binary: bool,
        publisher: Option<(usize, &mut Conn)>,
    ) -> Published {
        let mut r = Published::default();
        let Some(&t) = self.names.get(name) else {
            return r;
        };
        self.seq += 1;
        let topic = &mut self.list[t as usize];
        let op = if binary { OpCode::Binary } else { OpCode::Text };
        topic.log.push(self.seq, op, data);
        // Every subscriber is now behind by this message at least.
        topic.behind = topic.subs.len() as u32;
        if topic.log.msgs.len() > 1 && topic.log.cost_from(topic.log.first) > topic.opts.max_queued {
            self.enforce(t, &mut r);
        }
        let Some(topic) = self.list.get_mut(t as usize) else {
            // Every subscriber was closed as too slow.
            return r;
        };
        r.delivered = topic.subs.len();
        if !topic.scheduled {
            topic.scheduled = true;
            self.dirty.push(t);
        }
        r.full = topic.full as usize;
        if topic.full == 0 {
            self.unpause.append(&mut topic.paused);
        } else if let Some((k, c)) = publisher {
            if !c.has(flag::TOPIC_PAUSED) {
                c.set(flag::TOPIC_PAUSED);
                topic.paused.push((k as u32, c.gen));
            }
        }
        r
    }

    /// The log of topic `t` (its newest message just appended) is over the bound: each
    /// subscriber over it gets the topic's policy, and the log forgets what every
    /// subscriber has sent.
    ///
    /// Only the topic's `laggers` are looked at while the bound's position has not passed
    /// `floor` (below which no other subscriber can be): one member that never reads costs
    /// each publish its own entry, not a walk over the room. A walk over all subscribers
    /// finds the laggers and the floor again, once per bound's worth of messages or so.
    fn enforce(&mut self, t: u32, r: &mut Published) {
        #[cfg(test)]
        {
            self.enforced += 1;
        }
        let Topic {
            subs,
            log,
            opts,
            full,
            laggers,
            floor,
            ..
        } = &mut self.list[t as usize];
        let max = opts.max_queued;
        let head = log.head();
        // The first position within the bound; the newest message is always kept (alone it
        // may be over the bound). `cost_from` falls as the position grows: bisect.
        let (mut lo, mut hi) = (log.first, head - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if log.cost_from(mid) > max {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let need = lo;
        let partial = need <= *floor;
        #[cfg(test)]
        if !partial {
            self.walks += 1;
        }
        let taken = if partial {
            std::mem::take(laggers)
        } else {
            laggers.clear();
            Vec::new()
        };
        let walk: &[(u32, u32)] = if partial { &taken } else { subs };
        // Not walked (partial): at `floor` or past it.
        let mut keep = if partial { (*floor).min(head - 1) } else { head - 1 };
        // Walked and within the bound (full walk): the new floor. New subscribers join at
        // the head, so it is a lower bound for them too.
        let mut new_floor = head;
        let mut victims = Vec::new();
        for &(key, gen) in walk {
            let Some(e) = self
                .subs
                .get_mut(&key)
                .filter(|s| s.gen == gen)
                .and_then(|s| s.entry(t))
            else {
                continue;
            };
            if e.next < need {
                match opts.policy {
                    SlowPolicy::DropOldest => {
                        e.missed += need - e.next;
                        e.next = need;
                        r.dropped += 1;
                    }
                    SlowPolicy::Close => {
                        victims.push((key, gen));
                        r.dropped += 1;
                        continue;
                    }
                    SlowPolicy::PushBack { .. } => {
                        if log.cost_from(e.next) > 2 * max {
                            // Over twice the bound (many publishers, or none to pause): the
                            // memory bound wins.
                            victims.push((key, gen));
                            r.dropped += 1;
                            continue;
                        }
                        if e.full_since.is_none() {
                            let now = Instant::now();
                            e.full_since = Some(now);
                            *full += 1;
                            self.stalls.push((now, key, gen, t));
                        }
                    }
                }
                laggers.push((key, gen));
            } else if partial {
                if e.next < *floor {
                    laggers.push((key, gen));
                }
            } else {
                new_floor = new_floor.min(e.next);
            }
            keep = keep.min(e.next);
        }
        if !partial {
            *floor = new_floor;
        }
        log.trim(keep);
        for (key, gen) in victims {
            self.doom(key, gen);
        }
    }

    /// Push-back subscribers full for longer than their topic's `stall`: to be closed.
    pub(crate) fn expire_stalls(&mut self, now: Instant) {
        if self.stalls.is_empty() {
            return;
        }
        let mut stalls = std::mem::take(&mut self.stalls);
        let mut victims = Vec::new();
        stalls.retain(|&(since, key, gen, t)| {
            let Some(e) = self
                .subs
                .get_mut(&key)
                .filter(|s| s.gen == gen && !s.doomed)
                .and_then(|s| s.entry(t))
            else {
                return false;
            };
            if e.full_since != Some(since) {
                return false;
            }
            let SlowPolicy::PushBack { stall } = self.list[t as usize].opts.policy else {
                return false;
            };
            if now.saturating_duration_since(since) < stall {
                return true;
            }
            victims.push((key, gen));
            false
        });
        self.stalls.append(&mut stalls);
        for (key, gen) in victims {
            self.doom(key, gen);
        }
    }

    pub(crate) fn next_stall(&self) -> Option<Instant> {
        self.stalls
            .iter()
            .filter_map(|&(since, _, _, t)| match self.list.get(t as usize)?.opts.policy {
                SlowPolicy::PushBack { stall } => Some(since + stall),
                _ => None,
            })
            .min()
    }

    /// Moves queued frames of subscriber `key` into `out` (until it holds `limit` bytes),
    /// in publish order across its topics; how many moved. Stops before the next frame when missed
    /// messages are to be told first.
    fn pull(
        &mut self,
        key: usize,
        c: &mut Conn,
        out: &mut Vec<u8>,
        limit: usize,
        mask: &mut impl FnMut() -> [u8; 4],
    ) -> usize {
        let Some(sub) = self
            .subs
            .get_mut(&(key as u32))
            .filter(|s| s.gen == c.gen && !s.doomed)
        else {
            return 0;
        };
        if sub.topics.iter().any(|e| e.missed > 0) {
            if !sub.notify {
                sub.notify = true;
                self.missed.push((key as u32, c.gen));
            }
            return 0;
        }
        let client = c.has(flag::CLIENT);
        let mut n = 0;
        while out.len() < limit {
            // The subscription whose next message was published first, and the sequence
            // number of the next message of any other: a run of the first's messages up to
            // there goes in one copy.
            let mut best: Option<(usize, u64)> = None;
            let mut other = u64::MAX;
            for (i, e) in sub.topics.iter().enumerate() {
                let log = &self.list[e.topic as usize].log;
                if e.next < log.head() {
                    let s = log.seq(e.next);
                    match best {
                        Some((_, b)) if b < s => other = other.min(s),
                        Some((_, b)) => {
                            other = other.min(b);
                            best = Some((i, s));
                        }
                        None => best = Some((i, s)),
                    }
                }
            }
            let Some((i, _)) = best else {
                c.clear(flag::TOPIC_QUEUED);
                break;
            };
            let e = &mut sub.topics[i];
            let topic = &mut self.list[e.topic as usize];
            let log = &topic.log;
            let head = log.head();
            let from = e.next;
            let mut to = from;
            let room = limit.saturating_sub(out.len()) as u64;
            let start = log.start_of(from);
            if other == u64::MAX && log.end() - start <= room {
                // The common case: one topic, and all of it fits.
                to = head;
            } else {
                // At least one message, then as many as fit.
                while to < head && log.seq(to) < other && (to == from || log.start_of(to + 1) - start <= room)
                {
                    to += 1;
                }
            }
            if client {
                // Client frames must be masked, each with its own key: re-frame.
                for m in from..to {
                    let f = log.range(m, m + 1);
                    let hlen = match f[1] & 0x7f {
                        126 => 4,
                        127 => 10,
                        _ => 2,
                    };
                    let op = OpCode::from_u8(f[0] & 0x0f).unwrap_or(OpCode::Binary);
                    encoder::encode_frame(out, op, true, Some(mask()), &f[hlen..]);
                }
            } else {
                out.extend_from_slice(log.range(from, to));
            }
            n += (to - from) as usize;
            e.next = to;
            if e.full_since.is_some() && log.cost_from(to) <= topic.opts.max_queued / 2 {
                e.full_since = None;
                topic.full -= 1;
                if topic.full == 0 {
                    self.unpause.append(&mut topic.paused);
                }
            }
            if to == head {
                topic.behind -= 1;
                if topic.behind == 0 {
                    topic.caught_up();
                }
            }
        }
        n
    }

    /// The missed counts of subscriber `key` to tell, reset: (topic name, count).
    fn take_missed(&mut self, key: usize, gen: u32) -> Vec<(Box<str>, u64)> {
        let Some(sub) = self.subs.get_mut(&(key as u32)).filter(|s| s.gen == gen) else {
            return Vec::new();
        };
        sub.notify = false;
        sub.topics
            .iter_mut()
            .filter(|e| e.missed > 0)
            .map(|e| {
                (
                    self.list[e.topic as usize].name.clone(),
                    std::mem::take(&mut e.missed),
                )
            })
            .collect()
    }
}

impl Context {
    /// Refills the (drained) out buffer of a subscriber with its queued topic frames. False
    /// when there were none to move.
    pub(crate) fn next_topic_frames(&mut self, k: usize) -> bool {
        let Some(c) = self.conns.get_mut(k) else {
            return false;
        };
        if !c.has(flag::TOPIC_QUEUED)
            || c.state != State::WebSocket
            || c.has(flag::CLOSE_SENT | flag::SENDING_FRAGMENTED)
        {
            return false;
        }
        let mut out = std::mem::take(c.out_buf(&mut self.shared.bufs));
        out.clear();
        c.out_pos = 0;
        let rng = &mut self.shared.rng;
        let mut mask = || {
            use rand::RngCore;
            rng.next_u32().to_ne_bytes()
        };
        let n = self.shared.topics.pull(k, c, &mut out, PULL_CHUNK, &mut mask);
        c.out = out;
        self.shared.stats.messages_out += n as u64;
        n > 0
    }

    /// Serves the topics' work lists: subscribers with frames to send, missed-message
    /// notices, slow subscribers to close, publishers to read again.
    pub(crate) fn run_topics(&mut self) {
        let doomed = std::mem::take(&mut self.shared.topics.doomed);
        for (k, gen) in doomed {
            let k = k as usize;
            if self.conns.get(k).is_some_and(|c| c.gen == gen) {
                log::debug!("{}: topic subscriber too slow: closing", self.conns[k].peer());
                self.shared.stats.closed_slow += 1;
                self.guarded(Some(k), |ctx| {
                    if let Some(c) = ctx.conns.get_mut(k) {
                        if c.state == State::WebSocket {
                            Wsi::new(c, &mut ctx.shared, k as u32)
                                .close_frame(1008, "too slow for its topic");
                            ctx.flush(k);
                        } else {
                            ctx.remove(k);
                        }
                    }
                });
            }
        }
        let unpause = std::mem::take(&mut self.shared.topics.unpause);
        for (k, gen) in unpause {
            let k = k as usize;
            if let Some(c) = self.conns.get_mut(k).filter(|c| c.gen == gen) {
                if c.has(flag::TOPIC_PAUSED) {
                    c.clear(flag::TOPIC_PAUSED);
                    self.shared.schedule_resume(k, c);
                }
            }
        }
        let missed = std::mem::take(&mut self.shared.topics.missed);
        for (k, gen) in missed {
            let k = k as usize;
            let told = self.shared.topics.take_missed(k, gen);
            if self.conns.get(k).is_none_or(|c| c.gen != gen) {
                continue;
            }
            self.guarded(Some(k), |ctx| {
                for (topic, missed) in &told {
                    ctx.call_and_close(
                        k,
                        Reason::TopicMissed {
                            topic,
                            missed: *missed,
                        },
                    );
                }
                ctx.flush(k);
            });
        }
        let mut dirty = std::mem::take(&mut self.shared.topics.dirty);
        for &t in &dirty {
            // A copy: a flush can end a connection, and with it a subscription.
            let mut subs = std::mem::take(&mut self.shared.topics.scratch);
            if let Some(topic) = self.shared.topics.list.get_mut(t as usize) {
                topic.scheduled = false;
                subs.extend_from_slice(&topic.subs);
            }
            for &(k, gen) in &subs {
                let k = k as usize;
                if let Some(c) = self.conns.get_mut(k).filter(|c| c.gen == gen) {
                    c.set(flag::TOPIC_QUEUED);
                    self.guarded(Some(k), |ctx| ctx.flush(k));
                }
            }
            subs.clear();
            self.shared.topics.scratch = subs;
        }
        dirty.clear();
        if self.shared.topics.dirty.is_empty() {
            // Keep the allocation.
            self.shared.topics.dirty = dirty;
        }
    }
}

impl crate::shared::Shared {
    /// Moves every topic message still queued for subscriber `k` into its out buffer, so
    /// that a message the connection writes itself comes after the ones published before
    /// it (uWebSockets drains a subscriber the same way before a send). The queue is
    /// bounded by its topics' `max_queued`, so is what this adds to the out buffer.
    pub(crate) fn topic_frames_first(&mut self, k: usize, c: &mut Conn) {
        let mut out = std::mem::take(c.out_buf(&mut self.bufs));
        let rng = &mut self.rng;
        let mut mask = || {
            use rand::RngCore;
            rng.next_u32().to_ne_bytes()
        };
        let n = self.topics.pull(k, c, &mut out, usize::MAX, &mut mask);
        c.out = out;
        self.stats.messages_out += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Receiver, Role};
    use crate::transport::Transport;

    fn conn(gen: u32) -> Conn {
        let (a, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let rx = Receiver::new(Role::Server, Default::default());
        Conn::new(Transport::unix(a), rx, gen, 0, 0, 0, State::WebSocket)
    }

    fn no_mask() -> [u8; 4] {
        unreachable!("server frames are not masked")
    }

    /// What subscriber `k` would be sent now.
    fn pull_all(t: &mut Topics, k: usize, c: &mut Conn) -> Vec<u8> {
        let mut out = Vec::new();
        while t.pull(k, c, &mut out, PULL_CHUNK, &mut no_mask) > 0 {}
        out
    }

    #[test]
    fn a_message_is_framed_once_whatever_the_number_of_subscribers() {
        let mut t = Topics::new(TopicOptions::default());
        let mut conns: Vec<Conn> = (0..1000).map(conn).collect();
        for (k, c) in conns.iter_mut().enumerate() {
            assert!(t.subscribe(k, c, "room", None));
        }
        let r = t.publish("room", b"hello", false, None);
        assert_eq!(r.delivered, 1000);
        let frame = [0x81, 5, b'h', b'e', b'l', b'l', b'o'];
        // One frame held for the thousand: the topic's log is all the memory it takes.
        let log = &t.list[t.names["room"] as usize].log;
        assert_eq!(log.bytes, frame, "the message was framed more than once");
        assert_eq!(log.msgs.len(), 1);
        assert_eq!(t.subs.len(), 1000);
        // Each subscriber gets the same frame, copied from the one log; while any has not,
        // the log keeps it; once all have, it is emptied.
        for (k, c) in conns.iter_mut().enumerate() {
            assert_eq!(pull_all(&mut t, k, c), frame, "subscriber {k}");
            let log = &t.list[t.names["room"] as usize].log;
            assert_eq!(log.msgs.len(), usize::from(k < 999), "after subscriber {k}");
        }
        // A second publish is framed once too, into the emptied log.
        t.publish("room", b"again", true, None);
        assert_eq!(t.list[t.names["room"] as usize].log.bytes.len(), 7);
    }

    #[test]
    fn a_subscriber_of_two_topics_gets_their_messages_in_publish_order() {
        let mut t = Topics::new(TopicOptions::default());
        let mut a = conn(1);
        let mut b = conn(2);
        t.subscribe(0, &mut a, "x", None);
        t.subscribe(0, &mut a, "y", None);
        t.subscribe(1, &mut b, "y", None);
        for (topic, m) in [("x", b"1"), ("y", b"2"), ("y", b"3"), ("x", b"4"), ("y", b"5")] {
            t.publish(topic, m, false, None);
        }
        let payloads = |out: Vec<u8>| -> Vec<u8> { out.chunks(3).map(|f| f[2]).collect() };
        assert_eq!(payloads(pull_all(&mut t, 0, &mut a)), b"12345");
        assert_eq!(payloads(pull_all(&mut t, 1, &mut b)), b"235");
        // Both logs are empty once everyone has its messages.
        assert!(t.list.iter().all(|(_, topic)| topic.log.msgs.is_empty()));
    }

    #[test]
    fn drop_oldest_moves_only_the_slow_subscriber_on_and_bounds_the_log() {
        let max = 10 * (18 + ENTRY_COST);
        let mut t = Topics::new(TopicOptions {
            max_queued: max,
            policy: SlowPolicy::DropOldest,
        });
        let (mut fast, mut slow) = (conn(1), conn(2));
        t.subscribe(0, &mut fast, "r", None);
        t.subscribe(1, &mut slow, "r", None);
        let mut got = Vec::new();
        for i in 0..100u8 {
            let r = t.publish("r", &[i; 16], true, None);
            assert_eq!(r.dropped, usize::from(i >= 10), "publish {i}");
            got.extend(pull_all(&mut t, 0, &mut fast).chunks(18).map(|f| f[2]));
            let log = &t.list[t.names["r"] as usize].log;
            assert!(log.cost_from(log.first) <= max, "the log outgrew the bound");
        }
        assert_eq!(got, (0..100).collect::<Vec<u8>>(), "the fast one lost nothing");
        // The slow one: told of the 90 it missed before anything else, then the newest 10.
        assert!(pull_all(&mut t, 1, &mut slow).is_empty());
        assert_eq!(t.take_missed(1, 2), vec![("r".into(), 90)]);
        let rest: Vec<u8> = pull_all(&mut t, 1, &mut slow).chunks(18).map(|f| f[2]).collect();
        assert_eq!(rest, (90..100).collect::<Vec<u8>>());
    }

    #[test]
    fn a_subscriber_that_never_reads_costs_a_publish_no_walk_over_the_room() {
        let max = 100 * (18 + ENTRY_COST);
        let mut t = Topics::new(TopicOptions {
            max_queued: max,
            policy: SlowPolicy::DropOldest,
        });
        let mut conns: Vec<Conn> = (0..1000).map(conn).collect();
        for (k, c) in conns.iter_mut().enumerate() {
            t.subscribe(k, c, "r", None);
        }
        // Subscriber 0 never reads; the others read after every publish.
        let mut got = vec![0u32; 1000];
        for i in 0..2000u32 {
            t.publish("r", &[(i % 251) as u8; 16], true, None);
            for (k, c) in conns.iter_mut().enumerate().skip(1) {
                got[k] += (pull_all(&mut t, k, c).len() / 18) as u32;
            }
            let log = &t.list[t.names["r"] as usize].log;
            assert!(
                log.cost_from(log.first) <= max,
                "the log outgrew the bound at {i}"
            );
        }
        assert!(got[1..].iter().all(|&n| n == 2000), "a reader lost messages");
        eprintln!("{} enforcements, {} walks", t.enforced, t.walks);
        assert!(t.enforced >= 1900, "{}", t.enforced);
        assert!(
            t.walks * 20 < t.enforced,
            "{} walks over the 1,000 subscribers for {} publishes over the bound",
            t.walks,
            t.enforced
        );
        // The stuck one: the newest 100 after a notice of the 1,900 others.
        assert!(pull_all(&mut t, 0, &mut conns[0]).is_empty());
        assert_eq!(t.take_missed(0, 0), vec![("r".into(), 1900)]);
        assert_eq!(pull_all(&mut t, 0, &mut conns[0]).len(), 100 * 18);
    }
}
