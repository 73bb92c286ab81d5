//! The Redis link's state machine against a real `redis-server` (Debian's, started here on
//! loopback and stopped by PID), driven over plain blocking sockets: the handshake,
//! delivery between two processes' links, our own echo skipped, and a Redis restart with
//! resubscription. Needs the `redis` feature and `redis-server` on PATH.
#![cfg(feature = "redis")]

#[path = "common/redis.rs"]
mod redis_common;

use redis_common::{free_port, RedisServer};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use wsreactor::backplane::{Link, LinkConfig, LinkEvent, RedisUrl};

/// A link with its socket, serviced by polling with short timeouts.
struct Peer {
    link: Link,
    sock: Option<TcpStream>,
    events: Vec<LinkEvent>,
}

impl Peer {
    fn new(url: &str, id: u8) -> Peer {
        let cfg = LinkConfig {
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            ..LinkConfig::default()
        };
        Peer {
            link: Link::new(RedisUrl::parse(url).unwrap(), cfg, [id; 16], Instant::now()),
            sock: None,
            events: Vec::new(),
        }
    }

    fn step(&mut self) {
        let now = Instant::now();
        if self.link.connect_due(now) {
            let u = self.link.url().clone();
            match TcpStream::connect((u.host.as_str(), u.port)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                    self.sock = Some(s);
                    self.link.on_connected();
                }
                Err(e) => self.link.on_disconnected(now, &e.to_string()),
            }
        }
        if let Some(s) = &mut self.sock {
            let out = self.link.take_transmit();
            let mut broken = s.write_all(&out).err().map(|e| e.to_string());
            let mut buf = [0u8; 16384];
            if broken.is_none() {
                match s.read(&mut buf) {
                    Ok(0) => broken = Some("EOF".into()),
                    Ok(n) => broken = self.link.on_bytes(&buf[..n]).err(),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => broken = Some(e.to_string()),
                }
            }
            if let Some(why) = broken {
                self.sock = None;
                self.link.on_disconnected(Instant::now(), &why);
            }
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
        while let Some(e) = self.link.poll_event() {
            self.events.push(e);
        }
    }
}

/// Steps both peers until `done` holds of them, at most `secs`.
fn run(a: &mut Peer, b: &mut Peer, secs: u64, done: impl Fn(&Peer, &Peer) -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        a.step();
        b.step();
        if done(a, b) {
            return true;
        }
    }
    false
}

fn delivered(p: &Peer) -> Vec<(String, Vec<u8>, bool)> {
    p.events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Deliver { topic, data, binary } => Some((topic.clone(), data.clone(), *binary)),
            _ => None,
        })
        .collect()
}

#[test]
fn two_processes_through_a_real_redis_with_a_restart() {
    let port = free_port();
    let mut redis = RedisServer::start(port, Some("s3cret"));
    let url = format!("redis://:s3cret@127.0.0.1:{port}/");
    let (mut a, mut b) = (Peer::new(&url, 1), Peer::new(&url, 2));
    a.link.subscribe("room");
    b.link.subscribe("room");
    assert!(
        run(&mut a, &mut b, 5, |a, b| a.link.is_up() && b.link.is_up()),
        "links up: {:?} {:?}",
        a.events,
        b.events
    );
    // SUBSCRIBE is confirmed asynchronously: publish until the other side has one
    let t = Instant::now();
    while delivered(&a).is_empty() && t.elapsed() < Duration::from_secs(3) {
        b.link.publish("room", b"hello", false);
        run(&mut a, &mut b, 1, |a, _| !delivered(a).is_empty());
    }
    assert_eq!(delivered(&a)[0], ("room".to_string(), b"hello".to_vec(), false));
    assert!(
        delivered(&b).is_empty(),
        "b's own messages are not delivered back to it"
    );
    assert!(b.link.stats().own_skipped > 0);
    let before = delivered(&a).len();
    for i in 0..100u8 {
        b.link.publish("room", &[i, 0, 255], true);
    }
    assert!(run(&mut a, &mut b, 5, |a, _| delivered(a).len() >= before + 100));
    let got: Vec<u8> = delivered(&a)[before..]
        .iter()
        .map(|(_, d, bin)| {
            assert!(*bin);
            d[0]
        })
        .collect();
    assert_eq!(got, (0..100).collect::<Vec<u8>>(), "in order, binary intact");

    // Redis goes away: both links go down, publishing meanwhile is queued (bounded)
    redis.stop();
    assert!(run(&mut a, &mut b, 5, |a, b| !a.link.is_up() && !b.link.is_up()));
    assert!(a.events.iter().any(|e| matches!(e, LinkEvent::Down(_))));
    b.link.publish("room", b"while down", false);
    for _ in 0..20 {
        a.step();
        b.step();
    }
    // back: both reconnect and resubscribe; the queued message arrives
    redis = RedisServer::start(port, Some("s3cret"));
    assert!(run(&mut a, &mut b, 10, |a, b| a.link.is_up() && b.link.is_up()));
    let n = delivered(&a).len();
    // the queued message may race a's resubscription (delivery is at most once), so
    // publish until one gets through
    let t = Instant::now();
    let ok = loop {
        b.link.publish("room", b"after", false);
        if run(&mut a, &mut b, 1, |a, _| {
            delivered(a)[n..].iter().any(|(_, d, _)| d == b"after")
        }) {
            break true;
        }
        if t.elapsed() > Duration::from_secs(5) {
            break false;
        }
    };
    assert!(
        ok,
        "cross-process delivery resumed after the restart: {:?}",
        a.events
    );
    assert!(a.link.stats().connects >= 2 && b.link.stats().connects >= 2);
    drop(redis);
}

#[test]
fn a_wrong_password_is_reported_and_retried() {
    let port = free_port();
    let _redis = RedisServer::start(port, Some("right"));
    let url = format!("redis://:wrong@127.0.0.1:{port}/");
    let (mut a, mut b) = (Peer::new(&url, 1), Peer::new(&url, 2));
    assert!(run(&mut a, &mut b, 5, |a, _| a.link.stats().downs >= 2));
    let why = a
        .events
        .iter()
        .find_map(|e| match e {
            LinkEvent::Down(w) => Some(w.clone()),
            _ => None,
        })
        .unwrap();
    assert!(why.contains("WRONGPASS") || why.contains("invalid"), "{why}");
    assert!(!a.link.is_up());
}
