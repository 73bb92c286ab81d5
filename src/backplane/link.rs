//! The Redis link as a sans-IO state machine: bytes in ([`Link::on_bytes`]), bytes out
//! ([`Link::take_transmit`]), events out ([`Link::poll_event`]), and the time passed in
//! ([`Link::on_disconnected`], [`Link::poll_timeout`]). It never touches a socket or a
//! clock, so tests drive reconnects, backoff and garbage without a server or a sleep.
//!
//! One connection in RESP3 (`HELLO 3`), so that SUBSCRIBE pushes and PUBLISH replies share
//! it: Redis 6 or later (and Valkey). Channels are `prefix + topic`; a published payload is
//! `process id (16 bytes) | kind (b't' text, b'b' binary) | data`, so a process recognises
//! its own messages when Redis echoes them back and does not deliver them twice.

use redis_protocol::resp3::decode::complete::decode_range;
use redis_protocol::resp3::encode::complete::encode_borrowed;
use redis_protocol::resp3::types::{BorrowedFrame, RangeFrame};
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// Where the Redis server is and who we are to it: parsed from
/// `redis://[[user]:password@]host[:port][/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port, 6379 by default.
    pub port: u16,
    /// ACL user name (`default` when the URL gives only a password).
    pub user: Option<String>,
    /// Password, percent-decoded.
    pub password: Option<String>,
    /// Database number (`SELECT`); pub/sub channels are not scoped by it in Redis, so the
    /// channel prefix carries it too.
    pub db: u32,
}

impl fmt::Debug for RedisUrl {
    // The password is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("db", &self.db)
            .finish()
    }
}

impl RedisUrl {
    /// Parses a `redis://` URL.
    ///
    /// ```
    /// # use wsreactor::backplane::RedisUrl;
    /// let u = RedisUrl::parse("redis://:s%40cret@127.0.0.1:6380/2").unwrap();
    /// assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6380, 2));
    /// assert_eq!(u.password.as_deref(), Some("s@cret"));
    /// assert!(RedisUrl::parse("http://x/").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("not a redis:// URL: {url:?}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "the URL's credentials are not UTF-8".to_string())
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(decode(user)?).filter(|u| !u.is_empty()), Some(decode(pass)?)),
                None => (Some(decode(u)?).filter(|u| !u.is_empty()), None),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("unclosed [ in {url:?}"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        let port = match port {
            None | Some("") => 6379,
            Some(p) => p.parse().map_err(|_| format!("bad port in {url:?}"))?,
        };
        let db = match path.trim_end_matches('/') {
            "" => 0,
            d => d.parse().map_err(|_| format!("bad database number in {url:?}"))?,
        };
        Ok(RedisUrl {
            host: host.to_owned(),
            port,
            user,
            password,
            db,
        })
    }
}

/// What happens to publishes while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhileDown {
    /// Keep up to this many bytes of payload, oldest dropped (and counted) first, and send
    /// them once the link is back.
    Queue(usize),
    /// Drop them (counted): cross-process delivery is at most once anyway.
    Drop,
}

/// Settings of the link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Channel name prefix; the topic follows it.
    pub prefix: String,
    /// Publishes while down.
    pub while_down: WhileDown,
    /// First reconnect delay; it doubles after each failure up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// Largest frame accepted from Redis; a longer one (or a buffer growing past it without
    /// completing a frame) is treated as garbage and the link reconnects.
    pub max_frame: usize,
    /// Bytes queued towards Redis (in the link and in the socket's out buffer, which the
    /// caller reports with [`Link::set_backlog`]) before publishes are dropped (and
    /// counted) rather than buffered: a stalled Redis must not grow our memory without
    /// bound.
    pub max_unsent: usize,
    /// Which topics span processes; the others stay local (a per-process status feed,
    /// say). Default: all.
    pub bridged: fn(&str) -> bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            prefix: "wsreactor:".into(),
            while_down: WhileDown::Queue(1 << 20),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_frame: 16 << 20,
            max_unsent: 8 << 20,
            bridged: |_| true,
        }
    }
}

/// What the link tells the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A message another process published on a topic we are subscribed to.
    Deliver {
        /// The topic (channel name without the prefix).
        topic: String,
        /// The payload as published.
        data: Vec<u8>,
        /// Published as binary (else text).
        binary: bool,
    },
    /// The link is up: authenticated, database selected, every live topic resubscribed.
    Up,
    /// The link went down (or failed to come up); it reconnects after a backoff.
    Down(String),
}

/// Counters of the link, for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Messages published to Redis.
    pub published: u64,
    /// Messages from other processes delivered locally.
    pub delivered: u64,
    /// Our own messages echoed back by Redis and skipped.
    pub own_skipped: u64,
    /// Publishes dropped: while down (policy or queue bound), or towards a stalled Redis
    /// ([`LinkConfig::max_unsent`]).
    pub dropped: u64,
    /// Messages on our channels we could not read (not in our payload format).
    pub malformed: u64,
    /// Connections made (the first and each reconnect).
    pub connects: u64,
    /// Times the link went down.
    pub downs: u64,
    /// Bytes towards Redis not yet taken by the kernel, now (the link's and the socket's).
    pub unsent: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No connection; the next attempt is due at the time given.
    Down(Instant),
    /// The caller is connecting the socket.
    Connecting,
    /// HELLO (and SELECT) sent, replies awaited.
    Handshake,
    /// Working.
    Up,
}

/// The reply a sent command expects, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Hello,
    Select,
    Publish,
}

/// A Redis pub/sub link.
pub struct Link {
    cfg: LinkConfig,
    url: RedisUrl,
    id: [u8; 16],
    state: State,
    backoff: Duration,
    /// Topics with local subscribers: what Redis must have us subscribed to.
    wanted: BTreeSet<String>,
    /// The channel prefix, with the database number unless it is 0.
    prefix: Vec<u8>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    /// Bytes the caller's socket still holds (see [`Link::set_backlog`]).
    backlog: usize,
    /// Scratch for a publish's channel name and tagged payload, kept to spare an
    /// allocation per message.
    channel_buf: Vec<u8>,
    payload_buf: Vec<u8>,
    expect: VecDeque<Expect>,
    /// Publishes waiting for the link (topic, payload already in our format).
    queued: VecDeque<(String, Vec<u8>)>,
    queued_bytes: usize,
    events: VecDeque<LinkEvent>,
    stats: LinkStats,
}

impl Link {
    /// A link that wants to connect at once. `id` tags our messages (a random process id).
    pub fn new(url: RedisUrl, cfg: LinkConfig, id: [u8; 16], now: Instant) -> Link {
        // Redis does not scope pub/sub by database, so the prefix does.
        let mut prefix = cfg.prefix.as_bytes().to_vec();
        if url.db != 0 {
            prefix.extend_from_slice(format!("{}:", url.db).as_bytes());
        }
        Link {
            prefix,
            backlog: 0,
            channel_buf: Vec::new(),
            payload_buf: Vec::new(),
            backoff: cfg.min_backoff,
            cfg,
            url,
            id,
            state: State::Down(now),
            wanted: BTreeSet::new(),
            rx: Vec::new(),
            tx: Vec::new(),
            expect: VecDeque::new(),
            queued: VecDeque::new(),
            queued_bytes: 0,
            events: VecDeque::new(),
            stats: LinkStats::default(),
        }
    }

    /// The server to connect to.
    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            unsent: self.backlog + self.tx.len(),
            ..self.stats
        }
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// Whether a connection attempt is due at `now`; if so the caller connects a socket and
    /// calls [`on_connected`](Self::on_connected) or [`on_disconnected`](Self::on_disconnected).
    pub fn connect_due(&mut self, now: Instant) -> bool {
        match self.state {
            State::Down(at) if at <= now => {
                self.state = State::Connecting;
                true
            }
            _ => false,
        }
    }

    /// When the link next needs [`connect_due`](Self::connect_due) called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Down(at) => Some(at),
            _ => None,
        }
    }

    /// The socket connected: authenticate, select, resubscribe.
    pub fn on_connected(&mut self) {
        self.stats.connects += 1;
        self.rx.clear();
        self.tx.clear();
        self.expect.clear();
        let mut hello: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(p) = &self.url.password {
            hello.push(b"AUTH");
            hello.push(self.url.user.as_deref().unwrap_or("default").as_bytes());
            hello.push(p.as_bytes());
        }
        command(&mut self.tx, &hello);
        self.expect.push_back(Expect::Hello);
        if self.url.db != 0 {
            let db = self.url.db.to_string();
            command(&mut self.tx, &[b"SELECT", db.as_bytes()]);
            self.expect.push_back(Expect::Select);
        }
        self.state = State::Handshake;
    }

    /// The connection failed or ended (or the caller gave up on it): back off and retry.
    pub fn on_disconnected(&mut self, now: Instant, why: &str) {
        if matches!(self.state, State::Down(_)) {
            return;
        }
        if self.state == State::Up {
            // A working link resets the backoff: the first retry is quick.
            self.backoff = self.cfg.min_backoff;
        }
        self.stats.downs += 1;
        // In-flight publishes may or may not have reached Redis: at most once, so they are
        // not resent.
        self.rx.clear();
        self.tx.clear();
        self.backlog = 0;
        self.expect.clear();
        self.state = State::Down(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.cfg.max_backoff);
        self.events.push_back(LinkEvent::Down(why.to_owned()));
    }

    /// Whether `topic` spans processes ([`LinkConfig::bridged`]).
    pub fn bridges(&self, topic: &str) -> bool {
        (self.cfg.bridged)(topic)
    }

    /// The first local subscriber joined `topic`.
    pub fn subscribe(&mut self, topic: &str) {
        if self.wanted.insert(topic.to_owned()) && self.state == State::Up {
            let ch = self.channel(topic);
            command(&mut self.tx, &[b"SUBSCRIBE", &ch]);
        }
    }

    /// The last local subscriber left `topic`.
    pub fn unsubscribe(&mut self, topic: &str) {
        if self.wanted.remove(topic) && self.state == State::Up {
            let ch = self.channel(topic);
            command(&mut self.tx, &[b"UNSUBSCRIBE", &ch]);
        }
    }

    /// Topics Redis should have us subscribed to.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.wanted.iter().map(String::as_str)
    }

    /// Publishes a message to the other processes (local delivery is the caller's).
    pub fn publish(&mut self, topic: &str, data: &[u8], binary: bool) {
        if self.state == State::Up {
            let mut payload = std::mem::take(&mut self.payload_buf);
            payload.clear();
            payload.extend_from_slice(&self.id);
            payload.push(if binary { b'b' } else { b't' });
            payload.extend_from_slice(data);
            self.send_publish(topic, &payload);
            self.payload_buf = payload;
            return;
        }
        let mut payload = Vec::with_capacity(17 + data.len());
        payload.extend_from_slice(&self.id);
        payload.push(if binary { b'b' } else { b't' });
        payload.extend_from_slice(data);
        match self.cfg.while_down {
            WhileDown::Drop => self.stats.dropped += 1,
            WhileDown::Queue(max) => {
                if payload.len() > max {
                    self.stats.dropped += 1;
                    return;
                }
                self.queued_bytes += payload.len();
                self.queued.push_back((topic.to_owned(), payload));
                while self.queued_bytes > max {
                    let (_, old) = self.queued.pop_front().expect("queue holds the bytes");
                    self.queued_bytes -= old.len();
                    self.stats.dropped += 1;
                }
            }
        }
    }

    fn send_publish(&mut self, topic: &str, payload: &[u8]) {
        if self.backlog + self.tx.len() + payload.len() > self.cfg.max_unsent {
            self.stats.dropped += 1;
            return;
        }
        self.channel_buf.clear();
        self.channel_buf.extend_from_slice(&self.prefix);
        self.channel_buf.extend_from_slice(topic.as_bytes());
        let args = [blob(b"PUBLISH"), blob(&self.channel_buf), blob(payload)];
        encode_array(&mut self.tx, &args);
        self.expect.push_back(Expect::Publish);
        self.stats.published += 1;
    }

    /// Tells the link how many bytes it gave the socket earlier are still waiting there
    /// (the kernel did not take them yet): they count towards
    /// [`LinkConfig::max_unsent`], so that a Redis which stops reading makes publishes
    /// drop here instead of piling up in the socket's buffer.
    pub fn set_backlog(&mut self, bytes: usize) {
        self.backlog = bytes;
    }

    /// Bytes to write to the socket (the caller keeps what the socket did not take and
    /// writes it first next time).
    pub fn take_transmit(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tx)
    }

    /// Appends the bytes to write to `out` (like [`take_transmit`](Self::take_transmit),
    /// keeping the link's buffer for the next ones).
    pub fn transmit_into(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tx);
        self.backlog += self.tx.len();
        self.tx.clear();
    }

    /// Bytes the link holds for the socket (not handed over yet).
    pub fn pending(&self) -> usize {
        self.tx.len()
    }

    /// Whether there are bytes to write.
    pub fn wants_write(&self) -> bool {
        !self.tx.is_empty()
    }

    /// The next event for the loop.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// Bytes read from the socket. An error means the peer is not speaking Redis (or broke
    /// a limit): the caller closes the socket and calls
    /// [`on_disconnected`](Self::on_disconnected) with the error's text.
    pub fn on_bytes(&mut self, data: &[u8]) -> Result<(), String> {
        if !matches!(self.state, State::Handshake | State::Up) {
            return Ok(());
        }
        // Whole frames are parsed straight from the bytes read when there is no partial
        // frame held over; only a tail is copied.
        let mut buf = std::mem::take(&mut self.rx);
        let direct = buf.is_empty();
        let input: &[u8] = if direct {
            data
        } else {
            buf.extend_from_slice(data);
            &buf
        };
        let mut at = 0;
        let result = loop {
            match decode_range(&input[at..]) {
                Ok(Some((frame, n))) => {
                    let r = self.on_frame(&frame, &input[at..at + n]);
                    at += n;
                    if let Err(e) = r {
                        break Err(e);
                    }
                }
                Ok(None) => {
                    if input.len() - at > self.cfg.max_frame {
                        break Err(format!("a reply of over {} bytes from Redis", self.cfg.max_frame));
                    }
                    break Ok(());
                }
                Err(e) => break Err(format!("not RESP from Redis: {e:?}")),
            }
        };
        if result.is_ok() {
            if direct {
                buf.extend_from_slice(&data[at..]);
            } else {
                buf.drain(..at);
            }
            self.rx = buf;
        }
        result
    }

    /// One frame from Redis; `buf` holds its bytes (the frame's ranges index it).
    fn on_frame(&mut self, frame: &RangeFrame, buf: &[u8]) -> Result<(), String> {
        if let RangeFrame::Push { data, .. } = frame {
            return self.on_push(data, buf);
        }
        let Some(expect) = self.expect.pop_front() else {
            return Err(format!("a reply to nothing from Redis: {}", brief(buf)));
        };
        if let Some(e) = error_text(frame, buf) {
            return match expect {
                // A refused publish (e.g. a replica's READONLY): counted, the link stays.
                Expect::Publish => {
                    self.stats.dropped += 1;
                    self.stats.published -= 1;
                    Ok(())
                }
                Expect::Hello => Err(format!(
                    "Redis refused HELLO 3 (needs Redis 6 or later; check the password): {e}"
                )),
                Expect::Select => Err(format!("Redis refused SELECT {}: {e}", self.url.db)),
            };
        }
        if self.state == State::Handshake && self.expect.is_empty() {
            self.come_up();
        }
        Ok(())
    }

    /// Handshake done: resubscribe every live topic, then send what was queued.
    fn come_up(&mut self) {
        self.state = State::Up;
        self.backoff = self.cfg.min_backoff;
        let channels: Vec<Vec<u8>> = self.wanted.iter().map(|t| self.channel(t)).collect();
        // Several channels per SUBSCRIBE, in bounded batches.
        for batch in channels.chunks(256) {
            let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            args.extend(batch.iter().map(Vec::as_slice));
            command(&mut self.tx, &args);
        }
        let queued = std::mem::take(&mut self.queued);
        self.queued_bytes = 0;
        for (topic, payload) in queued {
            self.send_publish(&topic, &payload);
        }
        self.events.push_back(LinkEvent::Up);
    }

    fn on_push(&mut self, data: &[RangeFrame], buf: &[u8]) -> Result<(), String> {
        match data.first().and_then(|f| bytes_of(f, buf)) {
            Some(b"message") => {
                let (Some(ch), Some(payload)) = (
                    data.get(1).and_then(|f| bytes_of(f, buf)),
                    data.get(2).and_then(|f| bytes_of(f, buf)),
                ) else {
                    return Err("a malformed message push from Redis".into());
                };
                self.on_message(ch, payload);
                Ok(())
            }
            // Subscription confirmations, and other pushes (client tracking, …), are not
            // ours to act on.
            _ => Ok(()),
        }
    }

    fn on_message(&mut self, channel: &[u8], payload: &[u8]) {
        let Some(topic) = channel
            .strip_prefix(self.prefix.as_slice())
            .and_then(|t| std::str::from_utf8(t).ok())
        else {
            self.stats.malformed += 1;
            return;
        };
        if payload.len() < 17 || !matches!(payload[16], b't' | b'b') {
            self.stats.malformed += 1;
            return;
        }
        // Our own echo first: under a flood from this process it is most of what comes
        // back, and it costs no lookup and no copy.
        if payload[..16] == self.id {
            self.stats.own_skipped += 1;
            return;
        }
        if !self.wanted.contains(topic) {
            // Unsubscribed meanwhile: the UNSUBSCRIBE is on its way.
            return;
        }
        let binary = payload[16] == b'b';
        let data = &payload[17..];
        if !binary && std::str::from_utf8(data).is_err() {
            // A text message must stay valid UTF-8 towards WebSocket clients.
            self.stats.malformed += 1;
            return;
        }
        self.stats.delivered += 1;
        self.events.push_back(LinkEvent::Deliver {
            topic: topic.to_owned(),
            data: data.to_vec(),
            binary,
        });
    }

    fn channel(&self, topic: &str) -> Vec<u8> {
        let mut c = self.prefix.clone();
        c.extend_from_slice(topic.as_bytes());
        c
    }
}

fn blob(data: &[u8]) -> BorrowedFrame<'_> {
    BorrowedFrame::BlobString {
        data,
        attributes: None,
    }
}

/// Appends a command: an array of blob strings, as every Redis client sends. Borrowed
/// frames: the crate encodes straight from the arguments, without copying them first.
fn encode_array(out: &mut Vec<u8>, args: &[BorrowedFrame<'_>]) {
    let frame = BorrowedFrame::Array {
        data: args,
        attributes: None,
    };
    // Room for the frame by a bound rather than `encode_len`, which the encoder computes
    // itself again (digit counts by floating-point log10: a third of a PUBLISH's cost).
    let bound = 32
        + args
            .iter()
            .map(|a| match a {
                BorrowedFrame::BlobString { data, .. } => data.len() + 32,
                _ => 64,
            })
            .sum::<usize>();
    let at = out.len();
    out.resize(at + bound, 0);
    let n = encode_borrowed(&mut out[at..], &frame, false).expect("the bound holds the frame");
    out.truncate(at + n);
}

/// [`encode_array`] for the occasional command (handshake, subscriptions).
fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let frames: Vec<BorrowedFrame<'_>> = args.iter().map(|a| blob(a)).collect();
    encode_array(out, &frames);
}

fn bytes_of<'a>(f: &RangeFrame, buf: &'a [u8]) -> Option<&'a [u8]> {
    match f {
        RangeFrame::BlobString { data, .. } | RangeFrame::SimpleString { data, .. } => {
            buf.get(data.0..data.1)
        }
        _ => None,
    }
}

fn error_text(f: &RangeFrame, buf: &[u8]) -> Option<String> {
    match f {
        RangeFrame::SimpleError { data, .. } | RangeFrame::BlobError { data, .. } => {
            Some(String::from_utf8_lossy(buf.get(data.0..data.1).unwrap_or_default()).into_owned())
        }
        _ => None,
    }
}

/// The start of a frame, for an error message.
fn brief(buf: &[u8]) -> String {
    String::from_utf8_lossy(&buf[..buf.len().min(80)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 16] = *b"process-one-id!!";
    const OTHER: [u8; 16] = *b"process-two-id!!";

    fn url(u: &str) -> RedisUrl {
        RedisUrl::parse(u).unwrap()
    }

    /// A link brought up against a scripted server, `topics` subscribed first.
    fn up(u: &str, cfg: LinkConfig, topics: &[&str]) -> (Link, Instant) {
        let t0 = Instant::now();
        let mut l = Link::new(url(u), cfg, ID, t0);
        for t in topics {
            l.subscribe(t);
        }
        assert!(l.connect_due(t0));
        l.on_connected();
        let hello = l.take_transmit();
        // HELLO's reply is a map in RESP3; SELECT's a simple string
        let mut reply = b"%1\r\n+server\r\n+redis\r\n".to_vec();
        if l.url().db != 0 {
            reply.extend_from_slice(b"+OK\r\n");
        }
        assert!(!hello.is_empty());
        l.on_bytes(&reply).unwrap();
        assert_eq!(l.poll_event(), Some(LinkEvent::Up));
        (l, t0)
    }

    /// The commands in `tx`, each as its arguments.
    fn commands(mut tx: &[u8]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        while !tx.is_empty() {
            let (f, n) = decode_range(tx).unwrap().expect("whole commands");
            let RangeFrame::Array { data, .. } = f else { panic!("not an array") };
            out.push(
                data.iter()
                    .map(|a| String::from_utf8_lossy(bytes_of(a, tx).unwrap()).into_owned())
                    .collect(),
            );
            tx = &tx[n..];
        }
        out
    }

    fn message(channel: &str, payload: &[u8]) -> Vec<u8> {
        let mut m = format!(
            ">3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n",
            channel.len(),
            payload.len()
        )
        .into_bytes();
        m.extend_from_slice(payload);
        m.extend_from_slice(b"\r\n");
        m
    }

    fn tagged(id: &[u8; 16], kind: u8, data: &[u8]) -> Vec<u8> {
        let mut p = id.to_vec();
        p.push(kind);
        p.extend_from_slice(data);
        p
    }

    #[test]
    fn handshake_authenticates_selects_and_resubscribes() {
        let t0 = Instant::now();
        let mut l = Link::new(url("redis://bob:p%3Aw@h:1/3"), LinkConfig::default(), ID, t0);
        l.subscribe("room-a");
        l.subscribe("room-b");
        l.subscribe("room-a");
        assert!(l.take_transmit().is_empty(), "nothing is sent while down");
        assert!(l.connect_due(t0));
        assert!(!l.connect_due(t0), "one attempt at a time");
        l.on_connected();
        assert_eq!(
            commands(&l.take_transmit()),
            [vec!["HELLO", "3", "AUTH", "bob", "p:w"], vec!["SELECT", "3"]]
        );
        l.on_bytes(b"%1\r\n+server\r\n+redis\r\n").unwrap();
        assert!(!l.is_up(), "SELECT still unanswered");
        l.on_bytes(b"+OK\r\n").unwrap();
        assert!(l.is_up());
        assert_eq!(l.poll_event(), Some(LinkEvent::Up));
        // one SUBSCRIBE with every live topic, prefixed with the database
        assert_eq!(
            commands(&l.take_transmit()),
            [vec!["SUBSCRIBE", "wsreactor:3:room-a", "wsreactor:3:room-b"]]
        );
        l.unsubscribe("room-a");
        l.subscribe("room-c");
        assert_eq!(
            commands(&l.take_transmit()),
            [
                vec!["UNSUBSCRIBE", "wsreactor:3:room-a"],
                vec!["SUBSCRIBE", "wsreactor:3:room-c"]
            ]
        );
    }

    #[test]
    fn password_alone_authenticates_as_default() {
        let t0 = Instant::now();
        let mut l = Link::new(url("redis://:pw@h"), LinkConfig::default(), ID, t0);
        l.connect_due(t0);
        l.on_connected();
        assert_eq!(
            commands(&l.take_transmit()),
            [vec!["HELLO", "3", "AUTH", "default", "pw"]]
        );
    }

    #[test]
    fn delivers_others_skips_own_and_counts_the_unreadable() {
        let (mut l, _) = up("redis://h", LinkConfig::default(), &["t"]);
        l.take_transmit();
        let mut input = message("wsreactor:t", &tagged(&OTHER, b't', b"hi"));
        input.extend(message("wsreactor:t", &tagged(&ID, b't', b"mine")));
        input.extend(message("wsreactor:t", &tagged(&OTHER, b'b', &[0, 255])));
        input.extend(message("wsreactor:t", b"short"));
        input.extend(message("wsreactor:t", &tagged(&OTHER, b't', &[0xff, 0xfe])));
        input.extend(message(
            "wsreactor:other-topic",
            &tagged(&OTHER, b't', b"not ours"),
        ));
        input.extend(message("elsewhere:t", &tagged(&OTHER, b't', b"x")));
        // fed a byte at a time: frames split anywhere
        for b in &input {
            l.on_bytes(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(
            l.poll_event(),
            Some(LinkEvent::Deliver {
                topic: "t".into(),
                data: b"hi".to_vec(),
                binary: false
            })
        );
        assert_eq!(
            l.poll_event(),
            Some(LinkEvent::Deliver {
                topic: "t".into(),
                data: vec![0, 255],
                binary: true
            })
        );
        assert_eq!(l.poll_event(), None);
        let s = l.stats();
        assert_eq!((s.delivered, s.own_skipped, s.malformed), (2, 1, 3), "{s:?}");
    }

    #[test]
    fn publishes_are_tagged_and_replies_consumed() {
        let (mut l, _) = up("redis://h", LinkConfig::default(), &[]);
        l.take_transmit();
        l.publish("t", b"hello", false);
        l.publish("t", &[1, 2], true);
        let cmds = commands(&l.take_transmit());
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0][..2], ["PUBLISH", "wsreactor:t"]);
        assert_eq!(cmds[0][2].as_bytes(), tagged(&ID, b't', b"hello"));
        l.on_bytes(b":1\r\n:0\r\n").unwrap();
        assert!(
            l.on_bytes(b":1\r\n").is_err(),
            "a reply to nothing is a broken stream"
        );
        let (mut l, _) = up("redis://h", LinkConfig::default(), &[]);
        l.publish("t", b"x", false);
        l.on_bytes(b"-READONLY You can't write against a read only replica.\r\n")
            .unwrap();
        assert_eq!((l.stats().published, l.stats().dropped), (0, 1));
    }

    #[test]
    fn while_down_publishes_are_queued_to_a_bound_then_sent_in_order() {
        let cfg = LinkConfig {
            while_down: WhileDown::Queue(3 * (17 + 4)),
            ..LinkConfig::default()
        };
        let t0 = Instant::now();
        let mut l = Link::new(url("redis://h"), cfg, ID, t0);
        for m in [b"m001", b"m002", b"m003", b"m004", b"m005"] {
            l.publish("t", m, false);
        }
        assert_eq!(l.stats().dropped, 2, "the two oldest went over the bound");
        l.connect_due(t0);
        l.on_connected();
        l.take_transmit();
        l.on_bytes(b"+OK\r\n").unwrap();
        let sent: Vec<String> = commands(&l.take_transmit())
            .into_iter()
            .map(|c| c[2][17..].to_owned())
            .collect();
        assert_eq!(sent, ["m003", "m004", "m005"]);

        let cfg = LinkConfig {
            while_down: WhileDown::Drop,
            ..LinkConfig::default()
        };
        let mut l = Link::new(url("redis://h"), cfg, ID, t0);
        l.publish("t", b"gone", false);
        assert_eq!(l.stats().dropped, 1);
    }

    #[test]
    fn garbage_and_oversized_replies_break_the_link_and_backoff_grows_then_resets() {
        let cfg = LinkConfig {
            max_frame: 1024,
            ..LinkConfig::default()
        };
        let (mut l, t0) = up("redis://h", cfg.clone(), &["t"]);
        let e = l.on_bytes(b"HTTP/1.1 200 OK\r\n\r\n").unwrap_err();
        assert!(e.contains("not RESP"), "{e}");
        l.on_disconnected(t0, &e);
        assert!(matches!(l.poll_event(), Some(LinkEvent::Down(_))));
        // first retry after the minimum, then doubling up to the maximum
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let at = l.poll_timeout().expect("a retry is scheduled");
            delays.push(at - now);
            assert!(!l.connect_due(at - Duration::from_millis(1)));
            assert!(l.connect_due(at));
            now = at;
            l.on_disconnected(now, "refused");
        }
        assert_eq!(delays[0], cfg.min_backoff);
        assert_eq!(delays[1], cfg.min_backoff * 2);
        assert_eq!(*delays.last().unwrap(), cfg.max_backoff);
        // once up again, the next failure retries after the minimum
        assert!(l.connect_due(l.poll_timeout().unwrap()));
        l.on_connected();
        l.on_bytes(b"+OK\r\n").unwrap();
        assert!(l.is_up());
        let t = Instant::now();
        l.on_disconnected(t, "killed");
        assert_eq!(l.poll_timeout(), Some(t + cfg.min_backoff));
        // a frame announcing more than max_frame, sent slowly
        let (mut l, _) = up("redis://h", cfg, &["t"]);
        l.on_bytes(b"$999999\r\n").unwrap();
        let e = l.on_bytes(&[b'x'; 1100]).unwrap_err();
        assert!(e.contains("over 1024"), "{e}");
    }

    #[test]
    fn bytes_still_in_the_socket_count_towards_the_unsent_bound() {
        let cfg = LinkConfig {
            max_unsent: 1200,
            ..LinkConfig::default()
        };
        let (mut l, _) = up("redis://h", cfg, &[]);
        l.take_transmit();
        let mut out = Vec::new();
        l.publish("t", &[0; 300], true);
        l.transmit_into(&mut out);
        assert_eq!(
            l.stats().unsent,
            out.len(),
            "handed over, not taken by the kernel yet"
        );
        // the socket still holds it all: two more fit under the bound, the third does not
        l.set_backlog(out.len());
        for _ in 0..3 {
            l.publish("t", &[0; 300], true);
        }
        assert_eq!((l.stats().published, l.stats().dropped), (3, 1));
        // the kernel took everything: room again
        l.transmit_into(&mut out);
        l.set_backlog(0);
        l.publish("t", &[0; 300], true);
        assert_eq!((l.stats().published, l.stats().dropped), (4, 1));
        assert_eq!(l.stats().unsent, l.pending());
    }

    #[test]
    fn refused_hello_is_a_clear_error() {
        let t0 = Instant::now();
        let mut l = Link::new(url("redis://:bad@h"), LinkConfig::default(), ID, t0);
        l.connect_due(t0);
        l.on_connected();
        let e = l
            .on_bytes(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
            .unwrap_err();
        assert!(e.contains("HELLO") && e.contains("WRONGPASS"), "{e}");
    }

    #[test]
    fn urls() {
        let u = url("redis://127.0.0.1");
        assert_eq!(
            (u.host.as_str(), u.port, u.db, u.user, u.password),
            ("127.0.0.1", 6379, 0, None, None)
        );
        let u = url("redis://user:pw@[::1]:7000/5");
        assert_eq!((u.host.as_str(), u.port, u.db), ("::1", 7000, 5));
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (Some("user"), Some("pw"))
        );
        assert!(!format!("{u:?}").contains("pw"), "the password is not printed");
        for bad in [
            "redis://",
            "redis://h:x",
            "redis://h/db",
            "rediss://h",
            "redis://[::1",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
