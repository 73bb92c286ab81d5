//! Callback reasons: their order in a normal session, their arguments, context-wide
//! requests, cancel_service, and closing one connection from a callback.

mod common;

use common::*;
use std::time::{Duration, Instant};
use wsreactor::proto::OpCode;
use wsreactor::{Close, Context, ProtocolSpec, Reason};

const T: Duration = Duration::from_secs(5);

#[test]
fn normal_session_callback_sequence() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "seq",
            Recorder::new("seq", &l).hook(|wsi, r| {
                match r {
                    Reason::Receive { data: b"w", .. } => {
                        // asking twice is still one callback
                        wsi.callback_on_writable();
                        wsi.callback_on_writable();
                    }
                    Reason::ServerWriteable => wsi.send_text("from writeable")?,
                    _ => {}
                }
                Ok(())
            }),
        )
    });
    // PROTOCOL_INIT came with build()
    assert_eq!(kinds_of(&log.snapshot()), ["INIT"]);

    let req = Req::upgrade(s.port)
        .path("/chat?room=1")
        .set("Origin", "http://example.com")
        .set("Cookie", "a=b; c=d");
    let (mut c, _) = Client::open_with(s.port, req);
    let me = c.local_addr();
    c.send_text("hello");
    c.send_binary(&[1, 2, 3]);
    c.send_frame(OpCode::Pong, true, b"pp");
    c.send_text("w");
    c.expect_text("from writeable");
    // no WRITEABLE storm: exactly one callback for the request
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(log.count(|r| r.ev == Ev::Writeable), 1);

    c.send_close(1000, "bye");
    let f = c.read_frame();
    assert_eq!(f.close(), (Some(1000), String::new()));
    c.expect_eof();
    drop(c);
    log.wait_count(1, T, |r| r.ev == Ev::WsiDestroy);
    s.stop();

    let recs: Vec<Rec> = log
        .snapshot()
        .into_iter()
        .filter(|r| r.ev != Ev::Cancelled)
        .collect();
    assert_eq!(
        kinds_of(&recs),
        [
            "INIT",
            "FILTER_NETWORK",
            "WSI_CREATE",
            "NEW_CLIENT",
            "FILTER_PROTOCOL",
            "ESTABLISHED",
            "RECEIVE",
            "RECEIVE",
            "RECEIVE_PONG",
            "RECEIVE",
            "WRITEABLE",
            "CLOSED",
            "WSI_DESTROY",
            "DESTROY"
        ]
    );
    assert_eq!(recs[1].ev, Ev::NetFilter(me));
    assert_eq!(
        recs[4].ev,
        Ev::Filter {
            uri: Some("/chat?room=1".into()),
            origin: Some("http://example.com".into()),
            cookie: Some("a=b; c=d".into()),
            host: Some(format!("127.0.0.1:{}", s_port(&recs))),
            protocol: "seq".into(),
        }
    );
    assert_eq!(
        recs[5].ev,
        Ev::Established {
            uri: Some("/chat?room=1".into())
        }
    );
    assert_eq!(recs[6].ev, whole(b"hello", false));
    assert_eq!(recs[7].ev, whole(&[1, 2, 3], true));
    assert_eq!(recs[8].ev, Ev::Pong(b"pp".to_vec()));
    assert_eq!(recs[9].ev, whole(b"w", false));
    assert_eq!(
        recs[11].ev,
        Ev::Closed {
            code: Some(1000),
            reason: b"bye".to_vec()
        }
    );
    // one connection id throughout, none for protocol events
    let id = recs[2].conn.expect("connection callbacks carry an id");
    for r in &recs[2..13] {
        assert_eq!(r.conn, Some(id), "{r:?}");
    }
    for i in [0, 1, 13] {
        assert_eq!(recs[i].conn, None);
    }
}

/// The server's port, from the Host header the client sent (the test only knows it there).
fn s_port(recs: &[Rec]) -> u16 {
    recs.iter()
        .find_map(|r| match &r.ev {
            Ev::Filter { host: Some(h), .. } => h.rsplit(':').next()?.parse().ok(),
            _ => None,
        })
        .unwrap()
}

#[test]
fn headers_are_released_after_established() {
    let log = Log::new();
    let l = log.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "h",
            Recorder::new("h", &l).hook(move |wsi, r| {
                if let Reason::Receive { .. } = r {
                    seen2
                        .lock()
                        .unwrap()
                        .push((wsi.uri().map(str::to_owned), wsi.origin().map(str::to_owned)));
                }
                Ok(())
            }),
        )
    });
    let (mut c, _) = Client::open_with(s.port, Req::upgrade(s.port).set("Origin", "o"));
    c.send_text("x");
    log.wait_count(1, T, |r| matches!(r.ev, Ev::Receive { .. }));
    assert_eq!(*seen.lock().unwrap(), [(None, None)]);
}

#[test]
fn receive_pieces_with_rx_buffer_size_and_accessors() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol_spec(ProtocolSpec::new("cap", Recorder::new("cap", &l)).rx_buffer_size(4))
    });
    let mut c = Client::open(s.port);
    // one frame, one write: pieces of at most 4 bytes
    c.send_binary(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // a fragmented text message: two frames
    let mut w = c.frame(OpCode::Text, false, b"ab");
    w.extend(c.frame(OpCode::Continuation, true, b"cdefgh"));
    c.send(&w);
    log.wait_count(5, T, |r| matches!(r.ev, Ev::Receive { .. }));
    std::thread::sleep(Duration::from_millis(50));
    let got: Vec<Ev> = log
        .snapshot()
        .into_iter()
        .filter(|r| matches!(r.ev, Ev::Receive { .. }))
        .map(|r| r.ev)
        .collect();
    let rx = |data: &[u8], binary, first, last, remaining, fin| Ev::Receive {
        data: data.to_vec(),
        binary,
        first,
        last,
        remaining,
        acc: (binary, fin, remaining),
    };
    assert_eq!(
        got,
        [
            rx(&[0, 1, 2, 3], true, true, false, 6, false),
            rx(&[4, 5, 6, 7], true, false, false, 2, false),
            rx(&[8, 9], true, false, true, 0, true),
            rx(b"ab", false, true, false, 0, false),
            rx(b"cdef", false, false, false, 2, false),
            rx(b"gh", false, false, true, 0, true),
        ]
    );
}

#[test]
fn empty_messages_are_delivered() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| b.protocol("e", Recorder::echo("e", &l)));
    let mut c = Client::open(s.port);
    c.send_text("");
    c.send_binary(b"");
    c.expect_text("");
    assert_eq!(c.read_msg(), Msg::Binary(vec![]));
    log.wait_count(2, T, |r| matches!(r.ev, Ev::Receive { .. }));
    let got: Vec<Ev> = log
        .snapshot()
        .into_iter()
        .filter(|r| matches!(r.ev, Ev::Receive { .. }))
        .map(|r| r.ev)
        .collect();
    assert_eq!(got, [whole(b"", false), whole(b"", true)]);
}

#[test]
fn writeable_once_per_request_no_storm() {
    let log = Log::new();
    let l = log.clone();
    let left = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(5));
    let s = Server::start(&log, move |b| {
        b.protocol(
            "w",
            Recorder::new("w", &l).hook(move |wsi, r| {
                match r {
                    Reason::Established => wsi.callback_on_writable(),
                    Reason::ServerWriteable => {
                        let n = left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        wsi.send_text(&format!("n{n}"))?;
                        if n > 1 {
                            wsi.callback_on_writable();
                        }
                    }
                    _ => {}
                }
                Ok(())
            }),
        )
    });
    let mut c = Client::open(s.port);
    for n in (1..=5).rev() {
        c.expect_text(&format!("n{n}"));
    }
    let it0 = s.iterations.load(std::sync::atomic::Ordering::SeqCst);
    assert!(c.quiet_for(Duration::from_millis(300)));
    let it1 = s.iterations.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(log.count(|r| r.ev == Ev::Writeable), 5);
    // idle loop: about one service() per tick, not a spin
    assert!(it1 - it0 < 60, "{} service calls in 300 ms", it1 - it0);
}

#[test]
fn callback_error_closes_only_that_connection() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "p",
            Recorder::new("p", &l).hook(|wsi, r| match r {
                Reason::Receive { data: b"die", .. } => Err(Close::new(4001, "nope")),
                _ => echo(wsi, r),
            }),
        )
    });
    let mut a = Client::open(s.port);
    let mut b = Client::open(s.port);
    a.send_text("before");
    a.expect_text("before");
    a.send_text("die");
    let f = a.read_frame();
    assert_eq!(f.close(), (Some(4001), "nope".to_owned()));
    // no more data is delivered on the closing connection
    a.send_text("ignored");
    // the other one is fine
    b.send_text("still here");
    b.expect_text("still here");
    a.send_close(4001, "");
    a.expect_eof();
    drop(a);
    b.send_binary(&[9; 300]);
    assert_eq!(b.read_msg(), Msg::Binary(vec![9; 300]));
    log.wait_count(1, T, |r| r.ev == Ev::WsiDestroy);
    assert_eq!(log.count(|r| r.ev == Ev::WsiDestroy), 1);
    assert_eq!(
        log.count(|r| matches!(&r.ev, Ev::Receive { data, .. } if data == b"ignored")),
        0
    );
    assert_eq!(
        log.count(|r| r.ev
            == Ev::Closed {
                code: Some(4001),
                reason: vec![]
            }),
        1
    );
}

#[test]
fn cancel_service_wakes_a_blocked_service_call() {
    init_logger();
    let log = Log::new();
    let l = log.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut ctx = Context::builder()
            .port(0)
            .interface("127.0.0.1")
            .protocol("a", Recorder::new("a", &l))
            .protocol("b", Recorder::new("b", &l))
            .build()
            .unwrap();
        tx.send(ctx.cancel_handle()).unwrap();
        let t0 = Instant::now();
        ctx.service(Duration::from_secs(8)).unwrap();
        t0.elapsed()
    });
    let h = rx.recv_timeout(T).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t_cancel = Instant::now();
    h.cancel();
    let el = t.join().unwrap();
    assert!(el >= Duration::from_millis(250), "service returned early: {el:?}");
    assert!(
        t_cancel.elapsed() < Duration::from_secs(2) && el < Duration::from_secs(3),
        "service blocked {el:?}"
    );
    let recs = log.snapshot();
    let cancelled: Vec<&str> = recs
        .iter()
        .filter(|r| r.ev == Ev::Cancelled)
        .map(|r| r.proto.as_str())
        .collect();
    assert_eq!(cancelled, ["a", "b"]);
    // Init for both at build, Destroy for both at drop
    assert_eq!(log.count(|r| r.ev == Ev::Init), 2);
    assert_eq!(log.count(|r| r.ev == Ev::Destroy), 2);
}

#[test]
fn dropping_the_context_closes_connections_then_destroys_protocols() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol("a", Recorder::echo("a", &l))
            .protocol("b", Recorder::echo("b", &l))
    });
    let mut c1 = Client::open_proto(s.port, "a");
    let mut c2 = Client::open_proto(s.port, "b");
    c1.send_text("1");
    c1.expect_text("1");
    c2.send_text("2");
    c2.expect_text("2");
    s.stop();
    assert_eq!(c1.expect_close().0, Some(1001));
    assert_eq!(c2.expect_close().0, Some(1001));
    let recs: Vec<Rec> = log
        .snapshot()
        .into_iter()
        .filter(|r| r.ev != Ev::Cancelled)
        .collect();
    let tail: Vec<(String, &str)> = recs[recs.len() - 6..]
        .iter()
        .map(|r| (r.proto.clone(), r.ev.kind()))
        .collect();
    let mut conns = tail[..4].to_vec();
    conns.sort();
    assert_eq!(
        conns,
        [
            ("a".into(), "CLOSED"),
            ("a".into(), "WSI_DESTROY"),
            ("b".into(), "CLOSED"),
            ("b".into(), "WSI_DESTROY")
        ]
    );
    assert_eq!(tail[4..], [("a".into(), "DESTROY"), ("b".into(), "DESTROY")]);
}

#[test]
fn writable_all_and_callback_all_reach_only_that_protocol() {
    let log = Log::new();
    let l = log.clone();
    let hook = |wsi: &mut wsreactor::Wsi<'_>, r: Reason<'_>| {
        match r {
            Reason::ServerWriteable => wsi.send_text("W")?,
            Reason::User { event, data } => {
                wsi.send_text(&format!("U{event}{}", std::str::from_utf8(data).unwrap()))?
            }
            Reason::Receive { data: b"all", .. } => {
                let alpha = wsi.protocol_by_name("alpha").unwrap();
                wsi.callback_all_protocol(alpha, 9, b":from beta");
            }
            _ => {}
        }
        Ok(())
    };
    let s = Server::start(&log, move |b| {
        b.protocol("alpha", Recorder::new("alpha", &l).hook(hook))
            .protocol("beta", Recorder::new("beta", &l).hook(hook))
    });
    let mut a1 = Client::open_proto(s.port, "alpha");
    let mut a2 = Client::open_proto(s.port, "alpha");
    let mut b1 = Client::open_proto(s.port, "beta");
    log.wait_count(3, T, |r| matches!(r.ev, Ev::Established { .. }));

    s.with_ctx(|ctx| {
        let a = ctx.protocol_by_name("alpha").unwrap();
        ctx.callback_on_writable_all_protocol(a);
    });
    a1.expect_text("W");
    a2.expect_text("W");
    assert!(b1.quiet_for(Duration::from_millis(200)));
    let writeable: Vec<Rec> = log
        .snapshot()
        .into_iter()
        .filter(|r| r.ev == Ev::Writeable)
        .collect();
    assert_eq!(writeable.len(), 2);
    assert!(writeable.iter().all(|r| r.proto == "alpha"));
    assert_ne!(writeable[0].conn, writeable[1].conn);

    s.with_ctx(|ctx| {
        let a = ctx.protocol_by_name("alpha").unwrap();
        ctx.callback_all_protocol(a, 7, b"");
    });
    a1.expect_text("U7");
    a2.expect_text("U7");
    assert!(b1.quiet_for(Duration::from_millis(200)));
    assert_eq!(log.count(|r| r.ev == Ev::User(7)), 2);
    assert_eq!(log.count(|r| r.ev == Ev::User(7) && r.proto == "alpha"), 2);

    // the same from inside a callback of the other protocol
    b1.send_text("all");
    a1.expect_text("U9:from beta");
    a2.expect_text("U9:from beta");
    assert!(b1.quiet_for(Duration::from_millis(200)));
    assert_eq!(log.count(|r| r.ev == Ev::User(9) && r.proto == "alpha"), 2);
    assert_eq!(log.count(|r| r.ev == Ev::User(9)), 2);
}

#[test]
fn automatic_pong_and_receive_pong() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| b.protocol("p", Recorder::echo("p", &l)));
    let mut c = Client::open(s.port);
    c.send_frame(OpCode::Ping, true, b"abc");
    assert_eq!(c.read_msg(), Msg::Pong(b"abc".to_vec()));
    c.send_frame(OpCode::Ping, true, b"");
    assert_eq!(c.read_msg(), Msg::Pong(vec![]));
    let max = [7u8; 125];
    c.send_frame(OpCode::Ping, true, &max);
    assert_eq!(c.read_msg(), Msg::Pong(max.to_vec()));
    // unsolicited pong: a callback, no answer
    c.send_frame(OpCode::Pong, true, b"unsolicited");
    log.wait_count(1, T, |r| r.ev == Ev::Pong(b"unsolicited".to_vec()));
    assert!(c.quiet_for(Duration::from_millis(100)));
    // pings are not RECEIVE
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Receive { .. })), 0);
}

#[test]
fn close_codes_from_callback_errors() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "p",
            Recorder::new("p", &l).hook(|_, r| match r {
                // a code that must not be sent becomes 1011
                Reason::Receive { data: b"1005", .. } => Err(Close::new(1005, "reserved")),
                // any std error converts with `?`: 1011 with its message
                Reason::Receive { data: b"io", .. } => {
                    Err(std::io::Error::other("disk on fire"))?;
                    Ok(())
                }
                // an over-long reason is cut to fit a control frame, at a char boundary
                Reason::Receive { data: b"long", .. } => Err(Close::new(4002, "é".repeat(100))),
                _ => Ok(()),
            }),
        )
    });
    let mut c = Client::open(s.port);
    c.send_text("1005");
    assert_eq!(c.read_frame().close().0, Some(1011));
    let mut c = Client::open(s.port);
    c.send_text("io");
    assert_eq!(c.read_frame().close(), (Some(1011), "disk on fire".to_owned()));
    let mut c = Client::open(s.port);
    c.send_text("long");
    let f = c.read_frame();
    assert!(f.payload.len() <= 125);
    let (code, reason) = f.close();
    assert_eq!(code, Some(4002));
    assert!(
        reason.chars().all(|ch| ch == 'é') && reason.len() >= 120,
        "{reason:?}"
    );
}

#[test]
fn rx_paused_in_established_holds_data_sent_with_the_head_until_cancel_event() {
    // The classic pattern: pause on ESTABLISHED; the main loop wakes the context with
    // cancel_service, and EVENT_WAIT_CANCELLED re-enables all connections of the protocol.
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "p",
            Recorder::new("p", &l)
                .hook(|wsi, r| {
                    if let Reason::Established = r {
                        wsi.rx_flow_control(false);
                    }
                    echo(wsi, r)
                })
                .phook(|ctx, ev| {
                    if let wsreactor::ProtocolEvent::EventWaitCancelled = ev {
                        let p = ctx.protocol();
                        ctx.rx_flow_allow_all_protocol(p);
                    }
                    Ok(())
                }),
        )
    });
    let mut c = Client::connect(s.port);
    let mut bytes = Req::upgrade(s.port).bytes();
    for m in ["a", "b", "c"] {
        let f = c.frame(OpCode::Text, true, m.as_bytes());
        bytes.extend_from_slice(&f);
    }
    c.send(&bytes);
    assert_eq!(c.read_response().unwrap().status, 101);
    assert!(c.quiet_for(Duration::from_millis(300)));
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Receive { .. })), 0);
    s.cancel_handle().cancel();
    for m in ["a", "b", "c"] {
        c.expect_text(m);
    }
}

#[test]
fn rx_buffer_size_does_not_split_control_frames() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol_spec(ProtocolSpec::new("cap", Recorder::echo("cap", &l)).rx_buffer_size(4))
    });
    let mut c = Client::open(s.port);
    c.send_frame(OpCode::Ping, true, b"abcdefgh");
    assert_eq!(c.read_msg(), Msg::Pong(b"abcdefgh".to_vec()));
    assert!(c.quiet_for(Duration::from_millis(100)));
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Receive { .. })), 0);
    c.send_close(1000, "goodbye");
    assert_eq!(c.read_frame().close().0, Some(1000));
    c.expect_eof();
    drop(c);
    log.wait_count(1, T, |r| r.ev == Ev::WsiDestroy);
    assert_eq!(
        log.count(|r| r.ev
            == Ev::Closed {
                code: Some(1000),
                reason: b"goodbye".to_vec()
            }),
        1
    );
}
