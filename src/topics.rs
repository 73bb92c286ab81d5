//! Topics: publish / subscribe with bounded fan-out (uWebSockets' `subscribe`, `publish`,
//! `numSubscribers`).
//!
//! A published message is framed once, into an `Arc<[u8]>`, and each subscriber's queue
//! holds a pointer to it: no copy per subscriber while it waits. A subscriber's frames move
//! into its out buffer only when that buffer has drained (the flush pulls them, as it pulls
//! a file response's chunks), so a slow subscriber holds pointers, not bytes, and at most
//! one out-buffer's worth (64 KiB) is copied ahead of the socket. Server frames are
//! unmasked, which is what makes sharing possible; an outgoing (client) connection must
//! mask every frame with a key of its own, so for a client subscriber the payload is
//! re-framed, masked, as it is pulled (one copy for that subscriber).
//!
//! Each subscriber's queue is bounded per topic ([`TopicOptions::max_queued`], counting
//! each message's frame plus [`ENTRY_COST`]), and the topic's [`SlowPolicy`] says what
//! happens at the bound.
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
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a queued message costs a subscriber's bound beyond its frame bytes: the queue
/// entry and the share of the `Arc`'s header, so that a flood of tiny messages is bounded
/// too.
pub const ENTRY_COST: usize = 32;

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
    /// Subscribers at their bound (push-back).
    full: u32,
    /// Publishing connections paused by this topic: (slot, generation).
    paused: Vec<(u32, u32)>,
}

/// One subscription of a subscriber.
struct SubTopic {
    topic: u32,
    /// The subscriber's position in the topic's `subs`.
    slot: u32,
    queued: usize,
    missed: u64,
    full_since: Option<Instant>,
}

/// A subscriber: the topics of one connection and its queue of shared frames.
struct Sub {
    gen: u32,
    topics: Vec<SubTopic>,
    queue: VecDeque<(u32, Arc<[u8]>)>,
    /// In `dirty` already.
    scheduled: bool,
    /// In `missed` already.
    notify: bool,
    /// Closing: queue nothing more.
    doomed: bool,
}

impl Sub {
    fn entry(&mut self, topic: u32) -> Option<&mut SubTopic> {
        self.topics.iter_mut().find(|t| t.topic == topic)
    }
}

/// Every topic of a context and the subscribers' queues. Lives in
/// [`Shared`](crate::shared::Shared), so callbacks publish and subscribe directly.
#[derive(Default)]
pub(crate) struct Topics {
    names: HashMap<Box<str>, u32>,
    list: Slab<Topic>,
    subs: HashMap<u32, Sub>,
    pub(crate) default: TopicOptions,
    /// Subscribers with frames to pull: (slot, generation).
    pub(crate) dirty: Vec<(u32, u32)>,
    /// Subscribers to tell of missed messages.
    pub(crate) missed: Vec<(u32, u32)>,
    /// Subscribers to close (slow, or stalled): (slot, generation).
    pub(crate) doomed: Vec<(u32, u32)>,
    /// Publishers to read again.
    pub(crate) unpause: Vec<(u32, u32)>,
    /// Push-back subscribers that became full: (since, slot, generation, topic).
    stalls: Vec<(Instant, u32, u32, u32)>,
    /// With a Redis backplane: what other processes must hear of (topics created and
    /// gone, publishes), drained by the backplane each cycle. `None` without one.
    #[cfg(feature = "redis")]
    pub(crate) bridge: Option<Vec<BridgeOp>>,
}

/// A topic change for the backplane.
#[cfg(feature = "redis")]
#[derive(Debug)]
pub(crate) enum BridgeOp {
    /// The first local subscriber joined.
    Subscribe(Box<str>),
    /// The last local subscriber left.
    Unsubscribe(Box<str>),
    /// A message published here.
    Publish(Box<str>, Vec<u8>, bool),
}

fn frame_cost(f: &[u8]) -> usize {
    f.len() + ENTRY_COST
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
    /// default). False if it already was.
    pub(crate) fn subscribe(
        &mut self,
        key: usize,
        c: &mut Conn,
        name: &str,
        opts: Option<TopicOptions>,
    ) -> bool {
        let key32 = key as u32;
        let t = match self.names.get(name) {
            Some(&t) => t,
            None => {
                let t = self.list.insert(Topic {
                    name: name.into(),
                    opts: opts.unwrap_or(self.default),
                    subs: Vec::new(),
                    full: 0,
                    paused: Vec::new(),
                }) as u32;
                self.names.insert(name.into(), t);
                #[cfg(feature = "redis")]
                if let Some(b) = &mut self.bridge {
                    b.push(BridgeOp::Subscribe(name.into()));
                }
                t
            }
        };
        let sub = self.subs.entry(key32).or_insert_with(|| Sub {
            gen: c.gen,
            topics: Vec::new(),
            queue: VecDeque::new(),
            scheduled: false,
            notify: false,
            doomed: false,
        });
        if sub.gen != c.gen {
            // A stale record of an earlier connection in this slot: cannot happen, as
            // removal drops it, but never let one connection inherit another's queue.
            *sub = Sub {
                gen: c.gen,
                topics: Vec::new(),
                queue: VecDeque::new(),
                scheduled: false,
                notify: false,
                doomed: false,
            };
        }
        if sub.topics.iter().any(|e| e.topic == t) {
            return false;
        }
        let topic = &mut self.list[t as usize];
        sub.topics.push(SubTopic {
            topic: t,
            slot: topic.subs.len() as u32,
            queued: 0,
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
        sub.queue.retain(|(qt, _)| *qt != t);
        let empty = sub.topics.is_empty();
        if empty {
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
        if topic.subs.is_empty() {
            self.unpause.append(&mut topic.paused);
            let name = self.list.remove(t as usize).name;
            self.names.remove(&name);
            #[cfg(feature = "redis")]
            if let Some(b) = &mut self.bridge {
                b.push(BridgeOp::Unsubscribe(name));
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
            b.push(BridgeOp::Publish(name.into(), data.to_vec(), binary));
        }
        self.publish_here(name, data, binary, publisher)
    }

    /// [`publish`](Self::publish) to this process' subscribers only: a message that came
    /// from another process through the backplane.
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
        let mut framed = Vec::with_capacity(data.len() + 10);
        let op = if binary { OpCode::Binary } else { OpCode::Text };
        encoder::encode_frame(&mut framed, op, true, None, data);
        let frame: Arc<[u8]> = framed.into();
        let cost = frame_cost(&frame);
        let topic = &mut self.list[t as usize];
        let opts = topic.opts;
        for &(key, gen) in &topic.subs {
            let Some(sub) = self.subs.get_mut(&key).filter(|s| s.gen == gen && !s.doomed) else {
                continue;
            };
            let e = sub
                .topics
                .iter_mut()
                .find(|e| e.topic == t)
                .expect("a subscriber lists its topics");
            if e.queued > 0 && e.queued + cost > opts.max_queued {
                match opts.policy {
                    SlowPolicy::DropOldest => {
                        while e.queued > 0 && e.queued + cost > opts.max_queued {
                            let i = sub
                                .queue
                                .iter()
                                .position(|(qt, _)| *qt == t)
                                .expect("queued bytes are in the queue");
                            let (_, old) = sub.queue.remove(i).expect("found");
                            e.queued -= frame_cost(&old);
                            e.missed += 1;
                        }
                        r.dropped += 1;
                    }
                    SlowPolicy::Close => {
                        sub.doomed = true;
                        sub.queue.clear();
                        self.doomed.push((key, gen));
                        r.dropped += 1;
                        continue;
                    }
                    SlowPolicy::PushBack { .. } => {
                        if e.queued + cost > 2 * opts.max_queued {
                            // Over twice the bound (many publishers, or none to pause): the
                            // memory bound wins.
                            if e.full_since.take().is_some() {
                                topic.full -= 1;
                            }
                            sub.doomed = true;
                            sub.queue.clear();
                            self.doomed.push((key, gen));
                            r.dropped += 1;
                            continue;
                        }
                        if e.full_since.is_none() {
                            let now = Instant::now();
                            e.full_since = Some(now);
                            topic.full += 1;
                            self.stalls.push((now, key, gen, t));
                        }
                    }
                }
            }
            e.queued += cost;
            sub.queue.push_back((t, frame.clone()));
            r.delivered += 1;
            if !sub.scheduled {
                sub.scheduled = true;
                self.dirty.push((key, gen));
            }
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

    /// Push-back subscribers full for longer than their topic's `stall`: to be closed.
    pub(crate) fn expire_stalls(&mut self, now: Instant) {
        if self.stalls.is_empty() {
            return;
        }
        let mut stalls = std::mem::take(&mut self.stalls);
        stalls.retain(|&(since, key, gen, t)| {
            let Some(sub) = self.subs.get_mut(&key).filter(|s| s.gen == gen && !s.doomed) else {
                return false;
            };
            let Some(e) = sub.topics.iter_mut().find(|e| e.topic == t) else {
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
            sub.doomed = true;
            sub.queue.clear();
            e.full_since = None;
            let topic = &mut self.list[t as usize];
            topic.full -= 1;
            if topic.full == 0 {
                self.unpause.append(&mut topic.paused);
            }
            self.doomed.push((key, gen));
            false
        });
        self.stalls = stalls;
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

    /// Moves queued frames of subscriber `key` into `out` (up to a chunk). True if any
    /// moved. Stops before the next frame when missed messages are to be told first.
    fn pull(
        &mut self,
        key: usize,
        c: &mut Conn,
        out: &mut Vec<u8>,
        mask: &mut impl FnMut() -> [u8; 4],
    ) -> usize {
        let Some(sub) = self.subs.get_mut(&(key as u32)).filter(|s| s.gen == c.gen) else {
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
        while out.len() < PULL_CHUNK {
            let Some((t, f)) = sub.queue.pop_front() else {
                break;
            };
            if client {
                // Client frames must be masked, each with its own key: re-frame.
                let hlen = match f[1] & 0x7f {
                    126 => 4,
                    127 => 10,
                    _ => 2,
                };
                let op = OpCode::from_u8(f[0] & 0x0f).unwrap_or(OpCode::Binary);
                encoder::encode_frame(out, op, true, Some(mask()), &f[hlen..]);
            } else {
                out.extend_from_slice(&f);
            }
            n += 1;
            let topic = &mut self.list[t as usize];
            let e = sub.topics.iter_mut().find(|e| e.topic == t).expect("listed");
            e.queued -= frame_cost(&f);
            if e.full_since.is_some() && e.queued <= topic.opts.max_queued / 2 {
                e.full_since = None;
                topic.full -= 1;
                if topic.full == 0 {
                    self.unpause.append(&mut topic.paused);
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

    fn unschedule(&mut self, key: u32, gen: u32) {
        if let Some(s) = self.subs.get_mut(&key).filter(|s| s.gen == gen) {
            s.scheduled = false;
        }
    }
}

impl Context {
    /// Refills the (drained) out buffer of a subscriber with its queued topic frames. False
    /// when there were none to move.
    pub(crate) fn next_topic_frames(&mut self, k: usize) -> bool {
        let Some(c) = self.conns.get_mut(k) else {
            return false;
        };
        if !c.has(flag::SUBSCRIBED)
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
        let n = self.shared.topics.pull(k, c, &mut out, &mut mask);
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
        let dirty = std::mem::take(&mut self.shared.topics.dirty);
        for (k, gen) in dirty {
            self.shared.topics.unschedule(k, gen);
            let k = k as usize;
            if self.conns.get(k).is_some_and(|c| c.gen == gen) {
                self.guarded(Some(k), |ctx| ctx.flush(k));
            }
        }
    }
}
