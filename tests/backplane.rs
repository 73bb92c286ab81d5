//! Topics across two contexts (two "processes") through a real `redis-server` started here
//! on loopback (Debian's; stopped by PID): 200 clients split over both receive every one of
//! 1,000 messages, in order per sender; Redis killed (local delivery goes on) and restarted
//! (cross delivery resumes); a fake Redis answering garbage makes the backplane reconnect
//! without harming clients; a fake Redis that stops reading leaves our unsent bytes
//! bounded; every protocol is told once when the link goes down and when it is back.
//! Needs the `redis` feature and `redis-server` on PATH.
#![cfg(feature = "redis")]

mod common;

use common::redis::{free_port, RedisServer};

use common::*;
use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use wsreactor::backplane::LinkConfig;
use wsreactor::{Close, ContextBuilder, Protocol, Reason, Wsi};

/// Every connection joins topic "room"; each message one sends is published to the room
/// (pieces of a message are gathered first).
#[derive(Default)]
struct Room;

impl Protocol for Room {
    type Session = Vec<u8>;
    fn callback(
        &mut self,
        wsi: &mut Wsi<'_>,
        partial: &mut Vec<u8>,
        reason: Reason<'_>,
    ) -> Result<(), Close> {
        match reason {
            Reason::Established => {
                wsi.subscribe("room");
            }
            Reason::Receive {
                data,
                binary,
                first: true,
                last: true,
                ..
            } => {
                wsi.publish("room", data, binary);
            }
            Reason::Receive {
                data, binary, last, ..
            } => {
                partial.extend_from_slice(data);
                if last {
                    wsi.publish("room", partial, binary);
                    partial.clear();
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn server(redis_url: &str) -> Server {
    let url = redis_url.to_owned();
    let quick = LinkConfig {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
        ..LinkConfig::default()
    };
    Server::start(&Log::new(), move |b: ContextBuilder| {
        b.protocol("room", Room).redis(&url, quick)
    })
}

/// Sends probes from `from` until one reaches `to` (Redis confirms SUBSCRIBE
/// asynchronously, and after a restart both sides resubscribe): true if one did in `secs`.
fn until_linked(from: &mut Client, to: &mut Client, tag: &str, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    to.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut n = 0;
    let linked = loop {
        if Instant::now() > end {
            break false;
        }
        n += 1;
        from.send_text(&format!("probe {tag} {n}"));
        let got = loop {
            match to.try_read_frame() {
                Ok(Some(f)) if String::from_utf8_lossy(&f.payload).starts_with(&format!("probe {tag}")) => {
                    break true
                }
                Ok(Some(_)) => continue,
                _ => break false,
            }
        };
        if got {
            break true;
        }
    };
    to.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    linked
}

/// Reads text messages until `want` non-probe ones arrived.
fn read_messages(c: &mut Client, want: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(want);
    while got.len() < want {
        match c.read_msg() {
            Msg::Text(t) if t.starts_with("probe") => {}
            Msg::Text(t) => got.push(t),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

#[test]
fn two_processes_share_a_room_through_redis() {
    let rport = free_port();
    let mut redis = RedisServer::start(rport, None);
    let url = format!("redis://127.0.0.1:{rport}/");
    let (a, b) = (server(&url), server(&url));
    let mut on_a: Vec<Client> = (0..100).map(|_| Client::open(a.port)).collect();
    let mut on_b: Vec<Client> = (0..100).map(|_| Client::open(b.port)).collect();
    // each client hears its own publishes too; the senders are one on each side
    assert!(
        until_linked(&mut on_a[0], &mut on_b[0], "a->b", 5),
        "A's publishes never reached B"
    );
    assert!(
        until_linked(&mut on_b[0], &mut on_a[0], "b->a", 5),
        "B's publishes never reached A"
    );
    // drain the probes everyone got
    for c in on_a.iter_mut().chain(on_b.iter_mut()) {
        while !c.quiet_for(Duration::from_millis(20)) {
            let _ = c.read_msg();
        }
    }
    for i in 0..500 {
        on_a[0].send_text(&format!("a {i}"));
        on_b[0].send_text(&format!("b {i}"));
    }
    for (side, c) in on_a
        .iter_mut()
        .map(|c| ("A", c))
        .chain(on_b.iter_mut().map(|c| ("B", c)))
    {
        let got = read_messages(c, 1000);
        let from_a: Vec<&String> = got.iter().filter(|m| m.starts_with("a ")).collect();
        let from_b: Vec<&String> = got.iter().filter(|m| m.starts_with("b ")).collect();
        let want_a: Vec<String> = (0..500).map(|i| format!("a {i}")).collect();
        let want_b: Vec<String> = (0..500).map(|i| format!("b {i}")).collect();
        assert!(
            from_a
                .iter()
                .map(|s| s.as_str())
                .eq(want_a.iter().map(|s| s.as_str())),
            "a client on {side}: A's messages out of order or missing"
        );
        assert!(
            from_b
                .iter()
                .map(|s| s.as_str())
                .eq(want_b.iter().map(|s| s.as_str())),
            "a client on {side}: B's messages out of order or missing"
        );
    }
    let (up, stats) = a.with_ctx(|ctx| ctx.backplane_stats().unwrap());
    assert!(up);
    assert!(
        stats.published >= 500 && stats.delivered >= 500 && stats.own_skipped >= 500,
        "{stats:?}"
    );

    // Redis killed: local delivery goes on at once
    redis.stop();
    let t = Instant::now();
    on_a[0].send_text("local while down");
    for c in on_a.iter_mut().take(10) {
        assert_eq!(read_messages(c, 1), ["local while down"]);
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "local delivery waited for Redis: {:?}",
        t.elapsed()
    );
    // back: cross delivery resumes within a few seconds
    redis = RedisServer::start(rport, None);
    let t = Instant::now();
    assert!(
        until_linked(&mut on_a[0], &mut on_b[0], "again", 10),
        "cross-process delivery did not resume"
    );
    println!("cross delivery resumed {:?} after the restart", t.elapsed());
    let (_, stats) = b.with_ctx(|ctx| ctx.backplane_stats().unwrap());
    assert!(stats.connects >= 2 && stats.downs >= 1, "{stats:?}");
    drop(redis);
}

#[test]
fn garbage_from_a_fake_redis_reconnects_without_harming_clients() {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = fake.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s2 = served.clone();
    std::thread::spawn(move || {
        for s in fake.incoming().take(6) {
            let Ok(mut s) = s else { break };
            s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n\x00\xff garbage");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let a = server(&format!("redis://127.0.0.1:{port}/"));
    let mut c = Client::open(a.port);
    assert!(
        eventually(Duration::from_secs(5), || served
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 3),
        "the backplane did not reconnect"
    );
    c.send_text("still here");
    assert_eq!(read_messages(&mut c, 1), ["still here"]);
    let (up, stats) = a.with_ctx(|ctx| ctx.backplane_stats().unwrap());
    assert!(!up);
    assert!(stats.connects >= 3 && stats.downs >= 3, "{stats:?}");
}

#[test]
fn a_redis_that_stops_reading_cannot_grow_our_memory() {
    // A fake Redis: answers HELLO, then never reads again.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}/", fake.local_addr().unwrap().port());
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = fake.accept() else { return };
        let mut hello = [0u8; 256];
        let _ = std::io::Read::read(&mut s, &mut hello);
        let _ = s.write_all(b"%1\r\n+server\r\n+redis\r\n");
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
    });
    const BOUND: usize = 1 << 20;
    let cfg = LinkConfig {
        max_unsent: BOUND,
        ..LinkConfig::default()
    };
    let a = Server::start(&Log::new(), move |b: ContextBuilder| {
        b.protocol("room", Room).redis(&url, cfg)
    });
    assert!(
        eventually(Duration::from_secs(5), || a
            .with_ctx(|ctx| ctx.backplane_stats().unwrap().0)),
        "the link did not come up"
    );
    // 40 MiB of publishes towards a Redis that takes none of them (beyond what the
    // kernel's buffers hold)
    let mut c = Client::open(a.port);
    let msg = vec![7u8; 16 << 10];
    let mut max_unsent = 0;
    for _ in 0..40 {
        for _ in 0..64 {
            c.send_binary(&msg);
        }
        let s = a.with_ctx(|ctx| ctx.backplane_stats().unwrap().1);
        max_unsent = max_unsent.max(s.unsent);
    }
    let mut last = Default::default();
    assert!(
        eventually(Duration::from_secs(20), || {
            last = a.with_ctx(|ctx| ctx.backplane_stats().unwrap().1);
            max_unsent = max_unsent.max(last.unsent);
            last.published + last.dropped == 40 * 64
        }),
        "not every publish was either sent or dropped: {last:?}"
    );
    println!("stalled Redis: {last:?}, at most {max_unsent} bytes unsent");
    assert!(last.dropped > 0, "nothing was dropped: {last:?}");
    assert!(
        max_unsent <= BOUND,
        "{max_unsent} bytes waited for Redis, over the {BOUND}-byte bound"
    );
    // local delivery is unharmed
    let mut c2 = Client::open(a.port);
    c2.send_text("still here");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < end, "the local message never came");
        if let Msg::Text(t) = c2.read_msg() {
            if t == "still here" {
                break;
            }
        }
    }
    let _ = done_tx.send(());
}

/// Records the backplane's events, as one protocol of several.
struct Watcher(std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>);

impl Protocol for Watcher {
    type Session = ();
    fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> {
        Ok(())
    }
    fn protocol_callback(
        &mut self,
        _: &mut wsreactor::ProtocolContext<'_>,
        event: wsreactor::ProtocolEvent,
    ) -> Result<(), Close> {
        let e = match event {
            wsreactor::ProtocolEvent::BackplaneUp => "up",
            wsreactor::ProtocolEvent::BackplaneDown => "down",
            _ => return Ok(()),
        };
        self.0.lock().unwrap().push(e);
        Ok(())
    }
}

#[test]
fn every_protocol_is_told_once_when_the_link_goes_down_and_when_it_is_back() {
    use std::sync::{Arc, Mutex};
    let rport = free_port();
    let mut redis = RedisServer::start(rport, None);
    let url = format!("redis://127.0.0.1:{rport}/");
    let (one, two) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (o, t) = (one.clone(), two.clone());
    let quick = LinkConfig {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
        ..LinkConfig::default()
    };
    let _a = Server::start(&Log::new(), move |b: ContextBuilder| {
        b.protocol("one", Watcher(o))
            .protocol("two", Watcher(t))
            .redis(&url, quick)
    });
    let seen = |v: &Arc<Mutex<Vec<&'static str>>>| v.lock().unwrap().clone();
    assert!(
        eventually(Duration::from_secs(5), || seen(&one) == ["up"]),
        "{:?}",
        seen(&one)
    );
    redis.stop();
    assert!(
        eventually(Duration::from_secs(5), || seen(&one) == ["up", "down"]),
        "{:?}",
        seen(&one)
    );
    // reconnects keep failing every 100 ms meanwhile: no more notices
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(seen(&one), ["up", "down"]);
    redis = RedisServer::start(rport, None);
    assert!(
        eventually(Duration::from_secs(5), || seen(&one) == ["up", "down", "up"]),
        "{:?}",
        seen(&one)
    );
    assert_eq!(seen(&two), seen(&one), "every protocol is told");
    drop(redis);
}
