//! A Redis (or Valkey) pub/sub backplane for topics across processes (cargo feature
//! `redis`): [`ContextBuilder::redis`](crate::ContextBuilder::redis).
//!
//! The protocol lives in [`Link`], a sans-IO state machine; this room gives it a socket in
//! the context's own loop. The Redis connection is a connection of the slab in a role of
//! its own (`State::Backplane`): connected without blocking (a host name is resolved on a
//! short-lived thread that wakes the loop), read and written by the transport like every
//! other connection, and never seen by a protocol. When it breaks, the link backs off and
//! the next `service()` after the delay connects again; local delivery never waits for it.

mod link;

pub use link::{Link, LinkConfig, LinkEvent, LinkStats, RedisUrl, WhileDown};

use crate::connection::State;
use crate::context::Context;
use crate::reason::ProtocolEvent;
use crate::roles::Stop;
use crate::timers::PendingTimeout;
use crate::topics::BridgeOp;
use crate::transport::Transport;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::Instant;

/// Capacity of the publishes' buffer kept between cycles.
const BRIDGE_KEEP: usize = 256 << 10;

/// The backplane's state in the context.
pub(crate) struct Backplane {
    pub(crate) link: Link,
    /// The Redis connection's slot and generation, while there is one.
    conn: Option<(usize, u32)>,
    /// A name resolution in flight.
    resolving: Option<mpsc::Receiver<io::Result<Vec<SocketAddr>>>>,
    /// Why the current connection failed, for the link's `Down` event and the log.
    error: Option<String>,
    /// The protocols were told of the outage (`BackplaneDown`), not yet of its end.
    told_down: bool,
}

impl Backplane {
    pub(crate) fn new(url: RedisUrl, cfg: LinkConfig) -> Backplane {
        use rand::{RngCore, SeedableRng};
        let mut id = [0u8; 16];
        rand::rngs::StdRng::from_os_rng().fill_bytes(&mut id);
        Backplane {
            link: Link::new(url, cfg, id, Instant::now()),
            conn: None,
            resolving: None,
            error: None,
            told_down: false,
        }
    }

    pub(crate) fn has_conn(&self) -> bool {
        self.conn.is_some()
    }

    fn is_conn(&self, k: usize, gen: u32) -> bool {
        self.conn == Some((k, gen))
    }
}

impl Context {
    /// The backplane's counters and whether its link is up (`None` without
    /// [`redis`](crate::ContextBuilder::redis)).
    pub fn backplane_stats(&self) -> Option<(bool, LinkStats)> {
        self.backplane.as_ref().map(|b| {
            let mut s = b.link.stats();
            // What the socket holds now, not as of the link's last look.
            let socket = b
                .conn
                .and_then(|(k, gen)| self.conns.get(k).filter(|c| c.gen == gen))
                .map_or(0, |c| c.unsent());
            s.unsent = b.link.pending() + socket;
            (b.link.is_up(), s)
        })
    }

    /// When the backplane next needs the loop without an event (a reconnect).
    pub(crate) fn backplane_timeout(&self) -> Option<Instant> {
        self.backplane.as_ref().and_then(|b| b.link.poll_timeout())
    }

    /// Once per cycle: a connection attempt due, a resolution back, events to act on.
    pub(crate) fn backplane_service(&mut self, now: Instant) {
        let Some(bp) = self.backplane.as_mut() else {
            return;
        };
        if bp.link.connect_due(now) {
            let u = bp.link.url().clone();
            match u.host.parse::<std::net::IpAddr>() {
                Ok(ip) => {
                    let addr = SocketAddr::new(ip, u.port);
                    self.backplane_connect(vec![addr]);
                }
                Err(_) => {
                    let (tx, rx) = mpsc::channel();
                    let waker = self.readiness.waker();
                    std::thread::spawn(move || {
                        let r = (u.host.as_str(), u.port).to_socket_addrs().map(Iterator::collect);
                        let _ = tx.send(r);
                        let _ = waker.wake();
                    });
                    bp.resolving = Some(rx);
                }
            }
        }
        let Some(bp) = self.backplane.as_mut() else {
            return;
        };
        if let Some(rx) = &bp.resolving {
            match rx.try_recv() {
                Ok(Ok(addrs)) if !addrs.is_empty() => {
                    bp.resolving = None;
                    self.backplane_connect(addrs);
                }
                Ok(r) => {
                    bp.resolving = None;
                    let why = match r {
                        Err(e) => format!("resolving {}: {e}", bp.link.url().host),
                        Ok(_) => format!("{} has no address", bp.link.url().host),
                    };
                    bp.link.on_disconnected(now, &why);
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    bp.resolving = None;
                    bp.link.on_disconnected(now, "the resolver thread died");
                }
            }
        }
        self.backplane_pump();
    }

    /// Starts a non-blocking connect to the first address (Redis is one server: no race).
    fn backplane_connect(&mut self, addrs: Vec<SocketAddr>) {
        let addr = addrs[0];
        let r = mio::net::TcpStream::connect(addr).and_then(|s| {
            s.set_nodelay(true)?;
            self.insert_conn(Transport::tcp(s), 0, State::BackplaneConnecting)
        });
        let Some(bp) = self.backplane.as_mut() else {
            return;
        };
        match r {
            Ok(k) => {
                bp.conn = Some((k, self.conns[k].gen));
                bp.error = Some(format!("connect to Redis at {addr} failed"));
                let ms = self.cfg.connect_timeout.as_millis() as u64;
                self.set_deadline(k, ms, PendingTimeout::AwaitingConnectResponse);
                self.sync_poll(k);
            }
            Err(e) => bp
                .link
                .on_disconnected(Instant::now(), &format!("connect to Redis at {addr}: {e}")),
        }
    }

    /// The connecting socket is writable (or failed).
    pub(crate) fn backplane_connect_event(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        match c.transport.connect_result() {
            Ok(false) => {}
            Ok(true) => {
                c.state = State::Backplane;
                crate::timers::Timers::disarm(c);
                if let Some(bp) = self.backplane.as_mut() {
                    bp.error = None;
                    bp.link.on_connected();
                }
                self.sync_poll(k);
                self.backplane_pump();
            }
            Err(e) => {
                if let Some(bp) = self.backplane.as_mut() {
                    bp.error = Some(format!("connect to Redis: {e}"));
                }
                self.remove(k);
            }
        }
    }

    /// Bytes from Redis.
    pub(crate) fn backplane_input(&mut self, k: usize, data: &[u8]) -> (usize, Stop) {
        let Some(bp) = self.backplane.as_mut() else {
            return (data.len(), Stop::Done);
        };
        if let Err(e) = bp.link.on_bytes(data) {
            log::warn!("redis backplane: {e}");
            bp.error = Some(e);
            self.remove(k);
            return (data.len(), Stop::Done);
        }
        if self.backplane_pump() > 0 && self.shared.topics.has_pending() {
            // Redis's pushes come in reads of up to a receive buffer (256 KiB), several
            // per cycle under a flood: their subscribers are flushed after each read
            // rather than once per cycle, so that one cycle's reads do not overflow the
            // bound (256 KiB by default) of a subscriber that keeps up.
            self.run_topics();
        }
        (data.len(), Stop::NeedMore)
    }

    /// The Redis connection is being removed (EOF, error, deadline, shutdown): frees it
    /// without protocol callbacks and lets the link back off.
    pub(crate) fn backplane_removed(&mut self, k: usize) {
        let c = self.conns.remove(k);
        self.readiness.remove_conn(&c);
        self.shared.timers.forget(&c);
        self.protocols[c.proto as usize].handler.drop_session(c.session);
        self.shared.bufs.give(c.out);
        self.shared.bufs.give(c.stash);
        if let Some(bp) = self.backplane.as_mut() {
            if bp.is_conn(k, c.gen) {
                bp.conn = None;
                let why = bp
                    .error
                    .take()
                    .unwrap_or_else(|| "Redis closed the connection".into());
                log::warn!("redis backplane down: {why}");
                bp.link.on_disconnected(Instant::now(), &why);
            }
        }
    }

    /// Moves the topics' changes to the link, the link's output to the socket and its
    /// events to the topics. Returns the number of messages from Redis delivered here.
    fn backplane_pump(&mut self) -> usize {
        let Some(bp) = self.backplane.as_mut() else {
            return 0;
        };
        // The socket's unsent bytes count towards the link's bound on what waits for Redis.
        let conn = bp.conn.and_then(|(k, gen)| {
            self.conns
                .get(k)
                .filter(|c| c.gen == gen && c.state == State::Backplane)
                .map(|c| (k, c.unsent()))
        });
        bp.link.set_backlog(conn.map_or(0, |(_, unsent)| unsent));
        if let Some(b) = self.shared.topics.bridge.as_mut().filter(|b| !b.ops.is_empty()) {
            for op in b.ops.drain(..) {
                match op {
                    BridgeOp::Subscribe(t) if bp.link.bridges(&t) => bp.link.subscribe(&t),
                    BridgeOp::Unsubscribe(t) if bp.link.bridges(&t) => bp.link.unsubscribe(&t),
                    BridgeOp::Publish { topic, data, binary } => {
                        // The names were `&str`s when copied in.
                        let Ok(t) = std::str::from_utf8(&b.bytes[topic]) else {
                            continue;
                        };
                        if bp.link.bridges(t) {
                            bp.link.publish(t, &b.bytes[data], binary);
                        }
                    }
                    _ => {}
                }
            }
            b.bytes.clear();
            if b.bytes.capacity() > BRIDGE_KEEP {
                // A burst's buffer is not kept for good.
                b.bytes.shrink_to(BRIDGE_KEEP);
            }
        }
        if let (Some((k, _)), true) = (conn, bp.link.wants_write()) {
            let c = &mut self.conns[k];
            bp.link.transmit_into(c.out_buf(&mut self.shared.bufs));
            self.flush(k);
            let unsent = self.conns.get(k).map_or(0, |c| c.unsent());
            if let Some(bp) = self.backplane.as_mut() {
                bp.link.set_backlog(unsent);
            }
        }
        let mut delivered = 0;
        while let Some(ev) = self.backplane.as_mut().and_then(|b| b.link.poll_event()) {
            match ev {
                LinkEvent::Deliver { topic, data, binary } => {
                    self.shared.topics.publish_here(&topic, &data, binary, None);
                    delivered += 1;
                }
                LinkEvent::Up => {
                    log::info!("redis backplane up");
                    if let Some(b) = self.backplane.as_mut() {
                        b.told_down = false;
                    }
                    self.guarded(None, |ctx| ctx.protocol_event_all(ProtocolEvent::BackplaneUp));
                }
                LinkEvent::Down(why) => {
                    log::debug!("redis backplane: {why}");
                    // Each failed reconnect is a `Down` of the link; the protocols hear of
                    // the outage once.
                    if self
                        .backplane
                        .as_mut()
                        .is_some_and(|b| !std::mem::replace(&mut b.told_down, true))
                    {
                        self.guarded(None, |ctx| ctx.protocol_event_all(ProtocolEvent::BackplaneDown));
                    }
                }
            }
        }
        delivered
    }
}
