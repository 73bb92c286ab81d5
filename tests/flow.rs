//! Flow: rx flow control, write back-pressure, close timeouts.

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsreactor::proto::OpCode;
use wsreactor::{Close, Reason, WriteError};

const T: Duration = Duration::from_secs(5);

fn receives(log: &Log) -> Vec<Vec<u8>> {
    log.messages(None)
}

fn texts(v: &[Vec<u8>]) -> Vec<String> {
    v.iter().map(|b| String::from_utf8(b.clone()).unwrap()).collect()
}

/// A protocol that pauses reading on the RECEIVE of `pause_on` and resumes on `User(1)`;
/// records `is_rx_paused` after pausing.
fn pausing_server(log: &Log, pause_on: &'static [u8], paused_seen: Arc<AtomicUsize>) -> Server {
    let l = log.clone();
    Server::start(log, move |b| {
        b.protocol(
            "flow",
            Recorder::new("flow", &l).hook(move |wsi, r| {
                match r {
                    Reason::Receive { data, .. } if data == pause_on => {
                        assert!(!wsi.is_rx_paused());
                        wsi.rx_flow_control(false);
                        if wsi.is_rx_paused() {
                            paused_seen.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Reason::User { event: 1, .. } => wsi.rx_flow_control(true),
                    _ => {}
                }
                echo(wsi, r)
            }),
        )
    })
}

#[test]
fn rx_flow_control_holds_and_resumes_from_main_loop() {
    let log = Log::new();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = pausing_server(&log, b"m0", seen.clone());
    let mut c = Client::open(s.port);
    c.send_text("m0");
    c.expect_text("m0");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    for i in 1..5 {
        c.send_text(&format!("m{i}"));
        std::thread::sleep(Duration::from_millis(10));
    }
    // pings are held too: nothing is read while paused
    c.send_frame(OpCode::Ping, true, b"held");
    assert!(c.quiet_for(Duration::from_millis(300)));
    assert_eq!(texts(&receives(&log)), ["m0"]);

    s.with_ctx(|ctx| {
        let p = ctx.protocol_by_name("flow").unwrap();
        ctx.rx_flow_allow_all_protocol(p);
    });
    for i in 1..5 {
        c.expect_text(&format!("m{i}"));
    }
    assert_eq!(c.read_msg(), Msg::Pong(b"held".to_vec()));
    assert_eq!(texts(&receives(&log)), ["m0", "m1", "m2", "m3", "m4"]);
    // and reading goes on normally
    c.send_text("m5");
    c.expect_text("m5");
}

#[test]
fn rx_flow_control_pause_mid_batch_resume_from_callback() {
    let log = Log::new();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = pausing_server(&log, b"m1", seen.clone());
    let mut c = Client::open(s.port);
    // five messages in ONE write: m2..m4 are already read into the library when m1 pauses
    let mut w = Vec::new();
    for i in 0..5 {
        w.extend(c.frame(OpCode::Text, true, format!("m{i}").as_bytes()));
    }
    c.send(&w);
    c.expect_text("m0");
    c.expect_text("m1");
    assert!(c.quiet_for(Duration::from_millis(300)));
    assert_eq!(texts(&receives(&log)), ["m0", "m1"]);
    assert_eq!(seen.load(Ordering::SeqCst), 1);

    // resume through a callback (callback_all_protocol -> wsi.rx_flow_control(true))
    s.with_ctx(|ctx| {
        let p = ctx.protocol_by_name("flow").unwrap();
        ctx.callback_all_protocol(p, 1, b"");
    });
    for i in 2..5 {
        c.expect_text(&format!("m{i}"));
    }
    assert_eq!(texts(&receives(&log)), ["m0", "m1", "m2", "m3", "m4"]);
    c.send_text("m5");
    c.expect_text("m5");
}

#[test]
fn rx_flow_control_pause_inside_a_fragmented_message_with_big_backlog() {
    // Pause on the first piece of a big message; the client keeps sending (several MiB,
    // more than socket buffers hold); after resume every byte arrives in order.
    let log = Log::new();
    let l = log.clone();
    let total = Arc::new(Mutex::new(Vec::<u8>::new()));
    let total2 = total.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "flow",
            Recorder::new("flow", &l).hook(move |wsi, r| {
                if let Reason::Receive { data, first, .. } = r {
                    let mut t = total2.lock().unwrap();
                    if first && t.is_empty() {
                        wsi.rx_flow_control(false);
                    }
                    t.extend_from_slice(data);
                }
                if let Reason::User { event: 1, .. } = r {
                    wsi.rx_flow_control(true);
                }
                Ok(())
            }),
        )
    });
    let mut c = Client::open(s.port);
    let n = 6 << 20;
    let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::new();
    for (i, ch) in data.chunks(1 << 20).enumerate() {
        let op = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        wire.extend(c.frame(op, (i + 1) << 20 >= n, ch));
    }
    let mut w = c.stream.try_clone().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let sent2 = sent.clone();
    let writer = std::thread::spawn(move || {
        for piece in wire.chunks(64 << 10) {
            std::io::Write::write_all(&mut w, piece).unwrap();
            sent2.fetch_add(piece.len(), Ordering::SeqCst);
        }
    });
    log.wait_count(1, T, |r| matches!(r.ev, Ev::Receive { .. }));
    std::thread::sleep(Duration::from_millis(300));
    let got_paused = total.lock().unwrap().len();
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Receive { .. })), 1);
    // the writer is stuck: TCP pushes back
    assert!(
        sent.load(Ordering::SeqCst) < n,
        "server read everything while paused"
    );
    assert!(got_paused < n);
    s.with_ctx(|ctx| {
        let p = ctx.protocol_by_name("flow").unwrap();
        ctx.callback_all_protocol(p, 1, b"");
    });
    writer.join().unwrap();
    assert!(eventually(T, || total.lock().unwrap().len() == n));
    assert!(*total.lock().unwrap() == data);
    let msgs = log.messages(None);
    assert_eq!(msgs.len(), 1);
}

/// Pattern of message `i` of the back-pressure test.
/// An upgraded client with a 32 KiB receive buffer, so that what the server sends backs up
/// into the server soon when the client does not read.
fn small_window_client(port: u16) -> Client {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(32 << 10).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    sock.connect(&addr.into()).unwrap();
    let mut c = Client::from_stream(sock.into());
    c.send(&Req::upgrade(port).bytes());
    assert_eq!(c.read_response().unwrap().status, 101);
    c
}

fn pattern(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (i.wrapping_mul(131) ^ j.wrapping_mul(7) ^ (j >> 9)) as u8)
        .collect()
}

#[derive(Default, Debug, Clone)]
struct Stats {
    written: usize,
    back_pressure: usize,
    partial_after_write: usize,
    max_unsent_seen: usize,
    writeables: usize,
}

#[test]
fn writable_back_pressure_does_not_spin_and_delivers_everything() {
    const MSG: usize = 64 << 10;
    const N: usize = 160; // 10 MiB
    const MAX_UNSENT: usize = 256 << 10;
    let log = Log::new();
    let l = log.clone();
    let stats = Arc::new(Mutex::new(Stats::default()));
    let st = stats.clone();
    let s = Server::start(&log, move |b| {
        b.max_unsent(MAX_UNSENT).protocol(
            "bulk",
            Recorder::new("bulk", &l).hook(move |wsi, r| {
                match r {
                    Reason::Established => wsi.callback_on_writable(),
                    Reason::ServerWriteable => {
                        let mut s = st.lock().unwrap();
                        s.writeables += 1;
                        while s.written < N {
                            match wsi.send_binary(&pattern(s.written, MSG)) {
                                Ok(()) => {
                                    s.written += 1;
                                    if wsi.partial_buffered() {
                                        s.partial_after_write += 1;
                                    }
                                    s.max_unsent_seen = s.max_unsent_seen.max(wsi.unsent_len());
                                }
                                Err(WriteError::BackPressure) => {
                                    s.back_pressure += 1;
                                    break;
                                }
                                Err(e) => return Err(Close::from(e)),
                            }
                        }
                        if s.written < N {
                            wsi.callback_on_writable();
                        }
                    }
                    _ => {}
                }
                Ok(())
            }),
        )
    });
    // a client with a small receive window that does not read for a while
    let mut c = small_window_client(s.port);

    // Wait for the stall: the kernel's buffers full and nothing more written for 200 ms (a
    // fixed wait was too short on a loaded machine, and WRITEABLEs still running counted
    // as spinning).
    let end = Instant::now() + T;
    loop {
        let x = stats.lock().unwrap().clone();
        std::thread::sleep(Duration::from_millis(200));
        let y = stats.lock().unwrap().clone();
        if x.written == y.written && x.writeables == y.writeables {
            break;
        }
        assert!(Instant::now() < end, "no stall: {y:?}");
    }
    let a = stats.lock().unwrap().clone();
    let it_a = s.iterations.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    let b = stats.lock().unwrap().clone();
    let it_b = s.iterations.load(Ordering::SeqCst);
    eprintln!("stall: {a:?} -> {b:?}, {} service() calls in 500 ms", it_b - it_a);
    assert!(a.written < N, "the socket never filled up: {a:?}");
    assert!(a.back_pressure > 0, "{a:?}");
    assert!(a.partial_after_write > 0, "{a:?}");
    assert!(a.max_unsent_seen <= MAX_UNSENT, "{a:?}");
    // stalled: no new WRITEABLE callbacks, and the loop idles (20 ms ticks), no spinning
    assert!(b.writeables - a.writeables <= 1, "{a:?} -> {b:?}");
    assert_eq!(a.written, b.written);
    assert!(it_b - it_a < 60, "{} service() calls in 500 ms", it_b - it_a);

    let t0 = Instant::now();
    for i in 0..N {
        match c.read_msg() {
            Msg::Binary(m) => assert!(m == pattern(i, MSG), "message {i} differs"),
            other => panic!("message {i}: {:?}", std::mem::discriminant(&other)),
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(c.quiet_for(Duration::from_millis(100)));
    let f = stats.lock().unwrap().clone();
    assert_eq!(f.written, N);
    // each WRITEABLE wrote until back-pressure: roughly MAX_UNSENT / MSG messages each
    assert!(f.writeables <= N, "{f:?}");
}

#[test]
fn write_errors_closed_fragmentation_too_long() {
    let log = Log::new();
    let l = log.clone();
    let results = Arc::new(Mutex::new(Vec::new()));
    let r2 = results.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "w",
            Recorder::new("w", &l).hook(move |wsi, r| {
                if let Reason::Receive { .. } = r {
                    use wsreactor::WriteProtocol::*;
                    let mut v = r2.lock().unwrap();
                    v.push(wsi.write(b"c", Continuation));
                    v.push(wsi.write(&[0; 126], Ping));
                    v.push(wsi.write_fragment(b"a", Text, false));
                    v.push(wsi.write(b"x", Binary));
                    v.push(wsi.write(b"p", Ping));
                    v.push(wsi.write(b"b", Continuation));
                    wsi.close(1000, "done");
                    v.push(wsi.write(b"late", Text));
                }
                Ok(())
            }),
        )
    });
    let mut c = Client::open(s.port);
    c.send_text("go");
    // fragmented "ab" with a ping inside, then the close
    let f1 = c.read_frame();
    assert_eq!(
        (f1.opcode, f1.fin, &f1.payload[..]),
        (OpCode::Text, false, &b"a"[..])
    );
    assert_eq!(c.read_frame().opcode, OpCode::Ping);
    let f3 = c.read_frame();
    assert_eq!(
        (f3.opcode, f3.fin, &f3.payload[..]),
        (OpCode::Continuation, true, &b"b"[..])
    );
    assert_eq!(c.read_frame().close(), (Some(1000), "done".to_owned()));
    assert_eq!(
        *results.lock().unwrap(),
        [
            Err(WriteError::Fragmentation),
            Err(WriteError::TooLong),
            Ok(()),
            Err(WriteError::Fragmentation),
            Ok(()),
            Ok(()),
            Err(WriteError::Closed),
        ]
    );
}

#[test]
fn close_timeout_when_the_peer_never_answers() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.close_timeout(Duration::from_millis(300)).protocol(
            "c",
            Recorder::new("c", &l).hook(|wsi, r| {
                if let Reason::Receive { data: b"close", .. } = r {
                    wsi.close(4000, "srv");
                }
                Ok(())
            }),
        )
    });
    let mut c = Client::open(s.port);
    c.send_text("close");
    assert_eq!(c.read_frame().close(), (Some(4000), "srv".to_owned()));
    // never answer, keep the socket open
    // 300 ms against the 5 s default: well under it even on a loaded machine.
    let t = c.expect_eof();
    assert!(
        t >= Duration::from_millis(200) && t < Duration::from_secs(4),
        "closed after {t:?}"
    );
    log.wait_count(1, T, |r| r.ev == Ev::WsiDestroy);
    assert_eq!(
        log.count(|r| r.ev
            == Ev::Closed {
                code: None,
                reason: vec![]
            }),
        1
    );
}

#[test]
fn client_close_is_answered_and_the_server_closes_tcp_first() {
    // The client starts the close handshake and then keeps its socket open: once both
    // close frames are exchanged the server closes the TCP connection itself, at once,
    // without waiting out close_timeout for the client's EOF (RFC 6455 §7.1.1).
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        // A close timeout far beyond the bounds below, so that "at once" cannot be the
        // timeout firing, and the bounds leave room for a loaded machine.
        b.close_timeout(Duration::from_secs(60))
            .protocol("c", Recorder::echo("c", &l))
    });
    let mut c = Client::open(s.port);
    let t0 = Instant::now();
    c.send_close(1000, "bye");
    assert_eq!(c.read_frame().close(), (Some(1000), String::new()));
    let t = c.expect_eof();
    assert!(t < Duration::from_secs(5), "EOF after {t:?}");
    log.wait_count(1, T, |r| r.ev == Ev::WsiDestroy);
    let t = t0.elapsed();
    assert!(t < Duration::from_secs(5), "freed after {t:?}");
    assert_eq!(
        log.count(|r| r.ev
            == Ev::Closed {
                code: Some(1000),
                reason: b"bye".to_vec()
            }),
        1
    );
}

#[test]
fn server_close_answered_by_client_closes_promptly() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        // Promptly: long before this timeout, with room for a loaded machine.
        b.close_timeout(Duration::from_secs(60)).protocol(
            "c",
            Recorder::new("c", &l).hook(|wsi, r| {
                if let Reason::Receive { .. } = r {
                    wsi.close(1001, "going");
                }
                Ok(())
            }),
        )
    });
    let mut c = Client::open(s.port);
    c.send_text("x");
    assert_eq!(c.read_frame().close(), (Some(1001), "going".to_owned()));
    c.send_close(1001, "");
    let t = c.expect_eof();
    assert!(t < Duration::from_secs(5), "{t:?}");
    drop(c);
    log.wait_count(1, T, |r| r.ev == Ev::WsiDestroy);
    assert_eq!(
        log.count(|r| r.ev
            == Ev::Closed {
                code: Some(1001),
                reason: vec![]
            }),
        1
    );
}

#[test]
fn abrupt_disconnect_gives_closed_without_code() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| b.protocol("c", Recorder::echo("c", &l)));
    let mut c = Client::open(s.port);
    c.send_text("x");
    c.expect_text("x");
    // half a frame, then gone
    let f = c.frame(OpCode::Text, true, b"never finished");
    c.send(&f[..5]);
    drop(c);
    log.wait_count(1, T, |r| r.ev == Ev::WsiDestroy);
    let recs = log.snapshot();
    let kinds = kinds_of(&recs);
    assert_eq!(&kinds[kinds.len() - 2..], ["CLOSED", "WSI_DESTROY"]);
    assert_eq!(
        recs[recs.len() - 2].ev,
        Ev::Closed {
            code: None,
            reason: vec![]
        }
    );
}

#[test]
fn close_then_half_close_still_gets_the_close_reply() {
    // A client that sends its close frame and shuts down its write side at once (common
    // for simple clients) must still receive the server's close frame before the EOF.
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| b.protocol("c", Recorder::echo("c", &l)));
    for _ in 0..20 {
        let mut c = Client::open(s.port);
        c.send_text("x");
        c.expect_text("x");
        let f = c.frame(OpCode::Close, true, &Client::close_payload(1000, "bye"));
        c.send(&f);
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        match c.try_read_frame() {
            Ok(Some(f)) => assert_eq!(f.close(), (Some(1000), String::new())),
            other => panic!("no close reply: {other:?}"),
        }
        c.expect_eof();
    }
}

#[test]
fn protocol_error_then_half_close_still_gets_the_close_frame() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| b.protocol("c", Recorder::echo("c", &l)));
    for _ in 0..20 {
        let mut c = Client::open(s.port);
        c.send(&[0x81, 0x01, b'x']); // unmasked
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        match c.try_read_frame() {
            Ok(Some(f)) => assert_eq!(f.close().0, Some(1002)),
            other => panic!("no close frame: {other:?}"),
        }
    }
}

#[test]
fn many_connections_at_once() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| b.protocol("c", Recorder::echo("c", &l)));
    let mut cs: Vec<Client> = (0..64).map(|_| Client::open(s.port)).collect();
    for (i, c) in cs.iter_mut().enumerate() {
        c.send_text(&format!("c{i}"));
    }
    for (i, c) in cs.iter_mut().enumerate() {
        c.expect_text(&format!("c{i}"));
    }
    let n = s.with_ctx(|ctx| ctx.connection_count());
    assert_eq!(n, 64);
    drop(cs);
    log.wait_count(64, T, |r| r.ev == Ev::WsiDestroy);
    assert!(eventually(T, || s.with_ctx(|ctx| ctx.connection_count()) == 0));
}

#[test]
fn echo_with_flow_control_against_a_slow_reader() {
    // The echo-server pattern: pause reading when too much echo is queued, resume on
    // WRITEABLE. A client that writes 8 MiB before reading anything gets it all back.
    const HIGH: usize = 256 << 10;
    let log = Log::new();
    let l = log.clone();
    let pauses = Arc::new(AtomicUsize::new(0));
    let p2 = pauses.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "e",
            Recorder::new("e", &l).hook(move |wsi, r| {
                match r {
                    Reason::Receive { .. } => {
                        echo(wsi, r)?;
                        if wsi.unsent_len() > HIGH && !wsi.is_rx_paused() {
                            p2.fetch_add(1, Ordering::SeqCst);
                            wsi.rx_flow_control(false);
                            wsi.callback_on_writable();
                        }
                    }
                    Reason::ServerWriteable => wsi.rx_flow_control(true),
                    _ => {}
                }
                Ok(())
            }),
        )
    });
    // A small receive window, so that the kernel's buffers cannot take the whole echo.
    let mut c = small_window_client(s.port);
    let msgs: Vec<Vec<u8>> = (0..128).map(|i| pattern(i, 64 << 10)).collect();
    let mut wire = Vec::new();
    for m in &msgs {
        wire.extend(c.frame(OpCode::Binary, true, m));
    }
    let mut w = c.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        std::io::Write::write_all(&mut w, &wire).unwrap();
    });
    // Not reading until the server has paused (a fixed 300 ms was too short for the writer
    // thread on a loaded machine); a server that never pauses fails here.
    assert!(
        eventually(T, || pauses.load(Ordering::SeqCst) > 0),
        "never paused"
    );
    for (i, m) in msgs.iter().enumerate() {
        match c.read_msg() {
            Msg::Binary(b) => assert!(&b == m, "message {i} differs"),
            other => panic!("message {i}: {:?}", std::mem::discriminant(&other)),
        }
    }
    writer.join().unwrap();
}
