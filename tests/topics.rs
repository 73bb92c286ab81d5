//! Topics over real loopback sockets: fan-out to a topic's subscribers only, the three
//! slow-subscriber policies (drop the oldest and say how many, push back on the publisher,
//! close the slow one), a client subscriber's frames masked, and the statistics.

mod common;

use common::*;
use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsreactor::{ClientConnect, Close, Protocol, Reason, SlowPolicy, TopicOptions, Wsi};

const T: Duration = Duration::from_secs(10);

/// Joins the topic named by `?t=` with the options given; publishes each whole message
/// it receives to it; tells of missed messages with a text `missed:N`.
struct Rooms {
    opts: TopicOptions,
}

#[derive(Default)]
struct Member {
    topic: String,
    to: String,
    partial: Vec<u8>,
}

impl Protocol for Rooms {
    type Session = Member;
    fn callback(&mut self, wsi: &mut Wsi<'_>, m: &mut Member, reason: Reason<'_>) -> Result<(), Close> {
        let topic = &mut m.topic;
        match reason {
            Reason::Established => {
                *topic = wsi.urlarg("t").unwrap_or_default();
                m.to = wsi.urlarg("to").unwrap_or_else(|| topic.clone());
                if !topic.is_empty() {
                    assert!(wsi.subscribe_with(topic, self.opts));
                    assert!(!wsi.subscribe(topic), "subscribed twice");
                    assert!(wsi.is_subscribed(topic));
                }
            }
            Reason::Receive { data, .. } if data == b"leave" => {
                assert!(wsi.unsubscribe(topic));
                assert!(!wsi.unsubscribe(topic));
                wsi.send_text("left")?;
            }
            Reason::Receive { data, .. } if data.starts_with(b"then-own:") => {
                // A publish to its own topic, then a reply of its own, in one callback.
                wsi.publish(topic, data, false);
                wsi.send_text("own")?;
            }
            Reason::Receive {
                data, binary, last, ..
            } => {
                m.partial.extend_from_slice(data);
                if last {
                    let whole = std::mem::take(&mut m.partial);
                    wsi.publish(&m.to, &whole, binary);
                }
            }
            Reason::TopicMissed { missed, .. } => wsi.send_text(&format!("missed:{missed}"))?,
            _ => {}
        }
        Ok(())
    }
}

fn server(opts: TopicOptions) -> Server {
    Server::start(&Log::new(), move |b| b.protocol("rooms", Rooms { opts }))
}

fn join(port: u16, query: &str) -> Client {
    let (c, _) = Client::open_with(port, Req::upgrade(port).path(&format!("/?{query}")));
    c.stream.set_read_timeout(Some(T)).unwrap();
    c
}

/// A client with small socket buffers (no autotuning), joined: it can be made a slow
/// reader without the kernel soaking up megabytes.
fn slow_join(port: u16, query: &str) -> Client {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(64 << 10).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    sock.connect(&addr.into()).unwrap();
    let mut c = Client::from_stream(sock.into());
    c.send(&Req::upgrade(port).path(&format!("/?{query}")).bytes());
    assert_eq!(c.read_response().expect("a response").status, 101);
    c.stream.set_read_timeout(Some(T)).unwrap();
    c
}

#[test]
fn a_message_reaches_the_subscribers_of_its_topic_only() {
    let s = server(TopicOptions::default());
    let mut a1 = join(s.port, "t=a");
    let mut a2 = join(s.port, "t=a");
    let mut b1 = join(s.port, "t=b");
    assert!(eventually(T, || s.with_ctx(|ctx| ctx.num_subscribers("a") == 2)));
    assert_eq!(
        s.with_ctx(|ctx| (ctx.num_subscribers("b"), ctx.stats().topics)),
        (1, 2)
    );

    a1.send_text("to a");
    a1.expect_text("to a"); // the publisher is a subscriber too
    a2.expect_text("to a");
    assert!(b1.quiet_for(Duration::from_millis(200)));

    // from the loop
    let r = s.with_ctx(|ctx| ctx.publish("b", b"\x01\x02", true));
    assert_eq!(r.delivered, 1);
    assert_eq!(b1.read_msg(), Msg::Binary(vec![1, 2]));
    assert!(a1.quiet_for(Duration::from_millis(100)));
    assert_eq!(s.with_ctx(|ctx| ctx.publish("nobody", b"x", false).delivered), 0);

    a2.send_text("leave");
    a2.expect_text("left");
    a1.send_text("again");
    a1.expect_text("again");
    assert!(
        a2.quiet_for(Duration::from_millis(200)),
        "an unsubscribed connection got a message"
    );
    assert_eq!(s.with_ctx(|ctx| ctx.num_subscribers("a")), 1);

    // a closed subscriber leaves its topic, and the empty topic goes away
    b1.send_close(1000, "");
    b1.expect_close();
    assert!(eventually(T, || s.with_ctx(
        |ctx| ctx.num_subscribers("b") == 0 && ctx.stats().topics == 1
    )));
}

/// Reads every message until `n` binary ones and the `missed:` notices add up to `total`;
/// returns (sequence numbers, missed counts).
fn read_until(c: &mut Client, total: usize) -> (Vec<u32>, Vec<u64>) {
    let (mut seqs, mut missed) = (Vec::new(), Vec::new());
    while seqs.len() + (missed.iter().sum::<u64>() as usize) < total {
        match c.read_msg() {
            Msg::Binary(m) => seqs.push(u32::from_be_bytes(m[..4].try_into().unwrap())),
            Msg::Text(t) => missed.push(t.strip_prefix("missed:").expect("a notice").parse().unwrap()),
            other => panic!("after {} messages: {other:?}", seqs.len()),
        }
    }
    (seqs, missed)
}

const MSG: usize = 64 << 10;
const COUNT: u32 = 200;

fn message(i: u32) -> Vec<u8> {
    let mut m = vec![b'.'; MSG];
    m[..4].copy_from_slice(&i.to_be_bytes());
    m
}

/// Publishes `COUNT` 64 KiB messages from the loop, two at a time, each pair once the
/// reading subscriber `fast` (in a thread) has the previous one: the fast reader is never
/// behind by more than its queue bound, however slow the machine. Returns what it got.
fn publish_from_loop(s: &Server, mut fast: Client) -> Vec<u32> {
    let progress = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let p2 = progress.clone();
    let reader = std::thread::spawn(move || {
        let (mut seqs, mut missed) = (Vec::new(), Vec::new());
        while seqs.len() + (missed.iter().sum::<u64>() as usize) < COUNT as usize {
            match fast.read_msg() {
                Msg::Binary(m) => {
                    seqs.push(u32::from_be_bytes(m[..4].try_into().unwrap()));
                    p2.store(seqs.len() as u32, Ordering::SeqCst);
                }
                Msg::Text(t) => missed.push(
                    t.strip_prefix("missed:")
                        .and_then(|n| n.parse::<u64>().ok())
                        .expect("a notice"),
                ),
                other => panic!("{other:?}"),
            }
        }
        (seqs, missed)
    });
    for i in (0..COUNT).step_by(2) {
        assert!(
            eventually(T, || progress.load(Ordering::SeqCst) + 2 >= i),
            "the reading subscriber is stuck at {}",
            progress.load(Ordering::SeqCst)
        );
        s.with_ctx(move |ctx| {
            for j in i..i + 2 {
                ctx.publish("room", &message(j), true);
            }
        });
    }
    let (seqs, missed) = reader.join().unwrap();
    assert!(
        missed.is_empty(),
        "the reading subscriber missed messages: {missed:?}"
    );
    seqs
}

#[test]
fn a_connection_s_own_write_does_not_overtake_what_was_published_before_it() {
    let s = server(TopicOptions::default());
    let mut a = join(s.port, "t=a");
    let mut b = join(s.port, "t=a");
    assert!(eventually(T, || s.with_ctx(|ctx| ctx.num_subscribers("a") == 2)));
    for i in 0..20 {
        let m = format!("then-own:{i}");
        a.send_text(&m);
        // published first, so it arrives first, though the reply was written in the
        // same callback and the published message waited in the topic
        a.expect_text(&m);
        a.expect_text("own");
        b.expect_text(&m);
    }
}

#[test]
fn drop_oldest_keeps_a_slow_subscriber_bounded_and_tells_it_what_it_missed() {
    let s = server(TopicOptions {
        max_queued: 512 << 10,
        policy: SlowPolicy::DropOldest,
    });
    let mut slow = slow_join(s.port, "t=room");
    let fast = join(s.port, "t=room");
    let seqs = publish_from_loop(&s, fast);
    assert_eq!(
        seqs,
        (0..COUNT).collect::<Vec<_>>(),
        "the reading subscriber got them all, in order"
    );

    // the slow one: what fitted, one notice with how many were dropped, then the newest
    let (got, missed) = read_until(&mut slow, COUNT as usize);
    eprintln!("slow subscriber: {} messages, missed {missed:?}", got.len());
    assert!(
        !missed.is_empty() && missed.iter().sum::<u64>() > 0,
        "nothing was dropped"
    );
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
    assert_eq!(*got.last().unwrap(), COUNT - 1, "the newest message arrives");
    // what it was sent is bounded: sockets (64 KiB receive buffer, the server's send
    // buffer, autotuned up to tcp_wmem's maximum) plus the queue bound, not all 12.5 MiB
    let wmem: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    assert!(
        got.len() * MSG < wmem + (2 << 20) && got.len() < COUNT as usize,
        "{} messages reached the slow reader",
        got.len()
    );
    assert!(slow.quiet_for(Duration::from_millis(200)));
    let st = s.with_ctx(|ctx| ctx.stats());
    assert_eq!(st.closed_slow, 0);
    assert!(st.messages_out >= COUNT as u64 + got.len() as u64, "{st:?}");
}

#[test]
fn close_policy_closes_the_slow_subscriber_with_1008_and_the_rest_go_on() {
    let s = server(TopicOptions {
        max_queued: 512 << 10,
        policy: SlowPolicy::Close,
    });
    let mut slow = slow_join(s.port, "t=room");
    let fast = join(s.port, "t=room");
    let seqs = publish_from_loop(&s, fast);
    assert_eq!(seqs.len(), COUNT as usize);
    let code = loop {
        match slow.read_msg() {
            Msg::Binary(_) => continue,
            Msg::Close(code, _) => break code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert_eq!(s.with_ctx(|ctx| ctx.stats().closed_slow), 1);
}

#[test]
fn push_back_pauses_the_publisher_until_the_stalled_subscriber_is_closed() {
    let stall = Duration::from_millis(1500);
    let s = server(TopicOptions {
        max_queued: 256 << 10,
        policy: SlowPolicy::PushBack { stall },
    });
    let mut slow = slow_join(s.port, "t=room");
    let mut fast = join(s.port, "t=room");
    // the publisher is no subscriber: its messages go to "room"
    let mut publisher = join(s.port, "to=room");
    const N: u32 = 400; // 25 MiB: more than the sockets between publisher and server hold
    let reader = std::thread::spawn(move || read_until(&mut fast, N as usize));
    let t0 = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let mut frames = Vec::new();
    for i in 0..N {
        frames.extend_from_slice(&publisher.frame(wsreactor::proto::OpCode::Binary, true, &message(i)));
    }
    let mut pstream = publisher.stream.try_clone().unwrap();
    let d2 = done.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        pstream.write_all(&frames).unwrap();
        d2.store(true, Ordering::SeqCst);
    });
    // while the slow subscriber is full, the publisher is not read
    std::thread::sleep(stall / 2);
    assert!(
        !done.load(Ordering::SeqCst),
        "the publisher was never pushed back"
    );
    let (seqs, missed) = reader.join().unwrap();
    let took = t0.elapsed();
    writer.join().unwrap();
    assert!(missed.is_empty());
    assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "push-back drops nothing");
    assert!(
        took >= stall,
        "all delivered after {took:?}, before the stall bound"
    );
    let code = loop {
        match slow.read_msg() {
            Msg::Binary(_) => continue,
            Msg::Close(code, _) => break code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, Some(1008), "the stalled subscriber is closed");
    assert_eq!(s.with_ctx(|ctx| ctx.stats().closed_slow), 1);
    publisher.send_text("still read");
    assert!(publisher.quiet_for(Duration::from_millis(100)));
}

/// The server side records what it receives on "sink"; the client side subscribes its
/// outgoing connection to "up" when established.
struct Sink {
    got: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Protocol for Sink {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::ClientEstablished => {
                wsi.subscribe("up");
            }
            Reason::Receive { data, .. } => self.got.lock().unwrap().push(data.to_vec()),
            _ => {}
        }
        Ok(())
    }
}

#[test]
fn a_client_subscriber_sends_masked_frames() {
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let s = Server::start(&Log::new(), move |b| b.protocol("sink", Sink { got: g }));
    let port = s.port;
    s.with_ctx(move |ctx| {
        ctx.connect(
            ClientConnect::url(&format!("ws://127.0.0.1:{port}/"))
                .unwrap()
                .protocols("sink"),
        )
        .unwrap()
    });
    assert!(eventually(T, || s.with_ctx(|ctx| ctx.num_subscribers("up") == 1)));
    for i in 0..3u8 {
        s.with_ctx(move |ctx| ctx.publish("up", &[i; 300], true));
    }
    // the server side would fail an unmasked client frame with 1002 and receive nothing
    assert!(eventually(T, || got.lock().unwrap().len() == 3));
    assert_eq!(
        *got.lock().unwrap(),
        vec![vec![0u8; 300], vec![1; 300], vec![2; 300]]
    );
    assert_eq!(s.with_ctx(|ctx| ctx.stats().closed_protocol_error), 0);
}

#[test]
fn stats_count_connections_bytes_messages_and_closes() {
    let s = server(TopicOptions::default());
    let mut a = join(s.port, "t=x");
    a.send_text("hello");
    a.expect_text("hello");
    let mut http = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    std::io::Write::write_all(
        &mut http,
        b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut sink = Vec::new();
    let _ = http.read_to_end(&mut sink);
    let mut bad = Client::connect(s.port);
    bad.send(&Req::upgrade(s.port).set("Sec-WebSocket-Version", "7").bytes());
    assert_eq!(bad.read_response().unwrap().status, 426);
    let st = s.with_ctx(|ctx| ctx.stats());
    assert_eq!(st.websocket, 1, "{st:?}");
    assert_eq!(
        (st.handshakes, st.messages_in, st.http_requests, st.refused),
        (1, 1, 1, 1),
        "{st:?}"
    );
    assert!(st.messages_out >= 1 && st.accepted == 3, "{st:?}");
    assert!(st.bytes_in > 100 && st.bytes_out > 100, "{st:?}");
    a.send_close(1000, "");
    a.expect_close();
    assert!(eventually(T, || s.with_ctx(|ctx| ctx.stats().closed_by_peer == 1)));
    assert!(eventually(T, || s.with_ctx(|ctx| ctx.stats().websocket == 0)));
}
